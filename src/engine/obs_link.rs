//! The engine's link to the OBS thread: starts and stops it with the
//! config, hands it the broadcast state when that changes, and keeps what
//! it last reported (connected or not) for the view and STATUS.

use crossbeam_channel::{Receiver, Sender};

use super::ports::{ObsLauncher, ObsPort};
use crate::config::ObsConfig;
use crate::events::Event;
use crate::obs::{BroadcastState, ObsStatus};
use crate::view::ObsView;

pub(super) struct ObsLink {
    launcher: ObsLauncher,
    /// The OBS thread (None: `[obs]` off, or it could not start).
    handle: Option<Box<dyn ObsPort>>,
    tx: Sender<ObsStatus>,
    rx: Receiver<ObsStatus>,
    view: ObsView,
    /// Last state handed to the OBS thread.
    sent: Option<BroadcastState>,
}

impl ObsLink {
    pub(super) fn new(launcher: ObsLauncher, enabled: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ObsLink {
            launcher,
            handle: None,
            tx,
            rx,
            view: ObsView {
                enabled,
                connected: false,
                detail: if enabled { "connecting" } else { "disabled" }.into(),
            },
            sent: None,
        }
    }

    /// Start the OBS thread if `[obs]` is on (it takes a session a
    /// hand-over carried; with `[obs]` off, that is closed here).
    pub(super) fn start(&mut self, cfg: &ObsConfig) {
        if !cfg.enabled {
            if let Some(c) = crate::handover::take_obs() {
                log::info!(
                    "OBS: [obs] is off in this configuration: the session carried over is closed"
                );
                crate::sys::fds::close_inherited(c.fd);
            }
            return;
        }
        match (self.launcher)(cfg.clone(), self.tx.clone()) {
            Ok(h) => self.handle = Some(h),
            Err(e) => log::error!("cannot start the OBS thread: {e}"),
        }
    }

    /// What the OBS thread reports.
    pub(super) fn status(&self) -> &Receiver<ObsStatus> {
        &self.rx
    }

    pub(super) fn view(&self) -> &ObsView {
        &self.view
    }

    /// Whether an OBS thread runs (the broadcast state is worth making).
    pub(super) fn running(&self) -> bool {
        self.handle.is_some()
    }

    /// Hand OBS `want` unless it has it already.
    pub(super) fn show(&mut self, want: BroadcastState) {
        let Some(h) = &self.handle else { return };
        if self.sent.as_ref() != Some(&want) {
            h.show(want.clone());
            self.sent = Some(want);
        }
    }

    /// A report of the OBS thread; returns the event it makes, if any.
    pub(super) fn on_status(&mut self, st: ObsStatus) -> Option<Event> {
        match st {
            ObsStatus::Connected { obs_version } => {
                // Not at the first connection: "back" follows a loss.
                let back = !self.view.connected && self.view.detail != "connecting";
                self.view.connected = true;
                self.view.detail = format!("connected to OBS {obs_version}");
                back.then_some(Event::ObsBack)
            }
            ObsStatus::Disconnected { reason } => {
                let lost = self.view.connected.then(|| Event::ObsLost {
                    reason: reason.clone(),
                });
                self.view.connected = false;
                self.view.detail = reason;
                lost
            }
        }
    }

    /// A reloaded `[obs]` (`changed`: it differs from the running one).
    pub(super) fn reconfigure(&mut self, cfg: &ObsConfig, changed: bool) {
        match (&self.handle, cfg.enabled) {
            // Every reload: the OBS thread compares the settings and re-reads
            // the password file itself, so a new password in the same file
            // is picked up too.
            (Some(h), true) => h.reconfigure(cfg.clone()),
            (Some(_), false) => {
                self.shutdown();
                self.view = ObsView {
                    enabled: false,
                    connected: false,
                    detail: "disabled".into(),
                };
            }
            (None, true) => {
                self.view.enabled = true;
                self.start(cfg);
            }
            (None, false) => {}
        }
        if changed {
            // A new or reconfigured OBS thread gets the full state again.
            self.sent = None;
        }
    }

    /// A hand-over: the identified connection, if it is quiet within
    /// `wait` (None: the new image connects again).
    pub(super) fn freeze(
        &self,
        wait: std::time::Duration,
    ) -> Option<crate::handover::obs::ObsCarry> {
        self.handle.as_ref()?.freeze(wait)
    }

    /// The hand-over did not happen.
    pub(super) fn thaw(&self) {
        if let Some(h) = &self.handle {
            h.thaw();
        }
    }

    pub(super) fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}
