//! The engine thread: the only owner of the queue state, the store, the
//! relay child and the OBS handle. It waits on its channels (commands,
//! relay events, OBS status) with a timeout set by its nearest timer, never
//! polling: each batch of commands is decided (pure queue rules), persisted
//! once (group commit), answered, and then executed (relay, OBS, STATUS).
//!
//! Streamers, slots and moderation live in [`streamers`]: the same loop,
//! with the decisions in `moderation` and `registry`.

mod command;
mod events;
mod health;
mod hooks;
#[cfg(test)]
mod memory;
mod persist;
pub mod ports;
mod relay_link;
mod reload;
mod status;
mod streamers;
#[cfg(test)]
mod tests;
mod upgrade;
mod view;

pub use crate::refusal::{Answer, Refusal, Why};
pub use command::{Command, Responder};
pub use events::Events;
pub use streamers::StreamerRequest;

use command::refuse;
use relay_link::relay_spec;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use serde_json::json;

use crate::config::{self, Config};
use crate::key::StreamKey;
use crate::moderation::Policy;
use crate::obs::{BroadcastState, ObsStatus};
use crate::queue::{Op, State};
use crate::registry::{FileSig, Registry};
use crate::relay::{RelayEvent, RelayView};
use crate::store::Store;
use crate::systemd::Notifier;
use crate::view::{Names, ObsView, Pages, Published, Settings, View};
use ports::{Clock, ControlPort, Io, ObsLauncher, ObsPort, RelayPort};

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

pub struct Engine {
    cfg: Config,
    config_path: PathBuf,
    config_explicit: bool,
    state: State,
    store: Store,
    relay: Box<dyn RelayPort>,
    clock: Box<dyn Clock>,
    obs_launcher: ObsLauncher,
    /// The on-air publisher left: its stream is over (a forced switch).
    kill_now: Option<StreamKey>,
    /// Publishers taken off while on screen: disconnected once the output
    /// has cut away from them (they keep playing until then).
    drops_after_cut: Vec<(StreamKey, Instant)>,
    /// Cuts so far (OBS tells a switch from a refresh by it).
    cuts: u64,
    /// What happened at the last cut, for `/api/status` and STATUS.
    last_cut: Option<String>,
    relay_rx: Receiver<RelayEvent>,
    obs: Option<Box<dyn ObsPort>>,
    obs_tx: Sender<ObsStatus>,
    obs_rx: Receiver<ObsStatus>,
    obs_view: ObsView,
    notifier: Notifier,
    next_status: Instant,
    view: Published<View>,
    settings: Published<Settings>,
    started_at_ms: u64,
    shutting_down: bool,
    store_failed: bool,
    /// What the relay said while a batch was being saved (see `persist`),
    /// handled once the engine's turn is over.
    relay_backlog: persist::Backlog,
    /// The streamer registry as last read from `streamers.json`.
    registry: Registry,
    /// Signature of the file `registry` was read from (None = no file).
    registry_sig: Option<FileSig>,
    /// inotify reports changes of `streamers.json`; without it (watch set-up
    /// failed) the file is checked on a timer.
    registry_watched: bool,
    next_registry_check: Instant,
    /// Disconnects publishers through nginx's control module, off-thread.
    control: Option<Box<dyn ControlPort>>,
    /// After a slot end that could not be saved, wait before trying again.
    slot_retry_at: Option<Instant>,
    /// Publishers to disconnect once the batch that took them off is saved.
    pending_drops: Vec<StreamKey>,
    /// When a refused publish of a blocked key was last logged at info.
    block_logged: std::collections::HashMap<StreamKey, u64>,
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
    /// The streamers' pages of `registry`, shared with every view.
    pages: Arc<Pages>,
    /// The relay as shown in the last published view.
    published_relay: RelayView,
    /// Last state handed to the OBS thread.
    sent_obs: Option<BroadcastState>,
    /// `[recording]`: records whoever the output shows (own thread).
    recorder: Option<crate::recording::Recorder>,
    /// Metrics and notifications: everything goes through [`Engine::emit`].
    events: Events,
    /// `motherstream upgrade`: the HTTP side and the exec, and a hand-over
    /// under way.
    handover: Option<Arc<dyn crate::handover::Stage>>,
    upgrade: Option<upgrade::Upgrade>,
    /// Splice mode: how the read streams come through, and who was given
    /// up on (`engine/health.rs`).
    health: health::HealthBook,
}

