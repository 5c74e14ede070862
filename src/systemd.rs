//! sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING. Silent when the
//! daemon does not run under systemd (`NOTIFY_SOCKET` unset).

use std::time::Duration;

use sd_notify::NotifyState;

pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    last_status: String,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
            last_status: String::new(),
        }
    }

    /// `WATCHDOG_USEC` when systemd watches us (and `WATCHDOG_PID` is ours):
    /// a ping must arrive within this long of the last one.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            log::debug!("sd_notify failed: {e}");
        }
    }

    pub(crate) fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// READY=1 and a STATUS= line in one message (after a hand-over).
    pub(crate) fn ready_with_status(&mut self, line: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(line)]);
        self.last_status = line.to_string();
    }

    pub(crate) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(t) => self.send(&[NotifyState::Reloading, t]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    pub(crate) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Send STATUS= only when the line changed.
    pub(crate) fn status(&mut self, line: &str) {
        if line != self.last_status {
            self.send(&[NotifyState::Status(line)]);
            self.last_status = line.to_string();
        }
    }
}
