//! The engine's publishing of the read model (`src/view.rs`): after every
//! change it builds a new [`View`] from its state and swaps it in whole.

use std::sync::{Arc, OnceLock};

use super::Engine;
use crate::key::StreamKey;
use crate::moderation;
use crate::relay;
use crate::view::{Names, OnAirView, View};

impl Engine {
    /// The names for a new view: the last ones extended when streamers only
    /// joined at the end since, else rebuilt.
    pub(super) fn sync_names(&mut self) -> Arc<Names> {
        let gen = (self.state.reorder_gen(), self.registry.gen());
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
            obs: self.obs.view().clone(),
            started_at_ms: self.started_at_ms,
            slot_ends_at_ms: moderation::slot_ends_at(&self.state, self.registry.get(), &policy),
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
            last_cut: self.cuts.last().cloned(),
            recordings: self.recorder.as_ref().map(|r| r.status()),
            pages: self.registry.pages(),
            health: self.health_view(),
            queue_json: OnceLock::new(),
        };
        self.view.publish(view);
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
