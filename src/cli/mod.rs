//! The subcommands of the `motherstream` binary, one file each (the
//! library knows nothing of them): `daemon` (run), `check_config`,
//! `streamer`, `api`, `upgrade` and `nginx_hooks`. What they share is here:
//! the config as the command line asks for it, and the state directory and
//! the daemon's address as a shell sees them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use motherstream::config::{self, Config};

use crate::Args;

pub mod api;
pub mod check_config;
pub mod daemon;
pub mod nginx_hooks;
pub mod streamer;
pub mod upgrade;

/// The configuration file, with the command line's overrides.
fn load_config(args: &Args) -> Result<Config, String> {
    let mut cfg = Config::load(&args.config, args.config_explicit, &config::ProcessEnv)
        .map_err(|e| e.to_string())?;
    if let Some(t) = &args.log_target {
        cfg.log.target = t.clone();
        cfg.validate().map_err(|e| e.to_string())?;
    }
    Ok(cfg)
}

/// `motherstream: <e>` on stderr, exit status 1.
fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("motherstream: {e}");
    ExitCode::from(1)
}

/// The state directory as the CLI sees it. The daemon under systemd gets
/// $STATE_DIRECTORY; an administrator's shell does not. Without `[state]
/// dir`, use the packaged location when it exists, so the CLI finds the
/// registry and the secrets the daemon uses.
fn cli_state_dir(cfg: &Config) -> PathBuf {
    let packaged = Path::new("/var/lib/motherstream");
    if cfg.state.dir.is_empty() && packaged.is_dir() {
        packaged.to_path_buf()
    } else {
        cfg.state_dir()
    }
}

/// Root works in the service user's directory as that user: whatever the
/// user planted there (a link to /etc/shadow or to root's own secrets), a
/// CLI run by root can then read or change no more than the user could.
/// The secrets themselves are opened without following links as well.
fn act_as_state_owner(dir: &Path) -> Result<(), String> {
    match motherstream::private_fs::foreign_owner(dir) {
        Some((uid, gid)) => motherstream::sys::become_user(uid, gid).map_err(|e| {
            format!(
                "cannot act as uid {uid} (the owner of {}): {e}",
                dir.display()
            )
        }),
        None => Ok(()),
    }
}

/// One secret of the state directory (the admin token, the hook secret),
/// read as the directory's owner (`act_as_state_owner`), with the config
/// it was found by. `missing` is the hint for a secret not there yet.
fn state_secret(
    args: &Args,
    path_of: fn(&Config, &Path) -> PathBuf,
    missing: &str,
) -> Result<(Config, PathBuf, String), String> {
    let cfg = load_config(args)?;
    let dir = cli_state_dir(&cfg);
    act_as_state_owner(&dir)?;
    let path = path_of(&cfg, &dir);
    let (secret, _) =
        motherstream::auth::load_or_create(&path, false).map_err(|e| format!("{e} ({missing})"))?;
    Ok((cfg, path, secret))
}

/// The address a local client reaches `[http] listen` at.
fn local_authority(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => listen.to_string(),
    }
}
