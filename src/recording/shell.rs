//! The recorder thread: its state, its loop and timers, and the free-space
//! floor. Starting and stopping nginx's recorder is in `control`, filing
//! finished recordings in `filing`.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{plan, space_ok, Msg, RecordingCarry, PRUNE_EVERY, SHUTDOWN_WAIT, SPACE_CHECK_EVERY};
use crate::config::RecordingConfig;
use crate::key::StreamKey;
use crate::view::{Published, Recent, RecordingStatus};

pub(super) struct Active {
    pub(super) key: StreamKey,
    pub(super) name: String,
    /// When the output first showed them (None: not yet, or never: the
    /// recording of a streamer who never reached the screen is dropped).
    pub(super) shown_ms: Option<u64>,
    /// The file nginx said it writes.
    pub(super) path: String,
}

pub(super) struct Finishing {
    pub(super) key: StreamKey,
    pub(super) name: String,
    /// When they reached the screen (None: never; the file is dropped).
    pub(super) shown_ms: Option<u64>,
    pub(super) stopped_ms: u64,
    pub(super) path: String,
}

pub(super) struct Shell {
    pub(super) cfg: RecordingConfig,
    pub(super) control_url: String,
    pub(super) app: String,
    pub(super) status: Published<RecordingStatus>,
    pub(super) on_screen: Option<(StreamKey, String)>,
    pub(super) heading: Option<(StreamKey, String)>,
    pub(super) active: Vec<Active>,
    pub(super) finishing: VecDeque<Finishing>,
    /// The last free-space problem (logged once per change).
    pub(super) space_low: Option<String>,
    /// The last start failed (logged once per change).
    pub(super) start_failing: bool,
    pub(super) retry_at: Option<Instant>,
    pub(super) next_space_check: Instant,
    pub(super) next_prune: Instant,
    pub(super) recent: VecDeque<Recent>,
}

pub(super) use crate::clock::unix_ms;

