//! The read model: what the read endpoints (`/api/status`, `/queue-json`,
//! `/metrics`, the console, the streamers' pages) see without asking the
//! engine. The engine builds a new [`View`] after every change and
//! publishes it whole (`engine/view.rs`); the recorder publishes its own
//! part; HTTP workers only read. Below the engine: it imports nothing that
//! runs.

mod names;
mod pages;

pub(crate) use names::Names;
pub(crate) use pages::Pages;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::json;

use crate::relay::health::{self, Report};

/// What HTTP workers may read without asking the engine. Replaced whole by
/// the engine; never mutated in place.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bearer token every admin endpoint requires.
    pub admin_token: String,
    /// Path segment of the hook URLs (`/hook/<secret>/on_publish`).
    pub hook_secret: String,
    /// `[http] allowed_hosts`: Host names accepted besides loopback.
    pub allowed_hosts: Vec<String>,
    /// What the output publish of the current relay run carries
    /// (`?ms_secret=`): new for every run, so a secret seen in one run's
    /// argv or log is worthless once that run ends.
    pub relay_secret: String,
    pub ingest_app: String,
    pub output_app: String,
    pub output_stream: String,
}

/// A value one thread replaces whole and many threads read: a reader
/// takes an `Arc` under a lock held for a pointer copy, so it never waits
/// for the writer's work, and what it holds never changes under it. The
/// engine publishes [`View`] and [`Settings`] so, the recorder its
/// [`RecordingStatus`]. A poisoned lock is read as it stands: the value in
/// it is always whole (swapped, never changed in place).
pub struct Published<T>(Arc<RwLock<Arc<T>>>);

