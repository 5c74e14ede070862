//! The browser pages: the moderator console (`/admin`, its login, session
//! and logout) and each streamer's own page (`/me/<token>`). Their HTML,
//! CSS and JS are compiled into the binary; no asset comes from anywhere
//! else, and the pages' Content-Security-Policy says so to the browser.
//!
//! Live state comes from polling `/api/status` (and `/me/<token>/status`),
//! both answered from the engine's published view in microseconds: a page
//! never holds a worker between polls, so open consoles do not take hook
//! capacity (`bench::pipeline` measures it).

use serde_json::{json, Value};

use super::session::{self, Check};
use super::token_try::{try_token, Tried};
use super::{Incoming, Reply};

const ADMIN_HTML: &str = include_str!("console/admin.html");
const ADMIN_JS: &str = include_str!("console/admin.js");
const ME_HTML: &str = include_str!("console/me.html");
const ME_JS: &str = include_str!("console/me.js");
const CSS: &str = include_str!("console/console.css");

/// Scripts and styles only from this origin (no inline script: a name a
/// streamer chose can never run as code), no framing (clickjacking), no
/// referrer (a `/me/` token must not leak in one).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// A page's answer with its content type and any cookie to set.
pub(super) struct Page {
    pub(crate) reply: Reply,
    pub(crate) content_type: &'static str,
    pub(crate) set_cookie: Option<String>,
    /// Methods for `Allow` on a 405.
    pub(crate) allow: Option<String>,
    /// Seconds for `Retry-After` on a 429.
    pub(crate) retry_after: Option<String>,
}

impl Page {
    fn new(reply: Reply, content_type: &'static str) -> Page {
        Page {
            reply,
            content_type,
            set_cookie: None,
            allow: None,
            retry_after: None,
        }
    }

    fn json(reply: Reply) -> Page {
        Page::new(reply, "application/json")
    }

    fn static_text(body: &str, content_type: &'static str) -> Page {
        Page::new(
            Reply {
                status: 200,
                body: body.to_string(),
            },
            content_type,
        )
    }

    /// Headers every page answer carries besides Content-Type.
    pub(crate) fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut h = vec![
            ("Content-Type", self.content_type),
            ("Content-Security-Policy", CSP),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ];
        if let Some(c) = &self.set_cookie {
            h.push(("Set-Cookie", c.as_str()));
        }
        if let Some(a) = &self.allow {
            h.push(("Allow", a.as_str()));
        }
        if let Some(r) = &self.retry_after {
            h.push(("Retry-After", r.as_str()));
        }
        h
    }
}

/// Whether `path` is under the pages' prefixes (an unknown one is answered
/// as a page: 404 with the pages' headers).
pub(super) fn ours(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || path.starts_with("/me/")
}

/// A 405 for a page route (the route table lists what `allow`s).
pub(super) fn method_not_allowed(allow: String) -> Page {
    let mut p = Page::json(super::gate::method_not_allowed(&allow));
    p.allow = Some(allow);
    p
}

pub(super) fn no_such_page(path: &str) -> Page {
    Page::json(Reply::error(404, format!("no such page: {path}")))
}

const JS: &str = "text/javascript; charset=utf-8";

pub(super) fn admin_js(_: &Incoming) -> Page {
    Page::static_text(ADMIN_JS, JS)
}

pub(super) fn me_js(_: &Incoming) -> Page {
    Page::static_text(ME_JS, JS)
}

pub(super) fn css(_: &Incoming) -> Page {
    Page::static_text(CSS, "text/css; charset=utf-8")
}

/// The session cookie's id, if the request carries one.
fn sid<'a>(inc: &Incoming<'a>) -> Option<&'a str> {
    session::cookie(inc.heads.cookie.as_deref(), session::COOKIE)
}

