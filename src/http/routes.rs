//! The one route table: every endpoint that is not an nginx hook, as
//! (methods, path, who may call it, handler). The gate asks it which paths
//! are guarded, the dispatcher answers 404/405 (with `Allow`) from it, the
//! admin API and the console are reached only through it: an endpoint is
//! written here and nowhere else.

use tiny_http::{Method, Request};

use super::admin_api::{self, Input};
use super::admin_auth::{authorize, respond_refused};
use super::answers::{forward, respond, respond_body, Pending, ViewJson};
use super::console::{self, Page};
use super::gate::method_not_allowed;
use super::probe::Stage;
use super::{overlay, Incoming, Reply};
use crate::engine::{Command, Responder};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    /// Anyone who passed the Host check: read endpoints, pages, the login.
    Anyone,
    /// A console session, which the page checks itself; refused
    /// cross-site like an admin call.
    Session,
    /// The admin token, or a console session with its CSRF token
    /// (`admin_auth.rs`).
    Admin,
}

/// What answers a route.
pub(super) enum Handler {
    /// Answered by the worker from the published view and settings.
    View(fn(&Incoming) -> Outcome),
    /// A console page or one of its session calls (page headers: CSP...).
    Page(fn(&Incoming) -> Page),
    /// An admin call: its body and query → what the engine is asked.
    Call(fn(&Input) -> Result<admin_api::Call, Reply>),
}

pub(super) struct Route {
    /// `GET` routes answer `HEAD` too (listed).
    pub(crate) methods: &'static [&'static str],
    /// A path ending in `*` is a prefix.
    pub(crate) path: &'static str,
    pub(crate) who: Who,
    pub(crate) handler: Handler,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        }
    }
}

/// What a read endpoint answers.
pub(super) enum Outcome {
    /// A reply now, with its Content-Type when it is not JSON.
    Now(Reply, Option<&'static str>),
    /// `/queue-json`, streamed from the published view.
    QueueJson,
    /// A question for the engine, which answers the client itself.
    Engine(Pending, Box<dyn FnOnce(Responder) -> Command>),
}

const GET: &[&str] = &["GET", "HEAD"];
const POST: &[&str] = &["POST"];
const HTML: &str = "text/html; charset=utf-8";

const fn route(
    methods: &'static [&'static str],
    path: &'static str,
    who: Who,
    handler: Handler,
) -> Route {
    Route {
        methods,
        path,
        who,
        handler,
    }
}

use Handler::{Call, Page as P, View};
use Who::{Admin, Anyone, Session};

pub(super) static ROUTES: &[Route] = &[
    // Read endpoints: public, Host-checked; names on air, never keys.
    route(GET, "/queue-json", Anyone, View(|_| Outcome::QueueJson)),
    route(GET, "/api/status", Anyone, View(status)),
    route(GET, "/queue-list", Anyone, View(queue_list)),
    route(GET, "/timer", Anyone, View(timer)),
    route(GET, "/healthz", Anyone, View(healthz)),
    route(GET, "/metrics", Anyone, View(metrics)),
    // The admin API (bodies in admin_api.rs).
    route(POST, "/api/skip", Admin, Call(admin_api::skip)),
    route(POST, "/api/clear", Admin, Call(admin_api::clear)),
    route(POST, "/api/order", Admin, Call(admin_api::order)),
    route(POST, "/api/kick", Admin, Call(admin_api::kick)),
    route(POST, "/api/block", Admin, Call(admin_api::block)),
    route(POST, "/api/unblock", Admin, Call(admin_api::unblock)),
    route(POST, "/api/move", Admin, Call(admin_api::move_to)),
    route(POST, "/api/slot/extend", Admin, Call(admin_api::extend)),
    route(
        POST,
        "/api/slot/default",
        Admin,
        Call(admin_api::slot_default),
    ),
    route(
        POST,
        "/api/rejoin-block",
        Admin,
        Call(admin_api::rejoin_block),
    ),
    route(&["GET"], "/api/streamers", Admin, Call(admin_api::list)),
    route(POST, "/api/streamers", Admin, Call(admin_api::add)),
    route(
        &["DELETE"],
        "/api/streamers",
        Admin,
        Call(admin_api::remove),
    ),
    route(
        POST,
        "/api/streamers/rotate-key",
        Admin,
        Call(admin_api::rotate_key),
    ),
    route(
        POST,
        "/api/streamers/slot",
        Admin,
        Call(admin_api::set_slot),
    ),
    route(POST, "/api/streamers/link", Admin, Call(admin_api::link)),
    route(POST, "/api/upgrade", Admin, Call(admin_api::upgrade)),
    // The seed's names for the same moderation requests.
    route(POST, "/kill_ffmpeg", Admin, Call(admin_api::legacy_skip)),
    route(POST, "/clear-queue", Admin, Call(admin_api::legacy_clear)),
    route(
        POST,
        "/override-queue",
        Admin,
        Call(admin_api::legacy_order),
    ),
    // The console (console.rs) and the streamers' own pages.
    route(GET, "/admin", Anyone, P(console::admin_page)),
    route(GET, "/admin/", Anyone, P(console::admin_page)),
    route(GET, "/admin/console.js", Anyone, P(console::admin_js)),
    route(GET, "/admin/me.js", Anyone, P(console::me_js)),
    route(GET, "/admin/console.css", Anyone, P(console::css)),
    route(GET, "/admin/session", Session, P(console::session)),
    route(POST, "/admin/login", Anyone, P(console::login)),
    route(POST, "/admin/logout", Anyone, P(console::logout)),
    route(GET, "/me/*", Anyone, P(console::me)),
];