impl<T> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value last published.
    pub(crate) fn read(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replace the value for every later reader.
    pub(crate) fn publish(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

/// Another handle on the same value.
impl<T> Clone for Published<T> {
    fn clone(&self) -> Published<T> {
        Published(self.0.clone())
    }
}

impl<T: Default> Default for Published<T> {
    fn default() -> Published<T> {
        Published::new(T::default())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Published").field(&self.read()).finish()
    }
}

/// A read-only picture of the queue for the read endpoints, published by
/// the engine after every change.
#[derive(Debug, Default)]
pub struct View {
    pub(crate) names: Arc<Names>,
    pub(crate) on_air: Option<OnAirView>,
    pub(crate) obs: ObsView,
    pub(crate) started_at_ms: u64,
    /// When the on-air slot ends, unix ms (None = unlimited).
    pub(crate) slot_ends_at_ms: Option<u64>,
    /// Default slot length and rejoin block in force, seconds (0 = off).
    pub(crate) slot_seconds: u64,
    pub(crate) rejoin_block_seconds: u64,
    /// Blocked streamers' public names and when their block ends (unix ms).
    pub(crate) blocked: Vec<(String, u64)>,
    /// "splice" or "restart".
    pub(crate) relay_mode: &'static str,
    /// What happened at the last cut ("cut to bob on their keyframe...").
    pub(crate) last_cut: Option<String>,
    /// `[recording]`: what the recorder thread publishes (None: off).
    pub(crate) recordings: Option<Published<RecordingStatus>>,
    /// The streamers' own pages (rebuilt when the registry changes).
    pub(crate) pages: Arc<Pages>,
    /// Splice mode: how each read streamer's stream comes through, by
    /// public name.
    pub(crate) health: Arc<HashMap<String, HealthView>>,
    /// `/queue-json`, encoded on its first read (the publisher leaves it
    /// empty).
    pub(crate) queue_json: OnceLock<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct OnAirView {
    pub(crate) name: Arc<str>,
    pub(crate) since_ms: u64,
    pub(crate) relay_state: &'static str,
    pub(crate) relay_pid: Option<u32>,
    pub(crate) relay_restarts: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ObsView {
    pub(crate) enabled: bool,
    pub(crate) connected: bool,
    pub(crate) detail: String,
}

impl View {
    /// `/queue-json`: display names, on-air first (the seed's shape).
    pub(crate) fn queue_json(&self) -> &str {
        self.queue_json
            .get_or_init(|| serde_json::to_string(&*self.names).unwrap_or_else(|_| "[]".into()))
    }

    pub(crate) fn status_json(&self, now_ms: u64) -> String {
        let on_air = self.on_air.as_ref().map(|o| {
            json!({
                "name": &*o.name,
                "since": o.since_ms / 1000,
                "on_air_s": now_ms.saturating_sub(o.since_ms) / 1000,
                "slot_left_s": self.slot_ends_at_ms.map(|t| t.saturating_sub(now_ms).div_ceil(1000)),
                "slot_ends_at": self.slot_ends_at_ms.map(|t| t.div_ceil(1000)),
                "relay": {
                    "state": o.relay_state,
                    "pid": o.relay_pid,
                    "restarts": o.relay_restarts,
                },
                "health": self.health.get(&*o.name).map(|h| health_json(h, now_ms)),
            })
        });
        let queue: Vec<_> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, (n, j))| {
                json!({
                    "name": n,
                    "position": i,
                    "joined_at": j / 1000,
                    "health": self.health.get(n).map(|h| health_json(h, now_ms)),
                })
            })
            .collect();
        json!({
            "version": crate::handover::version(),
            "uptime_s": now_ms.saturating_sub(self.started_at_ms) / 1000,
            "on_air": on_air,
            "next_up": self.names.get(1),
            "waiting": self.names.len().saturating_sub(1),
            "queue": queue,
            "slot_seconds": self.slot_seconds,
            "rejoin_block_seconds": self.rejoin_block_seconds,
            "blocked": self
                .blocked
                .iter()
                .filter(|(_, until)| *until > now_ms)
                .map(|(n, until)| json!({
                    "name": n,
                    "until": until.div_ceil(1000),
                    "left_s": until.saturating_sub(now_ms).div_ceil(1000),
                }))
                .collect::<Vec<_>>(),
            "recordings": self.recordings.as_ref().map(|r| r.read().json()),
            "relay": {
                "mode": self.relay_mode,
                "last_cut": self.last_cut,
            },
            "obs": {
                "enabled": self.obs.enabled,
                "connected": self.obs.connected,
                "detail": self.obs.detail,
            },
        })
        .to_string()
    }
}

/// A streamer's health as the read endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthView {
    pub(crate) report: Report,
    pub(crate) since_unix_ms: u64,
}

/// A streamer's health as JSON (`/api/status`, their page).
pub(crate) fn health_json(h: &HealthView, now_ms: u64) -> serde_json::Value {
    let r = &h.report;
    let f = &r.format;
    serde_json::json!({
        "state": r.state.map_or("unknown", health::State::as_str),
        "since": h.since_unix_ms / 1000,
        "for_s": now_ms.saturating_sub(h.since_unix_ms) / 1000,
        "kbps": r.kbps,
        "fps": f64::from(r.fps_x10) / 10.0,
        "median_kbps": r.median_kbps,
        "keyframe_interval_s": r.keyframe_ms.map(|k| k as f64 / 1000.0),
        "bframes": f.bframes,
        "width": f.width,
        "height": f.height,
        "video_codec": f.video_codec,
        "audio": r.audio_present,
        "audio_codec": f.audio_codec,
        "audio_rate": f.audio_rate,
        "audio_channels": f.audio_channels,
        "hints": health::hints(r),
    })
}

/// A finished recording, as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) file: String,
    pub(crate) streamer: String,
    pub(crate) start_s: u64,
    /// Known for recordings made by this run.
    pub(crate) duration_s: Option<u64>,
    pub(crate) size_bytes: u64,
}

