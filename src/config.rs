//! Typed configuration: one TOML file, every key optional, environment
//! overrides from the seed (`HOST`, `RTMP_PORT`, `OBS_*`), validation and a
//! redacted printout for `motherstream check-config`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod validate;
use crate::events::EventKind;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/motherstream/motherstream.toml";
/// Name of the systemd credential holding the OBS password.
pub(crate) const OBS_PASSWORD_CREDENTIAL: &str = "obs-password";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub rtmp: RtmpConfig,
    pub(crate) relay: RelayConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    pub queue: QueueConfig,
    pub obs: ObsConfig,
    pub recording: RecordingConfig,
    /// `[[notify]]` webhooks (none by default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyConfig>,
}

/// One `[[notify]]` webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// What logs and metrics call it (the URL never appears). Empty:
    /// `notify-<n>`, counting from 1.
    pub(crate) name: String,
    /// The webhook URL (http:// or https://). A secret: prefer `url_file`.
    pub(crate) url: String,
    /// File whose first line is the URL (keep it 0600).
    pub(crate) url_file: String,
    /// json (one object per event) or discord (a Discord webhook message).
    pub(crate) format: NotifyFormat,
    /// Event kinds to send; empty: all. An unknown name is refused as
    /// the file is read.
    pub(crate) events: Vec<EventKind>,
    /// Connect timeout and whole-request timeout, milliseconds.
    pub(crate) connect_timeout_ms: u64,
    pub(crate) timeout_ms: u64,
    /// Further attempts after a 5xx, 429, timeout or connection error.
    pub(crate) retries: u32,
    /// Events waiting for delivery at most; beyond, new ones are dropped.
    pub(crate) queue_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NotifyFormat {
    #[default]
    Json,
    Discord,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            name: String::new(),
            url: String::new(),
            url_file: String::new(),
            format: NotifyFormat::Json,
            events: Vec::new(),
            connect_timeout_ms: 3000,
            timeout_ms: 5000,
            retries: 4,
            queue_size: 256,
        }
    }
}

impl NotifyConfig {
    /// The name logs use for entry `i` (0-based).
    pub(crate) fn display_name(&self, i: usize) -> String {
        if self.name.is_empty() {
            format!("notify-{}", i + 1)
        } else {
            self.name.clone()
        }
    }

