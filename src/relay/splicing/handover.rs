//! The splice relay across a hand-over to a new binary (same process,
//! `execve`): the output ffmpeg, its pipes and its publish on nginx are
//! kept; the output timeline goes on; the sources are read again and the
//! streamer on air continues on their next keyframe (until then the output
//! holds the last picture: nothing is sent, no slate, no cut).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Owner, SpliceRelay};
use crate::key::StreamKey;
use crate::relay::output::{Output, OutputCarry};
use crate::relay::splice::Timeline;

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
pub fn inherit(c: RelayCarry) {
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
pub struct RelayCarry {
    pub output: OutputCarry,
    /// The output's publish secret (nginx's on_publish of the output app).
    pub secret: String,
    /// The relay's time origin, CLOCK_MONOTONIC in ms (the same clock in
    /// the new binary: arrival times go on).
    pub epoch_mono_ms: u64,
    pub timeline: Timeline,
    /// The stream key the output showed (None: the slate or nothing).
    pub on_screen: Option<String>,
    pub output_restarts: u32,
    pub output_failures: u32,
    /// The keyframe interval of the streamer on screen (ms), if seen.
    #[serde(default)]
    pub on_screen_gop_ms: Option<u64>,
    /// CLOCK_MONOTONIC (ms) when the old binary let go.
    #[serde(default)]
    pub let_go_mono_ms: u64,
    /// From letting go to the on-air source's first tag in the new binary,
    /// at the previous hand-over (ms).
    #[serde(default)]
    pub resume_lag_ms: Option<u64>,
}

impl SpliceRelay {
    /// Why a hand-over cannot happen now (nothing is changed).
    pub fn can_hand_over(&self) -> Result<(), String> {
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
    pub fn hand_over_at(&self, now: Instant) -> Instant {
        let Some(id) = self.splicer.active() else {
            return now;
        };
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
    pub fn hand_over(&mut self, now: Instant) -> Result<RelayCarry, String> {
        self.can_hand_over()?;
        self.flush(now);
        let Some(o) = self.output.as_mut() else {
            return Err("the output ffmpeg is not running".into());
        };
        let output = match o.detach(DRAIN_OUTPUT) {
            Ok(c) => c,
            Err(e) => {
                o.kill();
                return Err(format!("{e}; restarting the output"));
            }
        };
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
                self.splicer.resume(&c.timeline);
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
                        Some(_) => "the streamer on air goes on at their next keyframe",
                        None => "the slate resumes",
                    }
                );
                self.output = Some(o);
                Ok(())
            }
            Err(e) => {
                self.secret = url_secret;
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
