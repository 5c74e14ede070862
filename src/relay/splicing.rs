//! Splice mode: sources, the persistent output, the slate and the splicer,
//! driven by "on air: X, next: Y".
//!
//! What it decides, on every call:
//! * which sources run: the on-air and the next streamer, each read from
//!   the moment they are wanted (a source that ends while still wanted is
//!   restarted with backoff; the on-air one given up after `max_failures`);
//! * what the output should show: the on-air streamer's source, else the
//!   slate; a switch is planned (cut on the new source's keyframe) while
//!   the old source still delivers, forced (catch up) once it is gone;
//! * the output ffmpeg: started at once, restarted only when it dies or
//!   stops reading (then, and only then, OBS sees a reconnect).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::brb::Cards;
use super::bridge::Bridge;
use super::flv::Tag;
use super::health::{self, Health};
use super::output::Output;
use super::slate::{self, Clip, Player};
use super::source::{Source, SourceSpec};
use super::splice::{self, Event, SourceId, Splicer, SwitchKind};
use super::{
    backoff, describe_exit, format_tail, rtmp_url, Mode, Notice, Relay, RelayEvent, RelaySpec,
    RelayView, Want,
};
use crate::key::StreamKey;

mod bridges;
mod events;
mod handover;
mod out;
mod players;
pub(super) use handover::take_carried;
pub(crate) use handover::{inherit, RelayCarry};

/// A source that delivered media this long is healthy again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// How long the last picture is held when the on-air stream ends before the
/// engine names a successor (nginx's publish_done: 25-55 ms measured).
const HOLD_AFTER_END: Duration = Duration::from_millis(300);
/// A restarted output that has run this long counts as back.
const OUTPUT_BACK_AFTER: Duration = Duration::from_secs(3);
/// The slate's tags are sent in batches at most this often (wakeups).
const SLATE_TICK: Duration = Duration::from_millis(100);
/// A bridge encoder that failed (or could not keep up) is retried after
/// this.
const BRIDGE_RETRY: Duration = Duration::from_secs(5);
/// No bridge encoder starts this soon after a cut: a starting bridge
/// encodes the streamer's buffered GOP as fast as it can, and one started
/// at the moment of a cut (for the streamer just taken off air) went with
/// a 0.20 s frame gap at the viewer on a loaded 2-core machine (bridges
/// for 2 s streams, tests/it/splice.rs moves; with this wait 3 of 3 runs kept
/// every gap under 0.08 s).
const BRIDGE_SETTLE: Duration = Duration::from_millis(500);
/// A reader that gets nothing for this long reconnects. Splice mode judges
/// stalls by [`health`] within a second and shows the card; the reader
/// keeps the connection (and the stream's history) as long as nginx does.
const READER_IDLE: Duration = Duration::from_secs(120);
/// Back from the card with a catch-up when their last keyframe is at most
/// this far back (source time), else on their next keyframe.
const BACK_CATCH_UP_MS: u64 = 500;
/// Fresh figures of a read stream are reported this often.
const REPORT_EVERY_MS: u64 = 1000;

struct Slot {
    key: StreamKey,
    name: String,
    id: SourceId,
    source: Option<Source>,
    /// Restart after this (the source ended while still wanted).
    retry_at: Option<Instant>,
    failures: u32,
    /// When its current run delivered its first tag.
    live_since: Option<Instant>,
    keyframe_seen: bool,
    /// How their stream comes through (kept across reader restarts).
    health: Health,
    next_report_ms: u64,
}

