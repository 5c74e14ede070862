//! The engine thread: the only owner of the queue state, the store, the
//! relay child and the OBS handle. It waits on its channels (commands,
//! relay events, OBS status) with a timeout set by its nearest timer, never
//! polling: each batch of commands is decided (pure queue rules), persisted
//! once (group commit), answered, and then executed (relay, OBS, STATUS).
//!
//! Streamers, slots and moderation live in [`streamers`]: the same loop,
//! with the decisions in `moderation` and `registry`.

mod names;
mod streamers;

pub use names::Names;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};
use serde_json::json;

use crate::config::{self, Config};
use crate::moderation::{self, Policy};
use crate::nginx::Control;
use crate::obs::{BroadcastState, ObsHandle, ObsStatus};
use crate::queue::{Op, Outcome, State};
use crate::registry::{FileSig, Registry};
use crate::relay::{self, Notice, Relay, RelayEvent, RelaySpec, RelayView, Streamer, Want};
use crate::store::Store;
use crate::systemd::Notifier;

/// Most commands decided in one batch (one fsync).
const MAX_BATCH: usize = 1024;
/// A publisher taken off while on screen is disconnected at the cut, or
/// after this long at the latest.
const DROP_AFTER_CUT_MAX: Duration = Duration::from_secs(10);
/// After a burst of at least this many commands, the engine returns freed
/// heap to the kernel once it has been idle for `TRIM_AFTER_IDLE`.
const TRIM_MIN_COMMANDS: usize = 1000;
const TRIM_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How often STATUS= is refreshed when nothing happens (the "for 12m").
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// An answer for an HTTP worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            body: v.to_string(),
        }
    }

    pub fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply::json(status, json!({ "error": msg.into() }))
    }
}

/// Where the engine's answer goes: straight back to the HTTP client (the
/// worker that parsed the request does not wait, so the number of requests
/// in one group commit is bounded by the load, not by the worker count), or
/// a channel for callers that want to wait.
pub struct Responder(Box<dyn FnOnce(Reply) + Send>);

impl Responder {
    pub fn new(f: impl FnOnce(Reply) + Send + 'static) -> Responder {
        Responder(Box::new(f))
    }

    pub fn channel() -> (Responder, Receiver<Reply>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            Responder::new(move |r| {
                let _ = tx.send(r);
            }),
            rx,
        )
    }

    pub fn send(self, r: Reply) {
        (self.0)(r)
    }
}

pub enum Command {
    Publish {
        key: String,
        client_id: Option<u64>,
        addr: String,
        reply: Responder,
    },
    PublishDone {
        key: String,
        client_id: Option<u64>,
        reply: Responder,
    },
    Skip {
        reply: Responder,
    },
    Clear {
        reply: Responder,
    },
    Override {
        names: Vec<String>,
        reply: Responder,
    },
    Health {
        reply: Responder,
    },
    /// A moderator's request (skip, kick, block, move, slot changes...).
    Moderate {
        req: moderation::Request,
        reply: Responder,
    },
    /// Manage the streamer registry.
    Streamers {
        req: StreamerRequest,
        reply: Responder,
    },
    /// SIGHUP: re-read the config file.
    Reload,
    /// `streamers.json` changed on disk (inotify).
    RegistryChanged,
    /// SIGTERM/SIGINT: stop gracefully.
    Shutdown,
    /// Block the engine loop (tests prove the watchdog stops).
    #[cfg(feature = "test-hooks")]
    Wedge {
        secs: u64,
    },
}

pub use streamers::StreamerRequest;

/// What HTTP workers may read without asking the engine. Replaced whole by
/// the engine; never mutated in place.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bearer token every admin endpoint requires.
    pub admin_token: String,
    /// Path segment of the hook URLs (`/hook/<secret>/on_publish`).
    pub hook_secret: String,
    /// `[http] allowed_hosts`: Host names accepted besides loopback.
    pub allowed_hosts: Vec<String>,
    /// What the output publish of the current relay run carries
    /// (`?ms_secret=`): new for every run, so a secret seen in one run's
    /// argv or log is worthless once that run ends.
    pub relay_secret: String,
    pub ingest_app: String,
    pub output_app: String,
    pub output_stream: String,
}

pub type Shared<T> = Arc<RwLock<Arc<T>>>;

