//! What the configuration gives a run: the file read, its routes and the
//! spool. Start-up and SIGHUP (`--watch`) both build it here, so a reload
//! refuses exactly what start-up would.

use std::path::PathBuf;

use spoolpost_ops::config::Loaded;
use spoolpost_ops::config_load;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;

use crate::cli::Args;

/// What the configuration gives a run.
pub struct Setup {
    pub loaded: Option<Loaded>,
    pub router: Option<Router>,
    pub root: PathBuf,
}

pub fn setup(args: &Args) -> Result<Setup, Failure> {
    let loaded = match &args.config {
        Some(path) => Some(config_load::load(path).map_err(Failure::config)?),
        None => None,
    };
    let router = loaded
        .as_ref()
        .map(Router::from_config)
        .transpose()
        .map_err(Failure::config)?;
    let root = args
        .spool
        .clone()
        .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
        .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
    Ok(Setup {
        loaded,
        router,
        root,
    })
}
