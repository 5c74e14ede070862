//! The HTTP side: N worker threads share one `tiny_http::Server`. Hooks that
//! change the queue become engine commands (answered once durable); pure
//! policy hooks and read endpoints are answered from the engine's published
//! view and settings without a round trip.
//!
//! One file per job: `server` (the pool, its workers and their liveness),
//! `answers` (the engine's answers back to their connections, and the reply
//! writers), `gate` (Host, cross-site, body limits), `hooks` (nginx's
//! hooks), `routes` (the one table of every other endpoint), `admin_auth`
//! and `token_try` (who may make an admin call), `admin_api` (its bodies),
//! `console` and `session` (the pages), `overlay`, `reply` (answers →
//! statuses) and `probe` (the watchdog probe's trace).

mod admin_api;
mod admin_auth;
mod answers;
mod console;
mod gate;
mod hooks;
mod overlay;
pub mod probe;
mod reply;
mod routes;
mod server;
pub(crate) mod session;
mod token_try;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::Sender;
use tiny_http::{Method, Request};

use crate::engine::Command;
use crate::view::{Published, Settings, View};
use answers::respond;
pub(crate) use answers::Answers;
use gate::Heads;
use hooks::HookRoute;
use probe::ProbeTrace;
pub(crate) use reply::Reply;
pub use server::{limits, HttpPool, Liveness};

/// Largest request body accepted (hook bodies are ~200 bytes).
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Commands waiting for the engine before new ones are refused with 503.
pub const MAX_PENDING: usize = 1024;
/// Request line plus headers (431 beyond; the line alone: 414).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// One line of the request head.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// Header lines in one request.
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest answer (a 1000-entry queue or registry is well under 1 MiB); an
/// answer is held in memory until its connection's thread has written it.
pub(crate) const MAX_ANSWER: usize = 8 * 1024 * 1024;

pub struct Ctx {
    pub engine: Sender<Command>,
    pub view: Published<View>,
    pub settings: Published<Settings>,
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

/// A request that passed the gate, as its handler sees it (the request
/// itself, which the answer consumes, goes alongside).
#[derive(Clone, Copy)]
struct Incoming<'a> {
    ctx: &'a Ctx,
    settings: &'a Settings,
    heads: &'a Heads,
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    body: &'a str,
    /// The client's `ip:port`, for the log.
    who: &'a str,
}

/// One request, from a worker: the gate, then a hook or the route table.
fn handle(mut req: Request, ctx: &Ctx) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let heads = Heads::of(&req);
    let who = server::addr_of(&req);
    let settings = ctx.settings.read();
    if let Err(r) = gate::host(&heads, &settings, path, &who) {
        return respond(req, r, &[]);
    }
    let hook = hooks::hook_route(path, &settings.hook_secret);
    if let Err(r) = hooks::gate(&hook, &heads, &who) {
        return respond(req, r, &[]);
    }
    // Admin calls and anything that could change something: same origin
    // only.
    if routes::guarded(path) || !gate::read_only(req.method()) {
        if let Err(r) = heads.refuse_cross_site(path, &who) {
            return respond(req, r, &[]);
        }
    }
    let body = match gate::body(&mut req, path, &who) {
        Ok(b) => b,
        Err(r) => return respond(req, r, &[]),
    };
    let method = req.method().clone();
    let inc = Incoming {
        ctx,
        settings: &settings,
        heads: &heads,
        method: &method,
        path,
        query,
        body: &body,
        who: &who,
    };
    match hook {
        HookRoute::Hook(kind) => hooks::answer(req, kind, &inc),
        _ => routes::dispatch(req, &inc),
    }
}
