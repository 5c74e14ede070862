//! What happens on the channel, as operators' tools hear it: an [`Event`]
//! at the few places where something happens (a cut, a join, a kick, a
//! failure), and its [`EventKind`], the name `[[notify]] events` and the
//! metrics use. A leaf: the engine's hub that emits events lives in
//! `engine/events.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a streamer went off air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OffAirReason {
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
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn describe(self) -> &'static str {
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
pub(crate) enum Event {
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

/// Every kind of [`Event`], as `[[notify]] events` and the metrics name
/// it (`on_air`, `relay_failed`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub(crate) enum EventKind {
    OnAir,
    OffAir,
    Joined,
    Left,
    Kicked,
    Blocked,
    Skipped,
    SlotEnded,
    GaveUp,
    Unstable,
    Back,
    RelayFailed,
    RelayRecovered,
    OutputFailed,
    OutputRecovered,
    ObsLost,
    ObsBack,
}

impl EventKind {
    /// Every kind, in the order the docs list them.
    pub(crate) const ALL: [EventKind; 17] = [
        EventKind::OnAir,
        EventKind::OffAir,
        EventKind::Joined,
        EventKind::Left,
        EventKind::Kicked,
        EventKind::Blocked,
        EventKind::Skipped,
        EventKind::SlotEnded,
        EventKind::GaveUp,
        EventKind::Unstable,
        EventKind::Back,
        EventKind::RelayFailed,
        EventKind::RelayRecovered,
        EventKind::OutputFailed,
        EventKind::OutputRecovered,
        EventKind::ObsLost,
        EventKind::ObsBack,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::OnAir => "on_air",
            EventKind::OffAir => "off_air",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::Kicked => "kicked",
            EventKind::Blocked => "blocked",
            EventKind::Skipped => "skipped",
            EventKind::SlotEnded => "slot_ended",
            EventKind::GaveUp => "gave_up",
            EventKind::Unstable => "unstable",
            EventKind::Back => "back",
            EventKind::RelayFailed => "relay_failed",
            EventKind::RelayRecovered => "relay_recovered",
            EventKind::OutputFailed => "output_failed",
            EventKind::OutputRecovered => "output_recovered",
            EventKind::ObsLost => "obs_lost",
            EventKind::ObsBack => "obs_back",
        }
    }
}

impl From<EventKind> for &'static str {
    fn from(k: EventKind) -> &'static str {
        k.as_str()
    }
}

/// How an unknown name in `[[notify]] events` is refused.
impl TryFrom<String> for EventKind {
    type Error = String;

    fn try_from(name: String) -> Result<EventKind, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event {name:?} (known: {})", known.join(", "))
            })
    }
}

impl Event {
    pub(crate) fn kind(&self) -> EventKind {
        match self {
            Event::OnAir { .. } => EventKind::OnAir,
            Event::OffAir { .. } => EventKind::OffAir,
            Event::Joined { .. } => EventKind::Joined,
            Event::Left { .. } => EventKind::Left,
            Event::Kicked { .. } => EventKind::Kicked,
            Event::Blocked { .. } => EventKind::Blocked,
            Event::Skipped { .. } => EventKind::Skipped,
            Event::SlotEnded { .. } => EventKind::SlotEnded,
            Event::GaveUp { .. } => EventKind::GaveUp,
            Event::Unstable { .. } => EventKind::Unstable,
            Event::Back { .. } => EventKind::Back,
            Event::RelayFailed { .. } => EventKind::RelayFailed,
            Event::RelayRecovered { .. } => EventKind::RelayRecovered,
            Event::OutputFailed { .. } => EventKind::OutputFailed,
            Event::OutputRecovered => EventKind::OutputRecovered,
            Event::ObsLost { .. } => EventKind::ObsLost,
            Event::ObsBack => EventKind::ObsBack,
        }
    }

    /// The reason a later off-air of this streamer will carry.
    pub(crate) fn off_air_reason(&self) -> Option<(&str, OffAirReason)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_named_as_configured() {
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
            assert!(EventKind::ALL.contains(&ev.kind()));
        }
        let names: std::collections::HashSet<&str> =
            EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 17);
        for k in EventKind::ALL {
            assert_eq!(EventKind::try_from(k.as_str().to_string()), Ok(k));
        }
        let e = EventKind::try_from("nope".to_string()).unwrap_err();
        assert!(
            e.starts_with("unknown event \"nope\" (known: on_air, off_air, "),
            "{e}"
        );
    }
}