pub fn read<T>(s: &Shared<T>) -> Arc<T> {
    match s.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(s: &Shared<T>, v: T) {
    match s.write() {
        Ok(mut g) => *g = Arc::new(v),
        Err(p) => *p.into_inner() = Arc::new(v),
    }
}

/// A read-only picture of the queue for the read endpoints, published by
/// the engine after every change.
#[derive(Debug, Default)]
pub struct View {
    pub names: Arc<Names>,
    pub on_air: Option<OnAirView>,
    pub obs: ObsView,
    pub started_at_ms: u64,
    /// When the on-air slot ends, unix ms (None = unlimited).
    pub slot_ends_at_ms: Option<u64>,
    /// Default slot length and rejoin block in force, seconds (0 = off).
    pub slot_seconds: u64,
    pub rejoin_block_seconds: u64,
    /// Blocked streamers' public names and when their block ends (unix ms).
    pub blocked: Vec<(String, u64)>,
    /// "splice" or "restart".
    pub relay_mode: &'static str,
    /// What happened at the last cut ("cut to bob on their keyframe...").
    pub last_cut: Option<String>,
    queue_json: OnceLock<String>,
}

#[derive(Debug, Clone)]
pub struct OnAirView {
    pub name: Arc<str>,
    pub since_ms: u64,
    pub relay_state: &'static str,
    pub relay_pid: Option<u32>,
    pub relay_restarts: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ObsView {
    pub enabled: bool,
    pub connected: bool,
    pub detail: String,
}

impl View {
    /// `/queue-json`: display names, on-air first (the seed's shape).
    pub fn queue_json(&self) -> &str {
        self.queue_json
            .get_or_init(|| serde_json::to_string(&*self.names).unwrap_or_else(|_| "[]".into()))
    }

    pub fn status_json(&self, now_ms: u64) -> String {
        let on_air = self.on_air.as_ref().map(|o| {
            json!({
                "name": &*o.name,
                "since": o.since_ms / 1000,
                "on_air_s": now_ms.saturating_sub(o.since_ms) / 1000,
                "slot_left_s": self.slot_ends_at_ms.map(|t| t.saturating_sub(now_ms).div_ceil(1000)),
                "slot_ends_at": self.slot_ends_at_ms.map(|t| t.div_ceil(1000)),
                "relay": {
                    "state": o.relay_state,
                    "pid": o.relay_pid,
                    "restarts": o.relay_restarts,
                },
            })
        });
        let queue: Vec<_> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, (n, j))| json!({"name": n, "position": i, "joined_at": j / 1000}))
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": now_ms.saturating_sub(self.started_at_ms) / 1000,
            "on_air": on_air,
            "next_up": self.names.get(1),
            "waiting": self.names.len().saturating_sub(1),
            "queue": queue,
            "slot_seconds": self.slot_seconds,
            "rejoin_block_seconds": self.rejoin_block_seconds,
            "blocked": self
                .blocked
                .iter()
                .filter(|(_, until)| *until > now_ms)
                .map(|(n, until)| json!({
                    "name": n,
                    "until": until.div_ceil(1000),
                    "left_s": until.saturating_sub(now_ms).div_ceil(1000),
                }))
                .collect::<Vec<_>>(),
            "relay": {
                "mode": self.relay_mode,
                "last_cut": self.last_cut,
            },
            "obs": {
                "enabled": self.obs.enabled,
                "connected": self.obs.connected,
                "detail": self.obs.detail,
            },
        })
        .to_string()
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct Engine {
    cfg: Config,
    config_path: PathBuf,
    config_explicit: bool,
    state: State,
    store: Store,
    relay: Relay,
    /// The on-air publisher left: its stream is over (a forced switch).
    kill_now: Option<String>,
    /// Publishers taken off while on screen: disconnected once the output
    /// has cut away from them (they keep playing until then).
    drops_after_cut: Vec<(String, Instant)>,
    /// Cuts so far (OBS tells a switch from a refresh by it).
    cuts: u64,
    /// What happened at the last cut, for `/api/status` and STATUS.
    last_cut: Option<String>,
    relay_rx: Receiver<RelayEvent>,
    obs: Option<ObsHandle>,
    obs_tx: Sender<ObsStatus>,
    obs_rx: Receiver<ObsStatus>,
    obs_view: ObsView,
    notifier: Notifier,
    next_watchdog: Option<Instant>,
    http_alive: Option<LivenessProbe>,
    /// The last ping was withheld (logged once per change).
    watchdog_withheld: bool,
    next_status: Instant,
    view: Shared<View>,
    settings: Shared<Settings>,
    started_at_ms: u64,
    shutting_down: bool,
    store_failed: bool,
    /// The streamer registry as last read from `streamers.json`.
    registry: Registry,
    /// Signature of the file `registry` was read from (None = no file).
    registry_sig: Option<FileSig>,
    /// inotify reports changes of `streamers.json`; without it (watch set-up
    /// failed) the file is checked on a timer.
    registry_watched: bool,
    next_registry_check: Instant,
    /// Disconnects publishers through nginx's control module, off-thread.
    control: Option<Control>,
    /// After a slot end that could not be saved, wait before trying again.
    slot_retry_at: Option<Instant>,
    /// Publishers to disconnect once the batch that took them off is saved.
    pending_drops: Vec<String>,
    /// When a refused publish of a blocked key was last logged at info.
    block_logged: std::collections::HashMap<String, u64>,
    /// Commands handled since the heap was last trimmed, and when the last
    /// batch ended: one second after a burst, freed memory goes back to the
    /// kernel.
    since_trim: usize,
    last_batch: Instant,
    /// The queue's public names as last published, and the (queue order,
    /// registry) generations they reflect (None: rebuild).
    names: Arc<Names>,
    names_gen: Option<(u64, u64)>,
    registry_gen: u64,
    /// The relay as shown in the last published view.
    published_relay: RelayView,
    /// Last state handed to the OBS thread.
    sent_obs: Option<BroadcastState>,
}

/// Asked before each WATCHDOG=1; `Err(why)` withholds it (the HTTP side
/// cannot answer hooks, so systemd should restart the daemon).
pub type LivenessProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub struct EngineParts {
    pub cfg: Config,
    pub config_path: PathBuf,
    pub config_explicit: bool,
    pub state: State,
    pub store: Store,
    pub notifier: Notifier,
    pub view: Shared<View>,
    pub settings: Shared<Settings>,
    /// Whether a `watch` thread reports registry file changes.
    pub registry_watched: bool,
    /// Whether hooks are being answered (None: nothing to ask).
    pub http_alive: Option<LivenessProbe>,
}

