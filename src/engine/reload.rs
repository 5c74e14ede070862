//! SIGHUP: re-read the config, apply what can change while running, keep
//! (and name) what needs a restart.

use std::path::PathBuf;

use super::relay_link::relay_spec;
use super::Engine;
use crate::config::{self, Config, ConfigError};
use crate::view::Settings;

/// Where the running config came from.
pub(super) struct ConfigSource {
    path: PathBuf,
    /// Named on the command line (a missing file is then an error).
    explicit: bool,
}

impl ConfigSource {
    pub(super) fn new(path: PathBuf, explicit: bool) -> Self {
        ConfigSource { path, explicit }
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.path, self.explicit, &config::ProcessEnv)
    }
}

impl Engine {
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        match self.config_source.load() {
            Ok(new) => self.apply_config(new),
            Err(e) => log::error!("reload rejected, keeping the running config: {e}"),
        }
        self.refresh_registry(true);
        self.notifier.ready();
    }

    pub(super) fn apply_config(&mut self, new: Config) {
        let old = std::mem::replace(&mut self.cfg, new);
        // Public names may depend on the queue policy: rebuild them.
        self.names_gen = None;
        let new = self.cfg.clone();
        let d = diff(&old, &new);
        let mut applied: Vec<&str> = d.live.clone();
        let restart = d.restart.clone();
        if d.relay {
            self.relay.set_spec(relay_spec(&new));
        }
        if d.log_level {
            if let Some(l) = crate::log::parse_level(&new.log.level) {
                crate::log::set_level(l);
            }
        }
        {
            let s = self.settings.read();
            let dir = new.state_dir();
            let admin_token = match crate::auth::load_admin_token(
                &crate::auth::admin_token_path(&new, &dir),
                true,
            ) {
                Ok((t, _)) => t,
                Err(e) => {
                    log::error!("keeping the old admin token: {e}");
                    s.admin_token.clone()
                }
            };
            let hook_secret =
                match crate::auth::load_or_create(&crate::auth::hook_secret_path(&new, &dir), true)
                {
                    Ok((t, _)) => t,
                    Err(e) => {
                        log::error!("keeping the old hook secret: {e}");
                        s.hook_secret.clone()
                    }
                };
            for (changed, what) in [
                (s.admin_token != admin_token, "admin token"),
                (s.hook_secret != hook_secret, "hook secret"),
                (
                    s.allowed_hosts != new.http.allowed_hosts,
                    "http.allowed_hosts",
                ),
            ] {
                if changed {
                    applied.push(what);
                }
            }
            self.settings.publish(Settings {
                admin_token,
                hook_secret,
                allowed_hosts: new.http.allowed_hosts.clone(),
                relay_secret: s.relay_secret.clone(),
                ingest_app: s.ingest_app.clone(),
                output_app: s.output_app.clone(),
                output_stream: s.output_stream.clone(),
            });
        }
        self.obs.reconfigure(&new.obs, d.obs);
        keep_running(&mut self.cfg, &old);
        log::info!(
            "configuration reloaded from {}: applied {}; needs a restart: {}",
            self.config_source.path.display(),
            if applied.is_empty() {
                "nothing changed".to_string()
            } else {
                applied.join(", ")
            },
            if restart.is_empty() {
                "nothing".to_string()
            } else {
                restart.join(", ")
            }
        );
        self.publish_view();
        self.refresh_status();
    }
}

/// What a reload changes: applied at once (`live`, with flags for the
/// parts that need action) or only after a restart (`restart`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Diff {
    pub(crate) live: Vec<&'static str>,
    pub(crate) restart: Vec<&'static str>,
    pub(crate) relay: bool,
    pub(crate) log_level: bool,
    pub(crate) obs: bool,
}

/// Compare two configs (pure).
pub(super) fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    if old.relay.mode != new.relay.mode {
        d.restart.push("relay.mode");
    } else if old.relay != new.relay {
        d.relay = true;
        d.live.push("[relay] (from the next relay start)");
    }
    if old.log.level != new.log.level {
        d.log_level = true;
        d.live.push("log.level");
    }
    if old.obs != new.obs {
        d.obs = true;
        d.live.push("[obs]");
    }
    if old.queue != new.queue {
        d.live.push("[queue]");
    }
    if old.http.listen != new.http.listen || old.http.workers != new.http.workers {
        d.restart.push("http.listen/http.workers");
    }
    if old.http.max_connections != new.http.max_connections
        || old.http.request_timeout_seconds != new.http.request_timeout_seconds
    {
        d.restart
            .push("http.max_connections/http.request_timeout_seconds");
    }
    if old.rtmp != new.rtmp {
        d.restart.push("[rtmp]");
    }
    if old.state != new.state {
        d.restart.push("state.dir");
    }
    if old.log.target != new.log.target {
        d.restart.push("log.target");
    }
    if old.recording != new.recording {
        d.restart.push("[recording]");
    }
    d
}

/// Settings that need a restart keep their running values (the rest of
/// `[http]`, e.g. `allowed_hosts`, is applied at once).
fn keep_running(cfg: &mut Config, old: &Config) {
    cfg.http.listen = old.http.listen.clone();
    cfg.http.workers = old.http.workers;
    cfg.http.max_connections = old.http.max_connections;
    cfg.http.request_timeout_seconds = old.http.request_timeout_seconds;
    cfg.rtmp = old.rtmp.clone();
    cfg.state = old.state.clone();
    cfg.log.target = old.log.target.clone();
    cfg.relay.mode = old.relay.mode;
    cfg.recording = old.recording.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text).expect("test config")
    }

    #[test]
    fn nothing_changed_is_nothing() {
        assert_eq!(diff(&cfg(""), &cfg("")), Diff::default());
    }

    #[test]
    fn live_and_restart_parts_are_told_apart() {
        let d = diff(
            &cfg(""),
            &cfg("[log]\nlevel='debug'\n[queue]\nslot_seconds=60\n[relay]\nstall_seconds=3\n[http]\nworkers=8\n[rtmp]\nport=1936\n"),
        );
        assert!(d.relay && d.log_level && !d.obs);
        assert_eq!(
            d.live,
            [
                "[relay] (from the next relay start)",
                "log.level",
                "[queue]"
            ]
        );
        assert_eq!(d.restart, ["http.listen/http.workers", "[rtmp]"]);
    }

    #[test]
    fn relay_mode_needs_a_restart_and_other_relay_keys_wait_for_it() {
        let d = diff(&cfg(""), &cfg("[relay]\nmode='restart'\nstall_seconds=3\n"));
        assert!(!d.relay);
        assert_eq!(d.restart, ["relay.mode"]);
    }

    #[test]
    fn restart_keys_keep_running_values_but_allowed_hosts_applies() {
        let old = cfg("");
        let mut new = cfg("[http]\nworkers=9\nallowed_hosts=['ms.example']\n[rtmp]\nport=1999\n[relay]\nmode='restart'\n");
        keep_running(&mut new, &old);
        assert_eq!(new.http.workers, old.http.workers);
        assert_eq!(new.rtmp, old.rtmp);
        assert_eq!(new.relay.mode, old.relay.mode);
        assert_eq!(new.http.allowed_hosts, ["ms.example"]);
    }
}
