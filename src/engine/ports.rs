//! What the engine drives but does not own the logic of: the clock, the
//! relay (the [`Relay`] trait), nginx's control module and the OBS thread. In the daemon these
//! are the real ones ([`Io::real`]); behaviour tests pass their own (see
//! `engine/memory.rs`), so the real engine runs in memory in milliseconds,
//! as lsp-server's `Connection::memory()` does for a language server.

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::config::ObsConfig;
use crate::key::StreamKey;
use crate::nginx::Control;
use crate::obs::{BroadcastState, ObsHandle, ObsStatus};
use crate::relay::{self, Relay, RelayEvent, RelaySpec};

/// Time as the engine sees it.
pub(crate) trait Clock: Send {
    fn now(&self) -> Instant;
    fn unix_ms(&self) -> u64;
}

pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_ms(&self) -> u64 {
        crate::clock::unix_ms()
    }
}

/// nginx's control module: disconnect a publisher (off the engine thread).
pub(crate) trait ControlPort: Send {
    fn drop_publisher(&self, app: &str, key: &StreamKey, who: &str);
    fn shutdown(self: Box<Self>);
}

impl ControlPort for Control {
    fn drop_publisher(&self, app: &str, key: &StreamKey, who: &str) {
        Control::drop_publisher(self, app, key, who)
    }
    fn shutdown(self: Box<Self>) {
        Control::shutdown(*self)
    }
}

/// The OBS thread: what OBS should show.
pub(crate) trait ObsPort: Send {
    fn show(&self, state: BroadcastState);
    fn reconfigure(&self, cfg: ObsConfig);
    fn shutdown(self: Box<Self>);
    /// The connection for a hand-over (see `obs::ObsHandle::freeze`).
    fn freeze(&self, _wait: std::time::Duration) -> Option<crate::handover::obs::ObsCarry> {
        None
    }
    fn thaw(&self) {}
}

impl ObsPort for ObsHandle {
    fn show(&self, state: BroadcastState) {
        ObsHandle::show(self, state)
    }
    fn reconfigure(&self, cfg: ObsConfig) {
        ObsHandle::reconfigure(self, cfg)
    }
    fn shutdown(self: Box<Self>) {
        ObsHandle::shutdown(*self)
    }
    fn freeze(&self, wait: std::time::Duration) -> Option<crate::handover::obs::ObsCarry> {
        ObsHandle::freeze(self, wait)
    }
    fn thaw(&self) {
        ObsHandle::thaw(self)
    }
}

pub(crate) type RelayLauncher =
    Box<dyn FnOnce(RelaySpec, Sender<RelayEvent>) -> Box<dyn Relay> + Send>;
pub(crate) type ControlLauncher =
    Box<dyn FnOnce(String) -> std::io::Result<Box<dyn ControlPort>> + Send>;
pub(crate) type ObsLauncher =
    Box<dyn FnMut(ObsConfig, Sender<ObsStatus>) -> std::io::Result<Box<dyn ObsPort>> + Send>;

/// Everything the engine starts or asks the time of.
pub struct Io {
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) relay: RelayLauncher,
    pub(crate) control: ControlLauncher,
    pub(crate) obs: ObsLauncher,
}

impl Io {
    /// The daemon's: the system clock, ffmpeg and RTMP, nginx, OBS.
    pub fn real() -> Io {
        Io {
            clock: Box::new(SystemClock),
            relay: Box::new(relay::start),
            control: Box::new(|url| {
                Control::spawn(url).map(|c| Box::new(c) as Box<dyn ControlPort>)
            }),
            obs: Box::new(|cfg, tx| {
                ObsHandle::spawn(cfg, tx).map(|h| Box::new(h) as Box<dyn ObsPort>)
            }),
        }
    }
}

/// A clock tests move by hand (shared: the harness keeps a copy).
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct ManualClock(std::sync::Arc<std::sync::Mutex<(Instant, u64)>>);

#[cfg(test)]
impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

#[cfg(test)]
impl ManualClock {
    pub(crate) fn new() -> ManualClock {
        ManualClock(std::sync::Arc::new(std::sync::Mutex::new((
            Instant::now(),
            1_800_000_000_000,
        ))))
    }
    pub(crate) fn now_ms(&self) -> u64 {
        self.unix_ms()
    }

    pub(crate) fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += d;
        g.1 += d.as_millis() as u64;
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0
    }
    fn unix_ms(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}