impl Shell {
    pub(super) fn new(
        cfg: RecordingConfig,
        control_url: String,
        app: String,
        status: Published<RecordingStatus>,
    ) -> Shell {
        let now = Instant::now();
        Shell {
            cfg,
            control_url,
            app,
            status,
            on_screen: None,
            heading: None,
            active: Vec::new(),
            finishing: VecDeque::new(),
            space_low: None,
            start_failing: false,
            retry_at: None,
            next_space_check: now,
            next_prune: now,
            recent: VecDeque::new(),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        Path::new(&self.cfg.dir)
    }

    pub(super) fn incoming(&self) -> &Path {
        Path::new(&self.cfg.incoming_dir)
    }

    /// The thread's loop until `Shutdown`; `carried`: the state came from
    /// the previous binary (its list of recent files included).
    pub(super) fn run(&mut self, rx: &Receiver<Msg>, carried: bool) {
        if let Err(e) = std::fs::create_dir_all(self.dir()) {
            log::error!(
                "cannot create the recordings directory {}: {e}",
                self.dir().display()
            );
        }
        if !self.incoming().is_dir() {
            log::warn!(
                "recording: nginx's record_path {} ([recording] incoming_dir) does not exist; nginx cannot record until it does",
                self.incoming().display()
            );
        }
        if carried {
            self.publish();
        } else {
            self.load_recent();
        }
        log::info!(
            "recording every streamer's time on air to {} (nginx recorder \"{}\", writing to {}; kept {}; recording stops below {} MB free)",
            self.dir().display(),
            self.cfg.recorder,
            self.incoming().display(),
            match self.cfg.keep_days {
                0 => "for ever".to_string(),
                d => format!("{d} days"),
            },
            self.cfg.min_free_mb
        );
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            let go_on = match rx.recv_timeout(timeout) {
                Ok(Msg::Freeze(reply)) => self.frozen(rx, &reply),
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Disconnected) => false,
                Err(RecvTimeoutError::Timeout) => true,
            };
            if !go_on {
                break;
            }
            self.on_timers(Instant::now());
        }
        self.on_screen = None;
        self.heading = None;
        self.reconcile(false);
        // nginx reports the file it just closed within milliseconds.
        let until = Instant::now() + SHUTDOWN_WAIT;
        while !self.finishing.is_empty() {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Msg::Done {
                    key,
                    recorder,
                    path,
                }) => self.on_done(&key, &recorder, &path),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !self.finishing.is_empty() {
            log::warn!(
                "recording: {} file(s) not reported by nginx before shutdown stay in {}",
                self.finishing.len(),
                self.incoming().display()
            );
        }
    }

    /// One message; false: stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::OnScreen(who) => {
                self.on_screen = who;
                self.retry_at = None;
                self.reconcile(true);
            }
            Msg::Heading(who) => {
                self.heading = who;
                self.retry_at = None;
                self.reconcile(true);
            }
            Msg::Done {
                key,
                recorder,
                path,
            } => self.on_done(&key, &recorder, &path),
            // Not frozen (the engine stopped waiting for the answer).
            Msg::Freeze(_) | Msg::Thaw => {}
            Msg::Shutdown => return false,
        }
        true
    }

    /// A hand-over: the state goes to the engine, then nothing is acted on
    /// (the process execs) until the hand-over is abandoned. What came
    /// meanwhile is handled then, in order. False: stop.
    fn frozen(
        &mut self,
        rx: &Receiver<Msg>,
        reply: &crossbeam_channel::Sender<RecordingCarry>,
    ) -> bool {
        if reply.send(self.carry()).is_err() {
            return true;
        }
        let mut held = Vec::new();
        loop {
            match rx.recv() {
                Ok(Msg::Thaw) => break,
                Ok(Msg::Shutdown) | Err(_) => return false,
                Ok(msg) => held.push(msg),
            }
        }
        log::info!("recording: the hand-over did not happen; going on");
        held.into_iter().all(|m| self.handle(m))
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_prune;
        if self.busy() {
            t = t.min(self.next_space_check);
        }
        if let Some(r) = self.retry_at {
            t = t.min(r);
        }
        t
    }

    fn on_timers(&mut self, now: Instant) {
        if now >= self.next_prune {
            self.prune();
            self.next_prune = now + PRUNE_EVERY;
        }
        let retry = self.retry_at.is_some_and(|r| now >= r);
        if retry {
            self.retry_at = None;
        }
        if retry || (now >= self.next_space_check && self.busy()) {
            self.reconcile(retry);
        }
    }

    /// Free space on both directories against the floor; logs changes.
    fn check_space(&mut self) -> bool {
        self.next_space_check = Instant::now() + SPACE_CHECK_EVERY;
        let mut problem = None;
        for d in [self.incoming(), self.dir()] {
            match crate::sys::free_bytes(d) {
                Ok(free) if !space_ok(free, self.cfg.min_free_mb) => {
                    problem = Some(format!(
                        "only {} MB free on {}, below [recording] min_free_mb {}",
                        free >> 20,
                        d.display(),
                        self.cfg.min_free_mb
                    ));
                    break;
                }
                Ok(_) => {}
                // Unknown free space does not stop recording: nginx's own
                // write errors will show in its log.
                Err(e) => log::debug!("recording: cannot statvfs {}: {e}", d.display()),
            }
        }
        if problem != self.space_low {
            match &problem {
                Some(p) => log::warn!("recording stopped: {p}"),
                None => log::info!("recording: enough free space again"),
            }
            self.space_low = problem;
            self.publish();
        }
        self.space_low.is_none()
    }

    /// Someone is, or is to be, recorded.
    pub(super) fn busy(&self) -> bool {
        self.on_screen.is_some() || self.heading.is_some() || !self.active.is_empty()
    }

    /// Level-triggered: make nginx record who is on screen and who is
    /// next, if there is space. `may_start`: starts are allowed now.
    pub(super) fn reconcile(&mut self, may_start: bool) {
        let space = !self.busy() || self.check_space();
        let now = unix_ms();
        if let Some((k, _)) = &self.on_screen {
            for a in self.active.iter_mut().filter(|a| a.key == *k) {
                a.shown_ms.get_or_insert(now);
            }
        }
        let recording: Vec<&StreamKey> = self.active.iter().map(|a| &a.key).collect();
        let p = plan(
            &recording,
            &[
                self.on_screen.as_ref().map(|(k, _)| k),
                self.heading.as_ref().map(|(k, _)| k),
            ],
            space,
        );
        for k in p.stop {
            self.stop(&k);
        }
        if may_start {
            for k in p.start {
                self.start(&k);
            }
        }
        self.publish();
    }

    pub(super) fn publish(&self) {
        self.status.publish(RecordingStatus {
            recording: self
                .active
                .iter()
                .find_map(|a| a.shown_ms.map(|t| (a.name.clone(), t / 1000))),
            paused: self.space_low.clone().filter(|_| self.busy()),
            recent: self.recent.iter().cloned().collect(),
        });
    }
}
