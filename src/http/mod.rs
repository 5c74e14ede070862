//! The HTTP side: N worker threads share one `tiny_http::Server`. Hooks that
//! change the queue become engine commands (answered once durable); pure
//! policy hooks and read endpoints are answered from the engine's published
//! view and settings without a round trip.

mod admin_api;
mod console;
mod overlay;
pub mod probe;
mod reply;
pub mod session;
mod token_try;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;
use tiny_http::{Header, Limits, Method, Request, Response, Server};

use crate::auth;
use crate::engine::{self, Command, Responder, Settings, Shared, View};
use crate::hook::{Hook, HookKind};
use crate::key::StreamKey;
use crate::log::escape;
use crate::log::warn_limited;
use crate::moderation;
use crate::refusal::Refusal;
use crate::secret::ct_eq;
use probe::{ProbeTrace, Stage, PROBE_HEADER};
pub use reply::Reply;

/// Largest request body accepted (hook bodies are ~200 bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Commands waiting for the engine before new ones are refused with 503.
pub const MAX_PENDING: usize = 1024;
/// Request line plus headers (431 beyond; the line alone: 414).
pub const MAX_HEAD: usize = 16 * 1024;
/// One line of the request head.
pub const MAX_LINE: usize = 8 * 1024;
/// Header lines in one request.
pub const MAX_HEADERS: usize = 100;
/// Largest answer (a 1000-entry queue or registry is well under 1 MiB); an
/// answer is held in memory until its connection's thread has written it.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;

pub struct Ctx {
    pub engine: Sender<Command>,
    pub view: Shared<View>,
    pub settings: Shared<Settings>,
    pub stopping: AtomicBool,
    /// `[recording]` on: where `on_record_done` goes.
    pub recordings: Option<crate::recording::Inbox>,
    /// Console logins (cookie sessions with their CSRF tokens).
    pub sessions: session::Sessions,
    /// How fast wrong admin tokens may be tried.
    pub logins: crate::login_limit::LoginLimit,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Answers the engine decided, handed to their connections by the
    /// `http-reply` threads: the engine thread never formats or hands out
    /// an answer itself.
    pub answers: Answers,
    /// How far the watchdog's probes got (see `crate::watchdog`).
    pub probe: Arc<ProbeTrace>,
}

/// What the reply writers do.
enum Job {
    /// Hand an engine's answer to its connection (`probe`: the watchdog
    /// probe it answers, if it is one).
    Answer {
        req: Box<Request>,
        reply: Reply,
        probe: Option<u64>,
    },
    /// Stop (one per writer, after the answers queued before it).
    Stop,
    /// Test hook: block this writer, as a stuck reply path would.
    #[cfg(feature = "test-hooks")]
    Wedge(Duration),
}

/// The queue between the engine's responders and the reply writers.
pub struct Answers {
    tx: Sender<Job>,
    rx: Receiver<Job>,
}

impl Answers {
    /// Answers not yet taken by a writer thread.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}

impl Default for Answers {
    fn default() -> Answers {
        // Unbounded, yet bounded by what can be pending: the command queue
        // (MAX_PENDING) and the connection cap.
        let (tx, rx) = crossbeam_channel::unbounded();
        Answers { tx, rx }
    }
}

/// Queue an answer for the reply writers. The queue holds its own
/// receiver, so a send cannot fail while the daemon runs; were it ever
/// closed, the answer is handed out here rather than lost.
fn send_answer(tx: &Sender<Job>, job: Job) {
    if let Err(e) = tx.send(job) {
        if let Job::Answer { req, reply, .. } = e.into_inner() {
            respond(*req, reply, &[]);
        }
    }
}

/// How many threads hand out the engine's answers. Handing one out never
/// waits on a client (the connection's own thread writes it, see
/// vendor/tiny_http/PATCHES.md); two keep one slow formatting from
/// delaying the rest.
const REPLY_WRITERS: usize = 2;

pub struct HttpPool {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
    ctx: Arc<Ctx>,
    liveness: Arc<Liveness>,
}

/// What the HTTP server may cost: the limits of the patched tiny_http
/// (vendor/tiny_http/PATCHES.md) from `[http]`.
pub fn limits(cfg: &crate::config::HttpConfig) -> Limits {
    Limits {
        max_connections: cfg.effective_max_connections(crate::sys::open_files_limit()),
        request_timeout: Duration::from_secs(cfg.request_timeout_seconds),
        // A worker or the engine that has not answered within the request
        // deadline is stuck; the client gets 503 rather than a socket held
        // open for ever (the watchdog probe reports the stuck part).
        answer_timeout: Duration::from_secs(cfg.request_timeout_seconds),
        max_answer_bytes: MAX_ANSWER,
        max_head_bytes: MAX_HEAD,
        max_line_bytes: MAX_LINE,
        max_headers: MAX_HEADERS,
        max_body: MAX_BODY,
        linger: Duration::from_secs(2),
    }
}

/// What the HTTP side is doing, for the watchdog's report of a stuck part:
/// whether the accept loop runs, and which worker is busy since when.
pub struct Liveness {
    server: Arc<Server>,
    /// Per worker: when it took the request it is handling (unix ms), 0 idle.
    busy_since_ms: Vec<AtomicU64>,
    /// The listener failed: the daemon is exiting with an error.
    listener_lost: AtomicBool,
}

impl Liveness {
    pub fn new(server: Arc<Server>, workers: usize) -> Liveness {
        Liveness {
            server,
            busy_since_ms: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            listener_lost: AtomicBool::new(false),
        }
    }