    /// The URL, from `url` or the first line of `url_file`.
    pub(crate) fn resolve_url(&self) -> Result<String, ConfigError> {
        if !self.url.is_empty() {
            return Ok(self.url.clone());
        }
        read_secret_file(&self.url_file)?
            .ok_or_else(|| ConfigError::Invalid("notify: no url or url_file".into()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the hook/admin/overlay server binds.
    pub listen: String,
    /// Worker threads answering requests.
    pub workers: usize,
    /// Open connections at most; 0 = computed from the open-files limit
    /// (see `effective_max_connections`). At the limit, the connection that
    /// has spent longest reading its request is closed for the new one.
    pub(crate) max_connections: usize,
    /// A client must send a whole request (head and body) within this many
    /// seconds of connecting (or of its previous request); else 408 and the
    /// connection closes. Also the timeout of each write of an answer.
    pub(crate) request_timeout_seconds: u64,
    /// File holding the admin bearer token (first line). Empty:
    /// `<state dir>/admin.token`, created (0600) on first start. Every
    /// admin endpoint needs `Authorization: Bearer <token>`.
    pub admin_token_file: String,
    /// File holding the hook secret (first line): nginx calls the hooks at
    /// `/hook/<secret>/on_publish` etc. Empty: `<state dir>/hook.secret`,
    /// created (0600) on first start.
    pub(crate) hook_secret_file: String,
    /// Host names (besides localhost and IP literals) accepted in the
    /// `Host` header, e.g. the name of a reverse proxy in front.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8483".into(),
            workers: 4,
            max_connections: 0,
            request_timeout_seconds: 10,
            admin_token_file: String::new(),
            hook_secret_file: String::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// `max_connections`, or when it is 0, what the open-files limit
    /// allows: each connection holds one descriptor and one thread, and the
    /// rest of the daemon (logs, state files, the relay's pipes, OBS and
    /// nginx sockets) needs some, so a quarter of the limit (at least 128)
    /// stays free; at most 512, since every open connection has a thread.
    pub(crate) fn effective_max_connections(&self, open_files_limit: Option<u64>) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let limit = open_files_limit.unwrap_or(1024);
        let spare = (limit / 4).max(128);
        limit.saturating_sub(spare).clamp(16, 512) as usize
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub ingest_app: String,
    pub output_app: String,
    pub output_stream: String,
    /// nginx-rtmp control module base URL, e.g. `http://127.0.0.1:8080/control`.
    pub control_url: String,
    /// nginx-rtmp stat URL, e.g. `http://127.0.0.1:8080/stat`.
    pub stat_url: String,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            host: "127.0.0.1".into(),
            port: 1935,
            ingest_app: "live".into(),
            output_app: "motherstream".into(),
            output_stream: "live".into(),
            control_url: String::new(),
            stat_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RelayConfig {
    /// splice (one persistent output, cuts on the next streamer's
    /// keyframe) or restart (one ffmpeg per streamer, `args`).
    pub(crate) mode: RelayMode,
    /// Path (or name on PATH) of the ffmpeg binary.
    pub(crate) ffmpeg: String,
    /// Override of the relay arguments. `{input}` and `{output}` are replaced
    /// by the RTMP URLs. Empty: the built-in copy relay.
    pub(crate) args: Vec<String>,
    /// Grace between SIGTERM and SIGKILL when stopping a relay.
    pub(crate) stop_grace_ms: u64,
    /// A relay with no output progress for this long counts as failed.
    pub(crate) stall_seconds: u64,
    /// Consecutive relay failures after which the on-air streamer is skipped.
    pub(crate) max_failures: u32,
    /// Relay stderr log. Empty: `$LOGS_DIRECTORY/ffmpeg.log`, else `<state dir>/ffmpeg.log`.
    pub(crate) log_file: String,
    /// Size at which the relay log is rotated to `<log_file>.1`.
    pub(crate) log_max_bytes: u64,
    /// Splice mode: what the output shows while nobody is on air: an image
    /// or an H.264/AAC `.flv` clip. Empty: a built-in still with `slate_text`.
    pub(crate) slate: String,
    /// Text on the built-in slate (up to 4 lines).
    pub(crate) slate_text: String,
    /// Splice mode: how long a planned cut waits for the next streamer's
    /// keyframe before catching up. 0: their keyframe interval + 1 s.
    pub(crate) cut_timeout_ms: u64,
    /// Splice mode: re-encode the next streamer's video ahead of time
    /// while their keyframes are more than 2.5 s apart, so a cut to them
    /// lands within ~0.3 s (one ffmpeg/libx264 child per such streamer).
    pub(crate) bridge: bool,
    /// Splice mode: no media from the on-air streamer for this long (or
    /// three of their frame intervals, if longer) shows the be-right-back
    /// card. (`stall_seconds` is the restart relay's.)
    pub(crate) media_gap_ms: u64,
    /// Splice mode: a stream whose last second carried less than this
    /// percentage of its own median bitrate ...
    pub(crate) starve_percent: u32,
    /// ... or fewer frames than this (or than half its own median rate, if
    /// lower) ...
    pub(crate) min_fps: u32,
    /// ... for this many seconds in a row is starved: the card too.
    pub(crate) starve_seconds: u64,
    /// Splice mode: the be-right-back card: an image or an H.264/AAC `.flv`
    /// clip (its sound plays). Empty: a still "<name> — reconnecting…".
    pub(crate) brb: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RelayMode {
    #[default]
    Splice,
    Restart,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            mode: RelayMode::Splice,
            ffmpeg: "ffmpeg".into(),
            args: Vec::new(),
            stop_grace_ms: 250,
            stall_seconds: 10,
            max_failures: 5,
            log_file: String::new(),
            log_max_bytes: 4 * 1024 * 1024,
            slate: String::new(),
            slate_text:
                "Nobody is on air\nPublish to the live app with your stream key to join the queue"
                    .into(),
            cut_timeout_ms: 0,
            bridge: true,
            media_gap_ms: 500,
            starve_percent: 25,
            min_fps: 10,
            starve_seconds: 3,
            brb: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Directory for `queue.json` and `streamers.json`. Empty:
    /// `$STATE_DIRECTORY`, else the working directory.
    pub dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
    /// auto (journald when `$JOURNAL_STREAM` is set, else stderr), journald,
    /// syslog or stderr.
    pub target: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            target: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Refuse publishes whose key is not in the streamer registry.
    pub require_registered: bool,
    /// Default slot length in seconds (0 = unlimited).
    pub(crate) slot_seconds: u64,
    /// After a slot ends by time or kick, refuse that key for this long (0 = off).
    pub(crate) rejoin_block_seconds: u64,
    /// Most streamers queued at once (on air included); further publishers
    /// are refused with 503 until someone leaves.
    pub(crate) max_length: usize,
    /// Splice mode: the on-air streamer's stream stalled or starved this
    /// long puts the next healthy streamer on air (0 = never).
    pub(crate) give_up_seconds: u64,
    /// The streamer given up on keeps their place right after the one who
    /// replaced them if their stream recovers within this; else they go
    /// to the end of the queue.
    pub(crate) keep_place_seconds: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            require_registered: false,
            slot_seconds: 0,
            rejoin_block_seconds: 0,
            max_length: 1000,
            give_up_seconds: 20,
            keep_place_seconds: 120,
        }
    }
}

/// How the OBS thread treats the media source across a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CueMode {
    /// Leave the media source alone (measured fastest); recover it with
    /// RESTART only when it ends or errors.
    None,
    /// RESTART the media source after each switch.
    Restart,
    /// The seed's way: hide the media source, then show it again.
    HideShow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObsConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// File holding the obs-websocket password (first line). Empty: the
    /// systemd credential `obs-password` (`LoadCredential=obs-password:PATH`,
    /// read from `$CREDENTIALS_DIRECTORY`) when there is one.
    pub password_file: String,
    /// Password from the `OBS_PASSWORD` environment variable; never read
    /// from the config file and never printed. (Prefer a file or a
    /// credential: a unit's `Environment=` is shown to every user by
    /// `systemctl show`.)
    #[serde(skip)]
    pub password: Option<String>,
    pub scene: String,
    pub media_source: String,
    pub loading_source: String,
    pub name_source: String,
    pub timer_source: String,
    pub cue: CueMode,
    /// Show the loading source this long across a switch (0 = only while
    /// nobody is on air).
    pub loading_ms: u64,
    /// Deadline for every request to OBS.
    pub request_timeout_ms: u64,
}

impl Default for ObsConfig {
    fn default() -> Self {
        ObsConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 4455,
            password_file: String::new(),
            password: None,
            scene: "MOTHERSTREAM".into(),
            media_source: "motherstream".into(),
            loading_source: String::new(),
            name_source: String::new(),
            timer_source: String::new(),
            cue: CueMode::None,
            loading_ms: 0,
            request_timeout_ms: 2000,
        }
    }
}

/// `[recording]`: each streamer's time on air recorded by nginx-rtmp
/// (through its control module) and filed under their name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    pub enabled: bool,
    /// Finished recordings: `<dir>/<display name>-<UTC start>.flv`.
    pub(crate) dir: String,
    /// nginx's `record_path` of the recorder: where nginx writes while a
    /// recording runs (file names hold the stream key).
    pub(crate) incoming_dir: String,
    /// Name of the nginx-rtmp `recorder` block in the ingest application.
    pub(crate) recorder: String,
    /// Below this much free space (MB) on either directory, recording stops
    /// and does not start.
    pub(crate) min_free_mb: u64,
    /// Finished recordings older than this many days are removed (0: kept
    /// for ever).
    pub(crate) keep_days: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: false,
            dir: "/var/lib/motherstream-recordings".into(),
            incoming_dir: "/var/spool/motherstream-recordings".into(),
            recorder: "motherstream".into(),
            min_free_mb: 2048,
            keep_days: 30,
        }
    }
}