pub(crate) struct SpliceRelay {
    spec: RelaySpec,
    events: Sender<RelayEvent>,
    secret: String,
    epoch: Instant,
    splicer: Splicer,
    output: Option<Output>,
    output_run: u64,
    output_retry_at: Option<Instant>,
    output_failures: u32,
    output_restarts: u32,
    /// Stopping: the output was asked to finish.
    output_closing: bool,
    slots: Vec<Slot>,
    /// Source id → what it is (streamer key, or the slate).
    owners: HashMap<SourceId, Owner>,
    next_id: SourceId,
    clip: Option<Arc<Clip>>,
    slate: Option<(SourceId, Player)>,
    last_slate_tick: Instant,
    want: Want,
    /// What the output shows (None: slate or nothing).
    on_screen: Option<StreamKey>,
    /// When the current switch was decided (for "waited").
    switch_at: Option<Instant>,
    /// The on-air stream ended before the engine said who is next: no
    /// slate until then (see `choose`).
    hold_until: Option<Instant>,
    out: Vec<Tag>,
    evs: Vec<Event>,
    warned_unsupported: Vec<StreamKey>,
    /// Notices raised where no notice list is at hand (starting the
    /// output); handed over at the next event or tick.
    pending: Vec<Notice>,
    /// An output failure was reported and no recovery yet.
    output_down: bool,
    /// After a hand-over: the streamer the output showed, on air again as
    /// soon as their source is read (see `handover`).
    resume_on_screen: Option<StreamKey>,
    resume_gop_ms: Option<u64>,
    /// Hand-over timing: when the old binary let go (until the resumed
    /// source's first tag), and the measured lag (see `handover`).
    let_go_mono_ms: Option<u64>,
    resume_lag_ms: Option<u64>,
    /// Hand-over: sessions the readers let go of (old binary), and the
    /// ones carried in, until a reader takes them (new binary).
    detached: Vec<(StreamKey, crate::relay::source::SessionCarry)>,
    carried: Vec<handover::CarriedSource>,
    /// Bridge encoders by source (`relay/bridge.rs`): the next streamer's
    /// (and the on-air one's until their own keyframe) when their
    /// keyframes are far apart.
    bridges: HashMap<SourceId, Bridge>,
    bridge_retry: HashMap<SourceId, Instant>,
    /// No bridge starts until then (`BRIDGE_SETTLE` after the last cut).
    bridges_settle_until: Option<Instant>,
    /// Be-right-back cards, and the one playing (for whom).
    cards: Cards,
    card: Option<(SourceId, Player, StreamKey)>,
    last_card_tick: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Streamer(StreamKey),
    Slate,
    /// The be-right-back card of this streamer.
    Card(StreamKey),
}

