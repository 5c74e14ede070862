//! nginx-rtmp's hooks: `/hook/<secret>/on_…` paths, the secret checked in
//! constant time; the policy decisions taken here from the settings (the
//! output app, players of raw ingest streams, recordings); and the hooks
//! that change the queue handed to the engine, timed for `/metrics` until
//! answered.

use serde_json::json;
use tiny_http::{Method, Request};

use super::answers::{forward, respond, Pending};
use super::gate::{method_not_allowed, Heads};
use super::{Ctx, Incoming, Reply};
use crate::auth;
use crate::engine::{Command, Responder};
use crate::hook::{Hook, HookKind};
use crate::key::StreamKey;
use crate::log::{escape, warn_limited};
use crate::secret::ct_eq;

/// Where a hook request's path leads.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HookRoute {
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

pub(super) fn hook_route(path: &str, secret: &str) -> HookRoute {
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

/// Refuse a request to a hook path that is no hook call: from a browser
/// of another site, with a wrong secret, a bare `/on_…` path, an unknown
/// hook. `Ok` for a right hook and for what is not a hook path.
pub(super) fn gate(route: &HookRoute, heads: &Heads, who: &str) -> Result<(), Reply> {
    if matches!(
        route,
        HookRoute::WrongSecret | HookRoute::Unknown | HookRoute::Hook(_)
    ) {
        heads.refuse_cross_site("a hook", who)?;
    }
    match route {
        HookRoute::WrongSecret => {
            warn_limited(format_args!(
                "refused a hook call from {who}: wrong hook secret in the URL"
            ));
            Err(Reply::error(403, "wrong hook secret"))
        }
        HookRoute::Bare(kind) => {
            warn_limited(format_args!(
                "refused {} from {who}: hook URLs need the hook secret (/hook/<secret>/{}; the secret is in [http] hook_secret_file, default <state dir>/hook.secret)",
                kind.as_str(),
                kind.as_str()
            ));
            Err(Reply::error(
                403,
                format!(
                    "hooks are called at /hook/<secret>/{}, with the secret from [http] hook_secret_file",
                    kind.as_str()
                ),
            ))
        }
        HookRoute::Unknown => Err(Reply::error(404, "no such hook")),
        HookRoute::Hook(_) | HookRoute::NotHook => Ok(()),
    }
}

/// Answer a hook call that passed [`gate`]: its form comes in the body
/// (POST) or the query (GET).
pub(super) fn answer(req: Request, kind: HookKind, inc: &Incoming) {
    if !matches!(inc.method, Method::Post | Method::Get) {
        return respond(
            req,
            method_not_allowed("GET, POST"),
            &[("Allow", "GET, POST")],
        );
    }
    let form = if inc.body.is_empty() {
        inc.query
    } else {
        inc.body
    };
    // Metrics: counted when answered, whoever answers (engine or here).
    let timer = crate::metrics::HookTimer::start(&inc.ctx.metrics, kind.as_str());
    match decide(kind, form, inc.ctx) {
        Decision::Now(r) => {
            timer.done(r.status);
            respond(req, r, &[])
        }
        Decision::Engine(make) => {
            let pending = Pending {
                probe: None,
                timer: Some(timer),
            };
            forward(inc.ctx, req, pending, make)
        }
    }
}

/// What a hook comes to: an answer now, or a command for the engine, which
/// answers the client itself once the change is durable.
enum Decision {
    Now(Reply),
    Engine(Box<dyn FnOnce(Responder) -> Command>),
}

/// What nginx is told about a hook: policy hooks are decided here from the
/// settings; hooks that change the queue go to the engine.
fn decide(kind: HookKind, form: &str, ctx: &Ctx) -> Decision {
    let h = match Hook::parse(kind, form) {
        Ok(h) => h,
        Err(e) => {
            warn_limited(format_args!("refused {}: {e}", kind.as_str()));
            return Decision::Now(Reply::error(400, e.to_string()));
        }
    };
    let s = ctx.settings.read();
    // Every hook that concerns a stream carries a valid one (the parser
    // refuses it otherwise); in the ingest app its name is a stream key.
    let stream = h.stream.clone();
    let now = match (kind, stream) {
        (HookKind::Publish, Some(key)) if h.app == s.ingest_app => {
            return Decision::Engine(Box::new(move |reply| Command::Publish {
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
            return Decision::Engine(Box::new(move |reply| Command::PublishDone {
                key,
                client_id: h.client_id,
                reply,
            }))
        }
        (HookKind::Play, Some(key)) if h.app == s.ingest_app && !h.is_from_loopback() => {
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
    Decision::Now(now)
}

#[cfg(test)]
mod tests {
    use super::*;

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