impl Engine {
    pub fn new(p: EngineParts) -> Engine {
        let (relay_tx, relay_rx) = crossbeam_channel::unbounded();
        let (obs_tx, obs_rx) = crossbeam_channel::unbounded();
        if p.cfg.relay.mode == config::RelayMode::Splice && !p.cfg.relay.args.is_empty() {
            log::warn!(
                "[relay] args apply only with mode = \"restart\"; the splice relay ignores them"
            );
        }
        let relay = Relay::new(relay_spec(&p.cfg), relay_tx.clone());
        let now = Instant::now();
        let next_watchdog = p.notifier.watchdog_interval().map(|_| now);
        let mut e = Engine {
            obs_view: ObsView {
                enabled: p.cfg.obs.enabled,
                connected: false,
                detail: if p.cfg.obs.enabled {
                    "connecting".into()
                } else {
                    "disabled".into()
                },
            },
            cfg: p.cfg,
            config_path: p.config_path,
            config_explicit: p.config_explicit,
            state: p.state,
            store: p.store,
            relay,
            kill_now: None,
            drops_after_cut: Vec::new(),
            cuts: 0,
            last_cut: None,
            relay_rx,
            obs: None,
            obs_tx,
            obs_rx,
            notifier: p.notifier,
            next_watchdog,
            http_alive: p.http_alive,
            watchdog_withheld: false,
            next_status: now,
            view: p.view,
            settings: p.settings,
            started_at_ms: unix_ms(),
            shutting_down: false,
            store_failed: false,
            registry: Registry::default(),
            registry_sig: None,
            next_registry_check: now,
            registry_watched: p.registry_watched,
            control: None,
            slot_retry_at: None,
            pending_drops: Vec::new(),
            block_logged: std::collections::HashMap::new(),
            since_trim: 0,
            last_batch: now,
            published_relay: RelayView::default(),
            names: Arc::new(Names::default()),
            names_gen: None,
            registry_gen: 0,
            sent_obs: None,
        };
        e.sync_secret();
        e.refresh_registry(true);
        match Control::spawn(e.cfg.rtmp.control_url.clone()) {
            Ok(c) => e.control = Some(c),
            Err(err) => log::error!("cannot start the nginx control thread: {err}"),
        }
        e.start_obs();
        e
    }

    fn start_obs(&mut self) {
        if !self.cfg.obs.enabled {
            return;
        }
        match ObsHandle::spawn(self.cfg.obs.clone(), self.obs_tx.clone()) {
            Ok(h) => self.obs = Some(h),
            Err(e) => log::error!("cannot start the OBS thread: {e}"),
        }
    }

