//! `motherstream run` (the default): the daemon. `start` opens what it
//! needs (state, secrets, the HTTP socket), this file starts the threads
//! and runs until shutdown, `stage` is what a hand-over drives, `signals`
//! turns signals into engine commands.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use motherstream::config::Config;
use motherstream::engine::{Command, Engine, EngineParts};
use motherstream::handover::{self, Exe, Stage};
use motherstream::http::probe::ProbeTrace;
use motherstream::http::{Ctx, HttpPool, Liveness};
use motherstream::systemd::Notifier;
use motherstream::view::{Published, View};
use motherstream::watchdog::{self, Watchdog};
use motherstream::{log as mslog, secret};

use super::{failed, load_config};
use crate::Args;

mod signals;
mod stage;
mod start;

use stage::HttpStage;

pub fn run(args: &Args) -> ExitCode {
    motherstream::handover_timing::mark("image started");
    motherstream::sys::limit_malloc_arenas();
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let level = mslog::parse_level(&cfg.log.level).unwrap_or(log::LevelFilter::Info);
    mslog::init(
        mslog::Target::resolve(&cfg.log.target, journal),
        mslog::adjust(level, args.verbosity),
    );
    std::panic::set_hook(Box::new(|info| log::error!("internal error: {info}")));
    // Before any thread: the exe path this process was started from (the
    // hand-over execs it), and what a previous binary handed over.
    let exe = Exe::current();
    let inherited = handover::inherit();
    motherstream::handover_timing::mark("state read");
    match inherited {
        handover::Start::Fresh => {}
        handover::Start::HandedOver {
            from_version,
            handovers,
        } => log::info!(
            "motherstream {} taking over from {from_version} (hand-over {handovers}, same pid {})",
            handover::version(),
            std::process::id()
        ),
        handover::Start::FellBack { why } => log::error!(
            "hand-over state unusable: {why}; falling back to a restart (the carried output ffmpeg was stopped; OBS sees a reconnect; queue kept)"
        ),
    }
    match serve(cfg, args, exe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Open everything, start the threads, run until the engine stops.
fn serve(cfg: Config, args: &Args, exe: Option<Exe>) -> Result<(), String> {
    let relay_secret =
        secret::random_hex(16).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let opened = start::open_state(&cfg)?;
    motherstream::handover_timing::mark("state directory opened");
    start::warn_if_open_queue(&cfg);
    let published = start::published_at_start(&cfg, opened.state.len());
    let http = start::open_http(&cfg)?;
    motherstream::handover_timing::mark("HTTP socket open");
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<Command>(motherstream::http::MAX_PENDING);
    let view = Published::new(View::default());
    let settings = start::settings(&cfg, opened.secrets, relay_secret);
    let recorder = start::recorder(&cfg)?;
    let metrics = Arc::new(motherstream::metrics::Metrics::new());
    let probe = Arc::new(ProbeTrace::new(secret::random_hex(16).map_err(|e| {
        format!("cannot read /dev/urandom for the watchdog probe: {e}")
    })?));
    let (sinks, notifiers) = motherstream::notify::start(&cfg.notify, &metrics);
    let ctx = Arc::new(Ctx {
        engine: cmd_tx.clone(),
        view: view.clone(),
        settings: settings.clone(),
        stopping: AtomicBool::new(false),
        recordings: recorder.as_ref().map(|r| r.inbox()),
        sessions: Default::default(),
        logins: Default::default(),
        metrics: metrics.clone(),
        answers: Default::default(),
        probe: probe.clone(),
    });
    let listen = cfg.http.listen.clone();
    let registry_watched = start::watch_registry(&opened.dir, &cmd_tx);
    let (exec_tx, exec_rx) = crossbeam_channel::bounded::<std::fs::File>(1);
    let stage: Option<Arc<dyn Stage>> = exe.map(|exe| {
        Arc::new(HttpStage {
            liveness: http.liveness.clone(),
            ctx: ctx.clone(),
            listener: http.listener_keep,
            exe,
            to_main: exec_tx,
        }) as Arc<dyn Stage>
    });
    motherstream::handover_timing::mark("threads started");
    let engine = Engine::new(EngineParts {
        cfg,
        config_path: args.config.clone(),
        config_explicit: args.config_explicit,
        state: opened.state,
        store: opened.store,
        notifier: Notifier::from_env(),
        view,
        settings,
        registry_watched,
        recorder,
        io: motherstream::engine::ports::Io::real(),
        events: motherstream::engine::Events::new(metrics, sinks),
        published,
        handover: stage.clone(),
    });
    motherstream::handover_timing::mark("engine built");

    let signals = signals::spawn(
        cmd_tx,
        signals::before_stop(http.origin, &http.liveness, &ctx),
    )?;
    let probe_addr = http.server.server_addr().to_ip().map(watchdog::probe_addr);
    let pool = HttpPool::start(http.liveness.clone(), ctx)
        .map_err(|e| format!("cannot start HTTP workers: {e}"))?;
    log::info!(
        "serving hooks and endpoints on http://{} (at most {} connections)",
        http.addr.map_or(listen, |a| a.to_string()),
        http.max_connections
    );
    let watchdog = start_watchdog(probe_addr, probe, http.liveness)?;
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            engine.run(cmd_rx);
            drop(done_tx);
        })
        .map_err(|e| format!("cannot start the engine thread: {e}"))?;
    exec_if_asked(&exec_rx, &done_rx, stage.as_deref());

    let engine_result = engine_thread.join();
    if let Some(w) = watchdog {
        w.stop();
    }
    let listener_lost = pool.listener_lost();
    pool.stop();
    // The engine (holding the notifiers' queues) is gone: what is queued
    // gets a short last chance.
    notifiers.shutdown();
    signals.close();
    if engine_result.is_err() {
        return Err("the engine thread failed; exiting so systemd restarts the service".into());
    }
    if listener_lost {
        return Err("the HTTP listener failed; exiting so systemd restarts the service".into());
    }
    Ok(())
}

/// WATCHDOG=1 only after a hook-shaped round trip through the daemon (the
/// first probe goes out a period after the engine has started). None when
/// systemd asks for no watchdog.
fn start_watchdog(
    probe_addr: Option<std::net::SocketAddr>,
    probe: Arc<ProbeTrace>,
    liveness: Arc<Liveness>,
) -> Result<Option<Watchdog>, String> {
    let notifier = Notifier::from_env();
    let (Some(w), Some(addr)) = (notifier.watchdog_timeout(), probe_addr) else {
        return Ok(None);
    };
    log::debug!(
        "watchdog: probing http://{addr}/healthz every {} ms",
        watchdog::timing(w).0.as_millis()
    );
    Watchdog::spawn(addr, w, probe, liveness, notifier)
        .map(Some)
        .map_err(|e| format!("cannot start the watchdog thread: {e}"))
}

/// Wait for the engine to stop. The main thread started the output ffmpeg
/// (Engine::new): a hand-over must exec here, or ffmpeg's PR_SET_PDEATHSIG
/// fires (see HttpStage).
fn exec_if_asked(
    exec_rx: &Receiver<std::fs::File>,
    done_rx: &Receiver<()>,
    stage: Option<&dyn Stage>,
) {
    crossbeam_channel::select! {
        recv(exec_rx) -> state => {
            if let (Ok(state), Some(stage)) = (state, stage) {
                let err = stage.exec(state, true);
                log::error!("hand-over failed: {err}; exiting so that the service restarts");
                std::process::exit(1);
            }
        }
        recv(done_rx) -> _ => {}
    }
}
