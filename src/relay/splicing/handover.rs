//! The splice relay across a hand-over to a new binary (same process,
//! `execve`): the output ffmpeg, its pipes and its publish on nginx are
//! kept; the output timeline goes on; the sources' RTMP sessions are
//! carried (socket and parser state, `source::SessionCarry`) with their
//! splicer state, so the streamer on air goes on with their next frame.
//! A source whose session could not be carried (still setting up) is read
//! again, and if it was on air it continues on its next keyframe (until
//! then the output holds the last picture: nothing is sent, no slate, no
//! cut); the hand-over is then timed to just before that keyframe.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Owner, SpliceRelay};
use crate::key::StreamKey;
use crate::relay::output::{Output, OutputCarry};
use crate::relay::source::SessionCarry;
use crate::relay::splice::carry::{ActiveCarry, SourceCarry};
use crate::relay::splice::Timeline;

/// How long a reader may take to let go of its session (it looks every
/// 20 ms, or at once when bytes arrive).
const DETACH_WAIT: Duration = Duration::from_millis(300);

/// A source whose session goes on in the new binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CarriedSource {
    /// The stream key it reads.
    pub(crate) key: String,
    pub(crate) session: SessionCarry,
    pub(crate) splicer: SourceCarry,
    /// Where it stood on the output, if on air.
    pub(crate) on_air: Option<ActiveCarry>,
}

/// Environment variable: set (to anything) in the daemon's environment,
/// hand-overs read the sources again instead of carrying their sessions
/// (the way before sessions were carried: a way out should carrying ever
/// misbehave, and what the bench compares with).
pub(crate) const REREAD_ENV: &str = "MOTHERSTREAM_HANDOVER_REREAD";

fn carry_sessions() -> bool {
    std::env::var_os(REREAD_ENV).is_none()
}

/// How long queued output may take to reach ffmpeg before a hand-over.
const DRAIN_OUTPUT: Duration = Duration::from_millis(500);
/// The new binary reads the on-air source again from scratch and goes on
/// at its next keyframe: exec that long before the keyframe is due, so the
/// picture holds for about that long, not a whole GOP. How long the new
/// image takes from exec to the source's first tag was measured at the
/// last hand-over (carried); this margin goes on top, and a first
/// hand-over assumes `LEAD_UNMEASURED`.
const LEAD_MARGIN: Duration = Duration::from_millis(150);
const LEAD_UNMEASURED: Duration = Duration::from_millis(600);
/// Streamers with keyframes further apart than this are not waited for.
const KEYFRAME_WAIT_MAX: Duration = Duration::from_secs(10);

/// The relay's part of a hand-over this process inherited: left here by
/// `handover::inherit` at start (before any thread), taken once by the
/// relay that starts.
static INHERITED: Mutex<Option<RelayCarry>> = Mutex::new(None);

/// Keep a carried relay state for the relay that starts next.
pub(crate) fn inherit(c: RelayCarry) {
    if let Ok(mut g) = INHERITED.lock() {
        *g = Some(c);
    }
}

/// Whether a carried state is waiting to be taken.
fn carried_pending() -> bool {
    INHERITED.lock().is_ok_and(|g| g.is_some())
}

