//! `motherstream streamer ...`: the streamer registry, edited in the state
//! directory as its owner (see `motherstream::streamer_cmd`).

use std::process::ExitCode;

use motherstream::streamer_cmd::{self, CliError};

use super::{act_as_state_owner, cli_state_dir, failed, load_config};
use crate::Args;

pub fn run(args: &Args) -> ExitCode {
    if args.rest.is_empty() || args.rest.iter().any(|a| a == "--help") {
        print!("{}", streamer_cmd::USAGE);
        return ExitCode::SUCCESS;
    }
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let dir = cli_state_dir(&cfg);
    eprintln!(
        "motherstream: registry {}",
        motherstream::registry::path(&dir).display()
    );
    if let Err(e) = act_as_state_owner(&dir) {
        return failed(e);
    }
    match streamer_cmd::run_with(
        &args.rest,
        &dir,
        &streamer_cmd::page_base(&cfg),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            eprintln!("motherstream: {e}\n\n{}", streamer_cmd::USAGE);
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => failed(format!("{e} (registry in {})", dir.display())),
    }
}
