//! Publishers the engine disconnects through nginx's control module: those
//! a saved batch took off, and those still on screen, who go at the cut
//! away from them (or after `DROP_AFTER_CUT_MAX` at the latest).

use std::time::{Duration, Instant};

use super::ports::ControlPort;
use crate::key::StreamKey;

/// A publisher taken off while on screen is disconnected at the cut, or
/// after this long at the latest.
const DROP_AFTER_CUT_MAX: Duration = Duration::from_secs(10);

pub(super) struct Drops {
    /// Disconnects publishers, off-thread (None: it could not start).
    control: Option<Box<dyn ControlPort>>,
    /// `[rtmp] ingest_app` (fixed until a restart).
    app: String,
    /// Taken off by the batch being decided: dropped once it is saved.
    pending: Vec<StreamKey>,
    /// Taken off while on screen: they keep playing until the cut.
    after_cut: Vec<(StreamKey, Instant)>,
}

impl Drops {
    pub(super) fn new(app: &str) -> Self {
        Drops {
            control: None,
            app: app.to_string(),
            pending: Vec::new(),
            after_cut: Vec::new(),
        }
    }

    /// The control thread, started once the engine is set up.
    pub(super) fn attach(&mut self, control: Box<dyn ControlPort>) {
        self.control = Some(control);
    }

    /// Disconnect `key` once the batch that took them off is saved.
    pub(super) fn queue(&mut self, key: StreamKey) {
        self.pending.push(key);
    }

    /// The batch was not saved: they stay connected.
    pub(super) fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// The batch was saved: disconnect its publishers, but the one still
    /// on the output (`on_screen`) only at the cut away from them.
    pub(super) fn run(
        &mut self,
        on_screen: Option<&StreamKey>,
        now: Instant,
        name: impl Fn(&StreamKey) -> String,
    ) {
        for key in std::mem::take(&mut self.pending) {
            if on_screen == Some(&key) {
                // They keep playing until the cut to the next streamer
                // (their keyframe), then go.
                self.after_cut.push((key, now));
                continue;
            }
            self.disconnect(&key, &name(&key));
        }
    }

    /// `key` is off screen now: disconnected if they were waiting for it.
    pub(super) fn release(&mut self, key: &StreamKey, name: impl FnOnce() -> String) {
        if let Some(i) = self.after_cut.iter().position(|(k, _)| k == key) {
            self.after_cut.remove(i);
            self.disconnect(key, &name());
        }
    }

    /// When the longest-waiting publisher is disconnected, cut or not.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.after_cut
            .first()
            .map(|(_, at)| *at + DROP_AFTER_CUT_MAX)
    }

    /// The next publisher kept too long for a cut at `now`.
    pub(super) fn overdue(&self, now: Instant) -> Option<StreamKey> {
        self.after_cut
            .first()
            .filter(|(_, at)| now >= *at + DROP_AFTER_CUT_MAX)
            .map(|(k, _)| k.clone())
    }

    fn disconnect(&self, key: &StreamKey, who: &str) {
        if let Some(c) = &self.control {
            c.drop_publisher(&self.app, key, who);
        }
    }

    pub(super) fn shutdown(&mut self) {
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
    }
}
