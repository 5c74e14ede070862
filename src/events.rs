//! What happens on the channel, as operators' tools hear it: the engine
//! emits an [`Event`] at the few places where something happens (a cut, a
//! join, a kick, a failure), and the [`Events`] hub it owns counts it in
//! the metrics and offers it to every notifier. Offering never blocks: a
//! notifier whose queue is full loses the event (counted), the switch goes
//! on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::notify::Sink;

/// Why a streamer went off air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffAirReason {
    /// They stopped publishing.
    Left,
    /// A moderator skipped them.
    Skipped,
    Kicked,
    Blocked,
    /// Their slot time ran out.
    SlotEnded,
    /// Their stream failed too often.
    RelayFailed,
    /// Their stream ended before their publisher's hook said they left.
    StreamEnded,
    /// Someone else was put on air (queue cleared, reordered, moved).
    Replaced,
}

impl OffAirReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OffAirReason::Left => "left",
            OffAirReason::Skipped => "skipped",
            OffAirReason::Kicked => "kicked",
            OffAirReason::Blocked => "blocked",
            OffAirReason::SlotEnded => "slot_ended",
            OffAirReason::RelayFailed => "relay_failed",
            OffAirReason::StreamEnded => "stream_ended",
            OffAirReason::Replaced => "replaced",
        }
    }

    /// For people ("off air (slot ended)").
    pub fn describe(self) -> &'static str {
        match self {
            OffAirReason::Left => "stopped streaming",
            OffAirReason::Skipped => "skipped by a moderator",
            OffAirReason::Kicked => "kicked by a moderator",
            OffAirReason::Blocked => "blocked by a moderator",
            OffAirReason::SlotEnded => "slot ended",
            OffAirReason::RelayFailed => "their stream kept failing",
            OffAirReason::StreamEnded => "their stream ended",
            OffAirReason::Replaced => "replaced by a moderator",
        }
    }
}

/// Names are public display names, never stream keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The output now shows `name` (after the cut, not at the decision).
    OnAir {
        name: String,
        /// Their slot length (None: unlimited).
        slot_seconds: Option<u64>,
        next: Option<String>,
        /// From the decision to switch to the cut.
        switch_latency: Duration,
    },
    OffAir {
        name: String,
        reason: OffAirReason,
    },
    /// `position` counts from 0 (0 = on air).
    Joined {
        name: String,
        position: usize,
    },
    Left {
        name: String,
    },
    /// Taken off by a moderator, blocked from rejoining for `seconds`.
    Kicked {
        name: String,
        seconds: Option<u64>,
    },
    Blocked {
        name: String,
        seconds: Option<u64>,
    },
    Skipped {
        name: String,
    },
    SlotEnded {
        name: String,
    },
    /// The on-air streamer's stream failed too often, or did not come
    /// through for `give_up_seconds`: the next streamer went on air.
    GaveUp {
        name: String,
    },
    /// A read streamer's stream stalled or starved (splice mode).
    Unstable {
        name: String,
        /// "stalled" or "starved".
        state: &'static str,
        detail: String,
        /// On air (the be-right-back card is on) or queued.
        on_air: bool,
    },
    /// Their stream comes through again after `after`.
    Back {
        name: String,
        after: Duration,
        on_air: bool,
    },
    /// Reading a streamer's stream ended or failed (it is read again with
    /// backoff); `failures` in a row, this one included. A single end is
    /// usually the streamer leaving (their hook follows).
    RelayFailed {
        name: String,
        why: String,
        failures: u32,
    },
    /// Their stream delivers again after `failures` failures.
    RelayRecovered {
        name: String,
        failures: u32,
    },
    /// The output ffmpeg died or cannot start: OBS sees nothing new.
    OutputFailed {
        detail: String,
    },
    OutputRecovered,
    ObsLost {
        reason: String,
    },
    ObsBack,
}

/// Every event kind, as named in `[[notify]] events`.
pub const KINDS: &[&str] = &[
    "on_air",
    "off_air",
    "joined",
    "left",
    "kicked",
    "blocked",
    "skipped",
    "slot_ended",
    "gave_up",
    "unstable",
    "back",
    "relay_failed",
    "relay_recovered",
    "output_failed",
    "output_recovered",
    "obs_lost",
    "obs_back",
];

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OnAir { .. } => "on_air",
            Event::OffAir { .. } => "off_air",
            Event::Joined { .. } => "joined",
            Event::Left { .. } => "left",
            Event::Kicked { .. } => "kicked",
            Event::Blocked { .. } => "blocked",
            Event::Skipped { .. } => "skipped",
            Event::SlotEnded { .. } => "slot_ended",
            Event::GaveUp { .. } => "gave_up",
            Event::Unstable { .. } => "unstable",
            Event::Back { .. } => "back",
            Event::RelayFailed { .. } => "relay_failed",
            Event::RelayRecovered { .. } => "relay_recovered",
            Event::OutputFailed { .. } => "output_failed",
            Event::OutputRecovered => "output_recovered",
            Event::ObsLost { .. } => "obs_lost",
            Event::ObsBack => "obs_back",
        }
    }

    /// The reason a later off-air of this streamer will carry.
    fn off_air_reason(&self) -> Option<(&str, OffAirReason)> {
        match self {
            Event::Left { name } => Some((name, OffAirReason::Left)),
            Event::Kicked { name, .. } => Some((name, OffAirReason::Kicked)),
            Event::Blocked { name, .. } => Some((name, OffAirReason::Blocked)),
            Event::Skipped { name } => Some((name, OffAirReason::Skipped)),
            Event::SlotEnded { name } => Some((name, OffAirReason::SlotEnded)),
            Event::GaveUp { name } => Some((name, OffAirReason::RelayFailed)),
            Event::RelayFailed { name, .. } => Some((name, OffAirReason::StreamEnded)),
            _ => None,
        }
    }
}

