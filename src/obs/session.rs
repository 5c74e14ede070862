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

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::protocol::{
    classify_close, describe_close, events, identify_message, str_field, Backoff, Event, Identify,
    InputSettings, MediaAction, MediaState, Message, ObsRequest, RequestIds, RequestResponse,
    RequestStatus, RetryClass,
};
use super::{BroadcastState, ObsStatus};
use crate::config::{CueMode, ObsConfig};

/// With nothing received for this long, ask OBS something (GetVersion); no
/// answer within the request deadline = dead connection.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Media status checks while someone is on air.
const MEDIA_CHECK_EVERY: Duration = Duration::from_secs(2);
/// First media status check after a switch or (re)connect.
const MEDIA_CHECK_AFTER_SWITCH: Duration = Duration::from_secs(1);
/// After OBS reports the media playback ended (notes: restart ~0.1 s later).
const MEDIA_CHECK_AFTER_ENDED: Duration = Duration::from_millis(100);
/// Scene collection edits (sources added/removed/renamed) are re-checked
/// after this quiet time.
const RESOLVE_DEBOUNCE: Duration = Duration::from_millis(300);
/// The countdown is re-rendered this long after the second changes, so a
/// wake-up never lands just before the boundary.
const COUNTDOWN_SLACK: Duration = Duration::from_millis(1);
/// Events the client listens to.
pub const SUBSCRIPTIONS: u32 = events::GENERAL
    | events::CONFIG
    | events::SCENES
    | events::INPUTS
    | events::SCENE_ITEMS
    | events::MEDIA_INPUTS;

/// The time of a step: the monotonic clock for every deadline, the wall
/// clock only for the countdown text (slot ends are wall-clock times).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