/// Test-only endpoints: `/debug/wedge?secs=N&part=engine|reply` blocks the
/// engine or every http-reply thread; `/debug/close-listener` makes the
/// listening socket fail for real (shutdown(2): accept() gets EINVAL).
#[cfg(feature = "test-hooks")]
static DEBUG_ROUTES: &[Route] = &[
    route(POST, "/debug/wedge", Anyone, View(debug::wedge)),
    route(
        POST,
        "/debug/close-listener",
        Anyone,
        View(debug::close_listener),
    ),
];
#[cfg(not(feature = "test-hooks"))]
static DEBUG_ROUTES: &[Route] = &[];

fn table() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().chain(DEBUG_ROUTES)
}

/// Whether a path needs the same-origin check whatever the method: admin
/// calls and the console's session.
pub(super) fn guarded(path: &str) -> bool {
    table().any(|r| r.who != Anyone && r.matches(path))
}

/// Why no route answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Missing {
    /// No route has this path.
    Path,
    /// The path is there for other methods (`allow` lists them); `page`:
    /// it is a console page, answered with the pages' headers.
    Method { allow: String, page: bool },
}

/// The route for `path` and `method`.
pub(super) fn find(path: &str, method: &Method) -> Result<&'static Route, Missing> {
    let mut allow: Vec<&str> = Vec::new();
    let mut page = false;
    for r in table().filter(|r| r.matches(path)) {
        if r.methods.contains(&method.as_str()) {
            return Ok(r);
        }
        allow.extend(r.methods);
        page |= matches!(r.handler, Handler::Page(_));
    }
    if allow.is_empty() {
        return Err(Missing::Path);
    }
    Err(Missing::Method {
        allow: allow.join(", "),
        page,
    })
}

/// Answer a request that is not a hook.
pub(super) fn dispatch(req: Request, inc: &Incoming) {
    let route = match find(inc.path, inc.method) {
        Ok(r) => r,
        Err(Missing::Method { allow, page: true }) => {
            return respond_page(req, console::method_not_allowed(allow))
        }
        Err(Missing::Method { allow, .. }) => {
            return respond(req, method_not_allowed(&allow), &[("Allow", &allow)])
        }
        Err(Missing::Path) if console::ours(inc.path) => {
            return respond_page(req, console::no_such_page(inc.path))
        }
        Err(Missing::Path) => {
            let reply = Reply::error(404, format!("no such endpoint: {}", inc.path));
            return respond(req, reply, &[]);
        }
    };
    if route.who == Admin {
        if let Err(r) = authorize(inc) {
            return respond_refused(req, r);
        }
        inc.ctx.metrics.admin_request(inc.path);
    }
    match route.handler {
        Handler::View(f) => match f(inc) {
            Outcome::Now(reply, None) => respond(req, reply, &[]),
            Outcome::Now(reply, Some(ctype)) => respond(req, reply, &[("Content-Type", ctype)]),
            // Streamed from the shared view: a long queue's JSON is
            // rendered once per change, never copied per request.
            Outcome::QueueJson => {
                let view = ViewJson::new(inc.ctx.view.read());
                respond_body(req, 200, view, &[])
            }
            Outcome::Engine(pending, make) => forward(inc.ctx, req, pending, make),
        },
        Handler::Page(f) => respond_page(req, f(inc)),
        Handler::Call(f) => match f(&Input::of(inc)) {
            Ok(call) => forward(inc.ctx, req, Pending::default(), |reply| {
                call.command(reply)
            }),
            Err(r) => respond(req, r, &[]),
        },
    }
}

fn respond_page(req: Request, page: Page) {
    let headers = page.headers();
    respond(req, page.reply.clone(), &headers)
}

