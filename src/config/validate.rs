//! [`Config::validate`]: every value in range, every name well formed,
//! section by section; the first problem found is the error, naming its key.

use std::net::SocketAddr;
use std::path::Path;

use super::{Config, ConfigError};

impl Config {
    /// Every value in range, every name well formed; the first problem
    /// found, with the key that has it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_http()?;
        self.check_rtmp()?;
        self.check_queue_and_relay()?;
        self.check_log_and_obs()?;
        self.check_recording()?;
        self.check_notify()
    }

    /// `[http]`.
    fn check_http(&self) -> Result<(), ConfigError> {
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "http.listen {:?} is not an address:port",
                self.http.listen
            ));
        }
        if self.http.workers == 0 || self.http.workers > 256 {
            return bad(format!(
                "http.workers {} must be 1..=256",
                self.http.workers
            ));
        }
        if self.http.max_connections > 65536 {
            return bad(format!(
                "http.max_connections {} must be 0 (automatic) to 65536",
                self.http.max_connections
            ));
        }
        if !(1..=300).contains(&self.http.request_timeout_seconds) {
            return bad(format!(
                "http.request_timeout_seconds {} must be 1..=300",
                self.http.request_timeout_seconds
            ));
        }
        if let Some(h) = self.http.allowed_hosts.iter().find(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }) {
            return bad(format!(
                "http.allowed_hosts: {h:?} is not a host name (no port, no scheme)"
            ));
        }
        Ok(())
    }

    /// `[rtmp]`: the application and stream names, the host, the nginx URLs.
    fn check_rtmp(&self) -> Result<(), ConfigError> {
        for (k, v) in [
            ("rtmp.ingest_app", &self.rtmp.ingest_app),
            ("rtmp.output_app", &self.rtmp.output_app),
            ("rtmp.output_stream", &self.rtmp.output_stream),
        ] {
            if !crate::hook::valid_name(v) {
                return bad(format!("{k} {v:?} must match [A-Za-z0-9_-]{{1,64}}"));
            }
        }
        if self.rtmp.ingest_app == self.rtmp.output_app {
            return bad("rtmp.ingest_app and rtmp.output_app must differ".into());
        }
        if self.rtmp.host.is_empty() || self.rtmp.host.contains(['/', ' ', '?']) {
            return bad(format!("rtmp.host {:?} is not a host name", self.rtmp.host));
        }
        for (k, v) in [
            ("rtmp.control_url", &self.rtmp.control_url),
            ("rtmp.stat_url", &self.rtmp.stat_url),
        ] {
            if !v.is_empty() && !v.starts_with("http://") {
                return bad(format!("{k} {v:?} must be an http:// URL"));
            }
            if let Some(rest) = v.strip_prefix(crate::nginx::UNIX_URL_PREFIX) {
                if !rest.starts_with('/') || !rest.contains(":/") {
                    return bad(format!(
                        "{k} {v:?}: a unix socket URL is http://unix:/path/to.sock:/location"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[queue]` and `[relay]`.
    fn check_queue_and_relay(&self) -> Result<(), ConfigError> {
        if self.queue.max_length == 0 || self.queue.max_length > 1_000_000 {
            return bad(format!(
                "queue.max_length {} must be 1..=1000000",
                self.queue.max_length
            ));
        }
        if self.relay.ffmpeg.is_empty() {
            return bad("relay.ffmpeg must not be empty".into());
        }
        let has = |p: &str| self.relay.args.iter().any(|a| a.contains(p));
        let complete = has("{input}") && has("{output}");
        if !self.relay.args.is_empty() && !complete {
            return bad("relay.args must contain {input} and {output}".into());
        }
        if self.relay.stall_seconds == 0 || self.relay.max_failures == 0 {
            return bad("relay.stall_seconds and relay.max_failures must be > 0".into());
        }
        let r = &self.relay;
        if !(100..=60_000).contains(&r.media_gap_ms) {
            return bad(format!(
                "relay.media_gap_ms {} must be 100..=60000",
                r.media_gap_ms
            ));
        }
        if r.starve_percent > 100 || r.starve_seconds == 0 || r.min_fps > 240 {
            return bad(
                "relay.starve_percent must be 0..=100, relay.starve_seconds > 0, relay.min_fps 0..=240"
                    .into(),
            );
        }
        Ok(())
    }

    /// `[log]` and `[obs]`.
    fn check_log_and_obs(&self) -> Result<(), ConfigError> {
        if crate::log::parse_level(&self.log.level).is_none() {
            return bad(format!(
                "log.level {:?} must be error, warn, info, debug or trace",
                self.log.level
            ));
        }
        if !["auto", "journald", "syslog", "stderr"].contains(&self.log.target.as_str()) {
            return bad(format!(
                "log.target {:?} must be auto, journald, syslog or stderr",
                self.log.target
            ));
        }
        if self.obs.enabled && (self.obs.scene.is_empty() || self.obs.media_source.is_empty()) {
            return bad("obs.scene and obs.media_source must be set when obs.enabled".into());
        }
        if self.obs.request_timeout_ms == 0 {
            return bad("obs.request_timeout_ms must be > 0".into());
        }
        Ok(())
    }

    /// `[recording]`, when enabled.
    fn check_recording(&self) -> Result<(), ConfigError> {
        let rec = &self.recording;
        if !rec.enabled {
            return Ok(());
        }
        if !crate::hook::valid_name(&rec.recorder) {
            return bad(format!(
                "recording.recorder {:?} must match [A-Za-z0-9_-]{{1,64}}",
                rec.recorder
            ));
        }
        for (k, v) in [
            ("recording.dir", &rec.dir),
            ("recording.incoming_dir", &rec.incoming_dir),
        ] {
            if !Path::new(v).is_absolute() {
                return bad(format!("{k} {v:?} must be an absolute path"));
            }
        }
        if Path::new(&rec.dir) == Path::new(&rec.incoming_dir) {
            return bad("recording.dir and recording.incoming_dir must differ".into());
        }
        if self.rtmp.control_url.is_empty() {
            return bad(
                "recording.enabled needs rtmp.control_url (recordings are started through nginx's control module)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Each `[[notify]]` entry (its URL never quoted back).
    fn check_notify(&self) -> Result<(), ConfigError> {
        for (i, n) in self.notify.iter().enumerate() {
            let who = n.display_name(i);
            if n.url.is_empty() == n.url_file.is_empty() {
                return bad(format!(
                    "[[notify]] {who}: set exactly one of url and url_file"
                ));
            }
            // The URL itself is never quoted back: it is a secret.
            if !n.url.is_empty() && !n.url.starts_with("http://") && !n.url.starts_with("https://")
            {
                return bad(format!(
                    "[[notify]] {who}: url must start with http:// or https://"
                ));
            }
            if n.timeout_ms == 0 || n.connect_timeout_ms == 0 || n.timeout_ms > 120_000 {
                return bad(format!(
                    "[[notify]] {who}: timeout_ms must be 1..=120000 and connect_timeout_ms > 0"
                ));
            }
            if n.retries > 20 || !(1..=100_000).contains(&n.queue_size) {
                return bad(format!(
                    "[[notify]] {who}: retries must be 0..=20 and queue_size 1..=100000"
                ));
            }
        }
        Ok(())
    }
}

/// A configuration refused for reason `m`.
fn bad(m: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid(m))
}