/// A configuration error with the context an operator needs.
#[derive(Debug)]
pub enum ConfigError {
    Read(PathBuf, std::io::Error),
    Parse(PathBuf, String),
    Env(&'static str, String),
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "invalid config {}: {e}", p.display()),
            ConfigError::Env(k, v) => write!(f, "invalid environment variable {k}={v:?}"),
            ConfigError::Invalid(m) => write!(f, "invalid config: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment the config reads, passed in so tests need not mutate the
/// process environment.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Load `path`. A missing file at the default path gives the defaults
    /// (a fresh install works); a missing file named explicitly is an error.
    pub fn load(path: &Path, explicit: bool, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|e| ConfigError::Parse(path.into(), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
            Err(e) => return Err(ConfigError::Read(path.into(), e)),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// The seed's environment variables override the file.
    pub(crate) fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        if let Some(h) = env.var("HOST") {
            self.rtmp.host = h;
        }
        if let Some(p) = env.var("RTMP_PORT") {
            self.rtmp.port = p.parse().map_err(|_| ConfigError::Env("RTMP_PORT", p))?;
        }
        if let Some(h) = env.var("OBS_HOST") {
            self.obs.host = h;
        }
        if let Some(p) = env.var("OBS_PORT") {
            self.obs.port = p.parse().map_err(|_| ConfigError::Env("OBS_PORT", p))?;
        }
        if let Some(pw) = env.var("OBS_PASSWORD") {
            self.obs.password = Some(pw);
        }
        if self.obs.password_file.is_empty() {
            if let Some(dir) = env.var("CREDENTIALS_DIRECTORY") {
                let cred = Path::new(&dir).join(OBS_PASSWORD_CREDENTIAL);
                if cred.is_file() {
                    self.obs.password_file = cred.display().to_string();
                }
            }
        }
        if let Some(d) = env.var("STATE_DIRECTORY") {
            if self.state.dir.is_empty() {
                // systemd may pass several directories separated by ':'.
                self.state.dir = d.split(':').next().unwrap_or_default().to_string();
            }
        }
        if self.relay.log_file.is_empty() {
            if let Some(d) = env.var("LOGS_DIRECTORY") {
                let dir = d.split(':').next().unwrap_or_default();
                self.relay.log_file = format!("{dir}/ffmpeg.log");
            }
        }
        Ok(())
    }

    pub fn state_dir(&self) -> PathBuf {
        if self.state.dir.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(&self.state.dir)
        }
    }

    pub(crate) fn relay_log_path(&self) -> PathBuf {
        if self.relay.log_file.is_empty() {
            self.state_dir().join("ffmpeg.log")
        } else {
            PathBuf::from(&self.relay.log_file)
        }
    }

    /// The effective configuration as TOML, secrets redacted (the password
    /// from the environment is never serialized at all).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for n in &mut shown.notify {
            if !n.url.is_empty() {
                n.url = "(redacted)".into();
            }
        }
        let mut text = toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# {e}\n"));
        if self.obs.password.is_some() {
            text.push_str("\n# obs password: set from OBS_PASSWORD (redacted)\n");
        }
        text
    }
}

