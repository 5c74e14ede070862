//! The OBS session as a pure state machine: what OBS should be told, when,
//! and what a frame, a timeout or a new broadcast state means for the
//! connection. No I/O and no clock reads, in the manner of `ureq-proto`:
//! the shell (`client.rs`) calls [`Session::step`] with each input and the
//! time, performs the [`Action`]s it returns (connect, send a frame, drop
//! the connection, report to the engine), and sleeps until the next input
//! or [`Session::deadline`]. The only side effect here is logging.
//!
//! One connection goes Connecting → Hello → Identifying → Open. An open
//! connection sends one request at a time (obs-websocket may run requests
//! of one client concurrently, and a hide must not overtake its show), the
//! rest wait in a FIFO queue; every request has a deadline, and a
//! connection silent for [`HEARTBEAT`] gets a GetVersion, so a silent OBS
//! counts as dead after heartbeat + request deadline.
//!
//! Once identified: resolve the configured names (scene, inputs, items),
//! add `fpsprobesize=0` to the media source, apply the whole state, then
//! report Connected. From then on only what differs from what OBS was last
//! told is sent.
//!
//! What it tells OBS (measured reasons in the project's notes/obs.md):
//! * nothing to the media source on a switch by default: it stays connected
//!   through a relay switch and is fastest that way;
//! * RESTART of the media source only when it is ENDED/ERROR while someone
//!   is on air (then with backoff), or after every switch in `cue = restart`;
//! * hide/show of the media source only in `cue = hide-show` (the seed's way);
//! * the loading item on while nobody is on air and for `loading_ms` across
//!   a switch; the on-air name; the countdown text, on each second.

use std::time::{Duration, Instant, SystemTime};

mod link;
mod rules;

use link::{Link, Purpose};
use rules::loading_visible;

use super::protocol::{
    classify_close, describe_close, events, identify_message, Backoff, Identify, Message,
    ObsRequest, RetryClass,
};
use super::{BroadcastState, ObsStatus};
use crate::config::ObsConfig;

/// With nothing received for this long, ask OBS something (GetVersion); no
/// answer within the request deadline = dead connection.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// Events the client listens to.
pub(crate) const SUBSCRIPTIONS: u32 = events::GENERAL
    | events::CONFIG
    | events::SCENES
    | events::INPUTS
    | events::SCENE_ITEMS
    | events::MEDIA_INPUTS;

/// The time of a step: the monotonic clock for every deadline, the wall
/// clock only for the countdown text (slot ends are wall-clock times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) mono: Instant,
    pub(crate) wall: SystemTime,
}

/// What happened, as the shell saw it.
#[derive(Debug)]
pub(crate) enum Input {
    /// The thread started.
    Start,
    /// The thread started on an identified connection a previous binary
    /// of this process handed over (its `connection`-th): it goes on as
    /// after Identified, with no new connection or Identify.
    Carried { connection: u64 },
    /// The engine's desired state changed (the new one is `step`'s
    /// `desired`).
    Desired,
    /// A reloaded `[obs]` section, with the password as resolved now.
    Config {
        cfg: Box<ObsConfig>,
        password: Option<String>,
    },
    /// The websocket is open (after [`Action::Connect`]); the password as
    /// resolved for this attempt.
    Connected { password: Option<String> },
    /// [`Action::Connect`] failed (resolve, TCP, websocket handshake).
    ConnectFailed(String),
    /// A frame from OBS.
    Frame(Message),
    /// Something arrived that is not a message (ping, pong, an undecodable
    /// frame): the connection is alive.
    Activity,
    /// OBS closed the websocket.
    Closed { code: u16, reason: String },
    /// The socket failed (read or write).
    TransportError(String),
    /// Nothing but time passed (the deadline was reached).
    Tick,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Open a websocket to `config().host:port`, then feed
    /// [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect,
    Send(Outgoing),
    /// Drop the connection (close frame if possible).
    Disconnect,
    /// Tell the engine.
    Report(ObsStatus),
}

/// A frame to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    Identify(Identify),
    Request { id: String, request: ObsRequest },
}

