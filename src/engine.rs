//! The engine thread: the only owner of the queue state, the store, the
//! relay child and the OBS handle. It waits on its channels (commands,
//! relay events, OBS status) with a timeout set by its nearest timer, never
//! polling: each batch of commands is decided (pure queue rules), persisted
//! once (group commit), answered, and then executed (relay, OBS, STATUS).
//!
//! Streamers, slots and moderation live in [`streamers`]: the same loop,
//! with the decisions in `moderation` and `registry`.

mod command;
mod drops;
mod events;
mod health;
mod hooks;
#[cfg(test)]
mod memory;
mod obs_link;
mod persist;
pub mod ports;
mod registry_cache;
mod relay_link;
mod reload;
mod status;
mod streamers;
#[cfg(test)]
mod tests;
mod trim;
mod upgrade;
mod view;

pub(crate) use crate::refusal::{Answer, Refusal, Why};
pub use command::Command;
pub(crate) use command::Responder;
pub use events::Events;
pub(crate) use streamers::StreamerRequest;

use command::refuse;
use drops::Drops;
use obs_link::ObsLink;
use registry_cache::RegistryCache;
use relay_link::{relay_spec, Cuts};
use reload::ConfigSource;
use streamers::BlockLog;
use trim::HeapTrim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use serde_json::json;

use crate::config::{self, Config};
use crate::key::StreamKey;
use crate::moderation::Policy;
use crate::queue::{Op, State};
use crate::relay::{Relay, RelayEvent, RelayView};
use crate::store::Store;
use crate::systemd::Notifier;
use crate::view::{Names, Published, Settings, View};
use ports::{Clock, Io};

/// Most commands decided in one batch (one fsync).
const MAX_BATCH: usize = 1024;
/// How often STATUS= is refreshed when nothing happens (the "for 12m").
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The queue and the store, and the parts that execute what the queue
/// rules decide: each part owns its fields and says what it needs.
pub struct Engine {
    cfg: Config,
    /// Where `cfg` was read from (SIGHUP reads it again).
    config_source: ConfigSource,
    state: State,
    store: Store,
    store_failed: bool,
    shutting_down: bool,
    clock: Box<dyn Clock>,
    /// The relay and what its threads report.
    relay: Box<dyn Relay>,
    relay_rx: Receiver<RelayEvent>,
    /// The relay as shown in the last published view.
    published_relay: RelayView,
    /// The on-air publisher left: its stream is over (a forced switch).
    kill_now: Option<StreamKey>,
    /// Cuts so far and the last one, said.
    cuts: Cuts,
    /// The streamer registry as last read, with its pages.
    registry: RegistryCache,
    /// Publishers to disconnect through nginx.
    drops: Drops,
    obs: ObsLink,
    notifier: Notifier,
    next_status: Instant,
    view: Published<View>,
    settings: Published<Settings>,
    started_at_ms: u64,
    /// What the relay said while a batch was being saved (see `persist`),
    /// handled once the engine's turn is over.
    relay_backlog: persist::Backlog,
    /// The queue's public names as last published, and the (queue order,
    /// registry) generations they reflect (None: rebuild).
    names: Arc<Names>,
    names_gen: Option<(u64, u64)>,
    /// When a refused publish of a blocked key was last logged at info.
    block_log: BlockLog,
    /// After a slot end that could not be saved, wait before trying again.
    slot_retry_at: Option<Instant>,
    trim: HeapTrim,
    /// `[recording]`: records whoever the output shows (own thread).
    recorder: Option<crate::recording::Recorder>,
    /// Metrics and notifications: everything goes through [`Engine::emit`].
    events: Events,
    /// `motherstream upgrade`: the HTTP side and the exec, and a hand-over
    /// under way.
    handover: upgrade::Handover,
    /// Splice mode: how the read streams come through, and who was given
    /// up on (`engine/health.rs`).
    health: health::HealthBook,
}

thread_local! {
    static ON_ENGINE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs on the engine thread (the watchdog's probe asks,
/// to tell an answer the engine gave from a worker's "engine busy").
pub(crate) fn on_engine_thread() -> bool {
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
        let rtmp = &p.cfg.rtmp;
        let mut e = Engine {
            registry: RegistryCache::new(p.registry_watched, now, &rtmp.ingest_app, rtmp.port),
            drops: Drops::new(&rtmp.ingest_app),
            obs: ObsLink::new(obs_launcher, p.cfg.obs.enabled),
            cfg: p.cfg,
            config_source: ConfigSource::new(p.config_path, p.config_explicit),
            state: p.state,
            store: p.store,
            store_failed: false,
            shutting_down: false,
            relay,
            relay_rx,
            published_relay: RelayView::default(),
            kill_now: None,
            cuts: Cuts::default(),
            notifier: p.notifier,
            next_status: now,
            view: p.view,
            settings: p.settings,
            started_at_ms: clock.unix_ms(),
            relay_backlog: persist::Backlog::default(),
            names: Arc::new(Names::default()),
            names_gen: None,
            block_log: BlockLog::default(),
            slot_retry_at: None,
            trim: HeapTrim::new(now),
            clock,
            recorder: p.recorder,
            events: p.events,
            handover: upgrade::Handover::new(p.handover),
            health: health::HealthBook::default(),
        };
        e.take_carried();
        e.sync_secret();
        e.refresh_registry(true);
        e.drop_gone(published.as_deref());
        match control(e.cfg.rtmp.control_url.clone()) {
            Ok(c) => e.drops.attach(c),
            Err(err) => log::error!("cannot start the nginx control thread: {err}"),
        }
        e.obs.start(&e.cfg.obs);
        e
    }

    /// Run until a Shutdown command; returns after the relay is stopped, the
    /// state persisted and the OBS thread joined.
    pub fn run(mut self, commands: Receiver<Command>) {
        ON_ENGINE_THREAD.with(|c| c.set(true));
        crate::handover_timing::mark("engine running");
        self.after_change();
        crate::handover_timing::mark("relay reconciled");
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
                recv(self.obs.status()) -> st => {
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
        [
            self.trim.deadline(),
            self.relay.deadline(),
            self.drops.deadline(),
            self.registry.deadline(),
            self.slot_deadline(),
            self.upgrade_deadline(),
            self.health_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(self.next_status, Instant::min)
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let now_ms = self.clock.unix_ms();
        self.trim.batch(batch.len(), self.clock.now());
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
        self.tell_relay_first(self.clock.now());
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

    /// The public name of a key (see [`RegistryCache::display`]).
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
        self.trim.on_timer(now);
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
        while let Some(key) = self.drops.overdue(now) {
            self.release_drop(&key);
        }
        if self.registry.deadline().is_some_and(|d| now >= d) && self.refresh_registry(false) {
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
        self.obs.shutdown();
        self.drops.shutdown();
        if let Some(r) = self.recorder.take() {
            r.shutdown();
        }
        while let Ok(c) = commands.try_recv() {
            refuse(c);
        }
        log::info!("stopped; {} entries saved", self.state.len());
    }
}
