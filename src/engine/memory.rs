//! The real engine in memory: its own thread and channels, a real store in
//! a scratch directory, and in place of ffmpeg/RTMP, nginx and OBS small
//! recorders the test reads and steers (a manual clock, a relay that cuts
//! when told to). Behaviour tests run in milliseconds, without nginx.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::ports::{ControlPort, Io, ManualClock, ObsPort};
use super::{Answer, Command, Engine, EngineParts, Responder};
use crate::config::{Config, ObsConfig};
use crate::key::StreamKey;
use crate::moderation;
use crate::obs::BroadcastState;
use crate::relay::{self, CutKind, Notice, Relay, RelayEvent, RelaySpec, RelayView, Want};
use crate::scratch::ScratchDir;
use crate::store::Store;
use crate::systemd::Notifier;
use crate::view::{Published, Settings, View};

/// What the test sees of, and tells, the stand-in relay.
#[derive(Default)]
pub(crate) struct RelayLog {
    pub(crate) wants: Vec<Want>,
    /// Cut to the wanted streamer at once (else the old one stays on
    /// screen until this is set again: a planned cut waiting for a keyframe).
    pub(crate) cut: bool,
    /// Report this key as failed too often on the next call.
    pub(crate) give_up: Option<StreamKey>,
    pub(crate) on_screen: Option<StreamKey>,
    pub(crate) stopped: bool,
    /// Health reports handed to the engine on the next call.
    pub(crate) health: Vec<Notice>,
}

struct MemRelay(Arc<Mutex<RelayLog>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Relay for MemRelay {
    fn want(&mut self, w: &Want, _now: Instant, notices: &mut Vec<Notice>) {
        let mut l = lock(&self.0);
        if l.wants.last() != Some(w) {
            l.wants.push(w.clone());
        }
        l.stopped = w.stopping;
        if let Some(key) = l.give_up.take() {
            notices.push(Notice::GiveUp { key });
        }
        notices.append(&mut l.health);
        let want = w.on_air.as_ref().map(|s| s.key.clone());
        if l.cut && want != l.on_screen {
            let from = std::mem::replace(&mut l.on_screen, want.clone());
            notices.push(Notice::Cut {
                from,
                to: want,
                how: CutKind::Keyframe,
                waited: Duration::from_millis(5),
            });
        }
    }
    fn on_event(&mut self, _ev: RelayEvent, _now: Instant, _n: &mut Vec<Notice>) {}
    fn tick(&mut self, _now: Instant, _n: &mut Vec<Notice>) {}
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn view(&self) -> RelayView {
        let l = lock(&self.0);
        RelayView {
            state: if l.on_screen.is_some() {
                "live"
            } else {
                "slate"
            },
            pid: None,
            restarts: 0,
            on_screen: l.on_screen.clone(),
        }
    }
    fn stopped(&self) -> bool {
        lock(&self.0).stopped
    }
    fn output_secret(&self) -> &str {
        "memory-secret"
    }
    fn mode(&self) -> relay::Mode {
        relay::Mode::Splice
    }
    fn set_spec(&mut self, _spec: RelaySpec) {}
}

struct MemControl(Arc<Mutex<Vec<String>>>);

impl ControlPort for MemControl {
    fn drop_publisher(&self, _app: &str, key: &StreamKey, _who: &str) {
        // What nginx would be asked to drop (test support).
        lock(&self.0).push(key.expose().to_string());
    }
    fn shutdown(self: Box<Self>) {}
}

struct MemObs(Arc<Mutex<Vec<BroadcastState>>>);

impl ObsPort for MemObs {
    fn show(&self, state: BroadcastState) {
        lock(&self.0).push(state);
    }
    fn reconfigure(&self, _cfg: ObsConfig) {}
    fn shutdown(self: Box<Self>) {}
}

pub(crate) struct Harness {
    pub(crate) tx: Sender<Command>,
    pub(crate) clock: ManualClock,
    pub(crate) relay: Arc<Mutex<RelayLog>>,
    pub(crate) drops: Arc<Mutex<Vec<String>>>,
    pub(crate) obs: Arc<Mutex<Vec<BroadcastState>>>,
    pub(crate) view: Published<View>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) dir: ScratchDir,
    thread: Option<JoinHandle<()>>,
    next_client: u64,
}

impl Harness {
    /// Start the engine with `toml` as its config (state in a scratch dir).
    pub(crate) fn start(tag: &str, toml: &str) -> Harness {
        let dir = ScratchDir::new(tag);
        Harness::start_in(dir, toml)
    }

    pub(crate) fn start_in(dir: ScratchDir, toml: &str) -> Harness {
        Harness::restart_in(dir, toml, None)
    }