    /// No worker is handling a request (a hand-over waits for it).
    pub fn workers_idle(&self) -> bool {
        self.busy_since_ms
            .iter()
            .all(|b| b.load(Ordering::Relaxed) == 0)
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// One line for the log: the accept loop, the workers, the connections.
    pub fn describe(&self) -> String {
        if !self.server.listener_alive() {
            return "the accept loop has stopped".into();
        }
        let since: Vec<u64> = self
            .busy_since_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        format!(
            "{}, {} connections open",
            workers_busy(&since, engine::unix_ms()),
            self.server.num_connections()
        )
    }
}

/// Pure part of [`Liveness::describe`]: `since` holds when each worker took
/// its request (unix ms, 0 idle).
fn workers_busy(since: &[u64], now_ms: u64) -> String {
    let busy: Vec<u64> = since
        .iter()
        .filter(|&&t| t != 0)
        .map(|&t| now_ms.saturating_sub(t))
        .collect();
    match busy.iter().max() {
        None => format!("all {} workers idle", since.len()),
        Some(longest) => format!(
            "{} of {} workers busy, the longest for {:.1} s",
            busy.len(),
            since.len(),
            *longest as f64 / 1000.0
        ),
    }
}

#[cfg(feature = "test-hooks")]
static TEST_LISTENER: std::sync::OnceLock<TcpListener> = std::sync::OnceLock::new();

impl HttpPool {
    pub fn bind(listen: &str, limits: Limits) -> Result<Arc<Server>, String> {
        let listener =
            TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        Self::serve_on(listener, listen, limits)
    }

    /// The server on a listening socket from `listen::acquire` (bound,
    /// from systemd or handed over); `listen` names it in errors.
    pub fn serve_on(
        listener: TcpListener,
        listen: &str,
        limits: Limits,
    ) -> Result<Arc<Server>, String> {
        #[cfg(feature = "test-hooks")]
        if let Ok(l) = listener.try_clone() {
            let _ = TEST_LISTENER.set(l);
        }
        log::debug!(
            "HTTP limits: {} connections, {} s per request, head {} bytes / {} headers, body {} bytes",
            limits.max_connections,
            limits.request_timeout.as_secs(),
            limits.max_head_bytes,
            limits.max_headers,
            limits.max_body
        );
        Server::from_listener_with_limits(listener, None, limits)
            .map(Arc::new)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))
    }

    /// One worker per slot of `liveness`.
    pub fn start(liveness: Arc<Liveness>, ctx: Arc<Ctx>) -> std::io::Result<HttpPool> {
        let server = liveness.server.clone();
        let n = liveness.busy_since_ms.len();
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (server, ctx, live) = (server.clone(), ctx.clone(), liveness.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || worker(&server, &ctx, &live, i))?,
            );
        }
        let mut writers = Vec::with_capacity(REPLY_WRITERS);
        for i in 0..REPLY_WRITERS {
            let (rx, trace) = (ctx.answers.rx.clone(), ctx.probe.clone());
            writers.push(
                std::thread::Builder::new()
                    .name(format!("http-reply-{i}"))
                    .spawn(move || reply_writer(&rx, &trace))?,
            );
        }
        Ok(HttpPool {
            server,
            workers,
            writers,
            ctx,
            liveness,
        })
    }

    /// Whether the pool ended because the listener failed.
    pub fn listener_lost(&self) -> bool {
        self.liveness.listener_lost.load(Ordering::SeqCst)
    }

    /// Stop accepting, wake every worker and join them.
    pub fn stop(self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        // Answers already queued are handed out first (the channel is FIFO).
        for _ in 0..self.writers.len() {
            let _ = self.ctx.answers.tx.send(Job::Stop);
        }
        for w in self.writers {
            let _ = w.join();
        }
    }
}