impl Outgoing {
    /// The JSON text of the frame.
    pub(crate) fn encode(&self) -> String {
        match self {
            Outgoing::Identify(i) => Message::Identify(i.clone()).encode(),
            Outgoing::Request { id, request } => request.to_message(id.clone()).encode(),
        }
    }
}

/// A connection failure: what to tell the operator and how soon to retry.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    retry: RetryClass,
}

impl Failure {
    fn normal(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retry: RetryClass::Normal,
        }
    }
}

/// `Err` = the connection is unusable.
type Outcome<T> = Result<T, Failure>;

enum Phase {
    /// `obs.enabled = false`: nothing to do until a new config.
    Disabled,
    /// Waiting out the backoff before the next attempt.
    Waiting {
        retry_at: Instant,
    },
    /// [`Action::Connect`] is being performed by the shell.
    Connecting,
    Hello {
        deadline: Instant,
    },
    Identifying {
        deadline: Instant,
    },
    Open(Box<Link>),
}

/// The OBS session across connections.
pub(crate) struct Session {
    cfg: ObsConfig,
    password: Option<String>,
    /// The newest desired state seen by `step`.
    desired: BroadcastState,
    /// When the current `switch_seq` was first seen (for `loading_ms`).
    switch_at: Option<Instant>,
    last_status: Option<ObsStatus>,
    /// Retry class of the last failure since the last report (None after
    /// a successful connect or a new config).
    last_retry: Option<RetryClass>,
    backoff: Backoff,
    connections: u64,
    phase: Phase,
    /// The open connection was carried over a hand-over (said once, when
    /// it is ready).
    carried: bool,
}

impl Session {
    pub(crate) fn new(cfg: ObsConfig) -> Session {
        Session {
            cfg,
            password: None,
            desired: BroadcastState::default(),
            switch_at: None,
            last_status: None,
            last_retry: None,
            backoff: Backoff::default(),
            connections: 0,
            phase: Phase::Disabled,
            carried: false,
        }
    }

    /// Connections made so far, when the open one is quiet (identified
    /// and set up, no request in flight or queued): the moment a hand-over
    /// can carry it.
    pub(crate) fn quiet(&self) -> Option<u64> {
        match &self.phase {
            Phase::Open(link) if link.quiet() => Some(self.connections),
            _ => None,
        }
    }

    /// The configuration the shell connects with.
    pub(crate) fn config(&self) -> &ObsConfig {
        &self.cfg
    }

    /// Take one input; return what to do. `desired` is the engine's newest
    /// state (every step sees it; [`Input::Desired`] says it changed).
    pub(crate) fn step(&mut self, desired: &BroadcastState, input: Input, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        if *desired != self.desired {
            if desired.switch_seq != self.desired.switch_seq {
                self.switch_at = Some(now.mono);
            }
            self.desired = desired.clone();
        }
        if let Err(f) = self.take(input, now, &mut out) {
            self.lost(f, now, &mut out);
        }
        if let Err(f) = self.drive(now, &mut out) {
            self.lost(f, now, &mut out);
        }
        out
    }

