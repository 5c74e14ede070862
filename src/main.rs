//! motherstream: CLI, config load, threads, run until shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use motherstream::config::{self, Config, DEFAULT_CONFIG_PATH};
use motherstream::engine::{Command, Engine, EngineParts};
use motherstream::http::probe::ProbeTrace;
use motherstream::http::{Ctx, HttpPool, Liveness};
use motherstream::store::Store;
use motherstream::systemd::Notifier;
use motherstream::view::{Published, Settings, View};
use motherstream::watchdog::{self, Watchdog};
use motherstream::{auth, log as mslog, secret};

const USAGE: &str = "\
usage: motherstream [OPTIONS] [run]
       motherstream [OPTIONS] check-config
       motherstream [OPTIONS] streamer (add|list|remove|rotate-key|set-slot) ...
       motherstream [OPTIONS] api (GET|POST|DELETE) PATH [JSON]
       motherstream [OPTIONS] nginx-hooks
       motherstream [OPTIONS] upgrade

Runs the motherstream daemon (default), or validates the configuration and
prints the effective config with secrets redacted, or manages the streamer
registry (motherstream streamer --help), or calls an admin endpoint of the
running daemon with its admin token (e.g. api POST /api/skip, api GET
/api/streamers), or prints the nginx-rtmp hook directives with the hook
secret (to include in the nginx configuration), or asks the running daemon
to hand the show over to the binary on disk without a break (upgrade: exit 0
once the new binary serves, 1 with the reason when refused or when it fell
back to a restart).

options:
  -c, --config PATH      config file (default /etc/motherstream/motherstream.toml)
      --log-target T     auto, journald, syslog or stderr (overrides [log] target)
  -v, --verbose          more log output (repeatable)
  -q, --quiet            less log output (repeatable)
  -h, --help             this text
  -V, --version          print the version
";

/// What `motherstream` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subcommand {
    Run,
    CheckConfig,
    Streamer,
    Api,
    NginxHooks,
    Upgrade,
    Help,
    Version,
}

impl Subcommand {
    fn named(s: &str) -> Option<Subcommand> {
        Some(match s {
            "run" => Subcommand::Run,
            "check-config" => Subcommand::CheckConfig,
            "streamer" => Subcommand::Streamer,
            "api" => Subcommand::Api,
            "nginx-hooks" => Subcommand::NginxHooks,
            "upgrade" => Subcommand::Upgrade,
            _ => return None,
        })
    }

    /// Whether the words after it are its own arguments.
    fn takes_arguments(self) -> bool {
        matches!(self, Subcommand::Streamer | Subcommand::Api)
    }
}

struct Args {
    config: PathBuf,
    config_explicit: bool,
    log_target: Option<String>,
    verbosity: i32,
    command: Subcommand,
    /// Arguments of `streamer` and `api`.
    rest: Vec<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        config_explicit: false,
        log_target: None,
        verbosity: 0,
        command: Subcommand::Run,
        rest: Vec::new(),
    };
    let mut command_set = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                a.config = it.next().ok_or("--config needs a path")?.into();
                a.config_explicit = true;
            }
            "--log-target" => a.log_target = Some(it.next().ok_or("--log-target needs a value")?),
            "-v" | "--verbose" => a.verbosity += 1,
            "-q" | "--quiet" => a.verbosity -= 1,
            "-h" | "--help" => a.command = Subcommand::Help,
            "-V" | "--version" => a.command = Subcommand::Version,
            s if s.starts_with("--config=") => {
                a.config = s["--config=".len()..].into();
                a.config_explicit = true;
            }
            s if s.starts_with("-vv") && s[1..].chars().all(|c| c == 'v') => {
                a.verbosity += (s.len() - 1) as i32
            }
            _ if command_set && a.command.takes_arguments() => a.rest.push(arg),
            s if !command_set && Subcommand::named(s).is_some() => {
                a.command = Subcommand::named(s).unwrap_or(Subcommand::Run);
                command_set = true;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    // Everything motherstream creates holds keys or secrets: private,
    // whoever runs it and whatever their shell's umask (systemd's UMask=
    // says the same for the service).
    motherstream::sys::set_umask(0o077);
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("motherstream: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Subcommand::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Subcommand::Version => {
            println!("motherstream {}", motherstream::handover::version());
            ExitCode::SUCCESS
        }
        Subcommand::CheckConfig => check_config(&args),
        Subcommand::Streamer => streamer(&args),
        Subcommand::Api => api(&args),
        Subcommand::NginxHooks => nginx_hooks(&args),
        Subcommand::Upgrade => upgrade(&args),
        Subcommand::Run => run(&args),
    }
}

