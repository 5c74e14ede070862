//! `motherstream streamer …`: manage the streamer registry from a shell.
//! Changes go through the same locked, atomic update as the daemon's admin
//! endpoints; the running daemon notices the file change within seconds
//! (or at once on the next publish of an unknown key, or on SIGHUP).

use std::io::Write;
use std::path::Path;

use crate::registry::{self, RegistryError};

pub const USAGE: &str = "\
usage: motherstream [-c PATH] streamer add NAME [--slot-seconds N]
       motherstream [-c PATH] streamer list [--show-keys]
       motherstream [-c PATH] streamer remove NAME
       motherstream [-c PATH] streamer rotate-key NAME
       motherstream [-c PATH] streamer set-slot NAME (SECONDS|default)
       motherstream [-c PATH] streamer link NAME
       motherstream [-c PATH] streamer rotate-link NAME

add and rotate-key print the new stream key on stdout (and nothing else).
link prints the streamer's own page (made if they have none yet);
rotate-link gives them a new one (the old link stops working).
list shows names and slot lengths; keys only with --show-keys.
The registry is streamers.json in the state directory of the config.
";

/// A CLI failure: a usage error (exit 2) or a failed operation (exit 1).
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Failed(String),
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> CliError {
        CliError::Failed(e.to_string())
    }
}

fn usage(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

fn parse_slot(v: &str) -> Result<Option<u64>, CliError> {
    if v == "default" {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        usage(format!(
            "slot seconds must be a whole number or \"default\", not {v:?}"
        ))
    })
}

/// Where moderators and streamers reach the daemon's pages: the first of
/// `[http] allowed_hosts` over HTTPS (a TLS proxy in front, as the shipped
/// nginx snippet sets up), else the listen address itself.
pub fn page_base(cfg: &crate::config::Config) -> String {
    match cfg.http.allowed_hosts.first() {
        Some(h) => format!("https://{}", h.trim().trim_end_matches('.')),
        None => format!("http://{}", cfg.http.listen),
    }
}

/// Run `streamer ARGS…` against the registry in `dir`; the answer goes to
/// `out`, notes for the human to `note`, page links under `base` (see
/// [`page_base`]).
pub fn run_with(
    args: &[String],
    dir: &Path,
    base: &str,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let (sub, rest) = args
        .split_first()
        .ok_or_else(|| usage("streamer needs a subcommand"))?;
    let now = crate::clock::unix_ms();
    let one_name = |rest: &[String]| match rest {
        [n] => Ok(n.clone()),
        _ => Err(usage(format!("streamer {sub} takes exactly one NAME"))),
    };
    match sub.as_str() {
        "add" => add(rest, dir, now, out, note)?,
        "list" => list(rest, dir, out)?,
        "remove" => {
            let name = one_name(rest)?;
            let (s, _) = registry::update(dir, |r| r.remove(&name))?;
            w(writeln!(note, "removed {}", s.name))?;
        }
        "rotate-key" => {
            let name = one_name(rest)?;
            let (key, _) = registry::update(dir, |r| {
                let key = registry::new_key()?;
                r.rotate_key(&name, key.clone(), now)?;
                Ok(key)
            })?;
            // The new key, once, to the administrator who asked.
            w(writeln!(out, "{}", key.expose()))?;
            w(writeln!(
                note,
                "{name} has a new key; the old one no longer works"
            ))?;
        }
        "set-slot" => {
            let [name, v] = rest else {
                return Err(usage(
                    "streamer set-slot takes NAME and SECONDS (or default)",
                ));
            };
            let slot = parse_slot(v)?;
            registry::update(dir, |r| r.set_slot(name, slot))?;
        }
        "link" | "rotate-link" => {
            let name = one_name(rest)?;
            let rotate = sub == "rotate-link";
            let ((name, token), _) = registry::update(dir, |r| r.link(&name, rotate))?;
            w(writeln!(out, "{}/me/{token}", base.trim_end_matches('/')))?;
            if rotate {
                w(writeln!(
                    note,
                    "{name} has a new page link; the old one no longer works"
                ))?;
            }
        }
        other => return Err(usage(format!("unknown streamer subcommand {other:?}"))),
    }
    Ok(())
}

/// A write to the terminal, its failure as a CLI error.
fn w(r: std::io::Result<()>) -> Result<(), CliError> {
    r.map_err(|e| CliError::Failed(format!("cannot write: {e}")))
}