impl SpliceRelay {
    pub(crate) fn new(spec: RelaySpec, events: Sender<RelayEvent>) -> SpliceRelay {
        let clip = match SpliceRelay::carried_clip(&spec).map_or_else(
            || {
                slate::make(
                    &spec.ffmpeg,
                    &spec.slate,
                    &spec.slate_text,
                    &spec.work_dir,
                    Duration::from_secs(20),
                )
            },
            Ok,
        ) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                log::error!("no slate: {e}; the output shows nothing while nobody is on air");
                None
            }
        };
        let now = Instant::now();
        let cards = Cards::new(&spec.ffmpeg, &spec.brb, spec.work_dir.clone());
        let mut r = SpliceRelay {
            splicer: Splicer::new(splice::Config {
                planned_timeout_ms: spec.cut_timeout.map(|d| d.as_millis() as u64),
                max_buffer_ms: 10_000,
            }),
            spec,
            events,
            secret: String::new(),
            epoch: now,
            output: None,
            output_run: 0,
            output_retry_at: None,
            output_failures: 0,
            output_restarts: 0,
            output_closing: false,
            slots: Vec::new(),
            owners: HashMap::new(),
            next_id: 1,
            clip,
            slate: None,
            last_slate_tick: now,
            want: Want::default(),
            on_screen: None,
            switch_at: None,
            hold_until: None,
            out: Vec::new(),
            evs: Vec::new(),
            warned_unsupported: Vec::new(),
            pending: Vec::new(),
            output_down: false,
            resume_on_screen: None,
            resume_gop_ms: None,
            let_go_mono_ms: None,
            resume_lag_ms: None,
            detached: Vec::new(),
            carried: Vec::new(),
            bridges: HashMap::new(),
            bridge_retry: HashMap::new(),
            bridges_settle_until: None,
            cards,
            card: None,
            last_card_tick: now,
        };
        match handover::take_carried() {
            Some(c) => {
                if let Err(e) = r.resume_from(c.clone()) {
                    log::error!("{e}; starting a new output (OBS sees a reconnect)");
                    crate::sys::signal_group(c.output.pid, libc::SIGKILL);
                    crate::sys::fds::kill_and_reap(c.output.pid);
                    r.start_output(now);
                }
            }
            None => r.start_output(now),
        }
        r
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn output_url(&self) -> String {
        format!(
            "{}?ms_secret={}",
            rtmp_url(&self.spec, &self.spec.output_app, &self.spec.output_stream),
            self.secret
        )
    }

    fn wanted_keys(&self) -> Vec<(StreamKey, String)> {
        if self.want.stopping {
            return Vec::new();
        }
        let mut v = Vec::new();
        for s in [&self.want.on_air, &self.want.next].into_iter().flatten() {
            if !v.iter().any(|(k, _)| *k == s.key) {
                v.push((s.key.clone(), s.name.clone()));
            }
        }
        v
    }

    fn reconcile(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        let now_ms = self.ms(now);
        let wanted = self.wanted_keys();
        // Sources no longer wanted stop (after the cut away from them: a
        // source on screen keeps playing until the new one's keyframe).
        self.stop_unwanted(&wanted);
        for (key, name) in &wanted {
            if let Some(slot) = self.slots.iter_mut().find(|s| s.key == *key) {
                slot.name = name.clone();
            } else {
                self.slots.push(Slot {
                    key: key.clone(),
                    name: name.clone(),
                    id: 0,
                    source: None,
                    retry_at: None,
                    failures: 0,
                    live_since: None,
                    keyframe_seen: false,
                    health: Health::new(self.spec.health.clone(), now_ms),
                    next_report_ms: now_ms + REPORT_EVERY_MS,
                });
                // Made now, so it is ready before it is needed.
                self.cards.prepare(name);
            }
        }
        for i in 0..self.slots.len() {
            let due = self.slots[i].retry_at.map_or(true, |t| now >= t);
            if self.slots[i].source.is_none() && due {
                self.start_source(i, now);
            }
        }
        if self.want.stopping {
            self.stop_slate();
            self.reconcile_bridges(now);
            if let Some(o) = &mut self.output {
                if !self.output_closing {
                    self.output_closing = true;
                    o.finish();
                    // ffmpeg flushes and exits on EOF; make sure it does.
                    let pid = o.pid;
                    let grace = self.spec.stop_grace;
                    std::thread::spawn(move || {
                        std::thread::sleep(grace + Duration::from_secs(1));
                        crate::sys::signal_group(pid, libc::SIGKILL);
                    });
                }
            }
            return;
        }
        self.choose(now, notices);
    }

    /// Pick what the output should show and ask the splicer for it.
    fn choose(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        let now_ms = self.ms(now);
        let active = self.splicer.active();
        let active_alive = active.is_some_and(|a| self.is_running(a));
        let target = match &self.want.on_air {
            Some(s) => self
                .slots
                .iter()
                .find(|x| x.key == s.key && x.source.is_some())
                .map(|x| (x.id, x.keyframe_seen)),
            None => None,
        };
        let target = match target {
            // Their stream does not come through while the output shows
            // them: the card, within a second, instead of a frozen picture.
            _ if self.on_air_unwell() => self.card_id(now),
            // Their source has a picture, or the output still has one to
            // keep until it does.
            Some((id, kf)) if kf || active_alive => Some(id),
            // The on-air stream just ended: nginx's publish_done (and with
            // it who comes next) follows within milliseconds; hold the last
            // picture that long rather than flash the slate.
            _ if self.hold_until.is_some_and(|t| now < t) => return,
            // Nothing to show until they send a keyframe: the slate.
            _ => self.slate_id(now),
        };
        let Some(target) = target else { return };
        if Some(target) == active {
            return;
        }
        // Only a streamer's picture (or their card) is worth keeping until
        // the next one's keyframe; the slate is cut away from at once
        // (catch-up).
        let slate = self.slate.as_ref().map(|(id, _)| *id);
        // A card is kept only for its own streamer's return: anyone else
        // (the next streamer after giving up) is cut to at once.
        let card_for_other = self.card.as_ref().is_some_and(|(id, _, k)| {
            active == Some(*id)
                && !matches!(self.owners.get(&target), Some(Owner::Streamer(t)) if t == k)
        });
        // Whatever plays is kept while the new one has no keyframe to start
        // from (a catch-up would fail and leave the output empty).
        let keep_old = active_alive
            && (!self.splicer.has_keyframe(target) || (active != slate && !card_for_other));
        // A planned cut waiting for a keyframe becomes a catch-up once the
        // old source is gone: there is nothing left to keep playing.
        if Some(target) == self.splicer.pending()
            && (keep_old || self.splicer.pending_kind() == Some(SwitchKind::Forced))
        {
            return;
        }
        // Back from their card: on their next keyframe, or at once from
        // their last one if that is only a few frames back (a short
        // fast-forward beats waiting up to a whole keyframe interval).
        let card = self.card.as_ref().map(|(id, _, _)| *id);
        let back_soon = active.is_some()
            && active == card
            && self
                .splicer
                .buffered_ms(target)
                .is_some_and(|b| b <= BACK_CATCH_UP_MS);
        // To the card: at once (a frozen picture is what it replaces).
        let to_card = card == Some(target);
        let kind = if keep_old && !back_soon && !to_card {
            SwitchKind::Planned
        } else {
            SwitchKind::Forced
        };
        self.splicer
            .switch(target, kind, now_ms, &mut self.out, &mut self.evs);
        self.after_splice(now, notices);
        self.stop_idle_players();
    }

    fn source_spec(&self, key: &StreamKey) -> SourceSpec {
        SourceSpec {
            host: self.spec.host.clone(),
            port: self.spec.port,
            app: self.spec.ingest_app.clone(),
            stream: key.clone(),
            stall: READER_IDLE,
        }
    }

    fn start_source(&mut self, i: usize, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let key = self.slots[i].key.clone();
        let spec = self.source_spec(&key);
        let carried = self.take_carried(&key);
        let started = match &carried {
            Some(c) => Source::adopt(id, spec, c.session.clone(), self.events.clone()),
            None => Source::spawn(id, spec, self.events.clone()),
        };
        let slot = &mut self.slots[i];
        match started {
            Ok(s) => {
                log::debug!("reading {} (source {id})", slot.name);
                let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
                slot.health.reconnected(now_ms);
                slot.id = id;
                slot.source = Some(s);
                slot.retry_at = None;
                slot.live_since = None;
                slot.keyframe_seen = false;
                self.owners.insert(id, Owner::Streamer(slot.key.clone()));
                self.splicer.add_source(id);
                match carried {
                    Some(c) => self.restore_carried(i, c),
                    None => self.resume_source(i),
                }
            }
            Err(e) => {
                log::error!("cannot start a reader thread for {}: {e}", slot.name);
                slot.failures += 1;
                slot.retry_at = Some(now + backoff(slot.failures));
            }
        }
    }

    fn name_of(&self, id: SourceId) -> String {
        self.slots
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| format!("source {id}"), |s| s.name.clone())
    }

    fn name_of_key(&self, k: &StreamKey) -> String {
        self.slots
            .iter()
            .find(|s| s.key == *k)
            .map_or_else(|| "a streamer".to_string(), |s| s.name.clone())
    }

    fn reconcile_sources_only(&mut self) {
        let wanted = self.wanted_keys();
        self.stop_unwanted(&wanted);
    }

    /// Stop the sources nobody wants; the one on screen keeps playing
    /// until the cut away from it (unless the daemon is stopping).
    fn stop_unwanted(&mut self, wanted: &[(StreamKey, String)]) {
        let active = self.splicer.active();
        let mut i = 0;
        while i < self.slots.len() {
            let keep = wanted.iter().any(|(k, _)| *k == self.slots[i].key)
                || (Some(self.slots[i].id) == active && !self.want.stopping);
            if keep {
                i += 1;
            } else {
                self.drop_slot(i);
            }
        }
    }

    /// Forget a streamer's source: stop its reader, drop its buffer.
    fn drop_slot(&mut self, i: usize) {
        let id = self.slots[i].id;
        self.stop_bridge(id, "their stream is not wanted any more");
        let s = self.slots.remove(i);
        if let Some(src) = &s.source {
            src.stop();
        }
        self.pending.push(Notice::Health {
            key: s.key.clone(),
            report: health::Report::default(),
            changed: true,
        });
        self.splicer.remove_source(s.id);
        self.owners.remove(&s.id);
    }

    /// Notice stalls (no tag brings those) and report fresh figures; true
    /// when a stream became unhealthy or healthy again.
    fn poll_health(&mut self, now_ms: u64, notices: &mut Vec<Notice>) -> bool {
        let mut changed = false;
        // A slot whose reader is down is not judged (its gap is ours).
        for s in self.slots.iter_mut().filter(|s| s.source.is_some()) {
            let was = s.health.state();
            let new = s.health.poll(now_ms);
            let ch = new.is_some();
            if let Some(n) = new {
                log::debug!(
                    "{}: {} (stall limit {} ms)",
                    s.name,
                    n.as_str(),
                    s.health.stall_limit_ms()
                );
            }
            if ch || now_ms >= s.next_report_ms {
                s.next_report_ms = now_ms + REPORT_EVERY_MS;
                notices.push(Notice::Health {
                    key: s.key.clone(),
                    report: s.health.report(now_ms),
                    changed: ch,
                });
            }
            changed |= new.is_some_and(|n| n.unhealthy() != was.unhealthy());
        }
        changed
    }
}