/// Reasons remembered at most (a streamer taken off while not on screen
/// leaves one behind until they go on air again).
const MAX_REASONS: usize = 1024;

/// The engine's one outlet for events: metrics and notifiers.
pub struct Events {
    metrics: Arc<Metrics>,
    sinks: Vec<Sink>,
    /// Why a streamer taken off will be off air when the cut comes: the
    /// decision comes first, the cut (on the next keyframe) after.
    reasons: HashMap<String, OffAirReason>,
    /// OBS was reported lost and not back yet: "back" follows a loss only
    /// (not the first connection, nor one after OBS control was off).
    obs_lost: bool,
}

impl Events {
    pub fn new(metrics: Arc<Metrics>, sinks: Vec<Sink>) -> Events {
        Events {
            metrics,
            sinks,
            reasons: HashMap::new(),
            obs_lost: false,
        }
    }

    /// Count and notify; never blocks.
    pub fn emit(&mut self, ev: Event) {
        match ev {
            Event::ObsLost { .. } => self.obs_lost = true,
            Event::ObsBack if !std::mem::take(&mut self.obs_lost) => return,
            _ => {}
        }
        if let Some((name, reason)) = ev.off_air_reason() {
            if self.reasons.len() >= MAX_REASONS {
                self.reasons.clear();
            }
            self.reasons.insert(name.to_string(), reason);
        }
        if let Event::OnAir { name, .. } = &ev {
            self.reasons.remove(name);
        }
        self.metrics.observe(&ev);
        if self.sinks.is_empty() {
            return;
        }
        let ev = Arc::new(ev);
        for s in &mut self.sinks {
            s.offer(&ev);
        }
    }

    /// Why `name`, leaving the output now, went off (what the last event
    /// about them said; else someone else was put on air).
    pub fn off_air_reason(&mut self, name: &str) -> OffAirReason {
        self.reasons.remove(name).unwrap_or(OffAirReason::Replaced)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new(Arc::new(Metrics::new()), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_air_reason_is_what_the_last_event_said() {
        let mut e = Events::default();
        e.emit(Event::SlotEnded { name: "A".into() });
        e.emit(Event::Kicked {
            name: "B".into(),
            seconds: Some(60),
        });
        assert_eq!(e.off_air_reason("A"), OffAirReason::SlotEnded);
        assert_eq!(e.off_air_reason("A"), OffAirReason::Replaced, "used once");
        assert_eq!(e.off_air_reason("B"), OffAirReason::Kicked);
        assert_eq!(e.off_air_reason("C"), OffAirReason::Replaced);
        // Going on air again forgets a stale reason.
        e.emit(Event::Left { name: "D".into() });
        e.emit(Event::OnAir {
            name: "D".into(),
            slot_seconds: None,
            next: None,
            switch_latency: Duration::ZERO,
        });
        assert_eq!(e.off_air_reason("D"), OffAirReason::Replaced);
    }

    #[test]
    fn obs_is_back_only_after_it_was_lost() {
        let metrics = Arc::new(Metrics::new());
        let mut e = Events::new(metrics.clone(), Vec::new());
        let back = |m: &Metrics| {
            m.render(&crate::engine::View::default(), 0)
                .lines()
                .find_map(|l| {
                    l.strip_prefix("motherstream_events_total{kind=\"obs_back\"} ")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "0".into())
        };
        // The first connection (OBS was not up when the daemon started).
        e.emit(Event::ObsBack);
        assert_eq!(back(&metrics), "0");
        e.emit(Event::ObsLost { reason: "x".into() });
        e.emit(Event::ObsBack);
        e.emit(Event::ObsBack);
        assert_eq!(back(&metrics), "1", "once per loss");
    }

    #[test]
    fn every_kind_is_listed() {
        let evs = [
            Event::OutputRecovered,
            Event::ObsBack,
            Event::GaveUp { name: "x".into() },
            Event::Unstable {
                name: "x".into(),
                state: "stalled",
                detail: String::new(),
                on_air: true,
            },
            Event::Back {
                name: "x".into(),
                after: Duration::ZERO,
                on_air: false,
            },
        ];
        for ev in evs {
            assert!(KINDS.contains(&ev.kind()));
        }
        assert_eq!(KINDS.len(), 17);
    }
}