fn reply_writer(jobs: &Receiver<Job>, trace: &ProbeTrace) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Answer { req, reply, probe } => {
                // Noted first: the probe may read the answer the moment it
                // is handed out.
                if let Some(n) = probe {
                    trace.passed(Stage::Reply, n);
                }
                respond(*req, reply, &[]);
            }
            Job::Stop => return,
            #[cfg(feature = "test-hooks")]
            Job::Wedge(d) => {
                log::warn!(
                    "test hook: wedging an http-reply thread for {} s",
                    d.as_secs()
                );
                std::thread::sleep(d);
            }
        }
    }
}

fn worker(server: &Server, ctx: &Ctx, live: &Liveness, i: usize) {
    let busy = &live.busy_since_ms[i];
    loop {
        match server.recv() {
            Ok(req) => {
                if ctx.stopping.load(Ordering::SeqCst) {
                    respond(req, Reply::error(503, "shutting down"), &[]);
                    continue;
                }
                busy.store(engine::unix_ms().max(1), Ordering::Relaxed);
                handle(req, ctx);
                busy.store(0, Ordering::Relaxed);
            }
            Err(_) if ctx.stopping.load(Ordering::SeqCst) => return,
            // The accept loop has ended: no hook will reach us again. Stop
            // cleanly (queue saved, relay stopped) and exit non-zero, so
            // that systemd starts a daemon that listens.
            Err(e) if !server.listener_alive() => {
                if !live.listener_lost.swap(true, Ordering::SeqCst) {
                    log::error!("{e}; stopping so that systemd restarts motherstream");
                    let _ = ctx.engine.send(Command::Shutdown);
                }
            }
            Err(e) => log::warn!("HTTP server: {e}"),
        }
    }
}

/// Bodies up to `MAX_BODY` arrive read (tiny_http's connection thread reads
/// them, within the request deadline, before a worker sees the request), so
/// reading one here never waits on a client.
enum Body {
    Ok(String),
    TooLarge,
    TimedOut,
    Unreadable(String),
}

fn read_body(req: &mut Request) -> Body {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Body::TooLarge;
    }
    let mut buf = Vec::new();
    match req
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut buf)
    {
        Ok(_) if buf.len() > MAX_BODY => Body::TooLarge,
        Ok(_) => Body::Ok(String::from_utf8_lossy(&buf).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Body::TimedOut,
        Err(e) => Body::Unreadable(e.to_string()),
    }
}

/// The request headers the access checks look at.
struct Heads {
    host: Option<String>,
    origin: Option<String>,
    fetch_site: Option<String>,
    content_type: Option<String>,
    auth: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
    forwarded_proto: Option<String>,
}

impl Heads {
    fn of(req: &Request) -> Heads {
        let get = |name: &'static str| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_string())
        };
        Heads {
            host: get("Host"),
            origin: get("Origin"),
            fetch_site: get("Sec-Fetch-Site"),
            content_type: get("Content-Type"),
            auth: get("Authorization"),
            cookie: get("Cookie"),
            csrf: get(session::CSRF_HEADER),
            forwarded_proto: get("X-Forwarded-Proto"),
        }
    }

    /// The browser reached us over HTTPS (a TLS proxy in front says so):
    /// cookies are then marked `Secure`.
    fn https(&self) -> bool {
        self.forwarded_proto
            .as_deref()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    /// Refuse what a browser sends for another origin (see
    /// [`auth::same_origin`]): on every admin call and every request that
    /// could change something.
    fn refuse_cross_site(&self, path: &str, who: &str) -> Result<(), Reply> {
        match auth::same_origin(
            self.host.as_deref(),
            self.origin.as_deref(),
            self.fetch_site.as_deref(),
        ) {
            Ok(()) => Ok(()),
            Err(c) => {
                let what = match &c {
                    auth::CrossSite::FetchSite(s) => format!("Sec-Fetch-Site: {}", escape(s)),
                    auth::CrossSite::Origin(o) => format!("Origin: {}", escape(o)),
                };
                warn_limited(format_args!(
                    "refused {} from {who}: a cross-site request ({what})",
                    escape(path)
                ));
                Err(Reply::error(
                    403,
                    "cross-site requests are refused; call this endpoint from the same origin or without a browser",
                ))
            }
        }
    }
}

/// Where a hook request's path leads.
#[derive(Debug, PartialEq, Eq)]
enum HookRoute {
    /// `/hook/<right secret>/on_…`
    Hook(HookKind),
    /// `/hook/<right secret>/<not a hook>`
    Unknown,
    /// `/hook/<wrong secret>/…`
    WrongSecret,
    /// A bare `/on_…` path, as before hooks had a secret.
    Bare(HookKind),
    /// Not a hook path at all.
    NotHook,
}

