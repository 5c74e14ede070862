//! What the read endpoints see: an immutable picture of the queue the
//! engine publishes after every change (an `Arc` swapped under a lock held
//! for a pointer copy), and the settings HTTP workers read.

use std::sync::{Arc, OnceLock, RwLock};

use serde_json::json;

use super::{Engine, Names};
use crate::key::StreamKey;
use crate::moderation;
use crate::registry::Registry;
use crate::relay;

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

pub type Shared<T> = Arc<RwLock<Arc<T>>>;

pub fn read<T>(s: &Shared<T>) -> Arc<T> {
    match s.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

pub(super) fn write<T>(s: &Shared<T>, v: T) {
    match s.write() {
        Ok(mut g) => *g = Arc::new(v),
        Err(p) => *p.into_inner() = Arc::new(v),
    }
}

/// A read-only picture of the queue for the read endpoints, published by
/// the engine after every change.
#[derive(Debug, Default)]
pub struct View {
    pub names: Arc<Names>,
    pub on_air: Option<OnAirView>,
    pub obs: ObsView,
    pub started_at_ms: u64,
    /// When the on-air slot ends, unix ms (None = unlimited).
    pub slot_ends_at_ms: Option<u64>,
    /// Default slot length and rejoin block in force, seconds (0 = off).
    pub slot_seconds: u64,
    pub rejoin_block_seconds: u64,
    /// Blocked streamers' public names and when their block ends (unix ms).
    pub blocked: Vec<(String, u64)>,
    /// "splice" or "restart".
    pub relay_mode: &'static str,
    /// What happened at the last cut ("cut to bob on their keyframe...").
    pub last_cut: Option<String>,
    /// `[recording]`: what the recorder thread publishes (None: off).
    pub recordings: Option<crate::recording::StatusView>,
    /// The streamers' own pages (rebuilt when the registry changes).
    pub pages: Arc<crate::pages::Pages>,
    /// Splice mode: how each read streamer's stream comes through, by
    /// public name.
    pub health: Arc<std::collections::HashMap<String, super::HealthView>>,
    queue_json: OnceLock<String>,
}

#[derive(Debug, Clone)]
pub struct OnAirView {
    pub name: Arc<str>,
    pub since_ms: u64,
    pub relay_state: &'static str,
    pub relay_pid: Option<u32>,
    pub relay_restarts: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ObsView {
    pub enabled: bool,
    pub connected: bool,
    pub detail: String,
}

impl View {
    /// `/queue-json`: display names, on-air first (the seed's shape).
    pub fn queue_json(&self) -> &str {
        self.queue_json
            .get_or_init(|| serde_json::to_string(&*self.names).unwrap_or_else(|_| "[]".into()))
    }

    pub fn status_json(&self, now_ms: u64) -> String {
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
                "health": self.health.get(&*o.name).map(|h| super::health_json(h, now_ms)),
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
                    "health": self.health.get(n).map(|h| super::health_json(h, now_ms)),
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
            "recordings": self.recordings.as_ref().map(|r| r.json()),
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

impl Engine {
    /// The names for a new view: the last ones extended when streamers only
    /// joined at the end since, else rebuilt.
    pub(super) fn sync_names(&mut self) -> Arc<Names> {
        let gen = (self.state.reorder_gen(), self.registry_gen);
        let entries = self.state.entries();
        if self.names_gen != Some(gen) || self.names.len() > entries.len() {
            let fresh: Vec<(String, u64)> = entries
                .iter()
                .map(|e| (self.display(&e.key), e.joined_at))
                .collect();
            self.names = Arc::new(fresh.iter().map(|(n, j)| (n.as_str(), *j)).collect());
        } else if self.names.len() < entries.len() {
            let new: Vec<(String, u64)> = entries[self.names.len()..]
                .iter()
                .map(|e| (self.display(&e.key), e.joined_at))
                .collect();
            // Copies the buffer when the published view still shares it: a
            // memcpy, however long the queue.
            let names = Arc::make_mut(&mut self.names);
            for (n, j) in &new {
                names.push(n, *j);
            }
        }
        self.names_gen = Some(gen);
        self.names.clone()
    }

    /// Every change of the registry goes through here: public names may
    /// have changed.
    pub(super) fn set_registry(&mut self, r: Registry) {
        self.registry = r;
        self.registry_gen += 1;
        self.pages = Arc::new(crate::pages::Pages::new(
            &self.registry,
            &self.cfg.rtmp.ingest_app,
            self.cfg.rtmp.port,
        ));
    }

    pub(super) fn publish_view(&mut self) {
        let rv = self.relay.view();
        self.published_relay = rv.clone();
        // Who is on air is who the output shows: at a planned switch the
        // old streamer stays on air until the cut.
        let shown = self.on_screen_key();
        let on_air = shown.as_ref().map(|key| OnAirView {
            name: Arc::from(self.display(key)),
            since_ms: if self.state.head().is_some_and(|h| h.key == *key) {
                self.state.on_air_since().unwrap_or(0)
            } else {
                0
            },
            relay_state: if rv.state == "live" {
                "running"
            } else {
                rv.state
            },
            relay_pid: rv.pid,
            relay_restarts: rv.restarts,
        });
        let policy = self.policy();
        let now_ms = self.clock.unix_ms();
        let names = self.sync_names();
        // Until the cut, the streamer still on the output leads the list.
        let names = match &shown {
            Some(k) if self.state.head().is_some_and(|h| h.key != *k) => {
                let first = self.display(k);
                let mut n = Names::default();
                n.push(&first, 0);
                for (name, j) in names.iter().filter(|(name, _)| *name != first) {
                    n.push(name, j);
                }
                Arc::new(n)
            }
            _ => names,
        };
        let view = View {
            names,
            on_air,
            obs: self.obs_view.clone(),
            started_at_ms: self.started_at_ms,
            slot_ends_at_ms: moderation::slot_ends_at(&self.state, &self.registry, &policy),
            slot_seconds: policy.slot_seconds,
            rejoin_block_seconds: policy.rejoin_block_seconds,
            blocked: self
                .state
                .blocks(now_ms)
                .into_iter()
                .map(|(k, until)| (self.display(k), until))
                .collect(),
            relay_mode: match self.relay.mode() {
                relay::Mode::Splice => "splice",
                relay::Mode::Restart => "restart",
            },
            last_cut: self.last_cut.clone(),
            recordings: self.recorder.as_ref().map(|r| r.status()),
            pages: self.pages.clone(),
            health: self.health_view(),
            queue_json: OnceLock::new(),
        };
        write(&self.view, view);
    }

    /// The stream key on air as the audience sees it: what the output
    /// shows, or, before the first cut to them, the head of the queue.
    pub(super) fn on_screen_key(&self) -> Option<StreamKey> {
        match self.relay.view().on_screen {
            Some(k) => Some(k),
            None => self.state.head().map(|h| h.key.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn view_renders_seed_shape_and_status() {
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
    pub(super) fn status_shows_slot_time_and_live_blocks_only() {
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
}
