//! The engine's side of the relay: it tells the relay what the queue wants
//! on air ("on air X, next Y"), and acts on what the relay reports (the
//! cut that changes who is on screen, a streamer to give up on).

use std::time::{Duration, Instant};

use super::Engine;
use crate::config::{self, Config};
use crate::events::Event;
use crate::key::StreamKey;
use crate::moderation;
use crate::queue::Op;
use crate::relay::{self, Notice, RelayEvent, RelaySpec, Streamer, Want};
use crate::view::Settings;

/// The cuts so far: how many (OBS tells a switch from a refresh by it) and
/// what happened at the last one (`/api/status`, STATUS).
#[derive(Debug, Default)]
pub(super) struct Cuts {
    count: u64,
    last: Option<String>,
}

impl Cuts {
    /// A hand-over carried them from the previous binary.
    pub(super) fn carried(count: u64, last: Option<String>) -> Cuts {
        Cuts { count, last }
    }

    fn record(&mut self, line: String) {
        self.count += 1;
        self.last = Some(line);
    }

    pub(super) fn count(&self) -> u64 {
        self.count
    }

    pub(super) fn last(&self) -> Option<&String> {
        self.last.as_ref()
    }
}

impl Engine {
    /// Tell the relay what the queue wants on air now (level-triggered).
    pub(super) fn reconcile_relay(&mut self, now: Instant) {
        // Never name a head whose stream is known not to come through when
        // someone else can go on air (it may change the queue).
        self.health_rules();
        let want = self.want_now();
        let mut notices = Vec::new();
        self.relay.want(&want, now, &mut notices);
        self.on_notices(notices);
    }

    /// The relay learns the batch's new head before the batch is durable:
    /// the save (an fsync) took up to 0.66 s while other programs wrote to
    /// the disk, and a forced cut (the on-air publisher left) waited for it
    /// with the picture frozen. Nothing is acknowledged by this: what the
    /// relay says back waits with the batch (the backlog), and the head is
    /// told again, after the health rules, once the batch is durable
    /// (`after_change`); a failed save brings back the state on disk, and
    /// with it the head the relay is told then. A head whose stream is known
    /// not to come through waits for the health rules (they may pass them
    /// over).
    pub(super) fn tell_relay_first(&mut self, now: Instant) {
        if self
            .state
            .head()
            .is_some_and(|h| self.health.unhealthy(&h.key))
        {
            return;
        }
        let want = self.want_now();
        self.relay.want(&want, now, &mut self.relay_backlog.notices);
    }

    /// What the queue wants on air now; the recorder is told the head too.
    fn want_now(&mut self) -> Want {
        let e = self.state.entries();
        let want = Want {
            on_air: e.first().map(|h| Streamer {
                key: h.key.clone(),
                name: self.display(&h.key),
            }),
            next: e.get(1).map(|n| Streamer {
                key: n.key.clone(),
                name: self.display(&n.key),
            }),
            left: self.kill_now.take(),
            stopping: self.shutting_down,
        };
        // nginx starts a recording on the stream's next keyframe, the one
        // the splicer cuts on: so it is asked at the decision, not the cut.
        if let Some(r) = &mut self.recorder {
            r.heading(want.on_air.as_ref().map(|s| (&s.key, s.name.as_str())));
        }
        want
    }

    /// The output's publish secret changes with each output run; the HTTP
    /// side checks `on_publish` of the output app against it.
    pub(super) fn sync_secret(&mut self) {
        let s = self.settings.read();
        if s.relay_secret != self.relay.output_secret() {
            self.settings.publish(Settings {
                relay_secret: self.relay.output_secret().to_string(),
                ..(*s).clone()
            });
        }
    }

    pub(super) fn on_notices(&mut self, notices: Vec<Notice>) {
        self.sync_secret();
        if notices.is_empty() {
            return;
        }
        // Fresh figures only (about once a second per read stream): the
        // view shows them; nothing else changes.
        if notices
            .iter()
            .all(|n| matches!(n, Notice::Health { changed: false, .. }))
        {
            for n in notices {
                if let Notice::Health { key, report, .. } = n {
                    self.on_health(key, report, false);
                }
            }
            self.publish_view();
            return;
        }
        for n in notices {
            match n {
                Notice::Cut {
                    from,
                    to,
                    how,
                    waited,
                } => {
                    let who = |k: &Option<StreamKey>| {
                        k.as_ref()
                            .map_or_else(|| "the slate".to_string(), |k| self.display(k))
                    };
                    let line = match how {
                        relay::CutKind::Keyframe | relay::CutKind::Bridge => format!(
                            "cut to {} {} {:.2} s after the switch; {} kept playing",
                            who(&to),
                            how.describe(),
                            waited.as_secs_f64(),
                            who(&from)
                        ),
                        relay::CutKind::Restart => match &to {
                            Some(_) => format!(
                                "{} on screen {:.2} s after the switch (relay restarted)",
                                who(&to),
                                waited.as_secs_f64()
                            ),
                            None => format!("{} off screen", who(&from)),
                        },
                        other => format!(
                            "cut to {} {} {:.2} s after the switch",
                            who(&to),
                            other.describe(),
                            waited.as_secs_f64()
                        ),
                    };
                    log::info!("{line}");
                    self.cuts.record(line);
                    let shown = to.as_ref().map(|k| (k.clone(), self.display(k)));
                    if let Some(r) = &mut self.recorder {
                        r.on_screen(shown);
                    }
                    self.emit_cut(from.as_ref(), to.as_ref(), waited);
                    if let Some(f) = from {
                        self.release_drop(&f);
                    }
                }
                Notice::GiveUp { key } => {
                    if self.state.head().is_some_and(|h| h.key == key) {
                        self.emit(Event::GaveUp {
                            name: self.display(&key),
                        });
                        // Skipping is a queue change: persisted like any other.
                        self.apply_internal(Op::Skip {
                            at: self.clock.unix_ms(),
                        });
                    }
                }
                Notice::SourceFailed { key, why, failures } => self.emit(Event::RelayFailed {
                    name: self.display(&key),
                    why,
                    failures,
                }),
                Notice::SourceBack { key, failures } => self.emit(Event::RelayRecovered {
                    name: self.display(&key),
                    failures,
                }),
                Notice::OutputFailed { why } => self.emit(Event::OutputFailed { detail: why }),
                Notice::OutputFailedAgain => self.events.metrics().output_failed(),
                Notice::OutputBack => self.emit(Event::OutputRecovered),
                Notice::Health {
                    key,
                    report,
                    changed,
                } => self.on_health(key, report, changed),
            }
        }
        self.publish_view();
        self.sync_obs();
        self.refresh_status();
    }