fn hook_route(path: &str, secret: &str) -> HookRoute {
    if let Some(rest) = path.strip_prefix(auth::HOOK_PREFIX) {
        let (given, name) = rest.split_once('/').unwrap_or((rest, ""));
        if !ct_eq(given.as_bytes(), secret.as_bytes()) {
            return HookRoute::WrongSecret;
        }
        return match HookKind::from_path(&format!("/{name}")) {
            Some(k) => HookRoute::Hook(k),
            None => HookRoute::Unknown,
        };
    }
    match HookKind::from_path(path) {
        Some(k) => HookRoute::Bare(k),
        None => HookRoute::NotHook,
    }
}

fn handle(mut req: Request, ctx: &Ctx) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let heads = Heads::of(&req);
    let who = addr_of(&req);
    let settings = engine::read(&ctx.settings);
    // DNS rebinding: a page of a foreign name that resolves to this host
    // sends its own name as Host. Nothing is answered to such requests.
    if !auth::host_allowed(heads.host.as_deref(), &settings.allowed_hosts) {
        warn_limited(format_args!(
            "refused {} from {who}: Host {} is not a name of this server (localhost, an IP address or [http] allowed_hosts)",
            escape(path),
            heads.host.as_deref().map_or("(none)".into(), |h| format!("{:?}", escape(h)))
        ));
        return respond(
            req,
            Reply::error(
                403,
                "the Host header must be localhost, an IP address or one of [http] allowed_hosts",
            ),
            &[],
        );
    }
    let route = hook_route(path, &settings.hook_secret);
    match route {
        HookRoute::WrongSecret | HookRoute::Unknown | HookRoute::Hook(_) => {
            if let Err(r) = heads.refuse_cross_site("a hook", &who) {
                return respond(req, r, &[]);
            }
        }
        _ => {}
    }
    match route {
        HookRoute::WrongSecret => {
            warn_limited(format_args!(
                "refused a hook call from {who}: wrong hook secret in the URL"
            ));
            return respond(req, Reply::error(403, "wrong hook secret"), &[]);
        }
        HookRoute::Bare(kind) => {
            warn_limited(format_args!(
                "refused {} from {who}: hook URLs need the hook secret (/hook/<secret>/{}; the secret is in [http] hook_secret_file, default <state dir>/hook.secret)",
                kind.as_str(),
                kind.as_str()
            ));
            return respond(
                req,
                Reply::error(
                    403,
                    format!(
                        "hooks are called at /hook/<secret>/{}, with the secret from [http] hook_secret_file",
                        kind.as_str()
                    ),
                ),
                &[],
            );
        }
        HookRoute::Unknown => {
            return respond(req, Reply::error(404, "no such hook"), &[]);
        }
        HookRoute::Hook(_) | HookRoute::NotHook => {}
    }
    let read_only = |m: &Method| matches!(m, Method::Get | Method::Head);
    let is_admin = admin_api::allowed(path).is_some()
        || path == "/admin/session"
        || matches!(path, "/kill_ffmpeg" | "/clear-queue" | "/override-queue");
    if is_admin || !read_only(req.method()) {
        if let Err(r) = heads.refuse_cross_site(path, &who) {
            return respond(req, r, &[]);
        }
    }
    let body = match read_body(&mut req) {
        Body::Ok(b) => b,
        Body::TooLarge => {
            warn_limited(format_args!(
                "refused {}: body over {MAX_BODY} bytes from {}",
                escape(path),
                addr_of(&req)
            ));
            return respond(
                req,
                Reply::error(413, format!("request body over {MAX_BODY} bytes")),
                &[],
            );
        }
        Body::TimedOut => {
            return respond(
                req,
                Reply::error(408, "request body not received in time"),
                &[],
            )
        }
        Body::Unreadable(e) => {
            return respond(
                req,
                Reply::error(400, format!("cannot read body: {e}")),
                &[],
            )
        }
    };
    let method = req.method().clone();

    if console::ours(path) && !matches!(route, HookRoute::Hook(_)) {
        let page = console::route(path, &method, &heads, &body, ctx, &settings, &who);
        let headers = page.headers();
        return respond(req, page.reply.clone(), &headers);
    }

    if let HookRoute::Hook(kind) = route {
        if !matches!(method, Method::Post | Method::Get) {
            return respond(
                req,
                method_not_allowed("GET, POST"),
                &[("Allow", "GET, POST")],
            );
        }
        let form = if body.is_empty() {
            query
        } else {
            body.as_str()
        };
        // Metrics: counted when answered, whoever answers (engine or here).
        let timer = crate::metrics::HookTimer::start(&ctx.metrics, kind.as_str());
        return match hook(kind, form, ctx) {
            Route::Now(r) => {
                timer.done(r.status);
                respond(req, r, &[])
            }
            Route::Engine(make) => forward(
                ctx,
                req,
                Box::new(move |reply: Responder| {
                    make(Responder::new(move |a| {
                        timer.done(reply::status_of(&a));
                        reply.send(a)
                    }))
                }),
            ),
        };
    }

    let (reply, html) = match path {
        "/queue-json" | "/api/status" | "/queue-list" | "/timer" | "/healthz" | "/metrics"
            if !read_only(&method) =>
        {
            return respond(req, method_not_allowed("GET"), &[("Allow", "GET, HEAD")]);
        }
        "/queue-json" => {
            // Streamed from the shared view: a long queue's JSON is rendered
            // once per change, never copied per request.
            let v = engine::read(&ctx.view);
            return respond_body(req, 200, ViewJson { view: v, pos: 0 }, &[]);
        }
        "/api/status" => {
            let v = engine::read(&ctx.view);
            (
                Reply {
                    status: 200,
                    body: v.status_json(engine::unix_ms()),
                },
                false,
            )
        }
        "/queue-list" => (
            Reply {
                status: 200,
                body: overlay::QUEUE_LIST.to_string(),
            },
            true,
        ),
        "/timer" => (
            Reply {
                status: 200,
                body: overlay::TIMER.to_string(),
            },
            true,
        ),
        "/healthz" => {
            // The watchdog's probe: every stage it passes is noted.
            let probe = req
                .headers()
                .iter()
                .find(|h| h.field.equiv(PROBE_HEADER))
                .and_then(|h| ctx.probe.probe_number(h.value.as_str()));
            if let Some(n) = probe {
                ctx.probe.passed(Stage::Worker, n);
            }
            return forward_traced(ctx, req, probe, Box::new(|reply| Command::Health { reply }));
        }
        // Public like /api/status, which shows more: counts and timings,
        // no names, keys or addresses.
        "/metrics" => {
            let body = ctx
                .metrics
                .render(&engine::read(&ctx.view), engine::unix_ms());
            let reply = Reply { status: 200, body };
            return respond(
                req,
                reply,
                &[("Content-Type", crate::metrics::CONTENT_TYPE)],
            );
        }
        p if admin_api::allowed(p).is_some() => {
            let allow = admin_api::allowed(p).unwrap_or("POST");
            if !allow.split(", ").any(|m| m == method.as_str()) {
                return respond(req, method_not_allowed(allow), &[("Allow", allow)]);
            }
            if let Err(r) = authorize(ctx, &settings, &heads, &method, &body, &who, path) {
                return respond_refused(req, r);
            }
            ctx.metrics.admin_request(p);
            match admin_api::parse(path, &method, &body, query) {
                Ok(admin_api::Call::Moderate(m)) => {
                    return forward(
                        ctx,
                        req,
                        Box::new(move |reply| Command::Moderate { req: m, reply }),
                    )
                }
                Ok(admin_api::Call::Upgrade) => {
                    return forward(ctx, req, Box::new(|reply| Command::Upgrade { reply }))
                }
                Ok(admin_api::Call::Streamers(s)) => {
                    return forward(
                        ctx,
                        req,
                        Box::new(move |reply| Command::Streamers { req: s, reply }),
                    )
                }
                Err(r) => (r, false),
            }
        }
        "/kill_ffmpeg" | "/clear-queue" | "/override-queue" => {
            if method != Method::Post {
                return respond(req, method_not_allowed("POST"), &[("Allow", "POST")]);
            }
            if let Err(r) = authorize(ctx, &settings, &heads, &method, &body, &who, path) {
                return respond_refused(req, r);
            }
            ctx.metrics.admin_request(path);
            match admin(path, &body) {
                Route::Now(r) => (r, false),
                Route::Engine(make) => return forward(ctx, req, make),
            }
        }
        // `?secs=N` (5), `&part=engine` (the default) or `&part=reply`
        // (every http-reply thread).
        #[cfg(feature = "test-hooks")]
        "/debug/wedge" => {
            let form = crate::hook::parse_form(query);
            let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            let secs = get("secs").and_then(|v| v.parse().ok()).unwrap_or(5);
            if get("part") == Some("reply") {
                for _ in 0..REPLY_WRITERS {
                    send_answer(&ctx.answers.tx, Job::Wedge(Duration::from_secs(secs)));
                }
            } else {
                let _ = ctx.engine.send(Command::Wedge { secs });
            }
            (Reply::json(200, json!({"ok": true})), false)
        }
        // The listening socket fails for real (shutdown(2) on it: accept()
        // gets EINVAL), as a dead listener would.
        #[cfg(feature = "test-hooks")]
        "/debug/close-listener" => match TEST_LISTENER.get().map(crate::sys::shutdown_listener) {
            Some(Ok(())) => (Reply::json(200, json!({"ok": true})), false),
            Some(Err(e)) => (Reply::error(500, e.to_string()), false),
            None => (Reply::error(500, "no listener handle"), false),
        },
        _ => (
            Reply::error(404, format!("no such endpoint: {path}")),
            false,
        ),
    };
    let ctype: &[(&str, &str)] = if html {
        &[("Content-Type", "text/html; charset=utf-8")]
    } else {
        &[]
    };
    respond(req, reply, ctype)
}

