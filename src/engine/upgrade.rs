//! The engine's side of `motherstream upgrade` (see `crate::handover`):
//! accept the request (or refuse it with the reason, nothing changed),
//! pause the HTTP accept loop, answer what is in flight, then let the relay
//! go, write the state and exec the new binary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::json;

use super::{Answer, Command, Engine, Refusal, Why};
use crate::handover::{self, Carried, EngineCarry};

/// The requests in flight get this long to be answered.
const DRAIN_MAX: Duration = Duration::from_millis(1500);
/// After this, connections that stay open without a request being handled
/// (idle keep-alive, a client that sends nothing) do not hold it up.
const DRAIN_IDLE_CONNECTIONS: Duration = Duration::from_millis(300);
/// The HTTP side must look quiet this long in a row.
const QUIET_FOR: Duration = Duration::from_millis(3);
/// A switch that started while the hand-over waited for its moment is
/// waited for this long (checked this often), then the hand-over is
/// abandoned (the CLI then times out and says so).
const RETRY_FOR: Duration = Duration::from_secs(20);
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often the drain is checked.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// The recorder thread answers at once unless a call to nginx's control
/// module is in progress (bounded by its own timeouts); after this the
/// hand-over goes on without its state.
const RECORDER_WAIT: Duration = Duration::from_millis(500);
/// The OBS connection is carried once no request is in flight (OBS
/// answers in a few ms); after this it is not, and the new image connects
/// again.
const OBS_WAIT: Duration = Duration::from_millis(300);

/// What a hand-over drives, and the one under way.
pub(super) struct Handover {
    /// The HTTP side and the exec (None: `motherstream upgrade` is refused).
    stage: Option<Arc<dyn handover::Stage>>,
    under_way: Option<Upgrade>,
}

impl Handover {
    pub(super) fn new(stage: Option<Arc<dyn handover::Stage>>) -> Self {
        Handover {
            stage,
            under_way: None,
        }
    }
}

struct Upgrade {
    /// When `POST /api/upgrade` was accepted.
    asked: Instant,
    /// Pause and exec from then on (timed to the on-air keyframes).
    exec_at: Instant,
    /// When the accept loop paused.
    since: Instant,
    paused: bool,
    quiet_since: Option<Instant>,
}

impl Engine {
    /// `POST /api/upgrade`: accepted (the hand-over follows once the batch
    /// is answered) or refused with the reason.
    pub(super) fn begin_upgrade(&mut self) -> Answer {
        if self.handover.under_way.is_some() {
            return Err(Refusal::new(
                Why::Conflict,
                "a hand-over is already under way",
            ));
        }
        if self.handover.stage.is_none() {
            return Err(Refusal::unavailable(
                "this daemon cannot hand over (no HTTP stage)",
            ));
        }
        if self.shutting_down {
            return Err(Refusal::unavailable("shutting down"));
        }
        if let Err(e) = self.relay.can_hand_over() {
            log::warn!("upgrade refused: {e}");
            return Err(Refusal::new(
                Why::Conflict,
                format!("hand-over refused: {e}"),
            ));
        }
        log::info!(
            "upgrade requested: handing the show over to the binary on disk (this is {})",
            handover::version()
        );
        let now = self.clock.now();
        let exec_at = self.relay.hand_over_at(now);
        if exec_at > now {
            log::info!(
                "handing over in {} ms, just before the on-air streamer's next keyframe",
                (exec_at - now).as_millis()
            );
        }
        self.handover.under_way = Some(Upgrade {
            asked: now,
            exec_at,
            since: now,
            paused: false,
            quiet_since: None,
        });
        Ok(json!({
            "ok": true,
            "from": handover::version(),
            "pid": std::process::id(),
            "handovers": handover::handovers() + 1,
        }))
    }

    /// Called on every turn of the loop while a hand-over is under way.
    pub(super) fn drive_upgrade(&mut self, commands: &Receiver<Command>) {
        let (Some(u), Some(stage)) = (
            self.handover.under_way.as_mut(),
            self.handover.stage.clone(),
        ) else {
            return;
        };
        let now = Instant::now();
        if !u.paused {
            if now < u.exec_at {
                return;
            }
            // A switch may have started while we waited for the keyframe:
            // wait for it to end (the next keyframe window), for a while.
            if let Err(e) = self.relay.can_hand_over() {
                if now.saturating_duration_since(u.asked) < RETRY_FOR {
                    let next = self.relay.hand_over_at(now + RETRY_EVERY);
                    if let Some(u) = self.handover.under_way.as_mut() {
                        u.exec_at = next.max(now + RETRY_EVERY);
                    }
                    log::info!("hand-over waits: {e}");
                } else {
                    self.abandon_upgrade(&e);
                }
                return;
            }
            if let Err(e) = stage.pause() {
                self.abandon_upgrade(&e);
                return;
            }
            if let Some(u) = self.handover.under_way.as_mut() {
                u.paused = true;
                u.since = Instant::now();
            }
            return;
        }
        let busy = !commands.is_empty() || !stage.idle();
        let open = stage.open_connections();
        let waited = now.saturating_duration_since(u.since);
        if busy || (open > 0 && waited < DRAIN_IDLE_CONNECTIONS) {
            u.quiet_since = None;
            if waited >= DRAIN_MAX {
                self.abandon_upgrade("the requests in flight were not answered in time");
            }
            return;
        }
        let since = *u.quiet_since.get_or_insert(now);
        if now.saturating_duration_since(since) < QUIET_FOR {
            return;
        }
        if open > 0 {
            log::warn!("handing over with {open} idle HTTP connection(s) open: they are closed");
        }
        self.hand_over_now(stage, waited);
    }