/// What happened, as the shell saw it.
#[derive(Debug)]
pub enum Input {
    /// The thread started.
    Start,
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
pub enum Action {
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
pub enum Outgoing {
    Identify(Identify),
    Request { id: String, request: ObsRequest },
}

impl Outgoing {
    /// The JSON text of the frame.
    pub fn encode(&self) -> String {
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
pub struct Session {
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
}

impl Session {
    pub fn new(cfg: ObsConfig) -> Session {
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
        }
    }

    /// The configuration the shell connects with.
    pub fn config(&self) -> &ObsConfig {
        &self.cfg
    }

    /// Take one input; return what to do. `desired` is the engine's newest
    /// state (every step sees it; [`Input::Desired`] says it changed).
    pub fn step(&mut self, desired: &BroadcastState, input: Input, now: Now) -> Vec<Action> {
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
    pub fn deadline(&self) -> Option<Instant> {
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
                    log::info!(
                        "connected to OBS {version} at {}:{}",
                        self.cfg.host,
                        self.cfg.port
                    );
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

/// Why a request was sent: decides what its answer means.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    /// The GetVersion right after Identified.
    Version,
    Heartbeat,
    SceneList,
    InputList,
    MediaItem,
    LoadingItem,
    MediaIndex,
    LoadingIndex,
    /// The media source's settings, for `fpsprobesize`.
    ProbeSettings,
    ProbeSet {
        old: String,
        new: String,
    },
    Text {
        input: String,
    },
    Enabled {
        item: i64,
        enabled: bool,
        /// The show that completes a hide-show cue of this switch.
        cue: Option<u64>,
    },
    CueRestart {
        seq: u64,
    },
    MediaStatus,
    Recover {
        attempt: u32,
    },
}

#[derive(Debug)]
struct InFlight {
    id: String,
    request: ObsRequest,
    purpose: Purpose,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the first GetVersion.
    Version,
    /// First resolve and the media source's options.
    Setup,
    /// Applying the desired state.
    Live,
}

/// Which of the configured names exist in OBS, found at connect time and
/// after the scene collection changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Resources {
    scene: bool,
    /// The media source exists as an input.
    media: bool,
    /// Its item in the scene (needed only for hide/show).
    media_item: Option<i64>,
    loading_item: Option<i64>,
    name: bool,
    timer: bool,
}

/// A resolve in progress: its answers so far.
#[derive(Debug, Default)]
struct Resolving {
    /// Answers still awaited for the current step.
    outstanding: u8,
    scenes: Option<BTreeSet<String>>,
    inputs: Option<BTreeSet<String>>,
    res: Resources,
    missing: Vec<String>,
    items_asked: bool,
    indexes_asked: bool,
    media_index: Option<i64>,
    loading_index: Option<i64>,
}

/// What OBS was last told on this connection (None = not yet).
#[derive(Debug, Default)]
struct Applied {
    switch_seq: Option<u64>,
    name: Option<String>,
    timer: Option<String>,
    loading: Option<bool>,
}

/// Recovery of a media source that ended or failed while someone is on air.
#[derive(Debug, Default)]
struct Recovery {
    restarts: u32,
    not_before: Option<Instant>,
    /// The previous check after a restart saw PLAYING.
    playing_seen: bool,
}

impl Recovery {
    /// 0 s for the first restart, then 2, 4, 8, 16, 30, 30 … s.
    fn delay_after(restarts: u32) -> Duration {
        let secs = 1u64 << restarts.min(5);
        Duration::from_secs(secs.min(30))
    }
}

/// One identified connection.
struct Link {
    ids: RequestIds,
    timeout: Duration,
    in_flight: Option<InFlight>,
    queue: VecDeque<(ObsRequest, Purpose)>,
    last_rx: Instant,
    obs_version: String,
    stage: Stage,
    /// GetVersion answered (taken by the session to reset its backoff).
    identified: bool,
    /// Connected has been reported for this connection.
    announced: bool,
    res: Resources,
    resolving: Option<Resolving>,
    resolve_due: Option<Instant>,
    applied: Applied,
    next_media_check: Option<Instant>,
    recovery: Recovery,
    /// When the countdown text changes next.
    timer_tick: Option<Instant>,
    /// When the loading item's hold across a switch ends.
    loading_until: Option<Instant>,
    /// OBS announced ExitStarted.
    exiting: bool,
}

impl Link {
    fn new(connection: u64, timeout: Duration, now: Instant) -> Link {
        Link {
            // The prefix changes per connection so a late answer from an
            // old connection can never match.
            ids: RequestIds::new(format!("ms-{connection}")),
            timeout,
            in_flight: None,
            queue: VecDeque::new(),
            last_rx: now,
            obs_version: String::new(),
            stage: Stage::Version,
            identified: false,
            announced: false,
            res: Resources::default(),
            resolving: None,
            resolve_due: None,
            applied: Applied::default(),
            next_media_check: None,
            recovery: Recovery::default(),
            timer_tick: None,
            loading_until: None,
            exiting: false,
        }
    }

    fn enqueue(&mut self, request: ObsRequest, purpose: Purpose) {
        self.queue.push_back((request, purpose));
    }

    /// Applying the desired state and watching the media source happen
    /// only on a live connection, outside a resolve, before OBS exits.
    fn applying(&self) -> bool {
        self.stage == Stage::Live && self.resolving.is_none() && !self.exiting
    }

    fn deadline(&self, v: &View) -> Option<Instant> {
        let mut d: Vec<Instant> = Vec::new();
        match &self.in_flight {
            Some(f) => d.push(f.deadline),
            None => d.push(self.last_rx + HEARTBEAT),
        }
        if self.stage == Stage::Live && self.resolving.is_none() && !self.exiting {
            d.extend(self.resolve_due);
            d.extend(self.timer_tick);
            d.extend(self.loading_until);
            if v.desired.on_air.is_some() && self.res.media {
                d.extend(self.next_media_check);
            }
        }
        d.into_iter().min()
    }

    /// Returns true when the connection just became ready (report it).
    fn drive(&mut self, v: &View, now: Now, out: &mut Vec<Action>) -> Outcome<bool> {
        if let Some(f) = &self.in_flight {
            if now.mono >= f.deadline {
                return Err(Failure::normal(format!(
                    "OBS did not answer {} within {} ms",
                    f.request.request_type(),
                    self.timeout.as_millis()
                )));
            }
        }
        if self.stage == Stage::Live
            && !self.exiting
            && self.resolving.is_none()
            && self.resolve_due.is_some_and(|d| d <= now.mono)
        {
            self.start_resolve();
        }
        if self.applying() {
            self.apply(v, now);
            self.watch_media(v, now.mono);
        }
        self.pump(now.mono, out);
        if self.in_flight.is_none() && now.mono >= self.last_rx + HEARTBEAT {
            // Any frame refreshes last_rx; no answer = dead.
            self.enqueue(ObsRequest::GetVersion, Purpose::Heartbeat);
            self.pump(now.mono, out);
        }
        if self.stage == Stage::Live && !self.announced && self.in_flight.is_none() {
            self.announced = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// Send the next queued request unless one is in flight.
    fn pump(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.in_flight.is_some() {
            return;
        }
        let Some((request, purpose)) = self.queue.pop_front() else {
            return;
        };
        let id = self.ids.next_id();
        out.push(Action::Send(Outgoing::Request {
            id: id.clone(),
            request: request.clone(),
        }));
        self.in_flight = Some(InFlight {
            id,
            request,
            purpose,
            deadline: now + self.timeout,
        });
    }

    fn on_response(&mut self, r: RequestResponse, v: &View, now: Now) {
        let Some(f) = self.in_flight.as_ref() else {
            log::debug!("OBS answered an unknown request {}", r.request_id);
            return;
        };
        if f.id != r.request_id {
            log::debug!("OBS answered an unknown request {}", r.request_id);
            return;
        }
        if f.request.request_type() != r.request_type {
            // A bug somewhere: not an answer; the deadline will tell.
            log::warn!(
                "OBS answered {} with a {} response",
                f.request.request_type(),
                r.request_type
            );
            return;
        }
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let answer = if r.request_status.result {
            Ok(r.response_data.unwrap_or(Value::Null))
        } else {
            Err(r.request_status)
        };
        self.on_answer(f.purpose, answer, v, now);
    }

    fn on_answer(
        &mut self,
        purpose: Purpose,
        answer: Result<Value, RequestStatus>,
        v: &View,
        now: Now,
    ) {
        let cfg = v.cfg;
        match purpose {
            Purpose::Version => {
                let data = answer.unwrap_or(Value::Null);
                self.obs_version = str_field(Some(&data), "obsVersion")
                    .unwrap_or("unknown")
                    .to_string();
                log::debug!("OBS {}", self.obs_version);
                self.identified = true;
                self.stage = Stage::Setup;
                self.start_resolve();
            }
            Purpose::Heartbeat => {}
            Purpose::SceneList | Purpose::InputList => {
                let (list, key) = if purpose == Purpose::SceneList {
                    ("scenes", "sceneName")
                } else {
                    ("inputs", "inputName")
                };
                let found = match answer {
                    Ok(v) => names(&v, list, key),
                    Err(st) => {
                        log::warn!(
                            "OBS {} failed: {}",
                            if purpose == Purpose::SceneList {
                                "GetSceneList"
                            } else {
                                "GetInputList"
                            },
                            st.describe()
                        );
                        BTreeSet::new()
                    }
                };
                if let Some(r) = &mut self.resolving {
                    if purpose == Purpose::SceneList {
                        r.scenes = Some(found);
                    } else {
                        r.inputs = Some(found);
                    }
                }
                self.resolve_answered(cfg, now.mono);
            }
            Purpose::MediaItem | Purpose::LoadingItem => {
                let id = answer
                    .ok()
                    .and_then(|v| v.get("sceneItemId").and_then(Value::as_i64));
                if let Some(r) = &mut self.resolving {
                    if purpose == Purpose::MediaItem {
                        r.res.media_item = id;
                    } else {
                        r.res.loading_item = id;
                    }
                }
                self.resolve_answered(cfg, now.mono);
            }
            Purpose::MediaIndex | Purpose::LoadingIndex => {
                let index = answer
                    .ok()
                    .and_then(|v| v.get("sceneItemIndex").and_then(Value::as_i64));
                if let Some(r) = &mut self.resolving {
                    if purpose == Purpose::MediaIndex {
                        r.media_index = index;
                    } else {
                        r.loading_index = index;
                    }
                }
                self.resolve_answered(cfg, now.mono);
            }
            Purpose::ProbeSettings => {
                self.probe_answered(cfg, answer);
                self.stage = Stage::Live;
            }
            Purpose::ProbeSet { old, new } => {
                let input = &cfg.media_source;
                match answer {
                    Ok(_) => log::info!(
                        "OBS media source {input:?}: set ffmpeg_options to {new:?} (was {old:?}) so a new streamer shows sooner"
                    ),
                    Err(st) => log::warn!(
                        "OBS media source {input:?}: cannot set ffmpeg_options: {}",
                        st.describe()
                    ),
                }
            }
            Purpose::Text { input } => {
                if let Err(st) = answer {
                    log::warn!("OBS: cannot set the text of {input:?}: {}", st.describe());
                    self.resolve_soon(now.mono);
                }
            }
            Purpose::Enabled { item, enabled, cue } => match answer {
                Ok(_) => {
                    if let Some(seq) = cue {
                        log::debug!(
                            "switch {seq}: hid and showed the media source (cue = hide-show)"
                        );
                    }
                }
                Err(st) => {
                    log::warn!(
                        "OBS: cannot {} item {item} of scene {:?}: {}",
                        if enabled { "show" } else { "hide" },
                        cfg.scene,
                        st.describe()
                    );
                    self.resolve_soon(now.mono);
                }
            },
            Purpose::CueRestart { seq } => match answer {
                Ok(_) => log::debug!("switch {seq}: restarted the media source (cue = restart)"),
                Err(st) => log::warn!(
                    "OBS: cannot restart {:?}: {}",
                    cfg.media_source,
                    st.describe()
                ),
            },
            Purpose::MediaStatus => self.media_status_answered(answer, v, now.mono),
            Purpose::Recover { attempt } => match answer {
                Ok(_) => {
                    self.recovery.restarts = attempt;
                    self.recovery.not_before = Some(now.mono + Recovery::delay_after(attempt));
                    self.next_media_check = Some(now.mono + MEDIA_CHECK_AFTER_SWITCH);
                }
                Err(st) => log::warn!(
                    "OBS: cannot restart {:?}: {}",
                    cfg.media_source,
                    st.describe()
                ),
            },
        }
    }

    fn resolve_soon(&mut self, now: Instant) {
        self.resolve_due.get_or_insert(now + RESOLVE_DEBOUNCE);
    }

    fn on_event(&mut self, e: Event, v: &View, now: Now) {
        let input = str_field(e.event_data.as_ref(), "inputName");
        match e.event_type.as_str() {
            "ExitStarted" => {
                // OBS now tears its scenes down (a flood of *Removed events)
                // and then closes with 1001: leave it alone until then.
                log::info!("OBS is exiting");
                self.exiting = true;
            }
            "MediaInputPlaybackEnded"
                if input == Some(v.cfg.media_source.as_str()) && v.desired.on_air.is_some() =>
            {
                let soon = now.mono + MEDIA_CHECK_AFTER_ENDED;
                self.next_media_check = Some(self.next_media_check.map_or(soon, |c| c.min(soon)));
            }
            "InputCreated"
            | "InputRemoved"
            | "InputNameChanged"
            | "SceneCreated"
            | "SceneRemoved"
            | "SceneNameChanged"
            | "SceneItemCreated"
            | "SceneItemRemoved"
            | "CurrentSceneCollectionChanged" => {
                log::debug!(
                    "OBS {}: checking the configured sources again",
                    e.event_type
                );
                self.resolve_due = Some(now.mono + RESOLVE_DEBOUNCE);
            }
            _ => {}
        }
    }

    /// Look up the configured scene and sources: the lists first, then the
    /// items, then their order.
    fn start_resolve(&mut self) {
        self.resolve_due = None;
        self.resolving = Some(Resolving {
            outstanding: 2,
            ..Resolving::default()
        });
        self.enqueue(ObsRequest::GetSceneList, Purpose::SceneList);
        self.enqueue(ObsRequest::GetInputList, Purpose::InputList);
    }

    fn resolve_answered(&mut self, cfg: &ObsConfig, now: Instant) {
        let Some(mut r) = self.resolving.take() else {
            return;
        };
        r.outstanding = r.outstanding.saturating_sub(1);
        if r.outstanding > 0 {
            self.resolving = Some(r);
            return;
        }
        if !r.items_asked {
            r.items_asked = true;
            let (res, missing) = check_lists(
                cfg,
                r.scenes.as_ref().unwrap_or(&BTreeSet::new()),
                r.inputs.as_ref().unwrap_or(&BTreeSet::new()),
            );
            r.res = res;
            r.missing = missing;
            if r.res.scene && r.res.media {
                r.outstanding += 1;
                self.enqueue(
                    ObsRequest::GetSceneItemId {
                        scene_name: cfg.scene.clone(),
                        source_name: cfg.media_source.clone(),
                    },
                    Purpose::MediaItem,
                );
            }
            if r.res.scene && !cfg.loading_source.is_empty() {
                r.outstanding += 1;
                self.enqueue(
                    ObsRequest::GetSceneItemId {
                        scene_name: cfg.scene.clone(),
                        source_name: cfg.loading_source.clone(),
                    },
                    Purpose::LoadingItem,
                );
            }
            if r.outstanding > 0 {
                self.resolving = Some(r);
                return;
            }
        }
        if !r.indexes_asked {
            r.indexes_asked = true;
            r.missing.extend(check_items(cfg, &r.res));
            if let (Some(m), Some(l)) = (r.res.media_item, r.res.loading_item) {
                r.outstanding = 2;
                for (item, purpose) in [(m, Purpose::MediaIndex), (l, Purpose::LoadingIndex)] {
                    self.enqueue(
                        ObsRequest::GetSceneItemIndex {
                            scene_name: cfg.scene.clone(),
                            scene_item_id: item,
                        },
                        purpose,
                    );
                }
                self.resolving = Some(r);
                return;
            }
        }
        if let (Some(mi), Some(li)) = (r.media_index, r.loading_index) {
            if li < mi {
                log::warn!(
                    "OBS: {:?} is below {:?} in scene {:?}; it will not cover the media source (move it up)",
                    cfg.loading_source, cfg.media_source, cfg.scene
                );
            }
        }
        self.resolved(cfg, r.res, &r.missing, now);
    }

    /// Log precisely what is missing; forget what OBS was told so
    /// everything is applied again.
    fn resolved(&mut self, cfg: &ObsConfig, res: Resources, missing: &[String], now: Instant) {
        if missing.is_empty() {
            log::info!(
                "OBS has scene {:?} with the media source {:?}{}{}{}",
                cfg.scene,
                cfg.media_source,
                opt_name(", loading", &cfg.loading_source),
                opt_name(", name", &cfg.name_source),
                opt_name(", timer", &cfg.timer_source)
            );
        } else {
            log::warn!(
                "OBS is missing {}; carrying on with what exists",
                missing.join(", ")
            );
        }
        self.res = res;
        self.applied = Applied::default();
        self.next_media_check = Some(now + MEDIA_CHECK_AFTER_SWITCH);
        if self.stage == Stage::Setup {
            if self.res.media {
                self.enqueue(
                    ObsRequest::GetInputSettings {
                        input_name: cfg.media_source.clone(),
                    },
                    Purpose::ProbeSettings,
                );
            } else {
                self.stage = Stage::Live;
            }
        }
    }

    /// Make sure the media source probes without waiting for 40 frames
    /// (measured: 1.42 s → 1.16 s median switch).
    fn probe_answered(&mut self, cfg: &ObsConfig, answer: Result<Value, RequestStatus>) {
        let input = &cfg.media_source;
        let v = match answer {
            Ok(v) => v,
            Err(st) => {
                log::warn!("OBS GetInputSettings {input:?} failed: {}", st.describe());
                return;
            }
        };
        let kind = str_field(Some(&v), "inputKind").unwrap_or("");
        if kind != "ffmpeg_source" {
            log::warn!(
                "OBS media source {input:?} is a {kind:?}, not a media source (ffmpeg_source); not changing its options"
            );
            return;
        }
        let old = v
            .get("inputSettings")
            .and_then(|s| s.get("ffmpeg_options"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(new) = with_fpsprobesize(&old) else {
            return;
        };
        self.enqueue(
            ObsRequest::SetInputSettings {
                input_name: input.clone(),
                input_settings: InputSettings::FfmpegOptions {
                    ffmpeg_options: new.clone(),
                },
                overlay: true,
            },
            Purpose::ProbeSet { old, new },
        );
    }

    /// Bring OBS in line with the desired state, sending only what differs.
    fn apply(&mut self, v: &View, now: Now) {
        let want = v.desired;
        let cfg = v.cfg;
        // Cue the media source on a switch seen while connected; after a
        // (re)connect the first state is applied without a cue.
        if self.applied.switch_seq != Some(want.switch_seq) {
            let is_switch = self.applied.switch_seq.is_some();
            self.applied.switch_seq = Some(want.switch_seq);
            if want.on_air.is_some() {
                if is_switch {
                    self.cue(cfg, want.switch_seq);
                    self.recovery = Recovery::default();
                }
                self.next_media_check = Some(now.mono + MEDIA_CHECK_AFTER_SWITCH);
            }
        }
        if self.res.name {
            let text = want.on_air.clone().unwrap_or_default();
            if self.applied.name.as_ref() != Some(&text) {
                self.set_text(&cfg.name_source, &text);
                self.applied.name = Some(text);
            }
        }
        self.timer_tick = None;
        if self.res.timer {
            let text = want
                .slot_ends_at
                .map(|e| countdown_text(e, now.wall))
                .unwrap_or_default();
            if self.applied.timer.as_ref() != Some(&text) {
                self.set_text(&cfg.timer_source, &text);
                self.applied.timer = Some(text);
            }
            self.timer_tick = want
                .slot_ends_at
                .and_then(|e| until_countdown_changes(e, now.wall))
                .map(|d| now.mono + d + COUNTDOWN_SLACK);
        }
        self.loading_until = None;
        if let Some(item) = self.res.loading_item {
            let show = v.loading_wanted(now.mono);
            if self.applied.loading != Some(show) {
                self.set_enabled(cfg, item, show, None);
                self.applied.loading = Some(show);
            }
            if show && want.on_air.is_some() {
                // Shown only for the hold across the switch.
                self.loading_until = v
                    .switch_at
                    .map(|t| t + Duration::from_millis(cfg.loading_ms));
            }
        }
    }

    fn cue(&mut self, cfg: &ObsConfig, seq: u64) {
        if !self.res.media {
            return;
        }
        match cfg.cue {
            CueMode::None => {}
            CueMode::Restart => self.enqueue(
                ObsRequest::TriggerMediaInputAction {
                    input_name: cfg.media_source.clone(),
                    media_action: MediaAction::Restart,
                },
                Purpose::CueRestart { seq },
            ),
            CueMode::HideShow => {
                if let Some(item) = self.res.media_item {
                    self.set_enabled(cfg, item, false, None);
                    self.set_enabled(cfg, item, true, Some(seq));
                }
            }
        }
    }

    fn set_text(&mut self, input: &str, text: &str) {
        self.enqueue(
            ObsRequest::SetInputSettings {
                input_name: input.to_string(),
                input_settings: InputSettings::Text {
                    text: text.to_string(),
                },
                overlay: true,
            },
            Purpose::Text {
                input: input.to_string(),
            },
        );
    }

    fn set_enabled(&mut self, cfg: &ObsConfig, item: i64, enabled: bool, cue: Option<u64>) {
        self.enqueue(
            ObsRequest::SetSceneItemEnabled {
                scene_name: cfg.scene.clone(),
                scene_item_id: item,
                scene_item_enabled: enabled,
            },
            Purpose::Enabled { item, enabled, cue },
        );
    }

    /// While someone is on air, check the media source every few seconds
    /// and restart it when it ended or failed (first at once, then backing
    /// off).
    fn watch_media(&mut self, v: &View, now: Instant) {
        if v.desired.on_air.is_none() {
            self.recovery = Recovery::default();
            return;
        }
        if !self.res.media || self.next_media_check.map_or(true, |c| c > now) {
            if self.res.media && self.next_media_check.is_none() {
                self.next_media_check = Some(now + MEDIA_CHECK_EVERY);
            }
            return;
        }
        self.next_media_check = Some(now + MEDIA_CHECK_EVERY);
        self.enqueue(
            ObsRequest::GetMediaInputStatus {
                input_name: v.cfg.media_source.clone(),
            },
            Purpose::MediaStatus,
        );
    }

    fn media_status_answered(
        &mut self,
        answer: Result<Value, RequestStatus>,
        v: &View,
        now: Instant,
    ) {
        let input = &v.cfg.media_source;
        let state = match answer {
            Ok(d) => MediaState::parse(str_field(Some(&d), "mediaState").unwrap_or("")),
            Err(st) => {
                log::debug!("OBS GetMediaInputStatus {input:?}: {}", st.describe());
                return;
            }
        };
        let Some(on_air) = &v.desired.on_air else {
            return;
        };
        if state == MediaState::Playing {
            // Right after a RESTART of a dead URL OBS briefly says PLAYING;
            // only two PLAYING checks in a row end the backoff.
            if self.recovery.restarts == 0 || self.recovery.playing_seen {
                if self.recovery.restarts > 0 {
                    log::info!(
                        "OBS media source {input:?} is playing again after {} restart(s)",
                        self.recovery.restarts
                    );
                }
                self.recovery = Recovery::default();
            } else {
                self.recovery.playing_seen = true;
            }
            return;
        }
        self.recovery.playing_seen = false;
        if !state.needs_recovery() || self.recovery.not_before.is_some_and(|nb| nb > now) {
            return;
        }
        let n = self.recovery.restarts + 1;
        log::warn!(
            "OBS media source {input:?} is {state:?} while {on_air:?} is on air; restarting it (attempt {n})"
        );
        self.enqueue(
            ObsRequest::TriggerMediaInputAction {
                input_name: input.clone(),
                media_action: MediaAction::Restart,
            },
            Purpose::Recover { attempt: n },
        );
    }
}

/// Which configured scene and inputs exist, and what is missing.
fn check_lists(
    cfg: &ObsConfig,
    scenes: &BTreeSet<String>,
    inputs: &BTreeSet<String>,
) -> (Resources, Vec<String>) {
    let res = Resources {
        scene: scenes.contains(&cfg.scene),
        media: inputs.contains(&cfg.media_source),
        name: !cfg.name_source.is_empty() && inputs.contains(&cfg.name_source),
        timer: !cfg.timer_source.is_empty() && inputs.contains(&cfg.timer_source),
        ..Resources::default()
    };
    let mut missing = Vec::new();
    if !res.scene {
        missing.push(format!("scene {:?} (obs.scene)", cfg.scene));
    }
    if !res.media {
        missing.push(format!("input {:?} (obs.media_source)", cfg.media_source));
    }
    if !cfg.name_source.is_empty() && !res.name {
        missing.push(format!("input {:?} (obs.name_source)", cfg.name_source));
    }
    if !cfg.timer_source.is_empty() && !res.timer {
        missing.push(format!("input {:?} (obs.timer_source)", cfg.timer_source));
    }
    (res, missing)
}

/// The scene items that should exist and do not.
fn check_items(cfg: &ObsConfig, res: &Resources) -> Vec<String> {
    let mut missing = Vec::new();
    if res.scene {
        if res.media && res.media_item.is_none() {
            missing.push(format!(
                "item {:?} in scene {:?} (obs.media_source)",
                cfg.media_source, cfg.scene
            ));
        }
        if !cfg.loading_source.is_empty() && res.loading_item.is_none() {
            missing.push(format!(
                "item {:?} in scene {:?} (obs.loading_source)",
                cfg.loading_source, cfg.scene
            ));
        }
    } else if !cfg.loading_source.is_empty() {
        missing.push(format!(
            "item {:?} (obs.loading_source)",
            cfg.loading_source
        ));
    }
    missing
}

/// Show the loading item while nobody is on air, and for `hold` after a
/// switch (to cover the media source's short freeze).
fn loading_visible(on_air: bool, switch_at: Option<Instant>, hold: Duration, now: Instant) -> bool {
    if !on_air {
        return true;
    }
    match switch_at {
        Some(t) if !hold.is_zero() => now < t + hold,
        _ => false,
    }
}

/// Countdown text: `MM:SS` (`H:MM:SS` from an hour on), rounded up so it
/// reads `00:00` only when the slot is over.
pub(crate) fn countdown_text(ends: SystemTime, now: SystemTime) -> String {
    let left = ends.duration_since(now).unwrap_or(Duration::ZERO);
    let mut secs = left.as_secs();
    if left.subsec_nanos() > 0 {
        secs += 1;
    }
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// How long until [`countdown_text`] reads differently (None once it reads
/// `00:00` for good): the time left past the whole second below it.
fn until_countdown_changes(ends: SystemTime, now: SystemTime) -> Option<Duration> {
    let left = ends.duration_since(now).ok().filter(|l| !l.is_zero())?;
    let below = Duration::from_secs(left.as_secs() - u64::from(left.subsec_nanos() == 0));
    Some(left - below)
}

/// `ffmpeg_options` with `fpsprobesize=0`, or None when already there.
/// OBS parses the option string as space-separated `key=value` pairs.
pub(crate) fn with_fpsprobesize(opts: &str) -> Option<String> {
    let mut parts: Vec<String> = opts.split_whitespace().map(str::to_string).collect();
    if parts.iter().any(|p| p == "fpsprobesize=0") {
        return None;
    }
    parts.retain(|p| !p.starts_with("fpsprobesize="));
    parts.push("fpsprobesize=0".into());
    Some(parts.join(" "))
}

fn names(v: &Value, list: &str, key: &str) -> BTreeSet<String> {
    v.get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get(key).and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn opt_name(label: &str, name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{label} {name:?}")
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
