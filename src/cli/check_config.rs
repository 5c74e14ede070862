//! `motherstream check-config`: validate the configuration and the secret
//! files it names, print the effective config with secrets redacted.

use std::path::Path;
use std::process::ExitCode;

use motherstream::config::{self, Config};
use motherstream::{auth, log as mslog};

use super::load_config;
use crate::Args;

pub fn run(args: &Args) -> ExitCode {
    // Warnings (a secret file others can read) go to the terminal.
    mslog::init(mslog::Target::Stderr, log::LevelFilter::Warn);
    match load_config(args).and_then(check_secrets) {
        Ok(cfg) => {
            println!("# effective configuration ({})", args.config.display());
            print!("{}", cfg.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => super::failed(e),
    }
}

/// The admin token and the OBS password files, when configured, are
/// readable and (the token) strong enough.
fn check_secrets(c: Config) -> Result<Config, String> {
    if let Some(t) =
        config::read_secret_file(&c.http.admin_token_file).map_err(|e| e.to_string())?
    {
        auth::check_admin_token(&t, Path::new(&c.http.admin_token_file))?;
    }
    config::read_secret_file(&c.obs.password_file).map_err(|e| e.to_string())?;
    Ok(c)
}
