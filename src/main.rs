//! motherstream: the command line read and dispatched to its subcommand
//! (`cli/`: the daemon and the administrator's commands).

use std::path::PathBuf;
use std::process::ExitCode;

use motherstream::config::DEFAULT_CONFIG_PATH;

mod cli;

const USAGE: &str = "\
usage: motherstream [OPTIONS] [run]
       motherstream [OPTIONS] check-config
       motherstream [OPTIONS] streamer (add|list|remove|rotate-key|set-slot) ...
       motherstream [OPTIONS] api (GET|POST|DELETE) PATH [JSON]
       motherstream [OPTIONS] nginx-hooks
       motherstream [OPTIONS] upgrade

Runs the motherstream daemon (default), or validates the configuration and
prints the effective config with secrets redacted, or manages the streamer
registry (motherstream streamer --help), or calls an admin endpoint of the
running daemon with its admin token (e.g. api POST /api/skip, api GET
/api/streamers), or prints the nginx-rtmp hook directives with the hook
secret (to include in the nginx configuration), or asks the running daemon
to hand the show over to the binary on disk without a break (upgrade: exit 0
once the new binary serves, 1 with the reason when refused or when it fell
back to a restart).

options:
  -c, --config PATH      config file (default /etc/motherstream/motherstream.toml)
      --log-target T     auto, journald, syslog or stderr (overrides [log] target)
  -v, --verbose          more log output (repeatable)
  -q, --quiet            less log output (repeatable)
  -h, --help             this text
  -V, --version          print the version
";

/// What `motherstream` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subcommand {
    Run,
    CheckConfig,
    Streamer,
    Api,
    NginxHooks,
    Upgrade,
    Help,
    Version,
}

impl Subcommand {
    fn named(s: &str) -> Option<Subcommand> {
        Some(match s {
            "run" => Subcommand::Run,
            "check-config" => Subcommand::CheckConfig,
            "streamer" => Subcommand::Streamer,
            "api" => Subcommand::Api,
            "nginx-hooks" => Subcommand::NginxHooks,
            "upgrade" => Subcommand::Upgrade,
            _ => return None,
        })
    }

    /// Whether the words after it are its own arguments.
    fn takes_arguments(self) -> bool {
        matches!(self, Subcommand::Streamer | Subcommand::Api)
    }
}

struct Args {
    config: PathBuf,
    config_explicit: bool,
    log_target: Option<String>,
    verbosity: i32,
    command: Subcommand,
    /// Arguments of `streamer` and `api`.
    rest: Vec<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        config_explicit: false,
        log_target: None,
        verbosity: 0,
        command: Subcommand::Run,
        rest: Vec::new(),
    };
    let mut command_set = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                a.config = it.next().ok_or("--config needs a path")?.into();
                a.config_explicit = true;
            }
            "--log-target" => a.log_target = Some(it.next().ok_or("--log-target needs a value")?),
            "-v" | "--verbose" => a.verbosity += 1,
            "-q" | "--quiet" => a.verbosity -= 1,
            "-h" | "--help" => a.command = Subcommand::Help,
            "-V" | "--version" => a.command = Subcommand::Version,
            s if s.starts_with("--config=") => {
                a.config = s["--config=".len()..].into();
                a.config_explicit = true;
            }
            s if s.starts_with("-vv") && s[1..].chars().all(|c| c == 'v') => {
                a.verbosity += (s.len() - 1) as i32
            }
            _ if command_set && a.command.takes_arguments() => a.rest.push(arg),
            s if !command_set && Subcommand::named(s).is_some() => {
                a.command = Subcommand::named(s).unwrap_or(Subcommand::Run);
                command_set = true;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    // Everything motherstream creates holds keys or secrets: private,
    // whoever runs it and whatever their shell's umask (systemd's UMask=
    // says the same for the service).
    motherstream::sys::set_umask(0o077);
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("motherstream: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Subcommand::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Subcommand::Version => {
            println!("motherstream {}", motherstream::handover::version());
            ExitCode::SUCCESS
        }
        Subcommand::CheckConfig => cli::check_config::run(&args),
        Subcommand::Streamer => cli::streamer::run(&args),
        Subcommand::Api => cli::api::run(&args),
        Subcommand::NginxHooks => cli::nginx_hooks::run(&args),
        Subcommand::Upgrade => cli::upgrade::run(&args),
        Subcommand::Run => cli::daemon::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cli_parsing() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.command, Subcommand::Run);
        assert!(!a.config_explicit);
        let a = parse(&["--config", "/x.toml", "-vv", "-q", "check-config"]).unwrap();
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert!(a.config_explicit);
        assert_eq!(a.verbosity, 1);
        assert_eq!(a.command, Subcommand::CheckConfig);
        let a = parse(&["streamer", "add", "run"]).unwrap();
        assert_eq!(a.command, Subcommand::Streamer);
        assert_eq!(a.rest, ["add", "run"]);
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["bogus"]).is_err());
        assert!(parse(&["run", "run"]).is_err());
    }
}