/// The recorder's part of `/api/status`, published by its thread
/// (`recording.rs`) through a [`Published`] the view holds.
#[derive(Debug, Default)]
pub(crate) struct RecordingStatus {
    /// Who is being recorded, since when (unix s).
    pub(crate) recording: Option<(String, u64)>,
    /// Why recording is off although someone is on screen.
    pub(crate) paused: Option<String>,
    /// Newest first.
    pub(crate) recent: Vec<Recent>,
}

impl RecordingStatus {
    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "recording": self.recording.as_ref().map(|(name, since)| json!({"name": name, "since": since})),
            "paused": self.paused,
            "recent": self.recent.iter().map(|r| json!({
                "file": r.file,
                "streamer": r.streamer,
                "start": r.start_s,
                "duration_s": r.duration_s,
                "size_bytes": r.size_bytes,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_renders_seed_shape_and_status() {
        let v = View {
            names: Arc::new([("a", 1000), ("b\"q", 2000)].into_iter().collect()),
            on_air: Some(OnAirView {
                name: "a".into(),
                since_ms: 5000,
                relay_state: "running",
                relay_pid: Some(42),
                relay_restarts: 1,
            }),
            started_at_ms: 0,
            ..View::default()
        };
        assert_eq!(v.queue_json(), r#"["a","b\"q"]"#);
        let s: serde_json::Value = serde_json::from_str(&v.status_json(65_000)).unwrap();
        assert_eq!(s["on_air"]["name"], "a");
        assert_eq!(s["on_air"]["on_air_s"], 60);
        assert_eq!(s["on_air"]["relay"]["pid"], 42);
        assert_eq!(s["next_up"], "b\"q");
        assert_eq!(s["queue"][1]["position"], 1);
        assert_eq!(s["uptime_s"], 65);
        assert_eq!(s["on_air"]["slot_left_s"], serde_json::Value::Null);
    }

    #[test]
    fn status_shows_slot_time_and_live_blocks_only() {
        let v = View {
            names: Arc::new([("DJ A", 0)].into_iter().collect()),
            on_air: Some(OnAirView {
                name: "DJ A".into(),
                since_ms: 1000,
                relay_state: "running",
                relay_pid: None,
                relay_restarts: 0,
            }),
            slot_ends_at_ms: Some(61_000),
            slot_seconds: 60,
            rejoin_block_seconds: 30,
            blocked: vec![("gone".into(), 5_000), ("Bob".into(), 40_500)],
            ..View::default()
        };
        let s: serde_json::Value = serde_json::from_str(&v.status_json(10_200)).unwrap();
        assert_eq!(s["on_air"]["slot_left_s"], 51, "rounded up");
        assert_eq!(s["on_air"]["slot_ends_at"], 61);
        assert_eq!(s["slot_seconds"], 60);
        assert_eq!(s["rejoin_block_seconds"], 30);
        assert_eq!(s["blocked"].as_array().map(Vec::len), Some(1), "{s}");
        assert_eq!(s["blocked"][0]["name"], "Bob");
        assert_eq!(s["blocked"][0]["left_s"], 31);
        let late: serde_json::Value = serde_json::from_str(&v.status_json(70_000)).unwrap();
        assert_eq!(late["on_air"]["slot_left_s"], 0);
    }

    #[test]
    fn recording_status_json_shape() {
        let v = Published::<RecordingStatus>::default();
        v.publish(RecordingStatus {
            recording: Some(("A".into(), 5)),
            paused: None,
            recent: vec![Recent {
                file: "A-x.flv".into(),
                streamer: "A".into(),
                start_s: 1,
                duration_s: Some(4),
                size_bytes: 10,
            }],
        });
        let j = v.read().json();
        assert_eq!(j["recording"]["name"], "A");
        assert_eq!(j["recent"][0]["duration_s"], 4);
        assert_eq!(j["recent"][0]["streamer"], "A");
        assert!(j["paused"].is_null());
    }
}
