//! What the engine tells systemd (STATUS=) and OBS (the broadcast state).

use std::time::{Duration, UNIX_EPOCH};

use super::{Engine, STATUS_REFRESH};
use crate::key::StreamKey;
use crate::moderation;
use crate::obs::{BroadcastState, ObsStatus};
use crate::relay;

impl Engine {
    pub(super) fn sync_obs(&mut self) {
        if !self.obs.running() {
            return;
        }
        let shown = self.on_screen_key();
        let e = self.state.entries();
        let mut order: Vec<&StreamKey> = Vec::with_capacity(2);
        if let Some(k) = &shown {
            order.push(k);
        }
        for x in e.iter().take(2) {
            if order.len() < 2 && !order.contains(&&x.key) {
                order.push(&x.key);
            }
        }
        let want = BroadcastState {
            on_air: order.first().map(|k| self.display(k)),
            next_up: order.get(1).map(|k| self.display(k)),
            switch_seq: match self.relay.mode() {
                relay::Mode::Splice => self.cuts.count(),
                relay::Mode::Restart => self.state.switch_seq(),
            },
            slot_ends_at: moderation::slot_ends_at(
                &self.state,
                self.registry.get(),
                &self.policy(),
            )
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        };
        self.obs.show(want);
    }

    pub(super) fn refresh_status(&mut self) {
        let line = self.status_line(self.clock.unix_ms());
        self.notifier.status(&line);
        self.next_status = self.clock.now() + STATUS_REFRESH;
    }

    pub(super) fn status_line(&self, now_ms: u64) -> String {
        let mut parts = Vec::new();
        match self.on_screen_key() {
            Some(k) => {
                let since = if self.state.head().is_some_and(|h| h.key == k) {
                    self.state.on_air_since().unwrap_or(now_ms)
                } else {
                    now_ms
                };
                let mins = now_ms.saturating_sub(since) / 60_000;
                parts.push(format!("on air: {} for {mins}m", self.display(&k)));
            }
            None => parts.push("nobody on air".into()),
        }
        parts.push(format!("{} waiting", self.state.len().saturating_sub(1)));
        parts.push(
            match self.relay.view().state {
                "live" => "relay ok",
                "starting" => "relay starting",
                "switching" => "relay switching",
                "stopping" => "relay switching",
                "backoff" => "relay restarting",
                "slate" => "slate on air",
                _ => "relay idle",
            }
            .to_string(),
        );
        if let Some(c) = self.cuts.last() {
            parts.push(c.clone());
        }
        if self.cfg.obs.enabled {
            parts.push(if self.obs.view().connected {
                "obs connected".into()
            } else {
                "obs disconnected".into()
            });
        }
        if self.store_failed {
            parts.push("STATE NOT SAVED".into());
        }
        parts.join(" · ")
    }

    pub(super) fn on_obs_status(&mut self, st: ObsStatus) {
        if let Some(ev) = self.obs.on_status(st) {
            self.emit(ev);
        }
        self.publish_view();
        self.refresh_status();
    }
}
