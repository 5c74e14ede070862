//! One try of the admin token (a console login or a Bearer header) under
//! the login budget ([`crate::login_limit`]): over budget it is answered
//! 429 with `Retry-After` before the token is even compared; a wrong token
//! is counted in `/metrics` and logged in its own log budget. The compare
//! itself ([`token_ok`]) is constant-time and pure.

use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use super::{Ctx, Reply};
use crate::log::{warn_auth_failure, warn_auth_throttled};
use crate::login_limit::Throttled;
use crate::secret::ct_eq;

/// What trying a token came to.
pub(super) enum Tried {
    Right,
    Wrong,
    /// Over budget; not compared.
    Throttled(Refused),
}

/// A refusal, with the `Retry-After` it needs when it is a 429.
pub(super) struct Refused {
    pub(crate) reply: Reply,
    pub(crate) retry_after_s: Option<u64>,
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
    pub(crate) fn retry_after(&self) -> Option<String> {
        self.retry_after_s.map(|s| s.to_string())
    }
}

/// Whether `auth` (an `Authorization` header) carries `token`. Pure, so
/// every branch is unit-tested without a network. There is no "loopback is
/// enough": a page in a browser on this host is on loopback too.
fn token_ok(token: &str, auth: Option<&str>) -> bool {
    let given = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    !token.is_empty() && ct_eq(given.trim().as_bytes(), token.as_bytes())
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
    let now = crate::clock::unix_ms();
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
}