fn load_config(args: &Args) -> Result<Config, String> {
    let mut cfg = Config::load(&args.config, args.config_explicit, &config::ProcessEnv)
        .map_err(|e| e.to_string())?;
    if let Some(t) = &args.log_target {
        cfg.log.target = t.clone();
        cfg.validate().map_err(|e| e.to_string())?;
    }
    Ok(cfg)
}

fn check_config(args: &Args) -> ExitCode {
    // Warnings (a secret file others can read) go to the terminal.
    mslog::init(mslog::Target::Stderr, log::LevelFilter::Warn);
    match load_config(args).and_then(|c| {
        if let Some(t) =
            config::read_secret_file(&c.http.admin_token_file).map_err(|e| e.to_string())?
        {
            auth::check_admin_token(&t, std::path::Path::new(&c.http.admin_token_file))?;
        }
        config::read_secret_file(&c.obs.password_file).map_err(|e| e.to_string())?;
        Ok(c)
    }) {
        Ok(cfg) => {
            println!("# effective configuration ({})", args.config.display());
            print!("{}", cfg.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("motherstream: {e}");
            ExitCode::from(1)
        }
    }
}

fn streamer(args: &Args) -> ExitCode {
    use motherstream::streamer_cmd::{self, CliError};
    if args.rest.is_empty() || args.rest.iter().any(|a| a == "--help") {
        print!("{}", streamer_cmd::USAGE);
        return ExitCode::SUCCESS;
    }
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("motherstream: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = cli_state_dir(&cfg);
    eprintln!(
        "motherstream: registry {}",
        motherstream::registry::path(&dir).display()
    );
    if let Err(e) = act_as_state_owner(&dir) {
        eprintln!("motherstream: {e}");
        return ExitCode::from(1);
    }
    match streamer_cmd::run_with(
        &args.rest,
        &dir,
        &streamer_cmd::page_base(&cfg),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            eprintln!("motherstream: {e}\n\n{}", streamer_cmd::USAGE);
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("motherstream: {e} (registry in {})", dir.display());
            ExitCode::from(1)
        }
    }
}

/// The state directory as the CLI sees it. The daemon under systemd gets
/// $STATE_DIRECTORY; an administrator's shell does not. Without `[state]
/// dir`, use the packaged location when it exists, so the CLI finds the
/// registry and the secrets the daemon uses.
fn cli_state_dir(cfg: &Config) -> PathBuf {
    let packaged = std::path::Path::new("/var/lib/motherstream");
    if cfg.state.dir.is_empty() && packaged.is_dir() {
        packaged.to_path_buf()
    } else {
        cfg.state_dir()
    }
}

/// Root works in the service user's directory as that user: whatever the
/// user planted there (a link to /etc/shadow or to root's own secrets), a
/// CLI run by root can then read or change no more than the user could.
/// The secrets themselves are opened without following links as well.
fn act_as_state_owner(dir: &std::path::Path) -> Result<(), String> {
    match motherstream::private_fs::foreign_owner(dir) {
        Some((uid, gid)) => motherstream::sys::become_user(uid, gid).map_err(|e| {
            format!(
                "cannot act as uid {uid} (the owner of {}): {e}",
                dir.display()
            )
        }),
        None => Ok(()),
    }
}

/// The address a local client reaches `[http] listen` at.
fn local_authority(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => listen.to_string(),
    }
}

