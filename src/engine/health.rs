//! What the engine does with the streams' health (splice mode): says each
//! change once (journal, events, metrics), shows it (view), and keeps the
//! queue fair when a stream does not come through:
//!
//! * the on-air streamer unhealthy (stalled or starved) for
//!   `[queue] give_up_seconds` → the next healthy streamer goes on air; the
//!   one given up on keeps the place right after them and, if their stream
//!   has not recovered within `keep_place_seconds`, goes to the end;
//! * at a switch, a new head known to be unhealthy is passed over (the
//!   first streamer after them not known to be unhealthy goes on air) and
//!   stays queued.
//!
//! The relay measures (`relay::health`); these rules only read its reports
//! and the engine's clock, so they run in memory on a manual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::events::Event;
use crate::key::StreamKey;
use crate::queue::Op;
use crate::relay::health::{Report, State};
use crate::view::HealthView;

/// One read stream as the engine knows it.
#[derive(Debug, Clone)]
struct Known {
    report: Report,
    /// When its state began (engine clock; unix ms for people).
    since: Instant,
    since_unix_ms: u64,
}

#[derive(Default)]
pub(crate) struct HealthBook {
    known: HashMap<StreamKey, Known>,
    /// Given up on: keep their place until then.
    kept: HashMap<StreamKey, Instant>,
    /// The head the rules last saw (a change is a switch).
    last_head: Option<StreamKey>,
}

impl HealthBook {
    fn state(&self, key: &StreamKey) -> Option<State> {
        self.known.get(key).and_then(|k| k.report.state)
    }

    pub(super) fn unhealthy(&self, key: &StreamKey) -> bool {
        self.state(key).is_some_and(State::unhealthy)
    }
}

fn describe(r: &Report, state: State) -> String {
    match state {
        State::Stalled => format!(
            "no media for {:.2} s",
            Duration::from_millis(r.age_ms).as_secs_f64()
        ),
        State::Starved => format!(
            "{} kbit/s at {:.0} fps, their usual is {} kbit/s",
            r.kbps,
            f64::from(r.fps_x10) / 10.0,
            r.median_kbps
        ),
        State::Live => "media flows".to_string(),
        State::Waiting => "waiting for media".to_string(),
    }
}

impl Engine {
    /// A report from the relay. Only changes are said; figures are kept
    /// for the view.
    pub(super) fn on_health(&mut self, key: StreamKey, report: Report, changed: bool) {
        let now = self.clock.now();
        let Some(state) = report.state else {
            // No longer read: nothing is known any more.
            if let Some(old) = self.health.known.remove(&key) {
                self.end_unwell(&key, &old, now);
            }
            return;
        };
        let old = self.health.known.get(&key).cloned();
        let old_state = old.as_ref().and_then(|o| o.report.state);
        if !changed || old_state == Some(state) {
            let since = old.as_ref().map_or(now, |o| o.since);
            let since_unix_ms = old
                .as_ref()
                .map_or(self.clock.unix_ms(), |o| o.since_unix_ms);
            self.health.known.insert(
                key,
                Known {
                    report,
                    since,
                    since_unix_ms,
                },
            );
            return;
        }
        // The state began `age` before the report (a stall when the media
        // stopped).
        let age = Duration::from_millis(report.age_ms);
        let began = now.checked_sub(age).unwrap_or(now);
        let began_unix_ms = self.clock.unix_ms().saturating_sub(report.age_ms);
        let name = self.display(&key);
        let on_air = self.state.head().is_some_and(|h| h.key == key);
        let role = if on_air { "on air" } else { "queued" };
        self.events.metrics().health_changed(state.as_str());
        match state {
            State::Stalled | State::Starved => {
                log::warn!(
                    "{name}'s stream is {} ({role}: {}){}",
                    state.as_str(),
                    describe(&report, state),
                    if on_air {
                        "; the be-right-back card is on"
                    } else {
                        ""
                    }
                );
                if !old_state.is_some_and(State::unhealthy) {
                    self.emit(Event::Unstable {
                        name,
                        state: state.as_str(),
                        detail: describe(&report, state),
                        on_air,
                    });
                }
            }
            State::Live | State::Waiting => {
                if let Some(o) = old
                    .as_ref()
                    .filter(|o| o.report.state.is_some_and(State::unhealthy))
                {
                    let after = began.saturating_duration_since(o.since);
                    log::info!(
                        "{name}'s stream is back ({role}) after {:.1} s",
                        after.as_secs_f64()
                    );
                    self.end_unwell(&key, o, now);
                    self.emit(Event::Back {
                        name,
                        after,
                        on_air,
                    });
                    self.health.kept.remove(&key);
                }
            }
        }
        self.health.known.insert(
            key,
            Known {
                report,
                since: began,
                since_unix_ms: began_unix_ms,
            },
        );
        self.health_rules();
    }

