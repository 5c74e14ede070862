//! OBS integration: one thread owns a blocking obs-websocket v5 client and
//! makes OBS match the broadcast state the engine sends it.
//!
//! * `protocol` — frames, auth, typed requests, close codes, backoff (pure);
//! * `session` — what to send when: the session as a state machine (pure,
//!   `step(desired, input, now) -> actions`, `deadline()`);
//! * `client` — the thread: socket, reader thread, and a loop that sleeps
//!   until an engine message, a frame or the session's deadline.
//!
//! Contract with the engine (keep stable):
//! * `ObsHandle::spawn(cfg, status_tx)` starts the thread; it never blocks
//!   the caller, whether OBS is up or not.
//! * `ObsHandle::show(state)` hands over the latest desired state; stale
//!   states are coalesced (only the newest matters).
//! * `ObsHandle::reconfigure(cfg)` applies a reloaded `[obs]` section.
//! * The thread reports connection changes as `ObsStatus` on `status_tx`.
//! * `ObsHandle::shutdown()` stops and joins the thread within a bounded time.
//! * `ObsHandle::freeze(wait)` takes the identified connection for a
//!   hand-over (`crate::handover::obs`), `thaw()` gives it back; the new
//!   image's thread goes on from it.

use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;

use crate::config::ObsConfig;
use crate::handover::obs::ObsCarry;

mod client;
pub mod protocol;
mod session;

/// What the broadcast should show now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastState {
    /// Display name of the on-air streamer (never a stream key once a
    /// registry is in use).
    pub on_air: Option<String>,
    /// Display name of the next streamer.
    pub next_up: Option<String>,
    /// Increments every time a different streamer goes on air; the OBS
    /// thread uses it to tell a switch from a mere refresh.
    pub switch_seq: u64,
    /// When the on-air slot ends, for the countdown text (None = unlimited).
    pub slot_ends_at: Option<SystemTime>,
}

/// Connection state reported to the engine (for `/api/status` and STATUS=).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObsStatus {
    Connected { obs_version: String },
    Disconnected { reason: String },
}

enum Msg {
    Show(BroadcastState),
    Reconfigure(Box<ObsConfig>),
    /// A hand-over: the connection once it is quiet (within `wait`), its
    /// socket kept across exec; from then on the thread does nothing until
    /// `Thaw`. `reply` has no room: a reply the engine no longer waits for
    /// fails, and the thread goes on.
    Freeze {
        reply: Sender<ObsCarry>,
        wait: Duration,
    },
    /// The hand-over did not happen.
    Thaw,
    Shutdown,
}

pub struct ObsHandle {
    tx: Sender<Msg>,
    join: Option<JoinHandle<()>>,
}

impl ObsHandle {
    pub fn spawn(cfg: ObsConfig, status_tx: Sender<ObsStatus>) -> std::io::Result<ObsHandle> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let join = std::thread::Builder::new()
            .name("obs".into())
            .spawn(move || client::run(cfg, rx, status_tx))?;
        Ok(ObsHandle {
            tx,
            join: Some(join),
        })
    }

    pub fn show(&self, state: BroadcastState) {
        let _ = self.tx.send(Msg::Show(state));
    }

    pub fn reconfigure(&self, cfg: ObsConfig) {
        let _ = self.tx.send(Msg::Reconfigure(Box::new(cfg)));
    }

    /// The connection for a hand-over, if it becomes quiet within `wait`
    /// (None: it is not carried; it closes at exec and the new image
    /// connects again).
    pub(crate) fn freeze(&self, wait: Duration) -> Option<ObsCarry> {
        let (reply, rx) = crossbeam_channel::bounded(0);
        self.tx.send(Msg::Freeze { reply, wait }).ok()?;
        rx.recv_timeout(wait + Duration::from_millis(100)).ok()
    }

    /// The hand-over did not happen: the thread goes on.
    pub(crate) fn thaw(&self) {
        let _ = self.tx.send(Msg::Thaw);
    }

    pub fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