    /// When the loop must turn next for the hand-over.
    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        let u = self.handover.under_way.as_ref()?;
        Some(if u.paused {
            self.clock.now() + DRAIN_POLL
        } else {
            u.exec_at
        })
    }

    fn abandon_upgrade(&mut self, why: &str) {
        log::error!("hand-over abandoned: {why}; this binary goes on");
        if let Some(stage) = &self.handover.stage {
            stage.resume();
        }
        if let Some(r) = &self.recorder {
            r.thaw();
        }
        self.obs.thaw();
        self.handover.under_way = None;
    }

    fn hand_over_now(&mut self, stage: Arc<dyn handover::Stage>, drained: Duration) {
        // First (off the picture's clock) the recorder's state (what the
        // engine tells it after this is carried as the level it last said)
        // and the OBS session, once it is quiet.
        let t_frozen = Instant::now();
        let recording = self.freeze_recorder();
        let obs = self.obs.freeze(OBS_WAIT);
        if recording.is_some() || obs.is_some() {
            log::info!(
                "hand-over: {} taken in {} ms",
                match (&recording, &obs) {
                    (Some(_), Some(_)) => "the recorder's state and the OBS session",
                    (Some(_), None) => "the recorder's state",
                    _ => "the OBS session",
                },
                t_frozen.elapsed().as_millis()
            );
        }
        // The readers stop at whole messages; the tags they sent before go
        // through the splicer here, so what is carried follows them.
        let t0 = Instant::now();
        self.relay.detach_sources();
        let t_detached = t0.elapsed();
        while let Ok(ev) = self.relay_rx.try_recv() {
            self.on_relay_event(ev);
        }
        // What a save on the way held back (see `persist`).
        self.drain_relay_backlog();
        let t_spliced = t0.elapsed();
        let relay = match self.relay.hand_over(self.clock.now()) {
            Ok(r) => r,
            Err(e) => return self.abandon_upgrade(&e),
        };
        let t_let_go = t0.elapsed();
        let here = relay.output.spawner_tid == crate::sys::fds::gettid();
        // Tests of the fallback write another format number next to the
        // binary (`<binary>.test-handover-format`).
        #[cfg(feature = "test-hooks")]
        let format = handover::Exe::current()
            .map(|e| {
                let mut p = e.path.into_os_string();
                p.push(".test-handover-format");
                p
            })
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(handover::FORMAT);
        #[cfg(not(feature = "test-hooks"))]
        let format = handover::FORMAT;
        let carried = Carried {
            format,
            from_version: handover::version().to_string(),
            handovers: handover::handovers() + 1,
            engine: EngineCarry {
                started_at_ms: self.started_at_ms,
                cuts: self.cuts.count(),
                last_cut: self.cuts.last().cloned(),
            },
            relay,
            metrics: self.events.metrics().carry(),
            recording,
            obs,
            histograms: self.events.metrics().carry_histograms(),
        };
        let file = match handover::write(&carried) {
            Ok(f) => f,
            Err(e) => {
                // The relay let go of its output already: a restart is the
                // way back (systemd's Restart=, the socket keeps hooks).
                log::error!("{e}; exiting so that the service restarts");
                std::process::exit(1);
            }
        };
        let t_written = t0.elapsed();
        self.notifier.reloading();
        let asked = self
            .handover
            .under_way
            .as_ref()
            .map_or(Duration::ZERO, |u| u.asked.elapsed());
        log::info!(
            "handing over {} ms after the request: requests in flight answered in {} ms; sources let go at {} ms, their last tags spliced at {} ms, output let go at {} ms, state written ({} bytes) at {} ms; exec of the binary on disk with the output ffmpeg (pid {}), {} source session(s) and the HTTP socket",
            asked.as_millis(),
            drained.as_millis(),
            t_detached.as_millis(),
            t_spliced.as_millis(),
            t_let_go.as_millis(),
            file.metadata().map_or(0, |m| m.len()),
            t_written.as_millis(),
            carried.relay.output.pid,
            carried.relay.sources.len(),
        );
        let err = stage.exec(file, here);
        log::error!("hand-over failed: {err}; exiting so that the service restarts");
        std::process::exit(1);
    }

    /// The recorder's state for the next binary (None: recording is off,
    /// or the thread did not answer: its recordings then stay in nginx's
    /// spool, as after a restart).
    fn freeze_recorder(&self) -> Option<handover::recording::RecordingCarry> {
        let r = self.recorder.as_ref()?;
        r.freeze(RECORDER_WAIT)
            .map_err(|e| {
                log::warn!("hand-over without the recorder's state: {e}; a recording in progress is not filed by the new binary");
            })
            .ok()
    }

    /// At start: what a previous binary of this process carried over.
    pub(super) fn take_carried(&mut self) {
        if let Some(m) = handover::take_metrics() {
            self.events.metrics().restore(&m);
        }
        if let Some(h) = handover::take_histograms() {
            self.events.metrics().restore_histograms(&h);
        }
        if let Some(c) = handover::take_engine() {
            self.started_at_ms = c.started_at_ms;
            self.cuts = super::Cuts::carried(c.cuts, c.last_cut);
        }
    }

    /// READY=1, with the versions in STATUS after a hand-over.
    pub(super) fn announce_ready(&mut self) {
        match handover::from_version() {
            Some(from) => {
                let line = format!(
                    "handed over from {from} to {} (hand-over {})",
                    handover::version(),
                    handover::handovers()
                );
                log::info!("{line}: serving");
                self.notifier.ready_with_status(&line);
            }
            None => self.notifier.ready(),
        }
    }
}