    /// Start over a state dir as the daemon does, nginx's stat page
    /// listing `published` (None: unreadable).
    pub(crate) fn restart_in(
        dir: ScratchDir,
        toml: &str,
        published: Option<Vec<StreamKey>>,
    ) -> Harness {
        let mut cfg = Config::parse(toml).expect("test config");
        cfg.state.dir = dir.0.display().to_string();
        let clock = ManualClock::new();
        let relay = Arc::new(Mutex::new(RelayLog {
            cut: true,
            ..RelayLog::default()
        }));
        let drops = Arc::new(Mutex::new(Vec::new()));
        let obs = Arc::new(Mutex::new(Vec::new()));
        let (store, state, _) = Store::open(&dir.0, clock.now_ms()).expect("store");
        let view: Published<View> = Published::new(View::default());
        let settings = Published::new(Settings {
            admin_token: "t".into(),
            hook_secret: "h".into(),
            allowed_hosts: Vec::new(),
            relay_secret: String::new(),
            ingest_app: cfg.rtmp.ingest_app.clone(),
            output_app: cfg.rtmp.output_app.clone(),
            output_stream: cfg.rtmp.output_stream.clone(),
        });
        let (r, d, o) = (relay.clone(), drops.clone(), obs.clone());
        let io = Io {
            clock: Box::new(clock.clone()),
            relay: Box::new(move |_, _| Box::new(MemRelay(r))),
            control: Box::new(move |_| Ok(Box::new(MemControl(d)) as Box<dyn ControlPort>)),
            obs: Box::new(move |_, _| Ok(Box::new(MemObs(o.clone())) as Box<dyn ObsPort>)),
        };
        let (tx, rx): (Sender<Command>, Receiver<Command>) = crossbeam_channel::bounded(64);
        let parts = EngineParts {
            cfg,
            config_path: dir.0.join("motherstream.toml"),
            config_explicit: false,
            state,
            store,
            notifier: Notifier::from_env(),
            view: view.clone(),
            settings,
            registry_watched: true,
            io,
            recorder: None,
            events: super::Events::new(Arc::new(crate::metrics::Metrics::new()), Vec::new()),
            published,
            handover: None,
        };
        let metrics = parts.events.metrics().clone();
        let thread = std::thread::spawn(move || Engine::new(parts).run(rx));
        let h = Harness {
            tx,
            clock,
            relay,
            drops,
            obs,
            view,
            metrics,
            dir,
            thread: Some(thread),
            next_client: 1,
        };
        h.wake();
        h
    }

    /// Send a command, wait for its answer, then for the engine to finish
    /// that batch (it answers before it executes the effects: relay, OBS,
    /// drops): a second round trip is handled only after the first batch.
    fn ask(&self, make: impl FnOnce(Responder) -> Command) -> Answer {
        let r = self.round_trip(make);
        let _ = self.round_trip(|reply| Command::Health { reply });
        r
    }

    fn round_trip(&self, make: impl FnOnce(Responder) -> Command) -> Answer {
        let (r, rx) = Responder::channel();
        self.tx.send(make(r)).expect("engine alive");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("engine answers")
    }

    /// The health answer; also wakes the engine, so it looks at its timers.
    pub(crate) fn upgrade(&self) -> Answer {
        self.ask(|reply| Command::Upgrade { reply })
    }

    pub(crate) fn health(&self) -> Answer {
        self.ask(|reply| Command::Health { reply })
    }

    /// Let the engine look at its timers; the health answer is not needed.
    pub(crate) fn wake(&self) {
        let _ = self.health();
    }

    pub(crate) fn publish(&mut self, key: &str) -> Answer {
        let client_id = Some(self.next_client);
        self.next_client += 1;
        let key = crate::key::k(key);
        self.ask(|reply| Command::Publish {
            key,
            client_id,
            addr: "127.0.0.1".into(),
            reply,
        })
    }

    pub(crate) fn publish_done(&self, key: &str) -> Answer {
        let key = crate::key::k(key);
        self.ask(|reply| Command::PublishDone {
            key,
            client_id: None,
            reply,
        })
    }

    pub(crate) fn moderate(&self, req: moderation::Request) -> Answer {
        self.ask(|reply| Command::Moderate { req, reply })
    }

    pub(crate) fn streamers(&self, req: super::StreamerRequest) -> Answer {
        self.ask(|reply| Command::Streamers { req, reply })
    }

    /// Move the clock and let the engine see it.
    pub(crate) fn advance(&self, d: Duration) {
        self.clock.advance(d);
        self.wake();
    }

    pub(crate) fn queue(&self) -> Vec<String> {
        self.view
            .read()
            .names
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let v = self.view.read();
        serde_json::from_str(&v.status_json(self.clock.now_ms())).unwrap_or_default()
    }

    /// A counter of `/metrics` (0 when absent).
    pub(crate) fn metric(&self, line_prefix: &str) -> f64 {
        let v = self.view.read();
        self.metrics
            .render(&v, self.clock.now_ms())
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub(crate) fn drops(&self) -> Vec<String> {
        lock(&self.drops).clone()
    }

    /// The relay reports `key`'s stream in `state` (a change).
    pub(crate) fn report(&self, key: &str, state: crate::relay::health::State) {
        lock(&self.relay).health.push(Notice::Health {
            key: crate::key::k(key),
            report: crate::relay::health::Report {
                state: Some(state),
                kbps: 2500,
                fps_x10: 300,
                ..Default::default()
            },
            changed: true,
        });
        self.wake();
    }

    /// On-air first, as the relay was last told.
    pub(crate) fn wanted(&self) -> (Option<String>, Option<String>) {
        let l = lock(&self.relay);
        let w = l.wants.last().cloned().unwrap_or_default();
        let name = |s: Option<relay::Streamer>| s.map(|s| s.key.expose().to_string());
        (name(w.on_air), name(w.next))
    }

    /// Every streamer the relay was ever told to put on air.
    pub(crate) fn ever_on_air(&self) -> Vec<String> {
        lock(&self.relay)
            .wants
            .iter()
            .filter_map(|w| w.on_air.as_ref().map(|s| s.key.expose().to_string()))
            .collect()
    }

    pub(crate) fn set_cut(&self, on: bool) {
        lock(&self.relay).cut = on;
    }

    /// Stop the engine the way SIGTERM does and wait for it.
    pub(crate) fn shutdown(mut self) -> ScratchDir {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::replace(&mut self.dir, ScratchDir(std::path::PathBuf::new()))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
