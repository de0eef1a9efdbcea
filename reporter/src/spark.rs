//! Trends for the live screen: per receiver, how many files were delivered
//! and collected in each of the last few clock-aligned slots, drawn as two
//! sparklines on one scale, so a person sees at a glance whether delivery
//! keeps up with production. Pure: the event times come in, text goes out.
//!
//! Memory is bounded by [`SLOTS`] counters per line, however long the event
//! log; a receiver's collected files are attributed through the routes, as
//! the census does, since collector lines name no receiver.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slots per sparkline and their width: the last five minutes.
pub const SLOTS: usize = 20;
pub const SLOT: Duration = Duration::from_secs(15);

/// Width of the receiver column; longer names are cut with `…`.
const NAME: usize = 12;

/// Eight heights; an empty slot is a dot, so "a little" and "nothing"
/// never look alike.
const GLYPHS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const EMPTY: char = '·';

/// Counts per slot for the last `SLOTS` slots, oldest first. Slots are
/// aligned to the clock, so a count stays in its slot from one refresh to
/// the next instead of sliding with the moment of the refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    newest: u64,
    counts: [u64; SLOTS],
}

impl Window {
    pub fn new(now: SystemTime) -> Window {
        Window {
            newest: slot_of(now),
            counts: [0; SLOTS],
        }
    }

    /// Counts one file at `time`; times before the window are dropped and
    /// times after `now` (clocks disagree) go into the newest slot.
    pub fn add(&mut self, time: SystemTime) {
        let slot = slot_of(time).min(self.newest);
        let back = (self.newest - slot) as usize;
        if back < SLOTS {
            self.counts[SLOTS - 1 - back] += 1;
        }
    }

    pub fn counts(&self) -> &[u64; SLOTS] {
        &self.counts
    }

    /// Files per second over the whole window.
    pub fn per_second(&self) -> f64 {
        self.counts.iter().sum::<u64>() as f64 / (SLOTS as f64 * SLOT.as_secs_f64())
    }
}

fn slot_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / SLOT.as_secs()
}

/// One sparkline, scaled so that `peak` is the full block.
pub fn sparkline(counts: &[u64], peak: u64) -> String {
    counts
        .iter()
        .map(|&n| match n {
            0 => EMPTY,
            // Any file at all shows as at least the lowest bar.
            n => GLYPHS[((n * GLYPHS.len() as u64).div_ceil(peak.max(n)) as usize).max(1) - 1],
        })
        .collect()
}

/// Delivered and collected windows per receiver.
#[derive(Clone, Debug)]
pub struct Trends {
    now: SystemTime,
    /// Every file, whatever its receiver: the row that answers "does
    /// delivery keep up" even without routes.
    all: [Window; 2],
    pub receivers: BTreeMap<String, [Window; 2]>,
    /// Whether collected files can be put to a receiver (there are routes).
    routed: bool,
}

const DELIVERED: usize = 0;
const COLLECTED: usize = 1;

impl Trends {
    /// Starts with a row for each receiver known from the routes, so an
    /// idle receiver shows as idle rather than missing.
    /// `routed` says whether collected files will be attributed to
    /// receivers; without routes only the `all` row can show them.
    pub fn new(
        now: SystemTime,
        receivers: impl IntoIterator<Item = String>,
        routed: bool,
    ) -> Trends {
        let mut t = Trends {
            now,
            all: [Window::new(now), Window::new(now)],
            receivers: BTreeMap::new(),
            routed,
        };
        for name in receivers {
            t.row(name);
        }
        t
    }

    fn row(&mut self, receiver: String) -> &mut [Window; 2] {
        let now = self.now;
        self.receivers
            .entry(receiver)
            .or_insert_with(|| [Window::new(now), Window::new(now)])
    }

    pub fn delivered(&mut self, receiver: String, time: SystemTime) {
        self.all[DELIVERED].add(time);
        self.row(receiver)[DELIVERED].add(time);
    }