    /// Run until a Shutdown command; returns after the relay is stopped, the
    /// state persisted and the OBS thread joined.
    pub fn run(mut self, commands: Receiver<Command>) {
        self.after_change();
        self.notifier.ready();
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            select! {
                recv(commands) -> msg => match msg {
                    Ok(first) => {
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match commands.try_recv() {
                                Ok(c) => batch.push(c),
                                Err(_) => break,
                            }
                        }
                        self.handle_batch(batch);
                    }
                    // Every sender is gone: nothing can reach us any more.
                    Err(_) => self.shutting_down = true,
                },
                recv(self.relay_rx) -> ev => {
                    if let Ok(ev) = ev {
                        self.on_relay_event(ev);
                    }
                }
                recv(self.obs_rx) -> st => {
                    if let Ok(st) = st {
                        self.on_obs_status(st);
                    }
                }
                default(timeout) => {}
            }
            self.on_timers(Instant::now());
            if self.shutting_down {
                break;
            }
        }
        self.shutdown(&commands);
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_status;
        if let Some(w) = self.next_watchdog {
            t = t.min(w);
        }
        if self.since_trim > 0 {
            t = t.min(self.last_batch + TRIM_AFTER_IDLE);
        }
        if let Some(d) = self.relay.deadline() {
            t = t.min(d);
        }
        if let Some((_, at)) = self.drops_after_cut.first() {
            t = t.min(*at + DROP_AFTER_CUT_MAX);
        }
        if !self.registry_watched {
            t = t.min(self.next_registry_check);
        }
        if let Some(slot) = self.slot_deadline() {
            t = t.min(slot);
        }
        t
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let now_ms = unix_ms();
        self.since_trim += batch.len();
        self.last_batch = Instant::now();
        let mut ops: Vec<Op> = Vec::new();
        // (responder, answer, whether it acknowledges a state change)
        let mut replies: Vec<(Responder, Reply, bool)> = Vec::new();
        let mut reload = false;
        let mut registry_changed = false;
        for cmd in batch {
            match cmd {
                Command::Publish {
                    key,
                    client_id,
                    addr,
                    reply,
                } => {
                    if self.shutting_down {
                        replies.push((reply, Reply::error(503, "shutting down"), false));
                        continue;
                    }
                    if let Err(r) = self.admit(&key, &addr) {
                        replies.push((reply, r, false));
                        continue;
                    }
                    let max = self.cfg.queue.max_length;
                    if self.state.len() >= max && !self.state.contains(&key) {
                        crate::http::warn_limited(format_args!(
                            "refused a publish from {}: the queue is full ({max} streamers, [queue] max_length)",
                            if addr.is_empty() { "an unknown address" } else { &addr }
                        ));
                        replies.push((
                            reply,
                            Reply::error(
                                503,
                                format!("the queue is full ({max} streamers); try again later"),
                            ),
                            false,
                        ));
                        continue;
                    }
                    let op = Op::Publish {
                        key: key.clone(),
                        client_id,
                        addr: addr.clone(),
                        at: now_ms,
                    };
                    let out = self.state.apply(&op);
                    let r = match &out {
                        Outcome::Queued { position, new } => {
                            if *new {
                                log::info!(
                                    "{} joined the queue at position {} (client {}, {addr})",
                                    self.display(&key),
                                    position + 1,
                                    client_id.map_or("-".into(), |c| c.to_string()),
                                );
                            } else {
                                log::info!(
                                    "{} published again (client {}), already queued at position {}",
                                    self.display(&key),
                                    client_id.map_or("-".into(), |c| c.to_string()),
                                    position + 1
                                );
                            }
                            Reply::json(200, json!({"ok": true, "position": position}))
                        }
                        Outcome::Blocked { until } => {
                            self.refuse_blocked(&key, &addr, *until, now_ms)
                        }
                        other => Reply::error(500, format!("unexpected outcome {other:?}")),
                    };
                    let changed = out.changed();
                    if changed {
                        ops.push(op);
                    }
                    replies.push((reply, r, changed));
                }
                Command::PublishDone {
                    key,
                    client_id,
                    reply,
                } => {
                    let op = Op::PublishDone {
                        key: key.clone(),
                        client_id,
                        at: now_ms,
                    };
                    let out = self.state.apply(&op);
                    match &out {
                        Outcome::Left { was_on_air, .. } => {
                            if *was_on_air {
                                log::info!(
                                    "{} stopped publishing while on air; switching",
                                    self.display(&key)
                                );
                                self.kill_now = Some(key.clone());
                            } else {
                                log::info!("{} left the queue", self.display(&key));
                            }
                        }
                        Outcome::SessionEnded => log::info!(
                            "a second publish of {} (client {}) ended; the first stays queued",
                            self.display(&key),
                            client_id.map_or("-".into(), |c| c.to_string())
                        ),
                        _ => {}
                    }
                    let changed = out.changed();
                    if changed {
                        ops.push(op);
                    }
                    replies.push((reply, Reply::json(200, json!({"ok": true})), changed));
                }
                Command::Skip { reply } => {
                    let op = Op::Skip { at: now_ms };
                    let out = self.state.apply(&op);
                    if let Outcome::Skipped { key: Some(k) } = &out {
                        log::info!("moderator skipped {}", self.display(k));
                    }
                    let changed = out.changed();
                    if changed {
                        ops.push(op);
                    }
                    replies.push((reply, self.queue_reply(), changed));
                }
                Command::Clear { reply } => {
                    let op = Op::Clear { at: now_ms };
                    let out = self.state.apply(&op);
                    if let Outcome::Cleared { removed } = out {
                        log::info!("moderator cleared the queue ({removed} entries)");
                    }
                    let changed = out.changed();
                    if changed {
                        ops.push(op);
                    }
                    replies.push((reply, self.queue_reply(), changed));
                }
                Command::Override { names, reply } => {
                    let keys = match self.resolve_queued(&names, now_ms) {
                        Ok(k) => k,
                        Err(e) => {
                            replies.push((reply, Reply::error(400, e), false));
                            continue;
                        }
                    };
                    let op = Op::Override {
                        keys: keys.clone(),
                        at: now_ms,
                    };
                    if let Err(e) = self.state.check_override(&keys) {
                        replies.push((reply, Reply::error(400, e), false));
                        continue;
                    }
                    let out = self.state.apply(&op);
                    if let Outcome::Reordered { removed } = &out {
                        log::info!(
                            "moderator set the queue order: {} entries, {} removed",
                            self.state.len(),
                            removed.len()
                        );
                    }
                    ops.push(op);
                    replies.push((reply, self.queue_reply(), true));
                }
                Command::Moderate { req, reply } => {
                    let (r, changed) = self.moderate(&req, now_ms, &mut ops);
                    replies.push((reply, r, changed));
                }
                Command::Streamers { req, reply } => {
                    let (r, changed) = self.manage_streamers(req, now_ms, &mut ops);
                    replies.push((reply, r, changed));
                }
                Command::Health { reply } => {
                    let r = if self.store_failed {
                        Reply::error(503, "cannot persist queue state; see the log")
                    } else {
                        Reply::json(200, json!({"ok": true}))
                    };
                    replies.push((reply, r, false));
                }
                Command::Reload => reload = true,
                Command::RegistryChanged => registry_changed = true,
                Command::Shutdown => self.shutting_down = true,
                #[cfg(feature = "test-hooks")]
                Command::Wedge { secs } => {
                    log::warn!("test hook: wedging the engine for {secs} s");
                    std::thread::sleep(Duration::from_secs(secs));
                }
            }
        }
        self.persist(&ops, now_ms, &mut replies);
        self.run_drops();
        self.publish_view();
        for (tx, r, _) in replies {
            tx.send(r);
        }
        if reload {
            self.reload();
        } else if registry_changed {
            log::debug!("streamer registry file changed on disk");
            self.refresh_registry(true);
        }
        self.after_change();
    }

    /// Durable before acknowledged: on failure, fall back to the last state
    /// on disk and answer 503 to everything the batch would have changed.
    fn persist(&mut self, ops: &[Op], now_ms: u64, replies: &mut [(Responder, Reply, bool)]) {
        if ops.is_empty() {
            return;
        }
        match self.store.append(ops, &self.state) {
            Ok(()) => {
                if self.store_failed {
                    log::info!("queue state is being saved again");
                    self.store_failed = false;
                }
            }
            Err(e) => {
                if !self.store_failed {
                    log::error!("{e}; refusing queue changes until the disk works again");
                }
                self.store_failed = true;
                match self.store.reload(now_ms) {
                    Ok(s) => {
                        self.state = s;
                        self.names_gen = None;
                    }
                    Err(e2) => log::error!("cannot re-read the queue state either: {e2}"),
                }
                for (_, r, changed) in replies.iter_mut() {
                    if *changed {
                        *r = Reply::error(503, format!("cannot persist queue state: {e}"));
                    }
                }
            }
        }
    }

    /// Apply an op the engine itself decided (relay failures), durably.
    fn apply_internal(&mut self, op: Op) {
        let out = self.state.apply(&op);
        if out.changed() {
            self.persist(std::slice::from_ref(&op), unix_ms(), &mut []);
        }
        self.publish_view();
        self.after_change();
    }

    fn queue_reply(&self) -> Reply {
        let names: Vec<String> = self
            .state
            .entries()
            .iter()
            .map(|e| self.display(&e.key))
            .collect();
        Reply::json(200, json!({"ok": true, "queue": names}))
    }

    /// The public name of a key: the single place that decides it. Stream
    /// keys stand for themselves until a streamer registry is in use; from
    /// then on, never.
    fn display(&self, key: &str) -> String {
        self.registry.display(key)
    }

    fn policy(&self) -> Policy {
        Policy::effective(&self.cfg.queue, &self.state)
    }

    /// The names for a new view: the last ones extended when streamers only
    /// joined at the end since, else rebuilt.
    fn sync_names(&mut self) -> Arc<Names> {
        let gen = (self.state.reorder_gen(), self.registry_gen);
        let entries = self.state.entries();
        if self.names_gen != Some(gen) || self.names.len() > entries.len() {
            let fresh: Vec<(String, u64)> = entries
                .iter()
                .map(|e| (self.display(&e.key), e.joined_at))
                .collect();
            self.names = Arc::new(fresh.iter().map(|(n, j)| (n.as_str(), *j)).collect());
        } else if self.names.len() < entries.len() {
            let new: Vec<(String, u64)> = entries[self.names.len()..]
                .iter()
                .map(|e| (self.display(&e.key), e.joined_at))
                .collect();
            // Copies the buffer when the published view still shares it: a
            // memcpy, however long the queue.
            let names = Arc::make_mut(&mut self.names);
            for (n, j) in &new {
                names.push(n, *j);
            }
        }
        self.names_gen = Some(gen);
        self.names.clone()
    }

    /// Every change of the registry goes through here: public names may
    /// have changed.
    fn set_registry(&mut self, r: Registry) {
        self.registry = r;
        self.registry_gen += 1;
    }

    fn publish_view(&mut self) {
        let rv = self.relay.view();
        self.published_relay = rv.clone();
        // Who is on air is who the output shows: at a planned switch the
        // old streamer stays on air until the cut.
        let shown = self.on_screen_key();
        let on_air = shown.as_ref().map(|key| OnAirView {
            name: Arc::from(self.display(key)),
            since_ms: if self.state.head().is_some_and(|h| *h.key == **key) {
                self.state.on_air_since().unwrap_or(0)
            } else {
                0
            },
            relay_state: if rv.state == "live" {
                "running"
            } else {
                rv.state
            },
            relay_pid: rv.pid,
            relay_restarts: rv.restarts,
        });
        let policy = self.policy();
        let now_ms = unix_ms();
        let names = self.sync_names();
        // Until the cut, the streamer still on the output leads the list.
        let names = match &shown {
            Some(k) if self.state.head().is_some_and(|h| *h.key != **k) => {
                let first = self.display(k);
                let mut n = Names::default();
                n.push(&first, 0);
                for (name, j) in names.iter().filter(|(name, _)| *name != first) {
                    n.push(name, j);
                }
                Arc::new(n)
            }
            _ => names,
        };
        let view = View {
            names,
            on_air,
            obs: self.obs_view.clone(),
            started_at_ms: self.started_at_ms,
            slot_ends_at_ms: moderation::slot_ends_at(&self.state, &self.registry, &policy),
            slot_seconds: policy.slot_seconds,
            rejoin_block_seconds: policy.rejoin_block_seconds,
            blocked: self
                .state
                .blocks(now_ms)
                .into_iter()
                .map(|(k, until)| (self.display(k), until))
                .collect(),
            relay_mode: match self.relay.mode() {
                relay::Mode::Splice => "splice",
                relay::Mode::Restart => "restart",
            },
            last_cut: self.last_cut.clone(),
            queue_json: OnceLock::new(),
        };
        write(&self.view, view);
    }

    /// The stream key on air as the audience sees it: what the output
    /// shows, or, before the first cut to them, the head of the queue.
    fn on_screen_key(&self) -> Option<String> {
        match self.relay.view().on_screen {
            Some(k) => Some(k),
            None => self.state.head().map(|h| h.key.to_string()),
        }
    }

    /// Execute what the new state asks for: relay, OBS cues, STATUS line.
    fn after_change(&mut self) {
        self.reconcile_relay(Instant::now());
        // The queue part of the view is published before replies; rebuild it
        // (O(queue length)) here only when the relay's state changed.
        if self.relay.view() != self.published_relay {
            self.publish_view();
        }
        self.sync_obs();
        self.refresh_status();
    }

    fn sync_obs(&mut self) {
        let Some(obs) = &self.obs else { return };
        let shown = self.on_screen_key();
        let e = self.state.entries();
        let mut order: Vec<&str> = Vec::with_capacity(2);
        if let Some(k) = &shown {
            order.push(k.as_str());
        }
        for x in e.iter().take(2) {
            if order.len() < 2 && !order.contains(&&*x.key) {
                order.push(&x.key);
            }
        }
        let want = BroadcastState {
            on_air: order.first().map(|k| self.display(k)),
            next_up: order.get(1).map(|k| self.display(k)),
            switch_seq: match self.relay.mode() {
                relay::Mode::Splice => self.cuts,
                relay::Mode::Restart => self.state.switch_seq(),
            },
            slot_ends_at: moderation::slot_ends_at(&self.state, &self.registry, &self.policy())
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        };
        if self.sent_obs.as_ref() != Some(&want) {
            obs.show(want.clone());
            self.sent_obs = Some(want);
        }
    }

    fn refresh_status(&mut self) {
        let line = self.status_line(unix_ms());
        self.notifier.status(&line);
        self.next_status = Instant::now() + STATUS_REFRESH;
    }

    fn status_line(&self, now_ms: u64) -> String {
        let mut parts = Vec::new();
        match self.on_screen_key() {
            Some(k) => {
                let since = if self.state.head().is_some_and(|h| *h.key == *k) {
                    self.state.on_air_since().unwrap_or(now_ms)
                } else {
                    now_ms
                };
                let mins = now_ms.saturating_sub(since) / 60_000;
                parts.push(format!("on air: {} for {mins}m", self.display(&k)));
            }
            None => parts.push("nobody on air".into()),
        }
        parts.push(format!("{} waiting", self.state.len().saturating_sub(1)));
        parts.push(
            match self.relay.view().state {
                "live" => "relay ok",
                "starting" => "relay starting",
                "switching" => "relay switching",
                "stopping" => "relay switching",
                "backoff" => "relay restarting",
                "slate" => "slate on air",
                _ => "relay idle",
            }
            .to_string(),
        );
        if let Some(c) = &self.last_cut {
            parts.push(c.clone());
        }
        if self.cfg.obs.enabled {
            parts.push(if self.obs_view.connected {
                "obs connected".into()
            } else {
                "obs disconnected".into()
            });
        }
        if self.store_failed {
            parts.push("STATE NOT SAVED".into());
        }
        parts.join(" · ")
    }

    /// Tell the relay what the queue wants on air now (level-triggered).
    fn reconcile_relay(&mut self, now: Instant) {
        let e = self.state.entries();
        let want = Want {
            on_air: e.first().map(|h| Streamer {
                key: h.key.to_string(),
                name: self.display(&h.key),
            }),
            next: e.get(1).map(|n| Streamer {
                key: n.key.to_string(),
                name: self.display(&n.key),
            }),
            left: self.kill_now.take(),
            stopping: self.shutting_down,
        };
        let mut notices = Vec::new();
        self.relay.want(&want, now, &mut notices);
        self.on_notices(notices);
    }

    /// The output's publish secret changes with each output run; the HTTP
    /// side checks `on_publish` of the output app against it.
    fn sync_secret(&mut self) {
        let s = read(&self.settings);
        if s.relay_secret != self.relay.output_secret() {
            write(
                &self.settings,
                Settings {
                    relay_secret: self.relay.output_secret().to_string(),
                    ..(*s).clone()
                },
            );
        }
    }

    fn on_notices(&mut self, notices: Vec<Notice>) {
        self.sync_secret();
        if notices.is_empty() {
            return;
        }
        for n in notices {
            match n {
                Notice::Cut {
                    from,
                    to,
                    how,
                    waited,
                } => {
                    self.cuts += 1;
                    let who = |k: &Option<String>| {
                        k.as_deref()
                            .map_or_else(|| "the slate".to_string(), |k| self.display(k))
                    };
                    let line = match how {
                        relay::CutKind::Keyframe => format!(
                            "cut to {} on their keyframe {:.2} s after the switch; {} kept playing",
                            who(&to),
                            waited.as_secs_f64(),
                            who(&from)
                        ),
                        relay::CutKind::Restart => match &to {
                            Some(_) => format!(
                                "{} on screen {:.2} s after the switch (relay restarted)",
                                who(&to),
                                waited.as_secs_f64()
                            ),
                            None => format!("{} off screen", who(&from)),
                        },
                        other => format!(
                            "cut to {} {} {:.2} s after the switch",
                            who(&to),
                            other.describe(),
                            waited.as_secs_f64()
                        ),
                    };
                    log::info!("{line}");
                    self.last_cut = Some(line);
                    if let Some(f) = from {
                        self.release_drop(&f);
                    }
                }
                Notice::GiveUp { key } => {
                    if self.state.head().is_some_and(|h| *h.key == *key) {
                        // Skipping is a queue change: persisted like any other.
                        self.apply_internal(Op::Skip { at: unix_ms() });
                    }
                }
            }
        }
        self.publish_view();
        self.sync_obs();
        self.refresh_status();
    }

    /// A publisher waiting for the cut away from them is disconnected now.
    fn release_drop(&mut self, key: &str) {
        if let Some(i) = self.drops_after_cut.iter().position(|(k, _)| k == key) {
            self.drops_after_cut.remove(i);
            let who = self.display(key);
            if let Some(c) = &self.control {
                c.drop_publisher(&self.cfg.rtmp.ingest_app, key, &who);
            }
        }
    }

    fn on_relay_event(&mut self, ev: RelayEvent) {
        let mut notices = Vec::new();
        self.relay.on_event(ev, Instant::now(), &mut notices);
        // A relay (re)started on an event has a new output secret: the
        // HTTP side must know it before that ffmpeg publishes.
        self.sync_secret();
        if !notices.is_empty() {
            self.on_notices(notices);
            self.after_change();
        } else if self.relay.view() != self.published_relay {
            self.publish_view();
            self.refresh_status();
        }
    }

    fn on_obs_status(&mut self, st: ObsStatus) {
        match st {
            ObsStatus::Connected { obs_version } => {
                self.obs_view.connected = true;
                self.obs_view.detail = format!("connected to OBS {obs_version}");
            }
            ObsStatus::Disconnected { reason } => {
                self.obs_view.connected = false;
                self.obs_view.detail = reason;
            }
        }
        self.publish_view();
        self.refresh_status();
    }

    fn on_timers(&mut self, now: Instant) {
        if self.since_trim > 0 && now >= self.last_batch + TRIM_AFTER_IDLE {
            if self.since_trim >= TRIM_MIN_COMMANDS {
                crate::sys::trim_heap();
            }
            self.since_trim = 0;
        }
        if let (Some(next), Some(iv)) = (self.next_watchdog, self.notifier.watchdog_interval()) {
            if now >= next {
                // Sent from the loop itself: a wedged engine stops pinging;
                // and only while the HTTP side answers hooks.
                match self.http_alive.as_ref().map_or(Ok(()), |alive| alive()) {
                    Ok(()) => {
                        if std::mem::take(&mut self.watchdog_withheld) {
                            log::info!("the HTTP side answers again; watchdog pings resume");
                        }
                        self.notifier.watchdog();
                    }
                    Err(why) => {
                        if !std::mem::replace(&mut self.watchdog_withheld, true) {
                            log::error!("{why}: withholding the watchdog ping");
                        }
                    }
                }
                self.next_watchdog = Some(now + iv);
            }
        }
        if self.relay.deadline().is_some_and(|d| now >= d) {
            let mut notices = Vec::new();
            self.relay.tick(now, &mut notices);
            let changed = !notices.is_empty();
            self.on_notices(notices);
            if changed {
                self.after_change();
            } else if self.relay.view() != self.published_relay {
                self.publish_view();
                self.refresh_status();
            }
        }
        // Never keep a taken-off publisher connected for long, cut or not.
        while let Some((key, at)) = self.drops_after_cut.first().cloned() {
            if now < at + DROP_AFTER_CUT_MAX {
                break;
            }
            self.release_drop(&key);
        }
        if !self.registry_watched && now >= self.next_registry_check && self.refresh_registry(false)
        {
            self.after_change();
        }
        self.end_slot();
        if now >= self.next_status {
            self.refresh_status();
            // Memory freed by bursts of reads (which never reach the engine)
            // goes back to the kernel at least this often.
            crate::sys::trim_heap();
        }
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        match Config::load(&self.config_path, self.config_explicit, &config::ProcessEnv) {
            Ok(new) => self.apply_config(new),
            Err(e) => log::error!("reload rejected, keeping the running config: {e}"),
        }
        self.refresh_registry(true);
        self.notifier.ready();
    }

    fn apply_config(&mut self, new: Config) {
        let old = std::mem::replace(&mut self.cfg, new);
        // Public names may depend on the queue policy: rebuild them.
        self.names_gen = None;
        let new = self.cfg.clone();
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        if old.relay.mode != new.relay.mode {
            restart.push("relay.mode");
        } else if old.relay != new.relay {
            self.relay.set_spec(relay_spec(&new));
            applied.push("[relay] (from the next relay start)");
        }
        if old.log.level != new.log.level {
            if let Some(l) = crate::log::parse_level(&new.log.level) {
                crate::log::set_level(l);
            }
            applied.push("log.level");
        }
        {
            let s = read(&self.settings);
            let dir = new.state_dir();
            let admin_token =
                match crate::auth::load_or_create(&crate::auth::admin_token_path(&new, &dir), true)
                {
                    Ok((t, _)) => t,
                    Err(e) => {
                        log::error!("keeping the old admin token: {e}");
                        s.admin_token.clone()
                    }
                };
            let hook_secret =
                match crate::auth::load_or_create(&crate::auth::hook_secret_path(&new, &dir), true)
                {
                    Ok((t, _)) => t,
                    Err(e) => {
                        log::error!("keeping the old hook secret: {e}");
                        s.hook_secret.clone()
                    }
                };
            for (changed, what) in [
                (s.admin_token != admin_token, "admin token"),
                (s.hook_secret != hook_secret, "hook secret"),
                (
                    s.allowed_hosts != new.http.allowed_hosts,
                    "http.allowed_hosts",
                ),
            ] {
                if changed {
                    applied.push(what);
                }
            }
            write(
                &self.settings,
                Settings {
                    admin_token,
                    hook_secret,
                    allowed_hosts: new.http.allowed_hosts.clone(),
                    relay_secret: s.relay_secret.clone(),
                    ingest_app: s.ingest_app.clone(),
                    output_app: s.output_app.clone(),
                    output_stream: s.output_stream.clone(),
                },
            );
        }
        match (&self.obs, new.obs.enabled) {
            // Every reload: the OBS thread compares the settings and re-reads
            // the password file itself, so a new password in the same file
            // is picked up too.
            (Some(h), true) => h.reconfigure(new.obs.clone()),
            (Some(_), false) => {
                if let Some(h) = self.obs.take() {
                    h.shutdown();
                }
                self.obs_view = ObsView {
                    enabled: false,
                    connected: false,
                    detail: "disabled".into(),
                };
            }
            (None, true) => {
                self.obs_view.enabled = true;
                self.start_obs();
            }
            (None, false) => {}
        }
        if old.obs != new.obs {
            // A new or reconfigured OBS thread gets the full state again.
            self.sent_obs = None;
            applied.push("[obs]");
        }
        if old.queue != new.queue {
            applied.push("[queue]");
        }
        if old.http.listen != new.http.listen || old.http.workers != new.http.workers {
            restart.push("http.listen/http.workers");
        }
        if old.http.max_connections != new.http.max_connections
            || old.http.request_timeout_seconds != new.http.request_timeout_seconds
        {
            restart.push("http.max_connections/http.request_timeout_seconds");
        }
        if old.rtmp != new.rtmp {
            restart.push("[rtmp]");
        }
        if old.state != new.state {
            restart.push("state.dir");
        }
        if old.log.target != new.log.target {
            restart.push("log.target");
        }
        // Settings that need a restart keep their running values.
        if !restart.is_empty() {
            self.cfg.http = old.http.clone();
            self.cfg.rtmp = old.rtmp.clone();
            self.cfg.state = old.state.clone();
            self.cfg.log.target = old.log.target.clone();
            self.cfg.relay.mode = old.relay.mode;
        }
        log::info!(
            "configuration reloaded from {}: applied {}; needs a restart: {}",
            self.config_path.display(),
            if applied.is_empty() {
                "nothing changed".to_string()
            } else {
                applied.join(", ")
            },
            if restart.is_empty() {
                "nothing".to_string()
            } else {
                restart.join(", ")
            }
        );
        self.publish_view();
        self.refresh_status();
    }

    /// Graceful stop: refuse new work, stop the relay (SIGTERM, then
    /// SIGKILL), persist, stop OBS.
    fn shutdown(mut self, commands: &Receiver<Command>) {
        self.notifier.stopping();
        log::info!("shutting down");
        self.shutting_down = true;
        self.reconcile_relay(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.relay.stopped() {
            let now = Instant::now();
            if now >= deadline {
                log::error!("relay did not exit in time");
                break;
            }
            select! {
                recv(self.relay_rx) -> ev => if let Ok(ev) = ev { self.on_relay_event(ev) },
                recv(commands) -> c => if let Ok(c) = c { refuse(c) },
                default(Duration::from_millis(50)) => {}
            }
            let mut notices = Vec::new();
            self.relay.tick(Instant::now(), &mut notices);
        }
        if let Err(e) = self.store.compact(&self.state) {
            log::error!("{e}");
        }
        if let Some(h) = self.obs.take() {
            h.shutdown();
        }
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        while let Ok(c) = commands.try_recv() {
            refuse(c);
        }
        log::info!("stopped; {} entries saved", self.state.len());
    }
}

