//! One try of the admin token (a console login or a Bearer header) under
//! the login budget ([`crate::login_limit`]): over budget it is answered
//! 429 with `Retry-After` before the token is even compared; a wrong token
//! is counted in `/metrics` and logged in its own log budget.

use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use super::admin_auth::token_ok;
use super::{Ctx, Reply};
use crate::log::{warn_auth_failure, warn_auth_throttled};
use crate::login_limit::Throttled;

/// What trying a token came to.
pub(super) enum Tried {
    Right,
    Wrong,
    /// Over budget; not compared.
    Throttled(Refused),
}

/// A refusal, with the `Retry-After` it needs when it is a 429.
pub(super) struct Refused {
    pub reply: Reply,
    pub retry_after_s: Option<u64>,
}

impl From<Reply> for Refused {
    fn from(reply: Reply) -> Refused {
        Refused {
            reply,
            retry_after_s: None,
        }
    }
}

impl Refused {
    /// `Retry-After`'s value, when there is one.
    pub fn retry_after(&self) -> Option<String> {
        self.retry_after_s.map(|s| s.to_string())
    }
}

fn ip_of(who: &str) -> Option<IpAddr> {
    who.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// Try `given` (an `Authorization` header value) against the admin token
/// for the client `who` (its `ip:port`); `via` names the way in for the
/// metrics and the log (console_login, bearer), `what` what was asked.
pub(super) fn try_token(
    ctx: &Ctx,
    token: &str,
    given: &str,
    who: &str,
    via: &'static str,
    what: &str,
) -> Tried {
    let ip = ip_of(who);
    let now = crate::engine::unix_ms();
    if let Err(t) = ctx.logins.attempt(ip, now) {
        ctx.metrics.auth_throttled(via);
        warn_auth_throttled(format_args!(
            "refused {what} from {who} unchecked: too many wrong admin tokens {} (429, retry after {} s)",
            if t.global {
                "from all clients"
            } else {
                "from this address"
            },
            t.retry_after_s
        ));
        return Tried::Throttled(throttled(t));
    }
    if token_ok(token, Some(given)) {
        ctx.logins.succeeded(ip);
        Tried::Right
    } else {
        ctx.metrics.auth_failed(via);
        warn_auth_failure(format_args!("refused {what} from {who}: wrong admin token"));
        Tried::Wrong
    }
}

fn throttled(t: Throttled) -> Refused {
    Refused {
        reply: Reply::json(
            429,
            json!({
                "error": format!(
                    "too many wrong admin tokens; try again in {} s",
                    t.retry_after_s
                ),
                "retry_after_s": t.retry_after_s,
            }),
        ),
        retry_after_s: Some(t.retry_after_s),
    }
}
