//! `sender --check [--probe]`: the configuration, its secrets, routes and
//! URL templates, and the spool, checked without creating or sending
//! anything; every problem reported.

use spoolpost_ops::exit::Failure;
use spoolpost_ops::preflight::{self, Report};
use spoolpost_ops::route::Router;

use crate::cli::Args;

pub fn run(args: &Args) -> Result<(), Failure> {
    let mut report = Report::default();
    let loaded = match &args.config {
        Some(path) => match preflight::config(path, &mut report) {
            Some(loaded) => Some(loaded),
            None => return report.finish("sender"),
        },
        None => None,
    };
    if let Some(loaded) = &loaded {
        preflight::secrets(loaded, &mut report);
    }
    let router = match (&args.url, &loaded) {
        (Some(url), _) => {
            Router::single(args.receiver_for_url(url)?).map_err(|e| vec![(e.clone(), e)])
        }
        // Every problem of the receivers and routes, not the first only.
        (None, Some(loaded)) => Router::from_config_all(loaded).map_err(|all| {
            all.into_iter()
                .map(|e| (e.message.clone(), e.to_string()))
                .collect::<Vec<_>>()
        }),
        (None, None) => return Err(Failure::usage("give --url URL or --config FILE")),
    };
    match router {
        Ok(router) => {
            report.passed(format!(
                "{} receiver(s) and their routes check",
                router.receivers().len()
            ));
            // What start-up refuses when it makes the clients and headers
            // (the proxy environment among them), by start-up's own code.
            // A receiver with a problem already reported above (with its
            // line) is not reported again in start-up's words: start-up
            // stops at a receiver's first problem too, and the exit is 78
            // either way.
            let refused = crate::net::send::Http::refusals(router.receivers());
            if refused.is_empty() {
                report.passed("clients, proxies and headers can be made");
            }
            for (receiver, e) in refused {
                let said = |p: &String| match receiver {
                    Some(name) => p.contains(&format!("receiver {name}: ")),
                    None => p.contains(&e),
                };
                if !report.problems.iter().any(|(_, p)| said(p)) {
                    report.config(e);
                }
            }
            if args.probe {
                for r in router.receivers() {
                    let endpoints = r.config.endpoints();
                    for (url, label) in endpoints.iter().zip(r.endpoint_labels()) {
                        match crate::net::probe::probe(&r.config, url) {
                            Ok(took) => println!(
                                "sender: probe {} {}: ok in {:.1} ms",
                                r.name,
                                label,
                                took.as_secs_f64() * 1000.0
                            ),
                            Err(e) => report.receiver(format!("probe {} {}: {e}", r.name, label)),
                        }
                    }
                }
                probe_buckets(router.receivers(), &mut report);
            }
        }
        // The file's checks above may have said the same already.
        Err(all) => {
            for (message, shown) in all {
                if !report.problems.iter().any(|(_, p)| p.ends_with(&message)) {
                    report.config(shown);
                }
            }
        }
    }
    let root = args
        .spool
        .clone()
        .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
        .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
    let create = args.create_spool || loaded.as_ref().is_some_and(|l| l.config.create_spool);
    preflight::spool(&root, create, &mut report);
    report.finish("sender")
}

/// `--probe` of the S3 receivers: a signed HEAD of each one's bucket, by
/// the clients start-up makes (their refusals are reported above).
fn probe_buckets(receivers: &[spoolpost_ops::route::Receiver], report: &mut preflight::Report) {
    if receivers.iter().all(|r| r.config.s3.is_none()) {
        return;
    }
    let Ok(http) = crate::net::send::Http::new(receivers) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    for (i, r) in receivers.iter().enumerate() {
        match runtime.block_on(http.probe_bucket(i)) {
            None => {}
            Some(Ok(said)) => println!("sender: probe {}: {said}", r.name),
            Some(Err(e)) => report.receiver(format!("probe {}: {e}", r.name)),
        }
    }
}