/// The carried state, once.
pub(crate) fn take_carried() -> Option<RelayCarry> {
    INHERITED.lock().ok()?.take()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RelayCarry {
    pub(crate) output: OutputCarry,
    /// The output's publish secret (nginx's on_publish of the output app).
    pub(crate) secret: String,
    /// The relay's time origin, CLOCK_MONOTONIC in ms (the same clock in
    /// the new binary: arrival times go on).
    pub(crate) epoch_mono_ms: u64,
    pub(crate) timeline: Timeline,
    /// The stream key the output showed (None: the slate or nothing).
    pub(crate) on_screen: Option<String>,
    pub(crate) output_restarts: u32,
    pub(crate) output_failures: u32,
    /// The keyframe interval of the streamer on screen (ms), if seen.
    #[serde(default)]
    pub(crate) on_screen_gop_ms: Option<u64>,
    /// CLOCK_MONOTONIC (ms) when the old binary let go.
    #[serde(default)]
    pub(crate) let_go_mono_ms: u64,
    /// From letting go to the on-air source's first tag in the new binary,
    /// at the previous hand-over (ms).
    #[serde(default)]
    pub(crate) resume_lag_ms: Option<u64>,
    /// Sources whose RTMP sessions go on (added in format 1 with a
    /// default: a binary without them reads the sources again).
    #[serde(default)]
    pub(crate) sources: Vec<CarriedSource>,
}

impl SpliceRelay {
    /// Why a hand-over cannot happen now (nothing is changed).
    pub(super) fn handover_blocker(&self) -> Result<(), String> {
        let Some(o) = &self.output else {
            return Err("the output ffmpeg is not running (restarting)".into());
        };
        if self.output_closing || self.want.stopping {
            return Err("the relay is stopping".into());
        }
        if o.spawner_tid != crate::sys::fds::gettid() && o.spawner_tid != std::process::id() {
            return Err("the output ffmpeg was started by another thread".into());
        }
        if self.splicer.pending().is_some() || self.hold_until.is_some() {
            return Err("a switch is in progress; try again once it is done".into());
        }
        let on_air = self.want.on_air.as_ref().map(|s| &s.key);
        if on_air.is_some() && self.on_screen.as_ref() != on_air {
            return Err("the output is still starting or switching; try again in a moment".into());
        }
        Ok(())
    }

    /// When to exec: `KEYFRAME_LEAD` before the on-air streamer's next
    /// keyframe is due (now when it is not known, or too far).
    pub(super) fn handover_time(&self, now: Instant) -> Instant {
        let Some(id) = self.splicer.active() else {
            return now;
        };
        if self.on_air_session_carried(id) {
            return now;
        }
        let Some(key_ms) = self.splicer.next_keyframe_ms(id) else {
            log::debug!(
                "hand-over not timed to a keyframe: source {id}'s keyframe interval is not known yet (gop {:?})",
                self.splicer.gop_ms(id)
            );
            return now;
        };
        let mut due = self.epoch + Duration::from_millis(key_ms);
        let gop = self
            .splicer
            .gop_ms(id)
            .map_or(Duration::ZERO, Duration::from_millis);
        if gop.is_zero() || gop > KEYFRAME_WAIT_MAX {
            return now;
        }
        let lead = self
            .resume_lag_ms
            .map_or(LEAD_UNMEASURED, |l| Duration::from_millis(l) + LEAD_MARGIN)
            .min(gop);
        // The next one after now, minus the lead.
        while due < now + lead {
            due += gop;
        }
        due - lead
    }

    /// Whether the on-air source `id` will be carried mid-stream (playing,
    /// not bridged): then the hand-over needs no keyframe.
    fn on_air_session_carried(&self, id: crate::relay::splice::SourceId) -> bool {
        carry_sessions()
            && self.splicer.active_carry(id).is_some()
            && self
                .slots
                .iter()
                .any(|s| s.id == id && s.source.is_some() && s.live_since.is_some())
    }

    /// Make the readers let go of their playing sessions (the first step
    /// of a hand-over; the caller then hands the relay the tags they sent
    /// before `hand_over`). A reader not playing yet keeps reading and is
    /// stopped by `hand_over` (read again by the new binary).
    pub(super) fn detach_readers(&mut self) {
        if !carry_sessions() {
            return;
        }
        let started = Instant::now();
        // All asked first: they let go side by side, not one after another.
        for s in &self.slots {
            if let Some(src) = &s.source {
                src.ask_to_detach();
            }
        }
        for s in &self.slots {
            if let Some(src) = &s.source {
                if let Some(c) = src.detach(DETACH_WAIT) {
                    self.detached.push((s.key.clone(), c));
                }
            }
        }
        log::info!(
            "hand-over: {} source session(s) let go in {} ms",
            self.detached.len(),
            started.elapsed().as_millis()
        );
    }

    /// The hand-over did not happen: read the let-go sessions on here.
    fn readopt_detached(&mut self) {
        for (key, session) in std::mem::take(&mut self.detached) {
            if let Some(i) = self.slots.iter().position(|s| s.key == key) {
                let spec = self.source_spec(&key);
                let slot = &mut self.slots[i];
                match crate::relay::source::Source::adopt(
                    slot.id,
                    spec,
                    session,
                    self.events.clone(),
                ) {
                    Ok(src) => slot.source = Some(src),
                    Err(e) => {
                        log::error!("cannot read {} on: {e}", slot.name);
                        slot.source = None;
                    }
                }
            }
        }
    }

    /// The carried sources, their descriptors kept across exec.
    fn carried_sources(&mut self) -> Vec<CarriedSource> {
        let mut v = Vec::new();
        for (key, session) in std::mem::take(&mut self.detached) {
            let Some(slot) = self.slots.iter().find(|s| s.key == key) else {
                continue;
            };
            let Some(splicer) = self.splicer.source_carry(slot.id) else {
                continue;
            };
            if let Err(e) = crate::sys::fds::set_cloexec(session.fd, false) {
                log::warn!(
                    "{}: cannot keep the session across exec ({e}): read again",
                    slot.name
                );
                continue;
            }
            let on_air = if self.on_screen.as_ref() == Some(&key) {
                self.splicer.active_carry(slot.id)
            } else {
                None
            };
            v.push(CarriedSource {
                key: key.expose().to_string(),
                session,
                splicer,
                on_air,
            });
        }
        v
    }

    /// A carried session for `key`, once (the new binary's first reader of
    /// that stream takes it).
    pub(super) fn take_carried(&mut self, key: &StreamKey) -> Option<CarriedSource> {
        let i = self.carried.iter().position(|c| c.key == key.expose())?;
        Some(self.carried.swap_remove(i))
    }

    /// Sessions carried for streams no longer wanted: closed.
    pub(super) fn close_unclaimed(&mut self) {
        for c in self.carried.drain(..) {
            log::info!("hand-over: a carried session is no longer wanted: closed");
            drop(crate::sys::fds::adopt_fd(c.session.fd));
        }
    }

    /// A reader was just started on a carried session for slot `i`: its
    /// splicer state goes on, and on air where it was.
    pub(super) fn restore_carried(&mut self, i: usize, c: CarriedSource) {
        let slot = &self.slots[i];
        self.splicer.restore_source(slot.id, &c.splicer);
        if let Some(a) = &c.on_air {
            if self.resume_on_screen.as_ref() == Some(&slot.key) {
                self.resume_on_screen = None;
                self.splicer.resume_carried_on_air(slot.id, a);
                self.owners
                    .insert(slot.id, Owner::Streamer(slot.key.clone()));
                self.on_screen = Some(slot.key.clone());
            }
        }
        log::info!(
            "hand-over: {} read on from the carried session{}",
            slot.name,
            if c.on_air.is_some() {
                " (on air, mid-stream)"
            } else {
                ""
            }
        );
    }

    /// The slate clip the previous binary made (same configuration, same
    /// file): making it again takes a few hundred ms of ffmpeg.
    pub(super) fn carried_clip(
        spec: &crate::relay::RelaySpec,
    ) -> Option<crate::relay::slate::Clip> {
        if !carried_pending() || !spec.slate.is_empty() {
            return None;
        }
        let bytes = std::fs::read(spec.work_dir.join("slate.flv")).ok()?;
        crate::relay::slate::load(&bytes).ok()
    }

    /// Let go of the output for a hand-over. Sources are stopped; the output
    /// ffmpeg keeps running with nothing to read until the new binary
    /// writes again. On Err the output was killed (it restarts as after a
    /// failure) or nothing changed, as the message says.
    pub(super) fn let_go(&mut self, now: Instant) -> Result<RelayCarry, String> {
        if let Err(e) = self.handover_blocker() {
            self.readopt_detached();
            return Err(e);
        }
        self.flush(now);
        let Some(o) = self.output.as_mut() else {
            self.readopt_detached();
            return Err("the output ffmpeg is not running".into());
        };
        let output = match o.detach(DRAIN_OUTPUT) {
            Ok(c) => c,
            Err(e) => {
                o.kill();
                self.readopt_detached();
                return Err(format!("{e}; restarting the output"));
            }
        };
        let sources = self.carried_sources();
        for s in &self.slots {
            if let Some(src) = &s.source {
                src.stop();
            }
        }
        let since_epoch = now.saturating_duration_since(self.epoch).as_millis() as u64;
        Ok(RelayCarry {
            output,
            secret: self.secret.clone(),
            epoch_mono_ms: crate::sys::fds::monotonic_ms().saturating_sub(since_epoch),
            timeline: self.splicer.timeline(),
            on_screen: self.on_screen.as_ref().map(|k| k.expose().to_string()),
            output_restarts: self.output_restarts,
            output_failures: self.output_failures,
            on_screen_gop_ms: self.splicer.active().and_then(|id| self.splicer.gop_ms(id)),
            let_go_mono_ms: crate::sys::fds::monotonic_ms(),
            resume_lag_ms: self.resume_lag_ms,
            sources,
        })
    }

    /// Take over a carried output (called instead of starting one).
    pub(super) fn resume_from(&mut self, c: RelayCarry) -> Result<(), String> {
        let url_secret = std::mem::replace(&mut self.secret, c.secret.clone());
        let url = self.output_url();
        match Output::adopt(&self.spec, &c.output, &url, self.events.clone()) {
            Ok(o) => {
                let ago = crate::sys::fds::monotonic_ms().saturating_sub(c.epoch_mono_ms);
                let now = Instant::now();
                self.epoch = now.checked_sub(Duration::from_millis(ago)).unwrap_or(now);
                self.last_slate_tick = now;
                // Bridge encoders start again (not carried): not while
                // the output resumes, as after a cut (a starting bridge
                // encodes the carried GOP flat out: 0.10-0.15 s audio
                // gaps at the viewer just after the hand-over, 2-core
                // machine).
                self.bridges_settle_until = Some(now + super::BRIDGE_SETTLE);
                self.splicer.resume(&c.timeline);
                self.carried = c.sources.clone();
                self.output_run = c.output.run;
                self.output_restarts = c.output_restarts;
                self.output_failures = c.output_failures;
                self.resume_gop_ms = c.on_screen_gop_ms;
                self.resume_lag_ms = c.resume_lag_ms;
                self.let_go_mono_ms = Some(c.let_go_mono_ms);
                self.resume_on_screen = c
                    .on_screen
                    .as_deref()
                    .and_then(|k| StreamKey::parse(k).ok());
                log::info!(
                    "relay output carried over (pid {}, run {}, {} bytes sent so far): the output stays published; {}",
                    o.pid,
                    o.run,
                    o.sent,
                    match &self.resume_on_screen {
                        Some(k) if c.sources.iter().any(|s| s.key == k.expose() && s.on_air.is_some()) =>
                            "the streamer on air goes on mid-stream (session carried)",
                        Some(_) => "the streamer on air goes on at their next keyframe",
                        None => "the slate resumes",
                    }
                );
                self.output = Some(o);
                crate::handover_timing::mark("output adopted");
                Ok(())
            }
            Err(e) => {
                self.secret = url_secret;
                for s in &c.sources {
                    drop(crate::sys::fds::adopt_fd(s.session.fd));
                }
                Err(format!(
                    "cannot take over the output ffmpeg (pid {}): {e}",
                    c.output.pid
                ))
            }
        }
    }

    /// The resumed on-air source delivered its first tag: how long the
    /// hand-over took from letting go to reading again.
    pub(super) fn resumed_first_tag(&mut self) {
        if let Some(t) = self.let_go_mono_ms.take() {
            crate::handover_timing::mark("on-air streamer read");
            let lag = crate::sys::fds::monotonic_ms().saturating_sub(t);
            log::info!(
                "hand-over: the on-air streamer is read again {lag} ms after the old binary let go"
            );
            self.resume_lag_ms = Some(lag);
        }
    }

    /// A source was just started for `i`: if it is the one the output
    /// showed before the hand-over, it is on air again, without a cut.
    pub(super) fn resume_source(&mut self, i: usize) {
        let slot = &self.slots[i];
        if self.resume_on_screen.as_ref() != Some(&slot.key) {
            return;
        }
        self.resume_on_screen = None;
        self.splicer.resume_on_air(slot.id, self.resume_gop_ms);
        self.owners
            .insert(slot.id, Owner::Streamer(slot.key.clone()));
        self.on_screen = Some(slot.key.clone());
    }
}
