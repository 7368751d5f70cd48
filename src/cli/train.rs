//! `imdb-lstm train`: the flags become a checked [`TrainPlan`] and [`RunOptions`]; the run itself
//! is the library's ([`crate::run`]).

use super::{TrainArgs, TrainPlan};
use crate::run::{self, RunOptions};
use anyhow::Result;

pub use crate::run::{Stopped, LOCK_FILE};

/// A new run, or `--resume RUN_DIR`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let opts = RunOptions {
        out: args.out.clone(),
        overwrite: args.overwrite,
        data: args.data.data.clone(),
        threads: args.threads,
        quiet: args.quiet,
        log_format: args.log_format,
    };
    match &args.resume {
        Some(dir) => run::resume(dir, &opts),
        None => {
            let plan: TrainPlan = args.plan()?;
            run::start(&plan, &opts)
        }
    }
}
