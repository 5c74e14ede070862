//! What the daemon opens before its threads start: the state directory,
//! its secrets and saved queue, the HTTP socket, the recorder, the
//! registry watch.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Sender;
use motherstream::config::Config;
use motherstream::engine::Command;
use motherstream::http::{HttpPool, Liveness};
use motherstream::key::StreamKey;
use motherstream::listen::Origin;
use motherstream::recording::Recorder;
use motherstream::store::State;
use motherstream::store::Store;
use motherstream::view::{Published, Settings};
use motherstream::{auth, handover};

/// The state directory, opened.
pub struct Opened {
    pub dir: PathBuf,
    pub secrets: Secrets,
    pub store: Store,
    pub state: State,
}

/// The admin token and the hook secret.
pub struct Secrets {
    pub admin_token: String,
    pub hook_secret: String,
}

/// Create the state directory, its secrets and tag key, and restore the
/// saved queue.
pub fn open_state(cfg: &Config) -> Result<Opened, String> {
    let dir = cfg.state_dir();
    motherstream::private_fs::create_dir(&dir)
        .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
    // Both secrets exist from the first start on: nothing is open to
    // "anyone on loopback" while an operator has not configured them.
    type Load = fn(&Path, bool) -> Result<(String, bool), String>;
    let secret_at = |path: PathBuf, what: &str, load: Load| {
        let (s, created) = load(&path, true)?;
        if created {
            log::info!("created the {what} in {} (mode 0600)", path.display());
        }
        Ok::<String, String>(s)
    };
    let admin_token = secret_at(
        auth::admin_token_path(cfg, &dir),
        "admin token",
        auth::load_admin_token,
    )?;
    let hook_secret = secret_at(
        auth::hook_secret_path(cfg, &dir),
        "hook secret",
        auth::load_or_create,
    )?;
    // After a hand-over the files are as the previous binary of this
    // process saved them: no snapshot now (see `open_handed_over`).
    let open = if handover::from_version().is_some() {
        Store::open_handed_over
    } else {
        Store::open
    };
    let (store, state, report) =
        open(&dir, motherstream::clock::unix_ms()).map_err(|e| e.to_string())?;
    for w in &report.warnings {
        log::error!("{w}");
    }
    if let Err(e) = motherstream::tag::init(&dir) {
        log::warn!("{e}; guest names and key tags will change at every restart");
    }
    log::info!(
        "motherstream {} starting: {} queued entries restored from {}{}",
        handover::version(),
        report.restored_entries,
        dir.display(),
        if report.migrated_seed {
            " (migrated from QUEUE.json)"
        } else {
            ""
        }
    );
    Ok(Opened {
        dir,
        secrets: Secrets {
            admin_token,
            hook_secret,
        },
        store,
        state,
    })
}

pub fn warn_if_open_queue(cfg: &Config) {
    if !cfg.queue.require_registered {
        log::warn!(
            "the queue is open to any stream key ([queue] require_registered = false): unregistered \
             streamers are shown as guest-<tag>, never by their key; register streamers \
             (motherstream streamer add NAME) and set require_registered = true to admit only them"
        );
    }
}

/// Who is publishing according to nginx's stat page, read before the hook
/// server listens so that no publish can race it; the engine drops the
/// saved entries that are not publishing any more. None: nothing saved,
/// no stat page, or nginx unreachable (the queue stays as saved).
/// After a hand-over the queue was live in this process a moment ago (a
/// publisher who left meanwhile is told by its on_publish_done, queued in
/// the kernel): nginx is not asked, which took a round trip of the frozen
/// picture.
pub fn published_at_start(cfg: &Config, queued: usize) -> Option<Vec<StreamKey>> {
    if cfg.rtmp.stat_url.is_empty() || queued == 0 || handover::from_version().is_some() {
        return None;
    }
    match motherstream::nginx::published(&cfg.rtmp.stat_url, &cfg.rtmp.ingest_app) {
        Ok(p) => Some(p),
        Err(e) => {
            log::warn!(
                "cannot read nginx's stat page {} ({e}); keeping the {queued} queued entries as saved",
                cfg.rtmp.stat_url
            );
            None
        }
    }
}

/// The HTTP socket and its server, not yet served by workers.
pub struct Http {
    pub origin: Origin,
    pub addr: Option<SocketAddr>,
    /// Our own copy of the socket, handed to the next binary at an upgrade.
    pub listener_keep: TcpListener,
    pub server: Arc<tiny_http::Server>,
    pub liveness: Arc<Liveness>,
    pub max_connections: usize,
}

/// `[http] listen`: bound, from systemd or handed over.
pub fn open_http(cfg: &Config) -> Result<Http, String> {
    let limits = motherstream::http::limits(&cfg.http);
    if let Some(nofile) = motherstream::sys::open_files_limit() {
        if limits.max_connections as u64 + 64 > nofile {
            log::warn!(
                "http.max_connections {} leaves little of the open-files limit {nofile}: accepts may fail for want of descriptors",
                limits.max_connections
            );
        }
    }
    let max_connections = limits.max_connections;
    let listening = motherstream::listen::acquire(&cfg.http.listen)?;
    let listener_keep = listening
        .listener
        .try_clone()
        .map_err(|e| format!("cannot duplicate the HTTP socket: {e}"))?;
    let server = HttpPool::serve_on(listening.listener, &cfg.http.listen, limits)?;
    let liveness = Arc::new(Liveness::new(server.clone(), cfg.http.workers));
    Ok(Http {
        origin: listening.origin,
        addr: listening.addr,
        listener_keep,
        server,
        liveness,
        max_connections,
    })
}

/// The settings the HTTP side reads (the engine replaces them at a reload).
pub fn settings(cfg: &Config, secrets: Secrets, relay_secret: String) -> Published<Settings> {
    Published::new(Settings {
        admin_token: secrets.admin_token,
        hook_secret: secrets.hook_secret,
        allowed_hosts: cfg.http.allowed_hosts.clone(),
        relay_secret,
        ingest_app: cfg.rtmp.ingest_app.clone(),
        output_app: cfg.rtmp.output_app.clone(),
        output_stream: cfg.rtmp.output_stream.clone(),
    })
}

/// The recorder thread, with `[recording] enabled` (a hand-over carries
/// the previous binary's recordings to it).
pub fn recorder(cfg: &Config) -> Result<Option<Recorder>, String> {
    let carried = motherstream::handover::take_recording();
    if !cfg.recording.enabled {
        if let Some(c) = carried.filter(|c| !c.files.is_empty()) {
            log::warn!(
                "[recording] is off in this configuration: the {} recording(s) the previous binary started are not filed (nginx ends them when their publishers leave)",
                c.files.len()
            );
        }
        return Ok(None);
    }
    Recorder::spawn(
        cfg.recording.clone(),
        cfg.rtmp.control_url.clone(),
        cfg.rtmp.ingest_app.clone(),
        carried,
    )
    .map(Some)
    .map_err(|e| format!("cannot start the recorder thread: {e}"))
}

/// Whether a thread now reports changes of the registry file (else the
/// engine checks it every 2 s).
pub fn watch_registry(state_dir: &Path, engine: &Sender<Command>) -> bool {
    match motherstream::watch::spawn_registry_watch(
        state_dir,
        motherstream::registry::FILE,
        engine.clone(),
    ) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "cannot watch {} for changes ({e}); checking the streamer registry every 2 s instead",
                state_dir.display()
            );
            false
        }
    }
}