fn ok_text(body: &str, ctype: &'static str) -> Outcome {
    let reply = Reply {
        status: 200,
        body: body.to_string(),
    };
    Outcome::Now(reply, Some(ctype))
}

fn status(inc: &Incoming) -> Outcome {
    let body = inc.ctx.view.read().status_json(crate::clock::unix_ms());
    Outcome::Now(Reply { status: 200, body }, None)
}

fn queue_list(_: &Incoming) -> Outcome {
    ok_text(overlay::QUEUE_LIST, HTML)
}

fn timer(_: &Incoming) -> Outcome {
    ok_text(overlay::TIMER, HTML)
}

/// Through the engine, like a hook; the watchdog's probe is noted at
/// every stage it passes.
fn healthz(inc: &Incoming) -> Outcome {
    let trace = &inc.ctx.probe;
    let probe = inc
        .heads
        .probe
        .as_deref()
        .and_then(|h| trace.probe_number(h));
    if let Some(n) = probe {
        trace.passed(Stage::Worker, n);
    }
    let pending = Pending { probe, timer: None };
    Outcome::Engine(pending, Box::new(|reply| Command::Health { reply }))
}

/// Public like /api/status, which shows more: counts and timings, no
/// names, keys or addresses.
fn metrics(inc: &Incoming) -> Outcome {
    let ctx = inc.ctx;
    let body = ctx
        .metrics
        .render(&ctx.view.read(), crate::clock::unix_ms());
    Outcome::Now(
        Reply { status: 200, body },
        Some(crate::metrics::CONTENT_TYPE),
    )
}

#[cfg(feature = "test-hooks")]
mod debug {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::http::answers::{send_answer, Job, REPLY_WRITERS};

    fn ok() -> Outcome {
        Outcome::Now(Reply::json(200, json!({"ok": true})), None)
    }

    /// `?secs=N` (5), `&part=engine` (the default) or `&part=reply`.
    pub(super) fn wedge(inc: &Incoming) -> Outcome {
        let form = crate::hook::parse_form(inc.query);
        let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let secs = get("secs").and_then(|v| v.parse().ok()).unwrap_or(5);
        if get("part") == Some("reply") {
            for _ in 0..REPLY_WRITERS {
                let wedge = Job::Wedge(Duration::from_secs(secs));
                send_answer(&inc.ctx.answers.tx, wedge);
            }
        } else {
            let _ = inc.ctx.engine.send(Command::Wedge { secs });
        }
        ok()
    }

    pub(super) fn close_listener(_: &Incoming) -> Outcome {
        let listener = crate::http::server::TEST_LISTENER.get();
        match listener.map(crate::sys::shutdown_listener) {
            Some(Ok(())) => ok(),
            Some(Err(e)) => Outcome::Now(Reply::error(500, e.to_string()), None),
            None => Outcome::Now(Reply::error(500, "no listener handle"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_and_method_has_one_route() {
        let mut seen = std::collections::HashSet::new();
        for r in table() {
            for m in r.methods {
                assert!(seen.insert((r.path, *m)), "{m} {} twice", r.path);
            }
            assert!(r.path.starts_with('/'), "{}", r.path);
        }
    }

    #[test]
    fn methods_not_routed_are_405_with_allow() {
        let allow = |path: &str, m: Method| match find(path, &m) {
            Err(Missing::Method { allow, page }) => Some((allow, page)),
            _ => None,
        };
        assert_eq!(
            allow("/api/streamers", Method::Put),
            Some(("GET, POST, DELETE".into(), false))
        );
        assert_eq!(
            allow("/api/kick", Method::Get),
            Some(("POST".into(), false))
        );
        assert_eq!(
            allow("/queue-json", Method::Post),
            Some(("GET, HEAD".into(), false))
        );
        assert_eq!(
            allow("/me/abc/status", Method::Post),
            Some(("GET, HEAD".into(), true))
        );
        assert_eq!(
            allow("/admin/login", Method::Get),
            Some(("POST".into(), true))
        );
        assert!(matches!(
            find("/api/nope", &Method::Get),
            Err(Missing::Path)
        ));
        assert!(find("/me/abc", &Method::Head).is_ok());
    }

    #[test]
    fn admin_calls_and_the_session_are_guarded() {
        for p in [
            "/api/kick",
            "/api/streamers",
            "/override-queue",
            "/admin/session",
        ] {
            assert!(guarded(p), "{p}");
        }
        for p in [
            "/api/status",
            "/queue-json",
            "/admin",
            "/admin/login",
            "/me/x",
        ] {
            assert!(!guarded(p), "{p}");
        }
    }
}