impl Relay for SpliceRelay {
    fn want(&mut self, w: &Want, now: Instant, notices: &mut Vec<Notice>) {
        if let Some(k) = &w.left {
            // Their stream is over: no planned cut can wait for it.
            if let Some(i) = self.slots.iter().position(|s| s.key == *k) {
                self.drop_slot(i);
            }
        }
        if w.on_air != self.want.on_air {
            self.hold_until = None;
        }
        if *w != self.want {
            let head_changed =
                w.on_air.as_ref().map(|s| &s.key) != self.want.on_air.as_ref().map(|s| &s.key);
            if head_changed {
                self.switch_at = Some(now);
            }
            self.want = w.clone();
        }
        self.reconcile(now, notices);
        self.close_unclaimed();
        notices.append(&mut self.pending);
    }

    fn on_event(&mut self, ev: RelayEvent, now: Instant, notices: &mut Vec<Notice>) {
        self.handle_event(ev, now, notices)
    }

    fn tick(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        self.report_output(now, notices);
        let now_ms = self.ms(now);
        let batch = self.slate_batch();
        if let Some((id, p)) = &mut self.slate {
            if now >= self.last_slate_tick + batch || p.next_due() <= now_ms {
                let id = *id;
                let mut tags = Vec::new();
                p.due(now_ms, &mut tags);
                self.last_slate_tick = now;
                for t in tags {
                    // The clip's own spacing is its arrival time.
                    let at = now_ms;
                    self.splicer.push(id, t, at, &mut self.out, &mut self.evs);
                }
            }
        }
        if let Some((id, p, _)) = &mut self.card {
            if now >= self.last_card_tick + SLATE_TICK || p.next_due() <= now_ms {
                let id = *id;
                let mut tags = Vec::new();
                p.due(now_ms, &mut tags);
                self.last_card_tick = now;
                for t in tags {
                    self.splicer
                        .push(id, t, now_ms, &mut self.out, &mut self.evs);
                }
            }
        }
        if self.poll_health(now_ms, notices) {
            self.choose(now, notices);
        }
        if self.hold_until.is_some_and(|t| now >= t) {
            self.hold_until = None;
            self.choose(now, notices);
        }
        if self.splicer.deadline().is_some_and(|d| now_ms >= d) {
            self.splicer.tick(now_ms, &mut self.out, &mut self.evs);
        }
        self.after_splice(now, notices);
        if self.output.is_none()
            && !self.output_closing
            && self.output_retry_at.is_some_and(|t| now >= t)
        {
            self.start_output(now);
        }
        if self
            .slots
            .iter()
            .any(|s| s.source.is_none() && s.retry_at.is_some_and(|t| now >= t))
        {
            self.reconcile(now, notices);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut min = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some((_, p)) = &self.slate {
            let due = self.epoch + Duration::from_millis(p.next_due());
            min(due.max(self.last_slate_tick + self.slate_batch()));
        }
        if let Some((_, p, _)) = &self.card {
            let due = self.epoch + Duration::from_millis(p.next_due());
            min(due.max(self.last_card_tick + SLATE_TICK));
        }
        for s in self.slots.iter().filter(|s| s.source.is_some()) {
            let check = s.health.next_check().into_iter();
            for ms in check.chain([s.next_report_ms]) {
                min(self.epoch + Duration::from_millis(ms));
            }
        }
        if let Some(d) = self.splicer.deadline() {
            min(self.epoch + Duration::from_millis(d));
        }
        if let Some(h) = self.hold_until {
            min(h);
        }
        if self.output.is_none() && !self.output_closing {
            if let Some(r) = self.output_retry_at {
                min(r);
            }
        }
        for s in &self.slots {
            if s.source.is_none() {
                if let Some(r) = s.retry_at {
                    min(r);
                }
            }
        }
        for r in self.bridge_retry.values() {
            min(*r);
        }
        t
    }

    fn view(&self) -> RelayView {
        let on_air = self.want.on_air.as_ref().map(|s| &s.key);
        let state = if self.output.is_none() {
            if self.output_closing {
                "stopping"
            } else {
                "backoff"
            }
        } else if on_air.is_none() {
            "slate"
        } else if self.card.is_some() && self.splicer.active() == self.card.as_ref().map(|c| c.0) {
            // Their stream does not come through: their card is on.
            "brb"
        } else if self.on_screen.as_ref() == on_air {
            "live"
        } else if self.on_screen.is_some() {
            // Someone else is still on the output until the cut.
            "switching"
        } else {
            // The slate shows until their first keyframe.
            "starting"
        };
        let restarts = self.output_restarts
            + on_air
                .and_then(|k| self.slots.iter().find(|s| s.key == *k))
                .map_or(0, |s| s.failures);
        RelayView {
            state,
            pid: self.output.as_ref().map(|o| o.pid),
            restarts,
            on_screen: self.on_screen.clone(),
        }
    }

    fn stopped(&self) -> bool {
        self.output.is_none() && self.slots.iter().all(|s| s.source.is_none())
    }

    fn output_secret(&self) -> &str {
        &self.secret
    }

    fn set_spec(&mut self, spec: RelaySpec) {
        self.cards.reconfigure(&spec.ffmpeg, &spec.brb);
        for s in &mut self.slots {
            s.health.set_config(spec.health.clone());
        }
        self.spec = spec;
    }

    fn mode(&self) -> Mode {
        Mode::Splice
    }

    fn can_hand_over(&self) -> Result<(), String> {
        self.handover_blocker()
    }

    fn hand_over_at(&self, now: Instant) -> Instant {
        self.handover_time(now)
    }

    fn detach_sources(&mut self) {
        self.detach_readers()
    }

    fn hand_over(&mut self, now: Instant) -> Result<RelayCarry, String> {
        self.let_go(now)
    }
}