    /// The one way events leave the engine (metrics, notifications).
    pub(super) fn emit(&mut self, ev: Event) {
        self.events.emit(ev);
    }

    /// A cut: whoever left the output is off air (for the reason last
    /// given), whoever is on it now is on air.
    fn emit_cut(&mut self, from: Option<&StreamKey>, to: Option<&StreamKey>, waited: Duration) {
        if let Some(f) = from {
            let name = self.display(f);
            let reason = self.events.off_air_reason(&name);
            self.emit(Event::OffAir { name, reason });
        }
        if let Some(t) = to {
            let head = self.state.head().filter(|h| h.key == *t);
            let since = head.and_then(|_| self.state.on_air_since());
            let ends = moderation::slot_ends_at(&self.state, self.registry.get(), &self.policy());
            let slot_seconds = match (head, since, ends) {
                (Some(_), Some(s), Some(e)) => Some(e.saturating_sub(s).div_ceil(1000)),
                _ => None,
            };
            let next = self
                .state
                .entries()
                .iter()
                .find(|e| e.key != *t)
                .map(|e| self.display(&e.key));
            self.emit(Event::OnAir {
                name: self.display(t),
                slot_seconds,
                next,
                switch_latency: waited,
            });
        }
    }

    /// A publisher waiting for the cut away from them is disconnected now.
    pub(super) fn release_drop(&mut self, key: &StreamKey) {
        self.drops.release(key, || self.registry.display(key));
    }

    /// What the relay said while a batch was being saved, in order: the
    /// notices its tags raised, then its other events.
    pub(super) fn drain_relay_backlog(&mut self) {
        let backlog = std::mem::take(&mut self.relay_backlog);
        if !backlog.notices.is_empty() {
            self.on_notices(backlog.notices);
            self.after_change();
        } else if self.relay.view() != self.published_relay {
            self.publish_view();
            self.refresh_status();
        }
        for ev in backlog.events {
            self.on_relay_event(ev);
        }
    }

    pub(super) fn on_relay_event(&mut self, ev: RelayEvent) {
        let mut notices = Vec::new();
        self.relay.on_event(ev, self.clock.now(), &mut notices);
        // A relay started on this event (restart mode: the old one's exit)
        // publishes with a new secret: the HTTP side must know it first.
        self.sync_secret();
        if !notices.is_empty() {
            self.on_notices(notices);
            self.after_change();
        } else if self.relay.view() != self.published_relay {
            self.publish_view();
            self.refresh_status();
        }
    }
}

pub(super) fn relay_spec(cfg: &Config) -> RelaySpec {
    let r = &cfg.rtmp;
    RelaySpec {
        mode: match cfg.relay.mode {
            config::RelayMode::Splice => relay::Mode::Splice,
            config::RelayMode::Restart => relay::Mode::Restart,
        },
        ffmpeg: cfg.relay.ffmpeg.clone(),
        args: cfg.relay.args.clone(),
        log_path: cfg.relay_log_path(),
        log_max_bytes: cfg.relay.log_max_bytes,
        host: r.host.clone(),
        port: r.port,
        ingest_app: r.ingest_app.clone(),
        output_app: r.output_app.clone(),
        output_stream: r.output_stream.clone(),
        stall: Duration::from_secs(cfg.relay.stall_seconds),
        stop_grace: Duration::from_millis(cfg.relay.stop_grace_ms),
        max_failures: cfg.relay.max_failures,
        slate: cfg.relay.slate.clone(),
        slate_text: cfg.relay.slate_text.clone(),
        work_dir: cfg.state_dir(),
        cut_timeout: (cfg.relay.cut_timeout_ms > 0)
            .then(|| Duration::from_millis(cfg.relay.cut_timeout_ms)),
        bridge: cfg.relay.bridge,
        health: relay::health::Config {
            stall_ms: cfg.relay.media_gap_ms,
            starve_ratio_pct: cfg.relay.starve_percent,
            min_fps: cfg.relay.min_fps,
            starve_ms: cfg.relay.starve_seconds.saturating_mul(1000),
            ..relay::health::Config::default()
        },
        brb: cfg.relay.brb.clone(),
    }
}
