//! What the relay's threads report, one handler each: a source's tag
//! (health, first keyframe, then the splicer), a source that ended (read
//! again with back-off, or given up), the output ffmpeg that exited
//! (restarted with back-off), a bridge encoder's tag or exit.

use std::time::Instant;

use super::*;

impl SpliceRelay {
    pub(super) fn handle_event(&mut self, ev: RelayEvent, now: Instant, notices: &mut Vec<Notice>) {
        self.report_output(now, notices);
        match ev {
            RelayEvent::Tag {
                source,
                tag,
                arrival,
            } => self.on_source_tag(source, tag, arrival, now, notices),
            RelayEvent::SourceEnded { source, reason } => {
                self.on_source_ended(source, &reason, now, notices)
            }
            RelayEvent::OutputExited { run, tail } => {
                self.on_output_exited(run, &tail, now, notices)
            }
            RelayEvent::BridgeTag {
                source,
                pid,
                tag,
                arrival,
            } => {
                if self.bridges.get(&source).map(|b| b.pid) != Some(pid) {
                    return;
                }
                let at = self.ms(arrival);
                self.splicer
                    .push_bridge(source, tag, at, &mut self.out, &mut self.evs);
                self.after_splice(now, notices);
            }
            RelayEvent::BridgeExited { source, pid, why } => {
                if self.bridges.get(&source).map(|b| b.pid) != Some(pid) {
                    return;
                }
                log::warn!(
                    "the bridge encoder for {} ended ({why}); trying again in {} s",
                    self.name_of(source),
                    BRIDGE_RETRY.as_secs()
                );
                self.stop_bridge(source, "it ended");
                self.bridge_retry.insert(source, now + BRIDGE_RETRY);
                self.after_splice(now, notices);
            }
            RelayEvent::Progress { .. } | RelayEvent::Exited { .. } => {}
        }
    }

    /// A streamer's tag: first tag and keyframe noted, health updated and
    /// reported, then on to the splicer.
    fn on_source_tag(
        &mut self,
        source: SourceId,
        tag: Tag,
        arrival: Instant,
        now: Instant,
        notices: &mut Vec<Notice>,
    ) {
        let Some(Owner::Streamer(key)) = self.owners.get(&source) else {
            return;
        };
        let key = key.clone();
        let mut first_keyframe = false;
        let mut health_changed = false;
        let mut wellness_changed = false;
        let mut back = 0;
        if let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.key == key && s.id == source)
        {
            if s.live_since.is_none() {
                s.live_since = Some(arrival);
                back = s.failures;
                log::debug!(
                    "{}: first tag {} ms after the reader started",
                    s.name,
                    s.source
                        .as_ref()
                        .map_or(0, |x| arrival.duration_since(x.started).as_millis())
                );
            }
            if tag.is_keyframe() && !s.keyframe_seen {
                s.keyframe_seen = true;
                first_keyframe = true;
            }
            let at = arrival.saturating_duration_since(self.epoch).as_millis() as u64;
            let was = s.health.state();
            if let Some(new) = s.health.tag(&tag, at) {
                health_changed = true;
                wellness_changed = was.unhealthy() != new.unhealthy();
            }
            if health_changed || at >= s.next_report_ms {
                s.next_report_ms = at + REPORT_EVERY_MS;
                notices.push(Notice::Health {
                    key: key.clone(),
                    report: s.health.report(at),
                    changed: health_changed,
                });
            }
            if s.failures > 0
                && s.live_since
                    .is_some_and(|t| now.duration_since(t) > HEALTHY_AFTER)
            {
                s.failures = 0;
            }
        }
        if self.on_screen.as_ref() == Some(&key) && self.let_go_mono_ms.is_some() {
            self.resumed_first_tag();
        }
        if back > 0 {
            notices.push(Notice::SourceBack {
                key: key.clone(),
                failures: back,
            });
        }
        let at = self.ms(arrival);
        self.splicer
            .push(source, tag, at, &mut self.out, &mut self.evs);
        self.after_splice(now, notices);
        if first_keyframe || wellness_changed {
            // A source that was waited for may now be cut to (or
            // from, to its card, or back).
            self.choose(now, notices);
        }
    }

    /// A streamer's reader ended: read again after a back-off while they
    /// are wanted; on air and failing too often, give up on them.
    fn on_source_ended(
        &mut self,
        source: SourceId,
        reason: &str,
        now: Instant,
        notices: &mut Vec<Notice>,
    ) {
        let Some(Owner::Streamer(key)) = self.owners.remove(&source) else {
            return;
        };
        let was_active = self.splicer.active() == Some(source);
        self.stop_bridge(source, "their stream ended");
        self.splicer.remove_source(source);
        let still_wanted = self.wanted_keys().iter().any(|(k, _)| *k == key);
        let on_air = self.want.on_air.as_ref().is_some_and(|s| s.key == key);
        if was_active && on_air {
            self.hold_until = Some(now + HOLD_AFTER_END);
        }
        let max = self.spec.max_failures;
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.key == key && s.id == source)
        {
            if !still_wanted {
                self.slots.remove(i);
            } else {
                let s = &mut self.slots[i];
                s.source = None;
                s.failures += 1;
                notices.push(Notice::SourceFailed {
                    key: key.clone(),
                    why: reason.to_string(),
                    failures: s.failures,
                });
                let d = backoff(s.failures);
                if on_air && s.failures >= max {
                    log::error!(
                        "{}'s stream failed {} times in a row ({reason}); skipping to the next streamer",
                        s.name,
                        s.failures
                    );
                    notices.push(Notice::GiveUp { key: key.clone() });
                    s.retry_at = Some(now + d);
                } else {
                    log::warn!(
                        "{}'s stream ended ({reason}); reading it again in {:.1} s ({}/{max})",
                        s.name,
                        d.as_secs_f64(),
                        s.failures
                    );
                    s.retry_at = Some(now + d);
                }
            }
        }
        self.reconcile(now, notices);
    }

    /// The output ffmpeg exited: restart it after a back-off (unless the
    /// relay is stopping).
    fn on_output_exited(
        &mut self,
        run: u64,
        tail: &[String],
        now: Instant,
        notices: &mut Vec<Notice>,
    ) {
        if self.output.as_ref().map(|o| o.run) != Some(run) {
            return;
        }
        let Some(o) = self.output.take() else { return };
        let uptime = now.duration_since(o.started);
        let status = describe_exit(o.reap());
        if self.output_closing {
            log::debug!("output stopped ({status})");
            return;
        }
        if uptime > HEALTHY_AFTER {
            self.output_failures = 0;
        }
        self.output_failures += 1;
        self.output_restarts += 1;
        let d = backoff(self.output_failures);
        log::warn!(
            "the relay's output ffmpeg exited ({status}) after {:.1} s; OBS sees a reconnect; restarting it in {:.1} s; last ffmpeg output:{}",
            uptime.as_secs_f64(),
            d.as_secs_f64(),
            format_tail(tail)
        );
        self.output_retry_at = Some(now + d);
        if !self.output_down {
            self.output_down = true;
            notices.push(Notice::OutputFailed {
                why: format!("ffmpeg exited ({status})"),
            });
        } else {
            notices.push(Notice::OutputFailedAgain);
        }
    }
}