fn refuse(c: Command) {
    c.answer(Reply::error(503, "shutting down"));
}

impl Command {
    /// Answer a command without deciding it (shutdown, overload).
    pub fn answer(self, r: Reply) {
        match self {
            Command::Publish { reply, .. }
            | Command::PublishDone { reply, .. }
            | Command::Skip { reply }
            | Command::Clear { reply }
            | Command::Override { reply, .. }
            | Command::Moderate { reply, .. }
            | Command::Streamers { reply, .. }
            | Command::Health { reply } => reply.send(r),
            _ => {}
        }
    }
}

fn relay_spec(cfg: &Config) -> RelaySpec {
    let r = &cfg.rtmp;
    RelaySpec {
        mode: match cfg.relay.mode {
            config::RelayMode::Splice => relay::Mode::Splice,
            config::RelayMode::Restart => relay::Mode::Restart,
        },
        ffmpeg: cfg.relay.ffmpeg.clone(),
        args: cfg.relay.args.clone(),
        log_path: cfg.relay_log_path(),
        log_max_bytes: cfg.relay.log_max_bytes,
        host: r.host.clone(),
        port: r.port,
        ingest_app: r.ingest_app.clone(),
        output_app: r.output_app.clone(),
        output_stream: r.output_stream.clone(),
        stall: Duration::from_secs(cfg.relay.stall_seconds),
        stop_grace: Duration::from_millis(cfg.relay.stop_grace_ms),
        max_failures: cfg.relay.max_failures,
        slate: cfg.relay.slate.clone(),
        slate_text: cfg.relay.slate_text.clone(),
        work_dir: cfg.state_dir(),
        cut_timeout: (cfg.relay.cut_timeout_ms > 0)
            .then(|| Duration::from_millis(cfg.relay.cut_timeout_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_renders_seed_shape_and_status() {
        let v = View {
            names: Arc::new([("a", 1000), ("b\"q", 2000)].into_iter().collect()),
            on_air: Some(OnAirView {
                name: "a".into(),
                since_ms: 5000,
                relay_state: "running",
                relay_pid: Some(42),
                relay_restarts: 1,
            }),
            started_at_ms: 0,
            ..View::default()
        };
        assert_eq!(v.queue_json(), r#"["a","b\"q"]"#);
        let s: serde_json::Value = serde_json::from_str(&v.status_json(65_000)).unwrap();
        assert_eq!(s["on_air"]["name"], "a");
        assert_eq!(s["on_air"]["on_air_s"], 60);
        assert_eq!(s["on_air"]["relay"]["pid"], 42);
        assert_eq!(s["next_up"], "b\"q");
        assert_eq!(s["queue"][1]["position"], 1);
        assert_eq!(s["uptime_s"], 65);
        assert_eq!(s["on_air"]["slot_left_s"], serde_json::Value::Null);
    }

    #[test]
    fn status_shows_slot_time_and_live_blocks_only() {
        let v = View {
            names: Arc::new([("DJ A", 0)].into_iter().collect()),
            on_air: Some(OnAirView {
                name: "DJ A".into(),
                since_ms: 1000,
                relay_state: "running",
                relay_pid: None,
                relay_restarts: 0,
            }),
            slot_ends_at_ms: Some(61_000),
            slot_seconds: 60,
            rejoin_block_seconds: 30,
            blocked: vec![("gone".into(), 5_000), ("Bob".into(), 40_500)],
            ..View::default()
        };
        let s: serde_json::Value = serde_json::from_str(&v.status_json(10_200)).unwrap();
        assert_eq!(s["on_air"]["slot_left_s"], 51, "rounded up");
        assert_eq!(s["on_air"]["slot_ends_at"], 61);
        assert_eq!(s["slot_seconds"], 60);
        assert_eq!(s["rejoin_block_seconds"], 30);
        assert_eq!(s["blocked"].as_array().map(Vec::len), Some(1), "{s}");
        assert_eq!(s["blocked"][0]["name"], "Bob");
        assert_eq!(s["blocked"][0]["left_s"], 31);
        let late: serde_json::Value = serde_json::from_str(&v.status_json(70_000)).unwrap();
        assert_eq!(late["on_air"]["slot_left_s"], 0);
    }
}