/// `streamer add NAME [--slot-seconds N]`: the new key on `out`, once.
fn add(
    rest: &[String],
    dir: &Path,
    now: u64,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let mut name = None;
    let mut slot = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--slot-seconds" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("--slot-seconds needs a value"))?;
                slot = parse_slot(v)?;
            }
            s if s.starts_with("--slot-seconds=") => {
                slot = parse_slot(&s["--slot-seconds=".len()..])?
            }
            _ if name.is_none() => name = Some(a.clone()),
            other => return Err(usage(format!("unexpected argument {other:?}"))),
        }
    }
    let name = name.ok_or_else(|| usage("streamer add needs a NAME"))?;
    let ((name, key), _) = registry::update(dir, |r| {
        let key = registry::new_key()?;
        let (name, key) = {
            let s = r.add(&name, slot, key, now)?;
            (s.name.clone(), s.key.clone())
        };
        r.link(&name, true)?;
        Ok((name, key))
    })?;
    // The new key, once, to the administrator who made it.
    w(writeln!(out, "{}", key.expose()))?;
    w(writeln!(
        note,
        "added {name}; publish to rtmp://<host>/live/<the key above>"
    ))
}

/// `streamer list [--show-keys]`: names, slots and keys (hidden unless
/// asked for) in columns.
fn list(rest: &[String], dir: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let show_keys = match rest {
        [] => false,
        [f] if f == "--show-keys" => true,
        _ => return Err(usage("streamer list takes only --show-keys")),
    };
    let reg = registry::load(dir)?;
    let width = reg
        .streamers()
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    w(writeln!(out, "{:width$}  {:>8}  KEY", "NAME", "SLOT"))?;
    for s in reg.streamers() {
        let slot = s.slot_seconds.map_or("default".into(), |v| {
            if v == 0 {
                "none".to_string()
            } else {
                format!("{v}s")
            }
        });
        let key = if show_keys {
            // `--show-keys`: the administrator asked for them.
            s.key.expose().to_string()
        } else {
            format!("{}…", s.key.hint(4))
        };
        let pad = width - s.name.chars().count() + s.name.len();
        w(writeln!(out, "{:pad$}  {slot:>8}  {key}", s.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scratch::ScratchDir as TempDir;

    fn cli(dir: &Path, args: &[&str]) -> Result<String, CliError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut note = Vec::new();
        run_with(&args, dir, "http://127.0.0.1:8483", &mut out, &mut note)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn add_list_rotate_remove() {
        let d = TempDir::new("round");
        let key = cli(&d.0, &["add", "DJ Alice", "--slot-seconds", "90"]).unwrap();
        let key = key.trim();
        assert_eq!(key.len(), 32);
        let list = cli(&d.0, &["list"]).unwrap();
        assert!(list.contains("DJ Alice") && list.contains("90s"), "{list}");
        assert!(!list.contains(key), "keys are hidden: {list}");
        let shown = cli(&d.0, &["list", "--show-keys"]).unwrap();
        assert!(shown.contains(key));
        let key2 = cli(&d.0, &["rotate-key", "dj alice"]).unwrap();
        assert_ne!(key2.trim(), key);
        cli(&d.0, &["set-slot", "DJ Alice", "default"]).unwrap();
        assert!(cli(&d.0, &["list"]).unwrap().contains("default"));
        cli(&d.0, &["remove", "DJ Alice"]).unwrap();
        assert!(!cli(&d.0, &["list"]).unwrap().contains("Alice"));
    }

    #[test]
    fn page_links_print_and_rotate() {
        let d = TempDir::new("links");
        let key = cli(&d.0, &["add", "DJ Alice"]).unwrap();
        let link = cli(&d.0, &["link", "dj alice"]).unwrap();
        let link = link.trim();
        let token = link
            .strip_prefix("http://127.0.0.1:8483/me/")
            .unwrap_or_else(|| panic!("{link}"));
        assert_eq!(token.len(), 32);
        assert_ne!(token, key.trim(), "the page token is not the key");
        assert_eq!(
            cli(&d.0, &["link", "DJ Alice"]).unwrap().trim(),
            link,
            "stable"
        );
        let new = cli(&d.0, &["rotate-link", "DJ Alice"]).unwrap();
        assert_ne!(new.trim(), link);
        let reg = registry::load(&d.0).unwrap();
        assert!(reg.by_link(token).is_none());
        assert!(matches!(
            cli(&d.0, &["link", "zed"]),
            Err(CliError::Failed(_))
        ));
        assert!(matches!(cli(&d.0, &["link"]), Err(CliError::Usage(_))));
    }

    #[test]
    fn errors_are_usage_or_failures() {
        let d = TempDir::new("errors");
        for args in [
            &[][..],
            &["bogus"],
            &["add"],
            &["add", "a", "--slot-seconds"],
            &["add", "a", "--slot-seconds", "x"],
            &["add", "a", "b"],
            &["list", "--keys"],
            &["remove"],
            &["set-slot", "a"],
        ] {
            assert!(
                matches!(cli(&d.0, args), Err(CliError::Usage(_))),
                "{args:?}"
            );
        }
        cli(&d.0, &["add", "a"]).unwrap();
        for args in [
            &["add", "A"][..],
            &["remove", "zed"],
            &["rotate-key", "zed"],
            &["add", " x"],
        ] {
            assert!(
                matches!(cli(&d.0, args), Err(CliError::Failed(_))),
                "{args:?}"
            );
        }
    }
}
