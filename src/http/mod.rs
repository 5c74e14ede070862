//! The HTTP side: N worker threads share one `tiny_http::Server`. Hooks that
//! change the queue become engine commands (answered once durable); pure
//! policy hooks and read endpoints are answered from the engine's published
//! view and settings without a round trip.

mod admin_api;
mod overlay;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::json;
use tiny_http::{Header, Limits, Method, Request, Response, Server};

use crate::engine::{self, Command, Reply, Responder, Settings, Shared, View};
use crate::hook::{Hook, HookKind};
use crate::secret::ct_eq;

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
/// A worker busy with one request for longer than this is stuck: writes
/// time out after `request_timeout_seconds` each, and nothing else a worker
/// does waits on a peer.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

pub struct Ctx {
    pub engine: Sender<Command>,
    pub view: Shared<View>,
    pub settings: Shared<Settings>,
    pub stopping: AtomicBool,
}

pub struct HttpPool {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    ctx: Arc<Ctx>,
    liveness: Arc<Liveness>,
}

/// What the HTTP server may cost: the limits of the patched tiny_http
/// (vendor/tiny_http/PATCHES.md) from `[http]`.
pub fn limits(cfg: &crate::config::HttpConfig) -> Limits {
    Limits {
        max_connections: cfg.effective_max_connections(crate::sys::open_files_limit()),
        request_timeout: Duration::from_secs(cfg.request_timeout_seconds),
        max_head_bytes: MAX_HEAD,
        max_line_bytes: MAX_LINE,
        max_headers: MAX_HEADERS,
        max_body: MAX_BODY,
        linger: Duration::from_secs(2),
    }
}

/// Whether hooks are being answered: the accept loop runs and not every
/// worker is stuck on one request. The engine asks before each WATCHDOG=1.
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

    pub fn check(&self, now_ms: u64) -> Result<(), String> {
        if !self.server.listener_alive() {
            return Err("the HTTP listener has stopped".into());
        }
        workers_stuck(&self.busy_since_ms, now_ms)
    }
}

/// Pure part of [`Liveness::check`].
fn workers_stuck(busy_since_ms: &[AtomicU64], now_ms: u64) -> Result<(), String> {
    let limit = STUCK_AFTER.as_millis() as u64;
    let stuck = busy_since_ms
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .filter(|&t| t != 0 && now_ms.saturating_sub(t) > limit)
        .count();
    if stuck > 0 && stuck == busy_since_ms.len() {
        return Err(format!(
            "all {stuck} HTTP workers have been busy on one request for over {} s",
            STUCK_AFTER.as_secs()
        ));
    }
    Ok(())
}

#[cfg(feature = "test-hooks")]
static TEST_LISTENER: std::sync::OnceLock<TcpListener> = std::sync::OnceLock::new();