    /// A collected file; `receiver` is where its routes send it, if known.
    pub fn collected(&mut self, receiver: Option<String>, time: SystemTime) {
        self.all[COLLECTED].add(time);
        if let Some(r) = receiver {
            self.row(r)[COLLECTED].add(time);
        }
    }

    /// The screen's TRENDS section: a header and one line per receiver,
    /// each within 80 columns.
    pub fn render(&self) -> String {
        let mut out = format!(
            "\nTRENDS (last {}m, {}s a bar; one scale per row)\n  {:<NAME$}  {:<w$}  {:<w$}\n",
            SLOTS as u64 * SLOT.as_secs() / 60,
            SLOT.as_secs(),
            "receiver",
            "delivered/s",
            "collected/s",
            w = SLOTS + 9,
        );
        let rows = std::iter::once(("all", &self.all, true)).chain(
            self.receivers
                .iter()
                .map(|(name, w)| (name.as_str(), w, self.routed)),
        );
        for (name, [delivered, collected], show_collected) in rows {
            let peak = delivered
                .counts()
                .iter()
                .chain(collected.counts().iter().filter(|_| show_collected))
                .copied()
                .max()
                .unwrap_or(0);
            let line = |w: &Window| {
                format!(
                    "{} {:>8}",
                    sparkline(w.counts(), peak),
                    rate(w.per_second())
                )
            };
            let collected = if show_collected {
                line(collected)
            } else {
                "(routes come with --config)".into()
            };
            out.push_str(&format!(
                "  {:<NAME$}  {}  {}\n",
                cut(name, NAME),
                line(delivered),
                collected
            ));
        }
        out
    }
}

fn rate(per_second: f64) -> String {
    if per_second >= 1000.0 {
        format!("{:.0}/s", per_second)
    } else {
        format!("{per_second:.1}/s")
    }
}

fn cut(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn counts_land_in_clock_aligned_slots_and_old_ones_drop_out() {
        let now = at(1_000_000 * 15 + 7);
        let mut w = Window::new(now);
        w.add(now);
        w.add(at(1_000_000 * 15)); // the same slot, earlier in it
        w.add(now - SLOT); // the slot before
        w.add(now - SLOT * SLOTS as u32); // just out of the window
        w.add(now + Duration::from_secs(3600)); // a clock ahead of ours
        let c = w.counts();
        assert_eq!((c[SLOTS - 1], c[SLOTS - 2]), (3, 1));
        assert_eq!(c.iter().sum::<u64>(), 4);
    }

    #[test]
    fn sparkline_heights_scale_to_the_peak_and_nothing_is_a_dot() {
        assert_eq!(sparkline(&[0, 1, 4, 8], 8), "·▁▄█");
        assert_eq!(sparkline(&[1, 100], 100), "▁█");
        assert_eq!(sparkline(&[0, 0], 0), "··");
        // A count above the stated peak is drawn full, never out of range.
        assert_eq!(sparkline(&[9], 3), "█");
    }

    #[test]
    fn every_line_fits_80_columns() {
        let now = at(10_000_000);
        let long = "a-receiver-with-a-very-long-name".to_string();
        let mut t = Trends::new(now, [long.clone()], false);
        for _ in 0..100_000 {
            t.delivered(long.clone(), now);
            t.collected(Some("short".into()), now);
        }
        let text = t.render();
        assert!(text.contains("a-receiver-…"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
        }
    }

    #[test]
    fn rows_share_a_scale_so_a_lagging_delivery_shows() {
        let now = at(10_000_000);
        let mut t = Trends::new(now, [], true);
        for _ in 0..8 {
            t.collected(Some("orders".into()), now);
        }
        t.delivered("orders".into(), now);
        let text = t.render();
        let row = text.lines().last().unwrap();
        assert!(row.starts_with("  orders"), "{text}");
        assert!(row.contains("·▁ ") && row.contains("·█ "), "{row}");
        assert!(text.lines().any(|l| l.starts_with("  all ")), "{text}");
    }
}