impl SpliceRelay {
    /// Turn splicer events into notices and write its output.
    pub(super) fn after_splice(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        self.flush(now);
        for ev in std::mem::take(&mut self.evs) {
            match ev {
                Event::Cut { to, how, .. } => {
                    self.bridges_settle_until = Some(now + BRIDGE_SETTLE);
                    let to_key = match self.owners.get(&to) {
                        Some(Owner::Streamer(k)) => Some(k.clone()),
                        // Their card stands for them: still on air.
                        Some(Owner::Card(k)) => {
                            log::info!(
                                "{}'s stream does not come through: the be-right-back card is on",
                                self.name_of_key(k)
                            );
                            continue;
                        }
                        _ => None,
                    };
                    if to_key.is_some() && to_key == self.on_screen {
                        log::info!(
                            "{} is back on screen on their keyframe",
                            to_key
                                .as_ref()
                                .map_or(String::new(), |k| self.name_of_key(k))
                        );
                        self.stop_idle_players();
                        continue;
                    }
                    let from = self.on_screen.take();
                    self.on_screen = to_key.clone();
                    let waited = self
                        .switch_at
                        .take()
                        .map_or(Duration::ZERO, |t| now.duration_since(t));
                    notices.push(Notice::Cut {
                        from,
                        to: to_key,
                        how: how.into(),
                        waited,
                    });
                    // The old source may now stop if nobody wants it.
                    self.reconcile_sources_only();
                }
                Event::BridgeHandover {
                    source,
                    frames,
                    lift_ms,
                    lag_ms,
                } => {
                    log::info!(
                        "{}'s own keyframe took over from the bridge after {frames} bridge frames (bridge latency {lag_ms} ms, timeline lifted {lift_ms} ms)",
                        self.name_of(source)
                    );
                }
                Event::Unsupported { source, what } => {
                    if let Some(Owner::Streamer(k)) = self.owners.get(&source) {
                        if !self.warned_unsupported.contains(k) {
                            self.warned_unsupported.push(k.clone());
                            let name = self
                                .slots
                                .iter()
                                .find(|s| s.key == *k)
                                .map_or("a streamer".to_string(), |s| s.name.clone());
                            log::warn!(
                                "{name}'s stream cannot be spliced ({what}): only H.264 video with AAC audio can; set [relay] mode = \"restart\" for such streams"
                            );
                        }
                    }
                }
            }
        }
        self.reconcile_bridges(now);
    }
}