/// Read a secret from the first line of a file; empty path → None. A file
/// others may read is still used (refusing it would stop the service over
/// a mode), with a warning.
/// Log a warning the first time it is seen in this process: secret files
/// are read again before every OBS connection attempt, and an operator
/// needs the line once, not at every retry (a different mode is a new
/// line).
fn warn_once(w: String) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut seen) = SEEN.lock() else { return };
    if !seen.contains(&w) {
        log::warn!("{w}");
        seen.push(w);
    }
}

pub fn read_secret_file(path: &str) -> Result<Option<String>, ConfigError> {
    if path.is_empty() {
        return Ok(None);
    }
    if let Some(w) = crate::private_fs::readable_by_others(Path::new(path)) {
        warn_once(w);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(ConfigError::Invalid(format!("secret file {path} is empty")));
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Env for MapEnv {
        fn var(&self, k: &str) -> Option<String> {
            self.0.get(k).map(|v| v.to_string())
        }
    }

    #[test]
    fn empty_file_gives_defaults_that_validate() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8483");
        assert_eq!(c.rtmp.port, 1935);
    }

    #[test]
    fn recording_needs_the_control_module_and_sane_paths() {
        let ok = "[rtmp]\ncontrol_url = \"http://127.0.0.1:8080/control\"\n[recording]\nenabled = true\n";
        Config::parse(ok).unwrap().validate().unwrap();
        for (extra, want) in [
            ("[recording]\nenabled = true\n", "control_url"),
            (&format!("{ok}recorder = \"a b\"\n"), "recording.recorder"),
            (&format!("{ok}dir = \"rel/dir\"\n"), "absolute"),
            (
                &format!("{ok}dir = \"/x\"\nincoming_dir = \"/x\"\n"),
                "must differ",
            ),
        ] {
            let e = Config::parse(extra)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
        // Off, nothing is checked.
        let off = "[recording]\nrecorder = \"a b\"\ndir = \"rel\"\n";
        Config::parse(off).unwrap().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = Config::parse("[rtmp]\nprot = 1").unwrap_err();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::parse("[rtmp]\nhost='a'\nport=1").unwrap();
        let env = MapEnv(HashMap::from([
            ("HOST", "10.0.0.2"),
            ("RTMP_PORT", "19350"),
            ("OBS_PASSWORD", "pw"),
            ("STATE_DIRECTORY", "/var/lib/ms:/x"),
        ]));
        c.apply_env(&env).unwrap();
        assert_eq!(c.rtmp.host, "10.0.0.2");
        assert_eq!(c.rtmp.port, 19350);
        assert_eq!(c.obs.password.as_deref(), Some("pw"));
        assert_eq!(c.state_dir(), PathBuf::from("/var/lib/ms"));
        assert!(!c.to_redacted_toml().contains("pw\""));
    }

    #[test]
    fn obs_password_comes_from_a_systemd_credential_when_no_file_is_set() {
        let d = crate::scratch::ScratchDir::new("cred");
        let dir: &'static str = Box::leak(d.0.display().to_string().into_boxed_str());
        let env = MapEnv(HashMap::from([("CREDENTIALS_DIRECTORY", dir)]));
        // No credential file: nothing changes.
        let mut c = Config::default();
        c.apply_env(&env).unwrap();
        assert_eq!(c.obs.password_file, "");
        std::fs::write(d.0.join(OBS_PASSWORD_CREDENTIAL), "pw-from-cred\n").unwrap();
        let mut c = Config::default();
        c.apply_env(&env).unwrap();
        assert_eq!(
            read_secret_file(&c.obs.password_file).unwrap().as_deref(),
            Some("pw-from-cred")
        );
        // A password_file in the config wins.
        let mut c = Config::parse("[obs]\npassword_file='/etc/x'").unwrap();
        c.apply_env(&env).unwrap();
        assert_eq!(c.obs.password_file, "/etc/x");
    }

    #[test]
    fn bad_env_port_is_rejected() {
        let mut c = Config::default();
        let env = MapEnv(HashMap::from([("RTMP_PORT", "x")]));
        assert!(c.apply_env(&env).is_err());
    }

    #[test]
    fn validation_catches_bad_values() {
        for text in [
            "[http]\nlisten='nope'",
            "[http]\nworkers=0",
            "[http]\nmax_connections=70000",
            "[http]\nrequest_timeout_seconds=0",
            "[rtmp]\ningest_app='a b'",
            "[rtmp]\noutput_app='live'",
            "[rtmp]\ncontrol_url='ftp://x'",
            "[rtmp]\nstat_url='http://unix:/run/x.sock'",
            "[http]\nallowed_hosts=['http://x']",
            "[http]\nallowed_hosts=['x:80']",
            "[queue]\nmax_length=0",
            "[relay]\nargs=['-i','x']",
            "[log]\nlevel='loud'",
            "[obs]\nenabled=true\nmedia_source=''",
        ] {
            let c = Config::parse(text).unwrap();
            assert!(c.validate().is_err(), "{text} should be invalid");
        }
    }

    #[test]
    fn max_connections_stay_below_the_open_files_limit() {
        let auto = HttpConfig::default();
        assert_eq!(auto.effective_max_connections(Some(1024)), 512);
        assert_eq!(auto.effective_max_connections(Some(4096)), 512);
        assert_eq!(auto.effective_max_connections(Some(512)), 384);
        assert_eq!(auto.effective_max_connections(Some(256)), 128);
        assert_eq!(auto.effective_max_connections(Some(100)), 16);
        assert_eq!(auto.effective_max_connections(None), 512);
        let set = HttpConfig {
            max_connections: 40,
            ..HttpConfig::default()
        };
        assert_eq!(set.effective_max_connections(Some(1024)), 40);
    }

    #[test]
    fn cue_mode_names() {
        let c = Config::parse("[obs]\ncue='hide-show'").unwrap();
        assert_eq!(c.obs.cue, CueMode::HideShow);
    }

    #[test]
    fn notify_entries_validate_and_urls_stay_secret() {
        let ok = Config::parse(
            "[[notify]]\nurl = 'https://discord.example/api/webhooks/1/SECRET'\nformat = 'discord'\nevents = ['on_air']",
        )
        .unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.notify[0].format, NotifyFormat::Discord);
        assert_eq!(ok.notify[0].display_name(0), "notify-1");
        let shown = ok.to_redacted_toml();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("(redacted)"), "{shown}");
        for (bad, want) in [
            (
                "[[notify]]\nformat = 'json'",
                "exactly one of url and url_file",
            ),
            (
                "[[notify]]\nurl = 'http://a/SECRET'\nurl_file = '/x'",
                "exactly one",
            ),
            ("[[notify]]\nurl = 'ftp://a/SECRET'", "http:// or https://"),
            (
                "[[notify]]\nurl = 'http://a/SECRET'\nqueue_size = 0",
                "queue_size",
            ),
            (
                "[[notify]]\nurl = 'http://a/SECRET'\ntimeout_ms = 0",
                "timeout_ms",
            ),
        ] {
            let e = Config::parse(bad)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        // An unknown event is refused as the file is read, naming the known
        // ones, without quoting the URL.
        let e = Config::parse("[[notify]]\nurl = 'http://a/SECRET'\nevents = ['on_air', 'nope']")
            .unwrap_err();
        assert!(e.contains("unknown event \"nope\" (known: on_air, "), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let dir = crate::scratch::ScratchDir::new("notify-url");
        let f = dir.0.join("hook.url");
        std::fs::write(&f, "http://127.0.0.1:9/from-file\n").unwrap();
        let n = NotifyConfig {
            url_file: f.display().to_string(),
            ..NotifyConfig::default()
        };
        assert_eq!(n.resolve_url().unwrap(), "http://127.0.0.1:9/from-file");
    }
}