    /// When to call `step(…, Input::Tick, …)` at the latest if nothing else
    /// happens (None: only an input can change anything).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Disabled | Phase::Connecting => None,
            Phase::Waiting { retry_at } => Some(*retry_at),
            Phase::Hello { deadline } | Phase::Identifying { deadline } => Some(*deadline),
            Phase::Open(link) => link.deadline(&self.view()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms.max(1))
    }

    fn view(&self) -> View<'_> {
        View {
            cfg: &self.cfg,
            desired: &self.desired,
            switch_at: self.switch_at,
        }
    }

    fn take(&mut self, input: Input, now: Now, out: &mut Vec<Action>) -> Outcome<()> {
        let connection_open = matches!(
            self.phase,
            Phase::Hello { .. } | Phase::Identifying { .. } | Phase::Open(_)
        );
        match input {
            Input::Start => self.start(out),
            Input::Carried { connection } => {
                // A new id prefix: an answer meant for the old image's
                // requests can never match.
                self.connections = connection + 1;
                self.carried = true;
                // The desired state came with the session: what OBS shows
                // already, not a switch.
                self.switch_at = None;
                let mut link = Link::new(self.connections, self.timeout(), now.mono);
                link.enqueue(ObsRequest::GetVersion, Purpose::Version);
                self.phase = Phase::Open(Box::new(link));
            }
            Input::Desired | Input::Tick => {}
            Input::Config { cfg, password } => self.reconfigure(*cfg, password, out),
            Input::Connected { password } => {
                if matches!(self.phase, Phase::Connecting) {
                    self.password = password;
                    self.phase = Phase::Hello {
                        deadline: now.mono + self.timeout(),
                    };
                }
            }
            Input::ConnectFailed(reason) => {
                if matches!(self.phase, Phase::Connecting) {
                    return Err(Failure::normal(reason));
                }
            }
            Input::Frame(m) => {
                if connection_open {
                    self.on_frame(m, now, out)?;
                }
            }
            Input::Activity => {
                if let Phase::Open(link) = &mut self.phase {
                    link.last_rx = now.mono;
                }
            }
            Input::Closed { code, reason } => {
                if connection_open {
                    return Err(Failure {
                        reason: describe_close(code, &reason),
                        retry: classify_close(code).into(),
                    });
                }
            }
            Input::TransportError(reason) => {
                if connection_open {
                    return Err(Failure::normal(reason));
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.cfg.enabled {
            self.connect(out);
        } else {
            self.phase = Phase::Disabled;
            self.report(
                ObsStatus::Disconnected {
                    reason: "OBS integration disabled (obs.enabled = false)".into(),
                },
                out,
            );
        }
    }

    fn connect(&mut self, out: &mut Vec<Action>) {
        self.connections += 1;
        self.phase = Phase::Connecting;
        out.push(Action::Connect);
    }

    fn reconfigure(&mut self, cfg: ObsConfig, password: Option<String>, out: &mut Vec<Action>) {
        if cfg == self.cfg && password == self.password {
            return;
        }
        log::info!("OBS settings changed; reconnecting");
        self.cfg = cfg;
        self.password = password;
        self.backoff.reset();
        self.last_retry = None;
        if matches!(
            self.phase,
            Phase::Hello { .. } | Phase::Identifying { .. } | Phase::Open(_)
        ) {
            out.push(Action::Disconnect);
        }
        self.start(out);
    }

    /// Report a connection state to the engine once per change.
    fn report(&mut self, s: ObsStatus, out: &mut Vec<Action>) {
        if self.last_status.as_ref() != Some(&s) {
            self.last_status = Some(s.clone());
            out.push(Action::Report(s));
        }
    }

    /// The connection (attempt) failed: drop it, say so once per kind of
    /// trouble, and wait out the backoff.
    fn lost(&mut self, f: Failure, now: Now, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Connecting) {
            out.push(Action::Disconnect);
        }
        let delay = self.backoff.next_delay(f.retry);
        // One report and one log line per state change: connected → down,
        // or a different kind of trouble (e.g. now the wrong password); not
        // one per retry.
        let changed = !matches!(self.last_status, Some(ObsStatus::Disconnected { .. }))
            || self.last_retry != Some(f.retry);
        self.last_retry = Some(f.retry);
        if changed {
            self.report(
                ObsStatus::Disconnected {
                    reason: f.reason.clone(),
                },
                out,
            );
            let msg = format!(
                "OBS at {}:{} not connected: {}; retrying in {} s{}",
                self.cfg.host,
                self.cfg.port,
                f.reason,
                delay.as_secs(),
                match f.retry {
                    RetryClass::Slow => " (slow retry until this is fixed)",
                    RetryClass::Normal => " and then with backoff up to 30 s",
                }
            );
            if f.retry == RetryClass::Slow {
                log::error!("{msg}");
            } else {
                log::warn!("{msg}");
            }
        } else {
            log::debug!(
                "OBS still not connected ({}); retrying in {delay:?}",
                f.reason
            );
        }
        self.phase = Phase::Waiting {
            retry_at: now.mono + delay,
        };
    }

    fn on_frame(&mut self, m: Message, now: Now, out: &mut Vec<Action>) -> Outcome<()> {
        let timeout = self.timeout();
        match (&mut self.phase, m) {
            (Phase::Hello { .. }, Message::Hello(hello)) => {
                let Some(identify) =
                    identify_message(&hello, self.password.as_deref(), SUBSCRIPTIONS)
                else {
                    return Err(Failure {
                        reason: "OBS requires a password and none is configured (set obs.password_file or OBS_PASSWORD)".into(),
                        retry: RetryClass::Slow,
                    });
                };
                log::debug!(
                    "obs-websocket {} (rpc {}) says hello",
                    hello.obs_web_socket_version,
                    hello.rpc_version
                );
                out.push(Action::Send(Outgoing::Identify(identify)));
                self.phase = Phase::Identifying {
                    deadline: now.mono + timeout,
                };
            }
            (Phase::Identifying { .. }, Message::Identified(i)) => {
                log::debug!(
                    "identified to obs-websocket (rpc {})",
                    i.negotiated_rpc_version
                );
                let mut link = Link::new(self.connections, timeout, now.mono);
                link.enqueue(ObsRequest::GetVersion, Purpose::Version);
                self.phase = Phase::Open(Box::new(link));
            }
            (Phase::Open(link), m) => {
                link.last_rx = now.mono;
                let view = View {
                    cfg: &self.cfg,
                    desired: &self.desired,
                    switch_at: self.switch_at,
                };
                match m {
                    Message::Event(e) => link.on_event(e, &view, now),
                    Message::RequestResponse(r) => link.on_response(r, &view, now),
                    other => log::debug!("unexpected op {} from OBS", other.op()),
                }
                if std::mem::take(&mut link.identified) {
                    // A working connection: the next failure starts the
                    // backoff from the beginning.
                    self.backoff.reset();
                    self.last_retry = None;
                }
            }
            (_, other) => log::debug!("OBS sent op {} during the handshake", other.op()),
        }
        Ok(())
    }

    /// Act on whatever is due at `now`.
    fn drive(&mut self, now: Now, out: &mut Vec<Action>) -> Outcome<()> {
        let timeout = self.timeout();
        match &mut self.phase {
            Phase::Waiting { retry_at } if now.mono >= *retry_at => self.connect(out),
            Phase::Hello { deadline } if now.mono >= *deadline => {
                return Err(Failure::normal(format!(
                    "OBS did not answer within {} ms (waiting for Hello)",
                    timeout.as_millis()
                )))
            }
            Phase::Identifying { deadline } if now.mono >= *deadline => {
                return Err(Failure::normal(format!(
                    "OBS did not answer within {} ms (waiting for Identified)",
                    timeout.as_millis()
                )))
            }
            Phase::Open(link) => {
                let view = View {
                    cfg: &self.cfg,
                    desired: &self.desired,
                    switch_at: self.switch_at,
                };
                if link.drive(&view, now, out)? {
                    let version = link.obs_version.clone();
                    if std::mem::take(&mut self.carried) {
                        log::info!(
                            "OBS {version} at {}:{}: the session carried over the hand-over goes on (no new connection, no new Identify)",
                            self.cfg.host,
                            self.cfg.port
                        );
                    } else {
                        log::info!(
                            "connected to OBS {version} at {}:{}",
                            self.cfg.host,
                            self.cfg.port
                        );
                    }
                    self.report(
                        ObsStatus::Connected {
                            obs_version: version,
                        },
                        out,
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the connection needs to know of the session.
struct View<'a> {
    cfg: &'a ObsConfig,
    desired: &'a BroadcastState,
    switch_at: Option<Instant>,
}

impl View<'_> {
    fn loading_wanted(&self, now: Instant) -> bool {
        loading_visible(
            self.desired.on_air.is_some(),
            self.switch_at,
            Duration::from_millis(self.cfg.loading_ms),
            now,
        )
    }
}

#[cfg(test)]
mod tests;