    /// An unhealthy spell of the on-air streamer ends: counted in seconds.
    fn end_unwell(&mut self, key: &StreamKey, old: &Known, now: Instant) {
        let on_air = self.state.head().is_some_and(|h| h.key == *key);
        if on_air && old.report.state.is_some_and(State::unhealthy) {
            self.events
                .metrics()
                .unwell_seconds(now.saturating_duration_since(old.since).as_secs_f64());
        }
    }

    /// The first queued streamer after the head not known to be unhealthy.
    fn healthy_successor(&self) -> Option<StreamKey> {
        self.state
            .entries()
            .iter()
            .skip(1)
            .find(|e| !self.health.unhealthy(&e.key))
            .map(|e| e.key.clone())
    }

    /// Apply the give-up, pass-over and keep-place rules (idempotent; called
    /// on every health change, timer and before the relay is told who is
    /// on air).
    pub(super) fn health_rules(&mut self) {
        if self.shutting_down || self.relay.mode() != crate::relay::Mode::Splice {
            return;
        }
        let now = self.clock.now();
        let give_up = self.cfg.queue.give_up_seconds;
        let head = self.state.head().map(|h| h.key.clone());
        let switched = head != self.health.last_head;
        self.health.last_head = head.clone();
        let Some(head) = head else {
            return;
        };
        if self.health.unhealthy(&head) {
            let unwell_for = self
                .health
                .known
                .get(&head)
                .map_or(Duration::ZERO, |k| now.saturating_duration_since(k.since));
            let give_up_now = give_up > 0 && unwell_for >= Duration::from_secs(give_up);
            if switched || give_up_now {
                if let Some(next) = self.healthy_successor() {
                    let (name, next_name) = (self.display(&head), self.display(&next));
                    if switched {
                        log::info!(
                            "passing over {name} (their stream is {}): {next_name} goes on air; {name} stays queued",
                            self.health.state(&head).map_or("unknown", State::as_str)
                        );
                    } else {
                        log::warn!(
                            "{name}'s stream has not come through for {:.0} s: {next_name} goes on air; {name} keeps the place after them for {} s",
                            unwell_for.as_secs_f64(),
                            self.cfg.queue.keep_place_seconds
                        );
                        self.events
                            .metrics()
                            .unwell_seconds(unwell_for.as_secs_f64());
                        self.emit(Event::GaveUp { name });
                        self.health.kept.insert(
                            head.clone(),
                            now + Duration::from_secs(self.cfg.queue.keep_place_seconds),
                        );
                    }
                    self.health.last_head = Some(next.clone());
                    self.apply_internal(Op::Move {
                        key: next,
                        position: 0,
                        at: self.clock.unix_ms(),
                    });
                    return;
                }
            }
        }
        self.expire_kept(now);
    }

    /// Given-up streamers whose stream did not recover in time go to the end.
    fn expire_kept(&mut self, now: Instant) {
        let due: Vec<StreamKey> = self
            .health
            .kept
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.health.kept.remove(&key);
            let queued = self.state.entries().iter().position(|e| e.key == key);
            let last = self.state.entries().len().saturating_sub(1);
            if let Some(pos) = queued.filter(|p| *p > 0 && *p < last) {
                if self.health.state(&key) != Some(State::Live) {
                    log::info!(
                        "{}'s stream did not recover in {} s: they go to the end of the queue (was {})",
                        self.display(&key),
                        self.cfg.queue.keep_place_seconds,
                        pos + 1
                    );
                    self.apply_internal(Op::Move {
                        key,
                        position: usize::MAX,
                        at: self.clock.unix_ms(),
                    });
                }
            }
        }
    }

    /// When the rules must look again (give-up or keep-place expiry).
    pub(super) fn health_deadline(&self) -> Option<Instant> {
        let give_up = self.cfg.queue.give_up_seconds;
        let head = self.state.head()?;
        let give = (give_up > 0)
            .then(|| self.health.known.get(&head.key))
            .flatten()
            .filter(|k| k.report.state.is_some_and(State::unhealthy))
            .map(|k| k.since + Duration::from_secs(give_up));
        let kept = self.health.kept.values().min().copied();
        match (give, kept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every read stream's health, by public name, for the view.
    pub(super) fn health_view(&self) -> Arc<HashMap<String, HealthView>> {
        Arc::new(
            self.health
                .known
                .iter()
                .map(|(k, v)| {
                    (
                        self.display(k),
                        HealthView {
                            report: v.report.clone(),
                            since_unix_ms: v.since_unix_ms,
                        },
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
