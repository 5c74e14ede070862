//! Who may make an admin call: the admin token in a Bearer header (each
//! try under the login budget, `token_try.rs`), or a console session with
//! its CSRF token; a call with a body must declare it JSON.

use tiny_http::{Method, Request};

use super::answers::respond;
use super::gate::Heads;
use super::session::{self, Check};
use super::token_try::{try_token, Refused, Tried};
use super::{Ctx, Incoming, Reply};
use crate::auth;
use crate::log::{escape, warn_limited};

/// Answer a refused admin request; a 401 carries the Bearer challenge, a
/// 429 when to try again.
pub(super) fn respond_refused(req: Request, r: Refused) {
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

/// Admin calls need the token, or a console session with its CSRF token
/// in `X-CSRF-Token` (on every call, reads included: `?show_keys=1` is a
/// read worth protecting); those with a body must declare it JSON (a page
/// can send `text/plain` or form bodies cross-site without asking, never
/// `application/json`).
pub(super) fn authorize(inc: &Incoming) -> Result<(), Refused> {
    let Incoming {
        ctx,
        settings: s,
        heads,
        method,
        body,
        who,
        path,
        ..
    } = *inc;
    // A Bearer header is a try of the token, under the login budget (a
    // missing one guesses nothing and is not counted).
    let by_token = match heads.auth.as_deref() {
        Some(given) => match try_token(ctx, &s.admin_token, given, who, "bearer", path) {
            Tried::Right => true,
            Tried::Wrong => false,
            Tried::Throttled(r) => return Err(r),
        },
        None => false,
    };
    let by_session = || heads.cookie.is_some() && heads.auth.is_none();
    if !by_token && by_session() {
        match session_ok(ctx, heads) {
            Check::Valid => {}
            Check::NoSession => {
                warn_limited(format_args!(
                    "refused {path} from {who}: no such console session (expired or logged out)"
                ));
                return Err(Reply::error(
                    401,
                    "the console session has expired or was logged out; log in again",
                )
                .into());
            }
            Check::BadCsrf => {
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

/// How an admin call from the console proves itself: a live session and
/// its CSRF token (the Bearer token is checked first by the caller).
fn session_ok(ctx: &Ctx, heads: &Heads) -> Check {
    let sid = session::cookie(heads.cookie.as_deref(), session::COOKIE);
    ctx.sessions
        .check(sid, heads.csrf.as_deref(), crate::clock::unix_ms())
}
