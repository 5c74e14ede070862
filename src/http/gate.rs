//! The gate every request passes before it is routed: the Host check
//! (DNS rebinding), the cross-site refusal (Origin, Sec-Fetch-Site) and the
//! body limits. Each refusal is logged (rate-limited) and answered with a
//! status that says what is wrong.

use std::io::Read;

use tiny_http::{Method, Request};

use super::probe::PROBE_HEADER;
use super::{session, Reply, MAX_BODY};
use crate::auth;
use crate::log::{escape, warn_limited};
use crate::view::Settings;

/// DNS rebinding: a page of a foreign name that resolves to this host
/// sends its own name as Host. Nothing is answered to such requests.
pub(super) fn host(heads: &Heads, settings: &Settings, path: &str, who: &str) -> Result<(), Reply> {
    if auth::host_allowed(heads.host.as_deref(), &settings.allowed_hosts) {
        return Ok(());
    }
    warn_limited(format_args!(
        "refused {} from {who}: Host {} is not a name of this server (localhost, an IP address or [http] allowed_hosts)",
        escape(path),
        heads.host.as_deref().map_or("(none)".into(), |h| format!("{:?}", escape(h)))
    ));
    Err(Reply::error(
        403,
        "the Host header must be localhost, an IP address or one of [http] allowed_hosts",
    ))
}

/// Methods that cannot change anything.
pub(super) fn read_only(m: &Method) -> bool {
    matches!(m, Method::Get | Method::Head)
}

pub(super) fn method_not_allowed(allowed: &str) -> Reply {
    Reply::error(405, format!("method not allowed; use {allowed}"))
}

/// The request's body. Bodies up to `MAX_BODY` arrive read (tiny_http's
/// connection thread reads them, within the request deadline, before a
/// worker sees the request), so reading one here never waits on a client.
pub(super) fn body(req: &mut Request, path: &str, who: &str) -> Result<String, Reply> {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_large(path, who));
    }
    let mut buf = Vec::new();
    match req
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut buf)
    {
        Ok(_) if buf.len() > MAX_BODY => Err(too_large(path, who)),
        Ok(_) => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(Reply::error(408, "request body not received in time"))
        }
        Err(e) => Err(Reply::error(400, format!("cannot read body: {e}"))),
    }
}

fn too_large(path: &str, who: &str) -> Reply {
    warn_limited(format_args!(
        "refused {}: body over {MAX_BODY} bytes from {who}",
        escape(path),
    ));
    Reply::error(413, format!("request body over {MAX_BODY} bytes"))
}

/// The request headers the access checks look at.
pub(super) struct Heads {
    pub(crate) host: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) fetch_site: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) auth: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) csrf: Option<String>,
    pub(crate) forwarded_proto: Option<String>,
    /// The watchdog probe's mark (see `probe.rs`).
    pub(crate) probe: Option<String>,
}

impl Heads {
    pub(crate) fn of(req: &Request) -> Heads {
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
            probe: get(PROBE_HEADER),
        }
    }

    /// The browser reached us over HTTPS (a TLS proxy in front says so):
    /// cookies are then marked `Secure`.
    pub(crate) fn https(&self) -> bool {
        self.forwarded_proto
            .as_deref()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    /// Refuse what a browser sends for another origin (see
    /// [`auth::same_origin`]): on every admin call and every request that
    /// could change something.
    pub(crate) fn refuse_cross_site(&self, path: &str, who: &str) -> Result<(), Reply> {
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
