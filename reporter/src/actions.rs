//! The operator's actions, carried out through the spool protocol: hold and
//! release a receiver's backlog, requeue files from error/, and the queue
//! tools (`list` in [`crate::list`], `flush` in [`crate::flush`]). Each
//! move is one of the protocol crate's spool operations; this module only chooses
//! the files.

use std::time::{Duration, SystemTime};

use spoolpost_ops::config;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::circuits;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ReasonRecord;
use spoolpost_protocol::spool::{Spool, State, is_data_name, is_reason_name, reason_name, requeue};

use crate::cli::Action;
use crate::{flush, list};

/// Carries out `action`; the spool and config are already checked.
pub fn apply(
    action: &Action,
    spool: &Spool,
    loaded: Option<&config::Loaded>,
    router: Option<&Router>,
) -> Result<(), Failure> {
    match action {
        Action::Hold { receiver } => {
            check_hold_name(loaded, receiver)?;
            circuits::hold(spool, receiver)?;
            eprintln!("reporter: {receiver} is on hold");
        }
        Action::Release { receiver } => {
            check_hold_name(loaded, receiver)?;
            circuits::release(spool, receiver)?;
            eprintln!("reporter: {receiver} is released");
        }
        Action::Requeue {
            receiver,
            status,
            class,
            older_than,
            all,
        } => {
            if !all
                && receiver.is_none()
                && status.is_none()
                && class.is_none()
                && older_than.is_none()
            {
                return Err(Failure::usage(
                    "requeue: give --all or a selector (--receiver, --status, --class, --older-than)",
                ));
            }
            needs_routes("requeue", receiver.as_deref(), router)?;
            let selector = Selector {
                receiver: receiver.clone(),
                status: *status,
                class: class.clone(),
                older_than: *older_than,
            };
            let n = requeue_selected(spool, router, &selector)?;
            eprintln!("reporter: requeued {n} files");
        }
        Action::List {
            receiver,
            state,
            format,
        } => {
            needs_routes("list", receiver.as_deref(), router)?;
            let filter = list::Filter {
                receiver: receiver.as_deref(),
                state: *state,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            list::stream(
                spool,
                router,
                backoff_max(loaded),
                &filter,
                *format,
                &mut out,
            )?;
        }
        Action::Flush { receiver } => {
            needs_routes("flush", receiver.as_deref(), router)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = flush::flush_waiting(
                spool,
                router,
                receiver.as_deref(),
                backoff_max(loaded),
                &mut out,
            )?;
            drop(out);
            eprintln!("reporter: flushed {n} waiting retries");
        }
    }
    Ok(())
}

/// A hold names a receiver: bad input if it cannot be one (exit 2), a
/// configuration problem if the config has no such receiver (exit 78), so
/// a typo does not hold nothing while the operator thinks it holds.
fn check_hold_name(loaded: Option<&config::Loaded>, receiver: &str) -> Result<(), Failure> {
    spoolpost_protocol::receiver::check_receiver_name(receiver).map_err(Failure::usage)?;
    if let Some(loaded) = loaded
        && !loaded.config.receivers.contains_key(receiver)
    {
        let known: Vec<&str> = loaded.config.receivers.keys().map(String::as_str).collect();
        return Err(Failure::config(loaded.error_at_key(
            &["receivers"],
            format!(
                "no receiver {receiver:?} here (receivers: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )));
    }
    Ok(())
}

/// `--receiver` means "routed to": without the routes it would match
/// nothing while the operator thinks it matched.
fn needs_routes(
    what: &str,
    receiver: Option<&str>,
    router: Option<&Router>,
) -> Result<(), Failure> {
    if receiver.is_some() && router.is_none() {
        return Err(Failure::usage(format!(
            "{what} --receiver needs --config for the routes"
        )));
    }
    Ok(())
}

/// The longest a sender lets any file wait (docs/spool.md rule 13), which
/// caps a retry's next-attempt time.
fn backoff_max(loaded: Option<&config::Loaded>) -> Duration {
    loaded.map_or_else(
        || config::SenderSection::default().backoff_max,
        |l| l.config.sender.backoff_max,
    )
}

struct Selector {
    receiver: Option<String>,
    status: Option<u16>,
    class: Option<String>,
    older_than: Option<Duration>,
}

fn requeue_selected(
    spool: &Spool,
    router: Option<&Router>,
    s: &Selector,
) -> Result<usize, Failure> {
    let error_dir = spool.dir(State::Error);
    let now = SystemTime::now();
    let mut moved = 0;
    for entry in std::fs::read_dir(&error_dir)?.flatten() {
        let name = entry.file_name();
        if !is_data_name(&name) || is_reason_name(&name) {
            continue;
        }
        // Only --status and --class look inside the reason record.
        let reason: Option<ReasonRecord> = (s.status.is_some() || s.class.is_some())
            .then(|| ReasonRecord::read(&error_dir.join(reason_name(&name))))
            .flatten();
        if let Some(want) = &s.receiver {
            let mut parsed = SpoolName::parse(&name);
            spoolpost_protocol::fullname::resolve(spool.root(), &mut parsed);
            let original = parsed.original;
            let r = router.expect("checked by the caller");
            let routed = r
                .receiver_of(&original)
                .map(|i| r.receivers()[i].name.as_str());
            if routed != Some(want.as_str()) {
                continue;
            }
        }
        if s.status.is_some() && reason.as_ref().and_then(|r| r.status) != s.status {
            continue;
        }
        if let Some(class) = &s.class
            && reason.as_ref().map(|r| r.class.as_str()) != Some(class.as_str())
        {
            continue;
        }
        if let Some(min_age) = s.older_than {
            // ctime: when the file was renamed into error/.
            let since = entry.metadata().ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                std::time::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64)
            });
            if since.is_none_or(|t| now.duration_since(t).unwrap_or(Duration::ZERO) < min_age) {
                continue;
            }
        }
        match requeue(spool, &name) {
            Ok(path) => {
                moved += 1;
                println!(
                    "{}",
                    SpoolName::parse(path.file_name().unwrap_or_default()).display_original()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(moved)
}