thread_local! {
    static ON_ENGINE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs on the engine thread (the watchdog's probe asks,
/// to tell an answer the engine gave from a worker's "engine busy").
pub fn on_engine_thread() -> bool {
    ON_ENGINE_THREAD.with(|c| c.get())
}

pub struct EngineParts {
    pub cfg: Config,
    pub config_path: PathBuf,
    pub config_explicit: bool,
    pub state: State,
    pub store: Store,
    pub notifier: Notifier,
    pub view: Published<View>,
    pub settings: Published<Settings>,
    /// Whether a `watch` thread reports registry file changes.
    pub registry_watched: bool,
    /// Clock, relay, nginx control, OBS: `Io::real()` in the daemon.
    pub io: Io,
    /// `[recording]` on: the recorder thread, told of every cut.
    pub recorder: Option<crate::recording::Recorder>,
    pub events: Events,
    /// The keys nginx's stat page listed as publishing at start (None:
    /// unknown): the rest of the saved queue left while we were down.
    pub published: Option<Vec<StreamKey>>,
    /// What a hand-over drives (None: `motherstream upgrade` is refused).
    pub handover: Option<Arc<dyn crate::handover::Stage>>,
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
        let Io {
            clock,
            relay,
            control,
            obs: obs_launcher,
        } = p.io;
        let relay = relay(relay_spec(&p.cfg), relay_tx.clone());
        let published = p.published;
        let now = clock.now();
        let pages = Arc::new(Pages::new(
            &Registry::default(),
            &p.cfg.rtmp.ingest_app,
            p.cfg.rtmp.port,
        ));
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
            obs_launcher,
            kill_now: None,
            drops_after_cut: Vec::new(),
            cuts: 0,
            last_cut: None,
            relay_rx,
            obs: None,
            obs_tx,
            obs_rx,
            notifier: p.notifier,
            next_status: now,
            view: p.view,
            settings: p.settings,
            started_at_ms: clock.unix_ms(),
            clock,
            shutting_down: false,
            store_failed: false,
            relay_backlog: persist::Backlog::default(),
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
            pages,
            sent_obs: None,
            recorder: p.recorder,
            events: p.events,
            handover: p.handover,
            upgrade: None,
            health: health::HealthBook::default(),
        };
        e.take_carried();
        e.sync_secret();
        e.refresh_registry(true);
        e.drop_gone(published.as_deref());
        match control(e.cfg.rtmp.control_url.clone()) {
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
        match (self.obs_launcher)(self.cfg.obs.clone(), self.obs_tx.clone()) {
            Ok(h) => self.obs = Some(h),
            Err(e) => log::error!("cannot start the OBS thread: {e}"),
        }
    }

    /// Run until a Shutdown command; returns after the relay is stopped, the
    /// state persisted and the OBS thread joined.
    pub fn run(mut self, commands: Receiver<Command>) {
        ON_ENGINE_THREAD.with(|c| c.set(true));
        self.after_change();
        self.announce_ready();
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(self.clock.now());
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
            self.on_timers(self.clock.now());
            self.drain_relay_backlog();
            self.drive_upgrade(&commands);
            if self.shutting_down {
                break;
            }
        }
        self.shutdown(&commands);
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_status;
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
        if let Some(u) = self.upgrade_deadline() {
            t = t.min(u);
        }
        if let Some(h) = self.health_deadline() {
            t = t.min(h);
        }
        t
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let now_ms = self.clock.unix_ms();
        self.since_trim += batch.len();
        self.last_batch = self.clock.now();
        let mut ops: Vec<Op> = Vec::new();
        // (responder, answer, whether it acknowledges a state change)
        let mut replies: Vec<(Responder, Answer, bool)> = Vec::new();
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
                    let (r, op) = self.on_publish(key, client_id, addr, now_ms);
                    let changed = op.is_some();
                    ops.extend(op);
                    replies.push((reply, r, changed));
                }
                Command::PublishDone {
                    key,
                    client_id,
                    reply,
                } => {
                    let op = self.on_publish_done(key, client_id, now_ms);
                    let changed = op.is_some();
                    ops.extend(op);
                    replies.push((reply, Ok(json!({"ok": true})), changed));
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
                        Err(Refusal::unavailable(
                            "cannot persist queue state; see the log",
                        ))
                    } else {
                        Ok(json!({
                            "ok": true,
                            "version": crate::handover::version(),
                            "handovers": crate::handover::handovers(),
                            "fell_back": crate::handover::fell_back(),
                        }))
                    };
                    replies.push((reply, r, false));
                }
                Command::Upgrade { reply } => {
                    let r = self.begin_upgrade();
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
    fn persist(&mut self, ops: &[Op], now_ms: u64, replies: &mut [(Responder, Answer, bool)]) {
        if ops.is_empty() {
            return;
        }
        let res = persist::append_keeping_media(
            &mut self.store,
            &self.state,
            ops,
            self.relay.as_mut(),
            &self.relay_rx,
            self.clock.as_ref(),
            &mut self.relay_backlog,
        );
        match res {
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
                        *r = Err(Refusal::unavailable(format!(
                            "cannot persist queue state: {e}"
                        )));
                    }
                }
            }
        }
    }

    /// Apply an op the engine itself decided (relay failures), durably.
    fn apply_internal(&mut self, op: Op) {
        let out = self.state.apply(&op);
        if out.changed() {
            self.persist(std::slice::from_ref(&op), self.clock.unix_ms(), &mut []);
        }
        self.publish_view();
        self.after_change();
    }

    fn queue_reply(&self) -> Answer {
        let names: Vec<String> = self
            .state
            .entries()
            .iter()
            .map(|e| self.display(&e.key))
            .collect();
        Ok(json!({"ok": true, "queue": names}))
    }

    /// The public name of a key: the single place that decides it. Stream
    /// keys stand for themselves until a streamer registry is in use; from
    /// then on, never.
    fn display(&self, key: &StreamKey) -> String {
        self.registry.display(key)
    }

    fn policy(&self) -> Policy {
        Policy::effective(&self.cfg.queue, &self.state)
    }

    /// Execute what the new state asks for: relay, OBS cues, STATUS line.
    fn after_change(&mut self) {
        self.reconcile_relay(self.clock.now());
        // The queue part of the view is published before replies; rebuild it
        // (O(queue length)) here only when the relay's state changed.
        if self.relay.view() != self.published_relay {
            self.publish_view();
        }
        self.sync_obs();
        self.refresh_status();
    }

    fn on_timers(&mut self, now: Instant) {
        if self.since_trim > 0 && now >= self.last_batch + TRIM_AFTER_IDLE {
            if self.since_trim >= TRIM_MIN_COMMANDS {
                crate::sys::trim_heap();
            }
            self.since_trim = 0;
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
        if self.health_deadline().is_some_and(|d| now >= d) {
            self.health_rules();
        }
        if now >= self.next_status {
            self.refresh_status();
            // Memory freed by bursts of reads (which never reach the engine)
            // goes back to the kernel at least this often.
            crate::sys::trim_heap();
        }
    }

    /// Graceful stop: refuse new work, stop the relay (SIGTERM, then
    /// SIGKILL), persist, stop OBS.
    fn shutdown(mut self, commands: &Receiver<Command>) {
        self.notifier.stopping();
        log::info!("shutting down");
        self.shutting_down = true;
        self.reconcile_relay(self.clock.now());
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
            self.relay.tick(self.clock.now(), &mut notices);
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
        if let Some(r) = self.recorder.take() {
            r.shutdown();
        }
        while let Ok(c) = commands.try_recv() {
            refuse(c);
        }
        log::info!("stopped; {} entries saved", self.state.len());
    }
}
