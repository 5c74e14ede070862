//! The engine's one outlet for events: each [`Event`] the engine emits is
//! counted in the metrics and offered to every notifier. Offering never
//! blocks: a notifier whose queue is full loses the event (counted), the
//! switch goes on.

use std::collections::HashMap;
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;

use crate::events::{Event, OffAirReason};
use crate::metrics::Metrics;
use crate::notify::Sink;

/// Reasons remembered at most (a streamer taken off while not on screen
/// leaves one behind until they go on air again).
const MAX_REASONS: usize = 1024;

/// Metrics and notifiers, fed by [`Events::emit`].
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
    pub(crate) fn emit(&mut self, ev: Event) {
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
    pub(crate) fn off_air_reason(&mut self, name: &str) -> OffAirReason {
        self.reasons.remove(name).unwrap_or(OffAirReason::Replaced)
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
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
            m.render(&crate::view::View::default(), 0)
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
}