/// A reloaded console asks whether the token it kept is still good. The
/// token is never handed out here: cookies are scoped by host, not port,
/// so any server on this host may have been sent the cookie, and the
/// cookie alone must not open anything.
pub(super) fn session(inc: &Incoming) -> Page {
    let now = crate::clock::unix_ms();
    match inc
        .ctx
        .sessions
        .check(sid(inc), inc.heads.csrf.as_deref(), now)
    {
        Check::Valid => Page::json(Reply::json(200, json!({"ok": true}))),
        Check::NoSession => Page::json(Reply::error(401, "not logged in")),
        Check::BadCsrf => Page::json(Reply::error(
            401,
            format!(
                "a console session needs the token its login answered, in {}; log in again",
                session::CSRF_HEADER
            ),
        )),
    }
}

pub(super) fn logout(inc: &Incoming) -> Page {
    inc.ctx.sessions.logout(sid(inc));
    let mut p = Page::json(Reply::json(200, json!({"ok": true})));
    p.set_cookie = Some(session::clear_cookie(inc.heads.https()));
    p
}

/// The console page, told where streamers publish (for the ingest URL
/// shown with a new key).
pub(super) fn admin_page(inc: &Incoming) -> Page {
    let (ctx, settings) = (inc.ctx, inc.settings);
    let port = ctx.view.read().pages.ingest().1;
    let attr = |v: &str| {
        v.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    };
    let body = ADMIN_HTML.replacen(
        "<body class=\"console\">",
        &format!(
            "<body class=\"console\" data-ingest-app=\"{}\" data-rtmp-port=\"{port}\">",
            attr(&settings.ingest_app)
        ),
        1,
    );
    Page::new(Reply { status: 200, body }, "text/html; charset=utf-8")
}

pub(super) fn login(inc: &Incoming) -> Page {
    let (heads, body, ctx, s, who) = (inc.heads, inc.body, inc.ctx, inc.settings, inc.who);
    if !crate::auth::is_json(heads.content_type.as_deref()) {
        return Page::json(Reply::error(
            415,
            "log in with Content-Type: application/json",
        ));
    }
    let token = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let given = format!("Bearer {}", token.trim());
    match try_token(
        ctx,
        &s.admin_token,
        &given,
        who,
        "console_login",
        "a console login",
    ) {
        Tried::Right => {}
        Tried::Wrong => return Page::json(Reply::error(
            401,
            "wrong admin token (it is in [http] admin_token_file, default <state dir>/admin.token)",
        )),
        Tried::Throttled(r) => {
            let retry_after = r.retry_after();
            let mut p = Page::json(r.reply);
            p.retry_after = retry_after;
            return p;
        }
    }
    match ctx.sessions.login(crate::clock::unix_ms()) {
        Ok((id, csrf)) => {
            log::info!("console login from {who}");
            let mut p = Page::json(Reply::json(200, json!({"ok": true, "csrf": csrf})));
            p.set_cookie = Some(session::set_cookie(&id, heads.https()));
            p
        }
        Err(e) => Page::json(Reply::error(
            500,
            format!("cannot make a session id from /dev/urandom: {e}"),
        )),
    }
}

/// `/me/<token>` (the page) and `/me/<token>/status` (what it shows).
pub(super) fn me(inc: &Incoming) -> Page {
    let (ctx, now) = (inc.ctx, crate::clock::unix_ms());
    let rest = inc.path.strip_prefix("/me/").unwrap_or_default();
    let (token, what) = rest.split_once('/').unwrap_or((rest, ""));
    let view = ctx.view.read();
    match what {
        "" if view.pages.exists(token) => Page::static_text(ME_HTML, "text/html; charset=utf-8"),
        "" => Page::new(
            Reply {
                status: 404,
                body: ME_HTML.replace(
                    "<body>",
                    "<body data-missing=\"1\">",
                ),
            },
            "text/html; charset=utf-8",
        ),
        "status" => match view.pages.me_json(token, &view, now) {
            Some(v) => Page::json(Reply::json(200, v)),
            None => Page::json(Reply::error(
                404,
                "this page link is not valid (it may have been replaced); ask a moderator for yours",
            )),
        },
        _ => Page::json(Reply::error(404, "no such page")),
    }
}
