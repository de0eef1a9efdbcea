//! The operator's actions, carried out through the spool protocol: hold and
//! release a receiver's backlog, requeue files from error/, replay files
//! from done/ ([`crate::replay`]), show or delete one file
//! ([`crate::one_file`]), and the queue
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
use spoolpost_protocol::replay::Keys;
use spoolpost_protocol::spool::{Spool, State, is_data_name, is_reason_name, reason_name, requeue};

use crate::cli::Action;
use crate::{flush, list, one_file, replay, replay_rules};

/// Carries out `action`; the spool and config are already checked.
pub fn apply(
    action: &Action,
    spool: &Spool,
    loaded: Option<&config::Loaded>,
    router: Option<&Router>,
    events: &[std::path::PathBuf],
) -> Result<(), Failure> {
    match action {
        Action::Show { which } => {
            let word = which.to_string_lossy();
            let found = one_file::find(spool, &one_file::Which::parse(which))?;
            if found.is_empty() {
                return Err(one_file::not_found(&word, one_file::ANYWHERE));
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match one_file::show(&found, router, backoff_max(loaded), events, &mut out) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        Action::Delete { which } => {
            let word = which.to_string_lossy();
            let said = one_file::delete(spool, &one_file::Which::parse(which), &word)?;
            eprintln!("reporter: {said}");
        }
        Action::Hold {
            file: Some(which), ..
        } => {
            let said = one_file::hold(
                spool,
                &one_file::Which::parse(which),
                &which.to_string_lossy(),
            )?;
            eprintln!("reporter: {said}");
        }
        Action::Release {
            file: Some(which), ..
        } => {
            let said = one_file::release(
                spool,
                &one_file::Which::parse(which),
                &which.to_string_lossy(),
            )?;
            eprintln!("reporter: {said}");
        }
        Action::Hold {
            receiver: Some(receiver),
            ..
        } => {
            check_hold_name(loaded, receiver)?;
            circuits::hold(spool, receiver)?;
            eprintln!("reporter: {receiver} is on hold");
        }
        Action::Release {
            receiver: Some(receiver),
            ..
        } => {
            check_hold_name(loaded, receiver)?;
            circuits::release(spool, receiver)?;
            eprintln!("reporter: {receiver} is released");
        }
        Action::Hold { .. } | Action::Release { .. } => {
            return Err(Failure::usage("give a receiver or --file NAME|KEY"));
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
        Action::Replay {
            receiver,
            name,
            delivered_after,
            delivered_before,
            all,
            dry_run,
            rate,
            new_keys,
        } => {
            if !all
                && receiver.is_none()
                && name.is_none()
                && delivered_after.is_none()
                && delivered_before.is_none()
            {
                return Err(Failure::usage(
                    "replay: give --all or a selector (--receiver, --name, --delivered-after, --delivered-before)",
                ));
            }
            needs_routes("replay", receiver.as_deref(), router)?;
            if let Some(receiver) = receiver {
                // A typo would select nothing while the operator thinks
                // the replay ran.
                check_hold_name(loaded, receiver)?;
            }
            let now = SystemTime::now();
            let when = |flag: &str, text: &Option<String>| {
                text.as_deref()
                    .map(|t| replay_rules::instant(t, now))
                    .transpose()
                    .map_err(|e| Failure::usage(format!("replay --{flag}: {e}")))
            };
            let plan = replay::Plan {
                selection: replay_rules::Selection {
                    receiver: receiver.clone(),
                    name: name
                        .as_deref()
                        .map(replay_rules::name_glob)
                        .transpose()
                        .map_err(Failure::usage)?,
                    delivered_after: when("delivered-after", delivered_after)?,
                    delivered_before: when("delivered-before", delivered_before)?.unwrap_or(now),
                },
                keys: if *new_keys { Keys::New } else { Keys::Keep },
                rate: *rate,
                dry_run: *dry_run,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let done = replay::run(spool, router, &plan, &mut out)?;
            drop(out);
            if *dry_run {
                eprintln!(
                    "reporter: would replay {} files, {} bytes (dry run: nothing moved)",
                    done.files, done.bytes
                );
            } else {
                eprintln!(
                    "reporter: replayed {} files, {} bytes",
                    done.files, done.bytes
                );
            }
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