/// Answer a refused admin request; a 401 carries the Bearer challenge, a
/// 429 when to try again.
fn respond_refused(req: Request, r: token_try::Refused) {
    let retry = r.retry_after();
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if r.reply.status == 401 {
        extra.push(("WWW-Authenticate", "Bearer"));
    }
    if let Some(s) = retry.as_deref() {
        extra.push(("Retry-After", s));
    }
    respond(req, r.reply, &extra)
}

fn method_not_allowed(allowed: &str) -> Reply {
    Reply::error(405, format!("method not allowed; use {allowed}"))
}

/// Whether `auth` (an `Authorization` header) carries `token`. Pure, so
/// every branch is unit-tested without a network. There is no "loopback is
/// enough": a page in a browser on this host is on loopback too.
fn token_ok(token: &str, auth: Option<&str>) -> bool {
    let given = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    !token.is_empty() && ct_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Admin calls need the token, or a console session with its CSRF token
/// in `X-CSRF-Token` (on every call, reads included: `?show_keys=1` is a
/// read worth protecting); those with a body must declare it JSON (a page
/// can send `text/plain` or form bodies cross-site without asking, never
/// `application/json`).
fn authorize(
    ctx: &Ctx,
    s: &Settings,
    heads: &Heads,
    method: &Method,
    body: &str,
    who: &str,
    path: &str,
) -> Result<(), token_try::Refused> {
    // A Bearer header is a try of the token, under the login budget (a
    // missing one guesses nothing and is not counted).
    let by_token = match heads.auth.as_deref() {
        Some(given) => {
            match token_try::try_token(ctx, &s.admin_token, given, who, "bearer", path) {
                token_try::Tried::Right => true,
                token_try::Tried::Wrong => false,
                token_try::Tried::Throttled(r) => return Err(r),
            }
        }
        None => false,
    };
    let by_session = || heads.cookie.is_some() && heads.auth.is_none();
    if !by_token && by_session() {
        match console::session_ok(ctx, heads) {
            session::Check::Valid => {}
            session::Check::NoSession => {
                warn_limited(format_args!(
                    "refused {path} from {who}: no such console session (expired or logged out)"
                ));
                return Err(Reply::error(
                    401,
                    "the console session has expired or was logged out; log in again",
                )
                .into());
            }
            session::Check::BadCsrf => {
                warn_limited(format_args!(
                    "refused {path} from {who}: console session without the right {} header",
                    session::CSRF_HEADER
                ));
                return Err(Reply::error(
                    403,
                    format!(
                        "console requests must carry the session's CSRF token in {}",
                        session::CSRF_HEADER
                    ),
                )
                .into());
            }
        }
    } else if !by_token {
        if heads.auth.is_none() {
            warn_limited(format_args!("refused {path} from {who}: no admin token"));
        }
        return Err(Reply::error(
            401,
            "admin token required: Authorization: Bearer <token> (the token is in [http] admin_token_file, default <state dir>/admin.token)",
        )
        .into());
    }
    let needs_json = *method == Method::Post || (*method == Method::Delete && !body.is_empty());
    if needs_json && !auth::is_json(heads.content_type.as_deref()) {
        warn_limited(format_args!(
            "refused {path} from {who}: Content-Type {} is not application/json",
            heads
                .content_type
                .as_deref()
                .map_or("(none)".into(), |c| format!("{:?}", escape(c)))
        ));
        return Err(Reply::error(
            415,
            "admin requests must be sent with Content-Type: application/json",
        )
        .into());
    }
    Ok(())
}

fn admin(path: &str, body: &str) -> Route {
    match path {
        // The seed's names for the same moderation requests as /api/skip
        // and /api/clear: one decision, one log line, one answer.
        "/kill_ffmpeg" => Route::Engine(Box::new(|reply| Command::Moderate {
            req: moderation::Request::Skip,
            reply,
        })),
        "/clear-queue" => Route::Engine(Box::new(|reply| Command::Moderate {
            req: moderation::Request::Clear,
            reply,
        })),
        _ => {
            let names: Vec<String> = match serde_json::from_str(body) {
                Ok(n) => n,
                Err(e) => {
                    return Route::Now(Reply::error(
                        400,
                        format!("body must be a JSON array of names, e.g. [\"a\",\"b\"]: {e}"),
                    ))
                }
            };
            // Public names (which may hold spaces) or keys; the engine
            // resolves them against the queue.
            let valid = |n: &String| {
                (1..=64).contains(&n.chars().count()) && !n.chars().any(char::is_control)
            };
            if let Some(bad) = names.iter().find(|n| !valid(n)) {
                return Route::Now(Reply::error(400, format!("invalid name {bad:?}")));
            }
            Route::Engine(Box::new(|reply| Command::Moderate {
                req: moderation::Request::Order { names },
                reply,
            }))
        }
    }
}

fn hook(kind: HookKind, form: &str, ctx: &Ctx) -> Route {
    let h = match Hook::parse(kind, form) {
        Ok(h) => h,
        Err(e) => {
            warn_limited(format_args!("refused {}: {e}", kind.as_str()));
            return Route::Now(Reply::error(400, e.to_string()));
        }
    };
    let s = engine::read(&ctx.settings);
    // Every hook that concerns a stream carries a valid one (the parser
    // refuses it otherwise); in the ingest app its name is a stream key.
    let stream = h.stream.clone();
    let now = match (kind, stream) {
        (HookKind::Publish, Some(key)) if h.app == s.ingest_app => {
            return Route::Engine(Box::new(move |reply| Command::Publish {
                key,
                client_id: h.client_id,
                addr: h.addr,
                reply,
            }))
        }
        (HookKind::Publish, stream) if h.app == s.output_app => {
            let secret_ok = h
                .get("ms_secret")
                .is_some_and(|x| ct_eq(x.as_bytes(), s.relay_secret.as_bytes()));
            let output = StreamKey::parse(&s.output_stream).ok();
            if secret_ok && stream.is_some() && stream == output {
                Reply::json(200, json!({"ok": true}))
            } else {
                // The name may be a streamer's key published to the wrong
                // app: its fingerprint only.
                log::warn!(
                    "refused a publish to {}/{} from {}: only motherstream's relay may publish the output",
                    h.app,
                    match &stream {
                        Some(_) if stream == output => s.output_stream.clone(),
                        Some(k) => k.fingerprint(),
                        None => "-".into(),
                    },
                    h.addr
                );
                Reply::error(403, "only motherstream's relay may publish the output")
            }
        }
        (HookKind::Publish, _) => {
            warn_limited(format_args!(
                "refused a publish to unknown application \"{}\" from {}",
                escape(&h.app),
                h.addr
            ));
            Reply::error(
                403,
                format!("publishing to application {:?} is not allowed", h.app),
            )
        }
        (HookKind::PublishDone, Some(key)) if h.app == s.ingest_app => {
            return Route::Engine(Box::new(move |reply| Command::PublishDone {
                key,
                client_id: h.client_id,
                reply,
            }))
        }
        (HookKind::Play, Some(key)) if h.app == s.ingest_app && !h.from_loopback() => {
            warn_limited(format_args!(
                "refused {} playing a raw ingest stream in {} ({})",
                h.addr,
                h.app,
                // The stream name is a stream key: never in the log.
                key.fingerprint()
            ));
            Reply::error(403, "raw ingest streams can only be played from this host")
        }
        (HookKind::RecordDone, Some(key)) if h.app == s.ingest_app => {
            if let (Some(r), Some(path)) = (&ctx.recordings, h.get("path")) {
                r.record_done(&key, h.get("recorder").unwrap_or(""), path);
            }
            Reply::json(200, json!({"ok": true}))
        }
        // on_done also fires for players: it never dequeues anyone.
        _ => Reply::json(200, json!({"ok": true})),
    };
    Route::Now(now)
}

/// What a route decided: an answer now, or a command for the engine, which
/// answers the client itself once the change is durable.
enum Route {
    Now(Reply),
    Engine(Box<dyn FnOnce(Responder) -> Command>),
}

/// Hand a request to the engine without waiting for it. A full command
/// queue means the engine is far behind: answer 503 at once rather than
/// queue without bound.
fn forward(ctx: &Ctx, req: Request, make: Box<dyn FnOnce(Responder) -> Command>) {
    forward_traced(ctx, req, None, make)
}

/// [`forward`] for a request that may be the watchdog's probe `probe`: an
/// answer given on the engine thread is noted as such.
fn forward_traced(
    ctx: &Ctx,
    req: Request,
    probe: Option<u64>,
    make: Box<dyn FnOnce(Responder) -> Command>,
) {
    let (tx, trace) = (ctx.answers.tx.clone(), ctx.probe.clone());
    let cmd = make(Responder::new(move |a| {
        if let Some(n) = probe.filter(|_| engine::on_engine_thread()) {
            trace.passed(Stage::Engine, n);
        }
        let reply = Reply::from_answer(a);
        let req = Box::new(req);
        send_answer(&tx, Job::Answer { req, reply, probe })
    }));
    if let Err(e) = ctx.engine.try_send(cmd) {
        let busy = matches!(e, crossbeam_channel::TrySendError::Full(_));
        if busy {
            warn_limited(format_args!("the engine is overloaded; answering 503"));
        }
        e.into_inner().answer(Err(Refusal::unavailable(if busy {
            "engine busy; try again"
        } else {
            "shutting down"
        })));
    }
}

fn addr_of(req: &Request) -> String {
    req.remote_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string())
}