impl HttpPool {
    pub fn bind(listen: &str, limits: Limits) -> Result<Arc<Server>, String> {
        let listener =
            TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
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
        Ok(HttpPool {
            server,
            workers,
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

fn handle(mut req: Request, ctx: &Ctx) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let body = match read_body(&mut req) {
        Body::Ok(b) => b,
        Body::TooLarge => {
            warn_limited(format_args!(
                "refused {path}: body over {MAX_BODY} bytes from {}",
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
    let remote = req.remote_addr().copied();
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());

    if let Some(kind) = HookKind::from_path(path) {
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
        return match hook(kind, form, ctx) {
            Answer::Now(r) => respond(req, r, &[]),
            Answer::Engine(make) => forward(ctx, req, make),
        };
    }

    let read_only = |m: &Method| matches!(m, Method::Get | Method::Head);
    let (reply, html) = match path {
        "/queue-json" | "/api/status" | "/queue-list" | "/timer" | "/healthz"
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
        "/healthz" => return forward(ctx, req, Box::new(|reply| Command::Health { reply })),
        p if admin_api::allowed(p).is_some() => {
            let allow = admin_api::allowed(p).unwrap_or("POST");
            if !allow.split(", ").any(|m| m == method.as_str()) {
                return respond(req, method_not_allowed(allow), &[("Allow", allow)]);
            }
            if let Err(r) = authorize(ctx, auth.as_deref(), remote, path) {
                return respond_refused(req, r);
            }
            match admin_api::parse(path, &method, &body, query) {
                Ok(admin_api::Call::Moderate(m)) => {
                    return forward(
                        ctx,
                        req,
                        Box::new(move |reply| Command::Moderate { req: m, reply }),
                    )
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
            if let Err(r) = authorize(ctx, auth.as_deref(), remote, path) {
                return respond_refused(req, r);
            }
            match admin(path, &body) {
                Answer::Now(r) => (r, false),
                Answer::Engine(make) => return forward(ctx, req, make),
            }
        }
        #[cfg(feature = "test-hooks")]
        "/debug/wedge" => {
            let secs = crate::hook::parse_form(query)
                .into_iter()
                .find(|(k, _)| k == "secs")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(5);
            let _ = ctx.engine.send(Command::Wedge { secs });
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

/// Answer a refused admin request; a 401 carries the Bearer challenge.
fn respond_refused(req: Request, r: Reply) {
    let extra: &[(&str, &str)] = if r.status == 401 {
        &[("WWW-Authenticate", "Bearer")]
    } else {
        &[]
    };
    respond(req, r, extra)
}

fn method_not_allowed(allowed: &str) -> Reply {
    Reply::error(405, format!("method not allowed; use {allowed}"))
}

/// Why an admin request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    /// A token is configured and the request lacks it (401).
    BadToken,
    /// No token is configured and the client is not on loopback (403).
    NotLoopback,
}

/// Admin mutations: with a token configured, `Authorization: Bearer <token>`
/// is required (from anywhere); without one, only loopback clients may
/// mutate. Pure, so every branch is unit-tested without a network.
fn admin_allowed(
    token: Option<&str>,
    auth: Option<&str>,
    remote: Option<SocketAddr>,
) -> Result<(), Denied> {
    match token {
        Some(token) => {
            let given = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
            if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err(Denied::BadToken)
            }
        }
        None if remote.is_some_and(|a| a.ip().is_loopback()) => Ok(()),
        None => Err(Denied::NotLoopback),
    }
}

fn authorize(
    ctx: &Ctx,
    auth: Option<&str>,
    remote: Option<SocketAddr>,
    path: &str,
) -> Result<(), Reply> {
    let s = engine::read(&ctx.settings);
    let who = remote.map_or("unknown".into(), |a| a.to_string());
    match admin_allowed(s.admin_token.as_deref(), auth, remote) {
        Ok(()) => Ok(()),
        Err(Denied::BadToken) => {
            warn_limited(format_args!(
                "refused {path} from {who}: missing or wrong admin token"
            ));
            Err(Reply::error(
                401,
                "admin token required: Authorization: Bearer <token>",
            ))
        }
        Err(Denied::NotLoopback) => {
            warn_limited(format_args!(
                "refused {path} from {who}: no admin token is configured, so only loopback clients may change the queue"
            ));
            Err(Reply::error(
                403,
                "admin endpoints accept loopback clients only unless an admin token is configured",
            ))
        }
    }
}

fn admin(path: &str, body: &str) -> Answer {
    match path {
        "/kill_ffmpeg" => Answer::Engine(Box::new(|reply| Command::Skip { reply })),
        "/clear-queue" => Answer::Engine(Box::new(|reply| Command::Clear { reply })),
        _ => {
            let names: Vec<String> = match serde_json::from_str(body) {
                Ok(n) => n,
                Err(e) => {
                    return Answer::Now(Reply::error(
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
                return Answer::Now(Reply::error(400, format!("invalid name {bad:?}")));
            }
            Answer::Engine(Box::new(|reply| Command::Override { names, reply }))
        }
    }
}

fn hook(kind: HookKind, form: &str, ctx: &Ctx) -> Answer {
    let h = match Hook::parse(kind, form) {
        Ok(h) => h,
        Err(e) => {
            warn_limited(format_args!("refused {}: {e}", kind.as_str()));
            return Answer::Now(Reply::error(400, e.to_string()));
        }
    };
    let s = engine::read(&ctx.settings);
    let now = match kind {
        HookKind::Publish if h.app == s.ingest_app => {
            return Answer::Engine(Box::new(move |reply| Command::Publish {
                key: h.name,
                client_id: h.client_id,
                addr: h.addr,
                reply,
            }))
        }
        HookKind::Publish if h.app == s.output_app => {
            let secret_ok = h
                .get("ms_secret")
                .is_some_and(|x| ct_eq(x.as_bytes(), s.relay_secret.as_bytes()));
            if secret_ok && h.name == s.output_stream {
                Reply::json(200, json!({"ok": true}))
            } else {
                log::warn!(
                    "refused a publish to {}/{} from {}: only motherstream's relay may publish the output",
                    h.app,
                    h.name,
                    h.addr
                );
                Reply::error(403, "only motherstream's relay may publish the output")
            }
        }
        HookKind::Publish => {
            warn_limited(format_args!(
                "refused a publish to unknown application {:?} from {}",
                h.app, h.addr
            ));
            Reply::error(
                403,
                format!("publishing to application {:?} is not allowed", h.app),
            )
        }
        HookKind::PublishDone if h.app == s.ingest_app => {
            return Answer::Engine(Box::new(move |reply| Command::PublishDone {
                key: h.name,
                client_id: h.client_id,
                reply,
            }))
        }
        HookKind::Play if h.app == s.ingest_app && !h.from_loopback() => {
            warn_limited(format_args!(
                "refused {} playing a raw ingest stream in {} ({})",
                h.addr,
                h.app,
                // The stream name is a stream key: never in the log.
                crate::registry::fingerprint(&h.name)
            ));
            Reply::error(403, "raw ingest streams can only be played from this host")
        }
        // on_done also fires for players: it never dequeues anyone.
        _ => Reply::json(200, json!({"ok": true})),
    };
    Answer::Now(now)
}

/// What a route decided: an answer now, or a command for the engine, which
/// answers the client itself once the change is durable.
enum Answer {
    Now(Reply),
    Engine(Box<dyn FnOnce(Responder) -> Command>),
}

/// Hand a request to the engine without waiting for it. A full command
/// queue means the engine is far behind: answer 503 at once rather than
/// queue without bound.
fn forward(ctx: &Ctx, req: Request, make: Box<dyn FnOnce(Responder) -> Command>) {
    let cmd = make(Responder::new(move |r| respond(req, r, &[])));
    if let Err(e) = ctx.engine.try_send(cmd) {
        let busy = matches!(e, crossbeam_channel::TrySendError::Full(_));
        if busy {
            warn_limited(format_args!("the engine is overloaded; answering 503"));
        }
        e.into_inner().answer(Reply::error(
            503,
            if busy {
                "engine busy; try again"
            } else {
                "shutting down"
            },
        ));
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

/// Bad requests are logged, but a flood of them must not flood the journal:
/// at most 5 lines a second, then one line saying how many were dropped.
pub(crate) fn warn_limited(args: std::fmt::Arguments) {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let sec = engine::unix_ms() / 1000;
    let prev = WINDOW.swap(sec, Ordering::Relaxed);
    if prev != sec {
        let dropped = COUNT.swap(0, Ordering::Relaxed).saturating_sub(5);
        if dropped > 0 {
            log::warn!("{dropped} more refused requests not logged");
        }
    }
    if COUNT.fetch_add(1, Ordering::Relaxed) < 5 {
        log::warn!("{args}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn workers_are_stuck_only_when_all_are_busy_too_long() {
        let ms = |v: &[u64]| v.iter().map(|&t| AtomicU64::new(t)).collect::<Vec<_>>();
        let now = 100_000;
        let old = now - STUCK_AFTER.as_millis() as u64 - 1;
        assert!(workers_stuck(&ms(&[0, 0]), now).is_ok());
        assert!(workers_stuck(&ms(&[old, 0]), now).is_ok());
        assert!(workers_stuck(&ms(&[old, now - 5]), now).is_ok());
        let e = workers_stuck(&ms(&[old, old]), now).unwrap_err();
        assert!(e.contains("all 2 HTTP workers"), "{e}");
    }

    #[test]
    fn admin_auth_without_token_is_loopback_only() {
        assert_eq!(admin_allowed(None, None, addr("127.0.0.1:5")), Ok(()));
        assert_eq!(admin_allowed(None, None, addr("[::1]:5")), Ok(()));
        for remote in ["192.0.2.7:5", "10.0.0.1:5", "[2001:db8::1]:5"] {
            assert_eq!(
                admin_allowed(None, Some("Bearer x"), addr(remote)),
                Err(Denied::NotLoopback),
                "{remote}"
            );
        }
        assert_eq!(admin_allowed(None, None, None), Err(Denied::NotLoopback));
    }

    #[test]
    fn admin_auth_with_token_needs_it_from_everywhere() {
        let t = Some("tok-123");
        for remote in ["127.0.0.1:5", "192.0.2.7:5"] {
            assert_eq!(
                admin_allowed(t, Some("Bearer tok-123"), addr(remote)),
                Ok(())
            );
            assert_eq!(
                admin_allowed(t, None, addr(remote)),
                Err(Denied::BadToken),
                "loopback is not enough once a token exists"
            );
            for bad in [
                "Bearer tok-12",
                "Bearer tok-1234",
                "tok-123",
                "Basic tok-123",
                "Bearer ",
            ] {
                assert_eq!(
                    admin_allowed(t, Some(bad), addr(remote)),
                    Err(Denied::BadToken),
                    "{bad}"
                );
            }
        }
    }
}
