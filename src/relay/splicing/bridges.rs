//! Bridge encoders (module doc of `relay::splice`): one per source that
//! wants one, fed what the splicer hands out, stopped when not needed.

use std::time::Instant;

use super::*;

impl SpliceRelay {
    /// Start and stop bridge encoders: the on-air and the next streamer may
    /// have one, while the splicer wants one for them (long keyframe
    /// interval, not yet on air on their own frames).
    pub(super) fn reconcile_bridges(&mut self, now: Instant) {
        let wanted = self.wanted_keys();
        let eligible: Vec<(SourceId, String)> = if self.spec.bridge {
            self.slots
                .iter()
                .filter(|s| s.source.is_some() && wanted.iter().any(|(k, _)| *k == s.key))
                .map(|s| (s.id, s.name.clone()))
                .collect()
        } else {
            Vec::new()
        };
        // The one shown through their bridge keeps it until the cut away
        // from them, wanted by the queue or not (skipped: stopping it left
        // the output waiting for their own keyframe, the picture frozen
        // until the cut, 0.3 s measured).
        let showing = self.splicer.active().filter(|_| !self.want.stopping);
        let running: Vec<SourceId> = self.bridges.keys().copied().collect();
        for id in running {
            let current = self
                .bridges
                .get(&id)
                .is_some_and(|b| b.epoch == self.splicer.bridge_epoch(id));
            let needed = eligible.iter().any(|(e, _)| *e == id) || showing == Some(id);
            let keep = current && needed && self.splicer.bridge_wanted(id);
            if !keep {
                let why = if current {
                    "not needed any more"
                } else {
                    "their stream's clock restarted"
                };
                self.stop_bridge(id, why);
            }
        }
        self.bridge_retry.retain(|_, t| now < *t);
        if self.bridges_settle_until.is_some_and(|t| now < t) {
            return;
        }
        for (id, name) in eligible {
            if self.bridges.contains_key(&id)
                || self.bridge_retry.contains_key(&id)
                || !self.splicer.bridge_wanted(id)
            {
                continue;
            }
            let epoch = self.splicer.bridge_epoch(id);
            match Bridge::spawn(&self.spec, id, epoch, &name, self.events.clone()) {
                Ok(b) => {
                    let gop = self
                        .splicer
                        .gop_ms(id)
                        .map_or("not known yet".to_string(), |g| {
                            format!("{:.1} s", g as f64 / 1000.0)
                        });
                    log::info!(
                        "bridge encoder for {name} started (pid {}): their keyframe interval is {gop}",
                        b.pid
                    );
                    self.bridges.insert(id, b);
                    self.splicer.set_bridge(id, true);
                }
                Err(e) => {
                    log::error!(
                        "cannot start a bridge encoder {:?} for {name}: {e}; cuts to them wait for their keyframe",
                        self.spec.ffmpeg
                    );
                    self.bridge_retry.insert(id, now + BRIDGE_RETRY);
                }
            }
        }
        self.route_feed(now);
    }

    /// Hand the splicer's feed to the bridge encoders; one that cannot keep
    /// up is stopped (and retried later).
    pub(super) fn route_feed(&mut self, now: Instant) {
        let mut slow = Vec::new();
        for (id, tag) in self.splicer.take_feed() {
            if let Some(b) = self.bridges.get_mut(&id) {
                if !b.write(tag) && !slow.contains(&id) {
                    slow.push(id);
                }
            }
        }
        for id in slow {
            log::warn!(
                "the bridge encoder for {} is not keeping up; stopping it",
                self.name_of(id)
            );
            self.stop_bridge(id, "too slow");
            self.bridge_retry.insert(id, now + BRIDGE_RETRY);
        }
    }

    pub(super) fn stop_bridge(&mut self, id: SourceId, why: &str) {
        let Some(b) = self.bridges.remove(&id) else {
            return;
        };
        self.splicer.set_bridge(id, false);
        let pid = b.pid;
        let (cpu, ran) = b.stop();
        let cpu = cpu.map_or("?".to_string(), |c| {
            format!(
                "{c:.1} s of CPU in {ran:.1} s ({:.0} % of a core)",
                100.0 * c / ran.max(0.001)
            )
        });
        log::info!(
            "bridge encoder for {} stopped (pid {pid}, {why}): {cpu}",
            self.name_of(id)
        );
    }
}