fn respond(req: Request, reply: Reply, extra: &[(&str, &str)]) {
    respond_body(
        req,
        reply.status,
        std::io::Cursor::new(reply.body.into_bytes()),
        extra,
    )
}

/// `/queue-json`'s body, read straight out of the engine's published view.
struct ViewJson {
    view: std::sync::Arc<View>,
    pos: usize,
}

impl Read for ViewJson {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.view.queue_json().as_bytes()[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

trait SizedBody: Read {
    fn len(&self) -> usize;
}

impl SizedBody for std::io::Cursor<Vec<u8>> {
    fn len(&self) -> usize {
        self.get_ref().len()
    }
}

impl SizedBody for ViewJson {
    fn len(&self) -> usize {
        self.view.queue_json().len()
    }
}

fn respond_body(req: Request, status: u16, body: impl SizedBody, extra: &[(&str, &str)]) {
    let len = body.len();
    let mut resp = Response::new(status.into(), Vec::new(), body, Some(len), None);
    let has_ctype = extra.iter().any(|(k, _)| *k == "Content-Type");
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if !has_ctype {
        headers.push(("Content-Type", "application/json"));
    }
    headers.push(("Cache-Control", "no-store"));
    for (k, v) in headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    // The client may have gone away; nothing to do about it.
    let _ = req.respond(resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_is_always_required() {
        assert!(token_ok("tok-123", Some("Bearer tok-123")));
        assert!(token_ok("tok-123", Some("Bearer  tok-123 ")));
        for bad in [
            None,
            Some("Bearer tok-12"),
            Some("Bearer tok-1234"),
            Some("tok-123"),
            Some("Basic tok-123"),
            Some("Bearer "),
            Some("bearer tok-123"),
        ] {
            assert!(!token_ok("tok-123", bad), "{bad:?}");
        }
        assert!(
            !token_ok("", Some("Bearer ")),
            "an empty token never matches"
        );
    }

    #[test]
    fn busy_workers_are_described_with_the_longest_wait() {
        assert_eq!(workers_busy(&[0, 0], 100_000), "all 2 workers idle");
        assert_eq!(
            workers_busy(&[97_500, 0, 99_000], 100_000),
            "2 of 3 workers busy, the longest for 2.5 s"
        );
    }

    #[test]
    fn hook_paths_need_the_secret() {
        let s = "0123abcd";
        assert_eq!(
            hook_route("/hook/0123abcd/on_publish", s),
            HookRoute::Hook(HookKind::Publish)
        );
        assert_eq!(
            hook_route("/hook/0123abcd/on_publish_done", s),
            HookRoute::Hook(HookKind::PublishDone)
        );
        assert_eq!(hook_route("/hook/0123abcd/nope", s), HookRoute::Unknown);
        assert_eq!(hook_route("/hook/0123abcd", s), HookRoute::Unknown);
        for wrong in [
            "/hook/0123abce/on_publish",
            "/hook/0123abc/on_publish",
            "/hook//on_publish",
            "/hook/on_publish",
            "/hook/",
        ] {
            assert_eq!(hook_route(wrong, s), HookRoute::WrongSecret, "{wrong}");
        }
        assert_eq!(
            hook_route("/on_publish", s),
            HookRoute::Bare(HookKind::Publish)
        );
        assert_eq!(hook_route("/queue-json", s), HookRoute::NotHook);
        assert_eq!(
            hook_route("/hooks/0123abcd/on_publish", s),
            HookRoute::NotHook
        );
    }
}