/// `motherstream api METHOD PATH [JSON]`: one admin call with the token the
/// daemon uses (read from its file), the answer on stdout.
fn api(args: &Args) -> ExitCode {
    let fail = |e: String| {
        eprintln!("motherstream: {e}");
        ExitCode::from(1)
    };
    let (method, path, body) = match args.rest.as_slice() {
        [m, p] => (m.to_ascii_uppercase(), p.clone(), None),
        [m, p, b] => (m.to_ascii_uppercase(), p.clone(), Some(b.clone())),
        _ => {
            eprintln!("motherstream: api takes METHOD PATH [JSON]\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !["GET", "POST", "DELETE"].contains(&method.as_str()) || !path.starts_with('/') {
        eprintln!("motherstream: api takes GET, POST or DELETE and a path starting with /");
        return ExitCode::from(2);
    }
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let dir = cli_state_dir(&cfg);
    if let Err(e) = act_as_state_owner(&dir) {
        return fail(e);
    }
    let token_path = auth::admin_token_path(&cfg, &dir);
    let token = match auth::load_or_create(&token_path, false) {
        Ok((t, _)) => t,
        Err(e) => {
            return fail(format!(
                "{e} (the daemon creates it at its first start; run this as root or as the motherstream user)"
            ))
        }
    };
    let url = format!("http://{}{path}", local_authority(&cfg.http.listen));
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .redirects(0)
        .build();
    let req = agent
        .request(&method, &url)
        .set("Authorization", &format!("Bearer {token}"));
    let result = if method == "GET" {
        req.call()
    } else {
        req.set("Content-Type", "application/json")
            .send_string(body.as_deref().unwrap_or("{}"))
    };
    let (ok, resp) = match result {
        Ok(r) => (true, r),
        Err(ureq::Error::Status(_, r)) => (false, r),
        Err(e) => return fail(format!("cannot reach the daemon at {url}: {e}")),
    };
    let status = resp.status();
    match resp.into_string() {
        Ok(text) => println!("{}", text.trim_end()),
        Err(e) => return fail(format!("cannot read the answer: {e}")),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("motherstream: HTTP {status}");
        ExitCode::from(1)
    }
}

/// `motherstream upgrade`: ask the daemon to hand over (admin API, with
/// the admin token), then wait until `/healthz` answers from the new binary.
fn upgrade(args: &Args) -> ExitCode {
    use std::time::{Duration, Instant};
    let fail = |e: String| {
        eprintln!("motherstream upgrade: {e}");
        ExitCode::from(1)
    };
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let token_path = auth::admin_token_path(&cfg, &cli_state_dir(&cfg));
    let token = match auth::load_or_create(&token_path, false) {
        Ok((t, _)) => t,
        Err(e) => {
            return fail(format!(
                "{e} (run this as root or as the motherstream user)"
            ))
        }
    };
    let base = format!("http://{}", local_authority(&cfg.http.listen));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let t0 = Instant::now();
    let json = |r: ureq::Response| -> serde_json::Value {
        r.into_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    // A refusal that says "try again" (a switch in progress) is asked
    // again for up to 15 s; others are final.
    let retry_until = Instant::now() + Duration::from_secs(15);
    let accepted = loop {
        let asked = agent
            .post(&format!("{base}/api/upgrade"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            // The daemon waits for open connections before it execs.
            .set("Connection", "close")
            .send_string("{}");
        match asked {
            Ok(r) => break json(r),
            Err(ureq::Error::Status(code, r)) => {
                let body = json(r);
                let why = body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string();
                if code == 409 && why.contains("try again") && Instant::now() < retry_until {
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                return fail(format!("refused (HTTP {code}): {why}; nothing changed"));
            }
            Err(e) => return fail(format!("cannot reach the daemon at {base}: {e}")),
        }
    };
    let from = accepted["from"].as_str().unwrap_or("?").to_string();
    let pid = accepted["pid"].as_u64().unwrap_or(0);
    let want = accepted["handovers"].as_u64().unwrap_or(0);
    // The socket stays open throughout: each probe waits in the queue
    // while the daemon execs.
    let end = Instant::now() + Duration::from_secs(45);
    let mut last = String::from("no answer");
    while Instant::now() < end {
        match agent
            .get(&format!("{base}/healthz"))
            .set("Connection", "close")
            .call()
        {
            Ok(r) => {
                let h = json(r);
                let n = h["handovers"].as_u64().unwrap_or(0);
                let version = h["version"].as_str().unwrap_or("?");
                if n == want {
                    println!(
                        "motherstream: handed over from {from} to {version} in {} ms (same pid {pid})",
                        t0.elapsed().as_millis()
                    );
                    return ExitCode::SUCCESS;
                }
                if h["fell_back"].as_bool() == Some(true) {
                    return fail(format!(
                        "the new binary ({version}) could not take the state over and restarted instead (see the log); the queue was kept"
                    ));
                }
                last = format!("still {version} (hand-over {n})");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fail(format!(
        "the daemon did not come back from the hand-over within 45 s ({last}); see the log"
    ))
}

/// `motherstream nginx-hooks`: the hook directives, with the secret, for an
/// nginx include file readable by root only (the packaged nginx example
/// includes /etc/motherstream/nginx-hooks.conf in both applications).
fn nginx_hooks(args: &Args) -> ExitCode {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("motherstream: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = cli_state_dir(&cfg);
    if let Err(e) = act_as_state_owner(&dir) {
        eprintln!("motherstream: {e}");
        return ExitCode::from(1);
    }
    let path = auth::hook_secret_path(&cfg, &dir);
    let secret = match auth::load_or_create(&path, false) {
        Ok((s, _)) => s,
        Err(e) => {
            eprintln!(
                "motherstream: {e} (the daemon creates it at its first start, the .deb at install)"
            );
            return ExitCode::from(1);
        }
    };
    let base = format!(
        "http://{}{}{secret}",
        local_authority(&cfg.http.listen),
        auth::HOOK_PREFIX
    );
    println!(
        "# motherstream hook URLs, written by `motherstream nginx-hooks`.\n\
         # They hold the hook secret ({}): keep this file readable by root only.",
        path.display()
    );
    for hook in ["on_publish", "on_publish_done", "on_play", "on_record_done"] {
        println!("{hook} {base}/{hook};");
    }
    ExitCode::SUCCESS
}

fn run(args: &Args) -> ExitCode {
    motherstream::sys::limit_malloc_arenas();
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("motherstream: {e}");
            return ExitCode::from(1);
        }
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
    let exe = motherstream::handover::Exe::current();
    match motherstream::handover::inherit() {
        motherstream::handover::Start::Fresh => {}
        motherstream::handover::Start::HandedOver {
            from_version,
            handovers,
        } => log::info!(
            "motherstream {} taking over from {from_version} (hand-over {handovers}, same pid {})",
            motherstream::handover::version(),
            std::process::id()
        ),
        motherstream::handover::Start::FellBack { why } => log::error!(
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

fn serve(cfg: Config, args: &Args, exe: Option<motherstream::handover::Exe>) -> Result<(), String> {
    let relay_secret =
        secret::random_hex(16).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;

    let state_dir = cfg.state_dir();
    motherstream::private_fs::create_dir(&state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    // Both secrets exist from the first start on: nothing is open to
    // "anyone on loopback" while an operator has not configured them.
    type Load = fn(&std::path::Path, bool) -> Result<(String, bool), String>;
    let secret_at = |path: std::path::PathBuf, what: &str, load: Load| {
        let (s, created) = load(&path, true)?;
        if created {
            log::info!("created the {what} in {} (mode 0600)", path.display());
        }
        Ok::<String, String>(s)
    };
    let admin_token = secret_at(
        auth::admin_token_path(&cfg, &state_dir),
        "admin token",
        auth::load_admin_token,
    )?;
    let hook_secret = secret_at(
        auth::hook_secret_path(&cfg, &state_dir),
        "hook secret",
        auth::load_or_create,
    )?;
    let (store, state, report) =
        Store::open(&state_dir, motherstream::clock::unix_ms()).map_err(|e| e.to_string())?;
    for w in &report.warnings {
        log::error!("{w}");
    }
    if let Err(e) = motherstream::tag::init(&state_dir) {
        log::warn!("{e}; guest names and key tags will change at every restart");
    }
    log::info!(
        "motherstream {} starting: {} queued entries restored from {}{}",
        motherstream::handover::version(),
        report.restored_entries,
        state_dir.display(),
        if report.migrated_seed {
            " (migrated from QUEUE.json)"
        } else {
            ""
        }
    );

    if !cfg.queue.require_registered {
        log::warn!(
            "the queue is open to any stream key ([queue] require_registered = false): unregistered \
             streamers are shown as guest-<tag>, never by their key; register streamers \
             (motherstream streamer add NAME) and set require_registered = true to admit only them"
        );
    }
    let published = published_at_start(&cfg, state.len());

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
    let listen_origin = listening.origin;
    // Our own copy of the socket, handed to the next binary at an upgrade.
    let listener_keep = listening
        .listener
        .try_clone()
        .map_err(|e| format!("cannot duplicate the HTTP socket: {e}"))?;
    let server = HttpPool::serve_on(listening.listener, &cfg.http.listen, limits)?;
    let liveness = Arc::new(Liveness::new(server.clone(), cfg.http.workers));
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<Command>(motherstream::http::MAX_PENDING);
    let view = Published::new(View::default());
    let settings = Published::new(Settings {
        admin_token,
        hook_secret,
        allowed_hosts: cfg.http.allowed_hosts.clone(),
        relay_secret,
        ingest_app: cfg.rtmp.ingest_app.clone(),
        output_app: cfg.rtmp.output_app.clone(),
        output_stream: cfg.rtmp.output_stream.clone(),
    });
    let recorder = if cfg.recording.enabled {
        let r = motherstream::recording::Recorder::spawn(
            cfg.recording.clone(),
            cfg.rtmp.control_url.clone(),
            cfg.rtmp.ingest_app.clone(),
        )
        .map_err(|e| format!("cannot start the recorder thread: {e}"))?;
        Some(r)
    } else {
        None
    };
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
    let registry_watched = match motherstream::watch::spawn_registry_watch(
        &state_dir,
        motherstream::registry::FILE,
        cmd_tx.clone(),
    ) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "cannot watch {} for changes ({e}); checking the streamer registry every 2 s instead",
                state_dir.display()
            );
            false
        }
    };
    let (exec_tx, exec_rx) = crossbeam_channel::bounded::<std::fs::File>(1);
    let stage: Option<Arc<dyn motherstream::handover::Stage>> = exe.map(|exe| {
        Arc::new(HttpStage {
            liveness: liveness.clone(),
            ctx: ctx.clone(),
            listener: listener_keep,
            exe,
            to_main: exec_tx,
        }) as Arc<dyn motherstream::handover::Stage>
    });
    let engine = Engine::new(EngineParts {
        cfg,
        config_path: args.config.clone(),
        config_explicit: args.config_explicit,
        state,
        store,
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

    // With a socket that outlives this process (systemd's, or handed
    // over), a stop pauses the accept loop and lets the requests in flight
    // be answered first: later hooks wait in the socket's queue for the
    // next daemon instead of getting a 503 from this one.
    let before_stop: Option<Box<dyn Fn() + Send>> =
        (listen_origin != motherstream::listen::Origin::Bound).then(|| {
            let live = liveness.clone();
            let ctx = ctx.clone();
            Box::new(move || drain_for_stop(&live, &ctx)) as Box<dyn Fn() + Send>
        });
    let signals = spawn_signal_thread(cmd_tx, before_stop)?;
    let probe_addr = server.server_addr().to_ip().map(watchdog::probe_addr);
    let pool = HttpPool::start(liveness.clone(), ctx)
        .map_err(|e| format!("cannot start HTTP workers: {e}"))?;
    log::info!(
        "serving hooks and endpoints on http://{} (at most {max_connections} connections)",
        listening.addr.map_or(listen, |a| a.to_string())
    );
    // WATCHDOG=1 only after a hook-shaped round trip through the daemon
    // (the first probe goes out a period after the engine has started).
    let notifier = Notifier::from_env();
    let watchdog = match (notifier.watchdog_timeout(), probe_addr) {
        (Some(w), Some(addr)) => {
            log::debug!(
                "watchdog: probing http://{addr}/healthz every {} ms",
                watchdog::timing(w).0.as_millis()
            );
            Some(
                Watchdog::spawn(addr, w, probe, liveness, notifier)
                    .map_err(|e| format!("cannot start the watchdog thread: {e}"))?,
            )
        }
        _ => None,
    };
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            engine.run(cmd_rx);
            drop(done_tx);
        })
        .map_err(|e| format!("cannot start the engine thread: {e}"))?;

    // The main thread started the output ffmpeg (Engine::new): a hand-over
    // must exec here, or ffmpeg's PR_SET_PDEATHSIG fires (see HttpStage).
    crossbeam_channel::select! {
        recv(exec_rx) -> state => {
            if let (Ok(state), Some(stage)) = (state, stage.as_ref()) {
                let err = stage.exec(state, true);
                log::error!("hand-over failed: {err}; exiting so that the service restarts");
                std::process::exit(1);
            }
        }
        recv(done_rx) -> _ => {}
    }
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

/// What the engine drives at `motherstream upgrade`: the HTTP accept loop,
/// the drain, and the exec (on the main thread when it forked the output).
struct HttpStage {
    liveness: Arc<Liveness>,
    ctx: Arc<Ctx>,
    listener: std::net::TcpListener,
    exe: motherstream::handover::Exe,
    to_main: crossbeam_channel::Sender<std::fs::File>,
}

impl motherstream::handover::Stage for HttpStage {
    fn pause(&self) -> Result<(), String> {
        if self
            .liveness
            .server()
            .pause_accepting(std::time::Duration::from_secs(1))
        {
            Ok(())
        } else {
            Err("the HTTP accept loop did not pause".into())
        }
    }

    fn resume(&self) {
        self.liveness.server().resume_accepting();
    }

    fn open_connections(&self) -> usize {
        self.liveness.server().num_connections()
    }

    fn idle(&self) -> bool {
        self.liveness.workers_idle() && self.ctx.answers.pending() == 0
    }

    fn exec(&self, state: std::fs::File, here: bool) -> String {
        if here || std::process::id() == motherstream::sys::fds::gettid() {
            return motherstream::handover::exec(&self.exe, &state, &self.listener);
        }
        // The main thread execs; this one waits to be replaced.
        if self.to_main.send(state).is_err() {
            return "the main thread is gone".into();
        }
        loop {
            std::thread::park();
        }
    }
}

/// Who is publishing according to nginx's stat page, read before the hook
/// server listens so that no publish can race it; the engine drops the
/// saved entries that are not publishing any more. None: nothing saved,
/// no stat page, or nginx unreachable (the queue stays as saved).
fn published_at_start(cfg: &Config, queued: usize) -> Option<Vec<motherstream::key::StreamKey>> {
    if cfg.rtmp.stat_url.is_empty() || queued == 0 {
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

/// Before a stop with a socket that outlives us: accept nothing more and
/// give the requests in flight up to 0.5 s to be answered.
fn drain_for_stop(live: &Liveness, ctx: &Ctx) {
    use std::time::{Duration, Instant};
    if !live.server().pause_accepting(Duration::from_millis(500)) {
        return;
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        if live.server().num_connections() == 0
            && live.workers_idle()
            && ctx.answers.pending() == 0
            && ctx.engine.is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    log::info!("stopped accepting: connections wait in the socket's queue for the next start");
}

/// SIGTERM/SIGINT → graceful stop; SIGHUP → reload. A dedicated thread turns
/// them into engine commands.
fn spawn_signal_thread(
    tx: crossbeam_channel::Sender<Command>,
    before_stop: Option<Box<dyn Fn() + Send>>,
) -> Result<signal_hook::iterator::Handle, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let cmd = match sig {
                    SIGHUP => {
                        log::info!("SIGHUP: reloading the configuration");
                        Command::Reload
                    }
                    _ => {
                        log::info!(
                            "{}: stopping",
                            if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
                        );
                        if let Some(f) = &before_stop {
                            f();
                        }
                        Command::Shutdown
                    }
                };
                if tx.send(cmd).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cli_parsing() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.command, Subcommand::Run);
        assert!(!a.config_explicit);
        let a = parse(&["--config", "/x.toml", "-vv", "-q", "check-config"]).unwrap();
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert!(a.config_explicit);
        assert_eq!(a.verbosity, 1);
        assert_eq!(a.command, Subcommand::CheckConfig);
        let a = parse(&["streamer", "add", "run"]).unwrap();
        assert_eq!(a.command, Subcommand::Streamer);
        assert_eq!(a.rest, ["add", "run"]);
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["bogus"]).is_err());
        assert!(parse(&["run", "run"]).is_err());
    }
}
