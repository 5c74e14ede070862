//! The moderation and registry endpoints: each call's JSON body as a serde
//! type that refuses fields it does not know → an engine request, or a 400
//! that says what is wrong. Pure, so every bad input is unit-tested without
//! a server. Their paths, methods and who may call them are in the route
//! table (`routes.rs`).
//!
//! | method | path | body |
//! |---|---|---|
//! | POST | `/api/skip` | `{}` |
//! | POST | `/api/kick` | `{"name"?: str, "seconds"?: int}` (default: on air, rejoin block) |
//! | POST | `/api/block` | `{"name": str, "seconds": int > 0}` |
//! | POST | `/api/unblock` | `{"name": str}` |
//! | POST | `/api/move` | `{"name": str, "position": int}` (0 = on air) |
//! | POST | `/api/slot/extend` | `{"seconds": ±int}` or `{"left": int}` |
//! | POST | `/api/slot/default` | `{"seconds": int or null}` (0 = unlimited, null = config) |
//! | POST | `/api/rejoin-block` | `{"enabled"?: bool, "seconds"?: int or null}` |
//! | GET | `/api/streamers[?show_keys=1]` | |
//! | POST | `/api/streamers` | `{"name": str, "slot_seconds"?: int or null}` → the new key |
//! | DELETE | `/api/streamers` | `{"name": str}` (or `?name=`) |
//! | POST | `/api/streamers/rotate-key` | `{"name": str}` → the new key |
//! | POST | `/api/streamers/slot` | `{"name": str, "slot_seconds": int or null}` |
//! | POST | `/api/streamers/link` | `{"name": str, "rotate"?: bool}` → their page, `/me/<token>` |
//! | POST | `/api/upgrade` | `{}` → hand the show over to the binary on disk (202-like 200, or 409 with the reason) |

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Incoming, Reply};
use crate::engine::{Command, Responder, StreamerRequest};
use crate::moderation::Request;

/// What an admin API call asks the engine for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Moderate(Request),
    Streamers(StreamerRequest),
    /// Hand the running show over to the binary on disk.
    Upgrade,
}

impl Call {
    /// The engine command that carries this call and its responder.
    pub(super) fn command(self, reply: Responder) -> Command {
        match self {
            Call::Moderate(req) => Command::Moderate { req, reply },
            Call::Streamers(req) => Command::Streamers { req, reply },
            Call::Upgrade => Command::Upgrade { reply },
        }
    }
}

/// What a call's parser reads of the request.
pub(crate) struct Input<'a> {
    pub(crate) body: &'a str,
    pub(crate) query: &'a str,
}

impl Input<'_> {
    pub(super) fn of<'a>(inc: &Incoming<'a>) -> Input<'a> {
        Input {
            body: inc.body,
            query: inc.query,
        }
    }

    fn query(&self, key: &str) -> Option<String> {
        crate::hook::parse_form(self.query)
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// Parse a call to `path` with `method` as the route table routes it
/// (404/405 when it routes it nowhere or elsewhere): the tests' way in.
#[cfg(test)]
pub(crate) fn parse(
    path: &str,
    method: &tiny_http::Method,
    body: &str,
    query: &str,
) -> Result<Call, Reply> {
    use super::routes::{self, Handler, Missing};
    match routes::find(path, method) {
        Ok(routes::Route {
            handler: Handler::Call(parse),
            ..
        }) => parse(&Input { body, query }),
        Err(Missing::Method { allow, .. }) => Err(super::gate::method_not_allowed(&allow)),
        Ok(_) | Err(Missing::Path) => Err(Reply::error(404, format!("no such endpoint: {path}"))),
    }
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::error(400, msg.into())
}

/// A call's JSON object body (none: `{}`) as `T`, whose fields say what
/// each must be and which refuses any field it does not know (a typo must
/// not silently mean "default"); `takes` shows the right shape in the
/// error. An empty body's `name` may come as `?name=`.
fn body<T: DeserializeOwned>(input: &Input, takes: &str) -> Result<T, Reply> {
    let mut fields = if input.body.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(input.body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad("the body must be a JSON object")),
            Err(e) => return Err(bad(format!("the body is not valid JSON: {e}"))),
        }
    };
    if fields.is_empty() {
        if let Some(n) = input.query("name") {
            fields.insert("name".into(), Value::String(n));
        }
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad(format!("{e}; this call takes {takes}")))
}

/// A streamer's public name (which may hold spaces) or key, as a moderator
/// types it; the engine resolves it against the queue and the registry.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct Name(String);

impl TryFrom<String> for Name {
    type Error = &'static str;

    fn try_from(s: String) -> Result<Name, Self::Error> {
        let n = s.chars().count();
        if n == 0 || n > 64 || s.chars().any(char::is_control) {
            return Err("a name must be 1 to 64 characters without control characters");
        }
        Ok(Name(s))
    }
}

/// A field that must be given, as a number or null (missing is an error,
/// unlike a plain `Option`).
fn number_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: Name,
}

fn named(input: &Input) -> Result<String, Reply> {
    Ok(body::<Named>(input, r#"{"name": str}"#)?.name.0)
}

pub(super) fn skip(input: &Input) -> Result<Call, Reply> {
    body::<Nothing>(input, "{}")?;
    Ok(Call::Moderate(Request::Skip))
}

pub(super) fn clear(input: &Input) -> Result<Call, Reply> {
    body::<Nothing>(input, "{}")?;
    Ok(Call::Moderate(Request::Clear))
}

pub(super) fn upgrade(input: &Input) -> Result<Call, Reply> {
    body::<Nothing>(input, "{}")?;
    Ok(Call::Upgrade)
}

pub(super) fn order(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        names: Vec<Name>,
    }
    let b: Order = body(input, r#"{"names": [str, ...]}"#)?;
    let names = b.names.into_iter().map(|n| n.0).collect();
    Ok(Call::Moderate(Request::Order { names }))
}

pub(super) fn kick(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Kick {
        name: Option<Name>,
        seconds: Option<u64>,
    }
    let b: Kick = body(input, r#"{"name"?: str, "seconds"?: int >= 0}"#)?;
    Ok(Call::Moderate(Request::Kick {
        name: b.name.map(|n| n.0),
        seconds: b.seconds,
    }))
}

pub(super) fn block(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Block {
        name: Name,
        seconds: u64,
    }
    let b: Block = body(input, r#"{"name": str, "seconds": int >= 0}"#)?;
    Ok(Call::Moderate(Request::Block {
        name: b.name.0,
        seconds: b.seconds,
    }))
}

pub(super) fn unblock(input: &Input) -> Result<Call, Reply> {
    let name = named(input)?;
    Ok(Call::Moderate(Request::Unblock { name }))
}

pub(super) fn move_to(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Move {
        name: Name,
        position: usize,
    }
    let b: Move = body(input, r#"{"name": str, "position": int >= 0 (0 = on air)}"#)?;
    Ok(Call::Moderate(Request::Move {
        name: b.name.0,
        position: b.position,
    }))
}

pub(super) fn extend(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Extend {
        seconds: Option<i64>,
        left: Option<u64>,
    }
    let either = r#"either {"seconds": N} (+ extends, - shortens) or {"left": N}"#;
    let b: Extend = body(input, either)?;
    match (b.seconds, b.left) {
        (Some(seconds), None) => Ok(Call::Moderate(Request::Extend { seconds })),
        (None, Some(seconds)) => Ok(Call::Moderate(Request::Left { seconds })),
        _ => Err(bad(format!("give {either}"))),
    }
}

pub(super) fn slot_default(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SlotDefault {
        #[serde(deserialize_with = "number_or_null")]
        seconds: Option<u64>,
    }
    let b: SlotDefault = body(input, r#"{"seconds": int or null}"#)?;
    Ok(Call::Moderate(Request::SlotDefault { seconds: b.seconds }))
}

pub(super) fn rejoin_block(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RejoinBlock {
        enabled: Option<bool>,
        seconds: Option<u64>,
    }
    let b: RejoinBlock = body(input, r#"{"enabled"?: bool, "seconds"?: int or null}"#)?;
    Ok(Call::Moderate(Request::RejoinBlock {
        enabled: b.enabled,
        seconds: b.seconds,
    }))
}

/// `GET /api/streamers[?show_keys=1]`: the body is not read.
pub(super) fn list(input: &Input) -> Result<Call, Reply> {
    let show_keys = matches!(
        input.query("show_keys").as_deref(),
        Some("1" | "true" | "yes")
    );
    Ok(Call::Streamers(StreamerRequest::List { show_keys }))
}

pub(super) fn add(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Add {
        name: Name,
        slot_seconds: Option<u64>,
    }
    let b: Add = body(input, r#"{"name": str, "slot_seconds"?: int or null}"#)?;
    Ok(Call::Streamers(StreamerRequest::Add {
        name: b.name.0,
        slot_seconds: b.slot_seconds,
    }))
}

pub(super) fn remove(input: &Input) -> Result<Call, Reply> {
    let name = named(input)?;
    Ok(Call::Streamers(StreamerRequest::Remove { name }))
}

pub(super) fn rotate_key(input: &Input) -> Result<Call, Reply> {
    let name = named(input)?;
    Ok(Call::Streamers(StreamerRequest::RotateKey { name }))
}

pub(super) fn set_slot(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SetSlot {
        name: Name,
        #[serde(deserialize_with = "number_or_null")]
        slot_seconds: Option<u64>,
    }
    let b: SetSlot = body(input, r#"{"name": str, "slot_seconds": int or null}"#)?;
    Ok(Call::Streamers(StreamerRequest::SetSlot {
        name: b.name.0,
        slot_seconds: b.slot_seconds,
    }))
}

pub(super) fn link(input: &Input) -> Result<Call, Reply> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Link {
        name: Name,
        rotate: Option<bool>,
    }
    let b: Link = body(input, r#"{"name": str, "rotate"?: bool}"#)?;
    Ok(Call::Streamers(StreamerRequest::Link {
        name: b.name.0,
        rotate: b.rotate.unwrap_or(false),
    }))
}

/// The seed's `/kill_ffmpeg`: `/api/skip` under its old name (any body).
pub(super) fn legacy_skip(_: &Input) -> Result<Call, Reply> {
    Ok(Call::Moderate(Request::Skip))
}

/// The seed's `/clear-queue`: `/api/clear` under its old name (any body).
pub(super) fn legacy_clear(_: &Input) -> Result<Call, Reply> {
    Ok(Call::Moderate(Request::Clear))
}

/// The seed's `/override-queue`: the new order as a bare JSON array.
pub(super) fn legacy_order(input: &Input) -> Result<Call, Reply> {
    match serde_json::from_str::<Vec<Name>>(input.body) {
        Ok(names) => Ok(Call::Moderate(Request::Order {
            names: names.into_iter().map(|n| n.0).collect(),
        })),
        Err(e) => Err(bad(format!(
            "body must be a JSON array of names, e.g. [\"a\",\"b\"]: {e}"
        ))),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::Method;

    fn post(path: &str, body: &str) -> Result<Call, Reply> {
        parse(path, &Method::Post, body, "")
    }

    fn err(path: &str, body: &str) -> String {
        let r = post(path, body).unwrap_err();
        assert_eq!(r.status, 400, "{path} {body}: {r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn every_moderation_route_parses() {
        use Request::*;
        let m = |r| Ok(Call::Moderate(r));
        assert_eq!(post("/api/skip", ""), m(Skip));
        assert_eq!(post("/api/clear", "{}"), m(Clear));
        assert_eq!(
            post("/api/order", r#"{"names":["b","a"]}"#),
            m(Order {
                names: vec!["b".into(), "a".into()]
            })
        );
        assert!(err("/api/order", r#"{"names":"a"}"#).contains("expected a sequence"));
        assert!(err("/api/order", r#"{"names":[1]}"#).contains("expected a string"));
        assert_eq!(post("/api/skip", "{}"), m(Skip));
        assert_eq!(
            post("/api/kick", ""),
            m(Kick {
                name: None,
                seconds: None
            })
        );
        assert_eq!(
            post("/api/kick", r#"{"name":"DJ A","seconds":5}"#),
            m(Kick {
                name: Some("DJ A".into()),
                seconds: Some(5)
            })
        );
        assert_eq!(
            post("/api/block", r#"{"name":"a","seconds":60}"#),
            m(Block {
                name: "a".into(),
                seconds: 60
            })
        );
        assert_eq!(
            post("/api/unblock", r#"{"name":"a"}"#),
            m(Unblock { name: "a".into() })
        );
        assert_eq!(
            post("/api/move", r#"{"name":"a","position":0}"#),
            m(Move {
                name: "a".into(),
                position: 0
            })
        );
        assert_eq!(
            post("/api/slot/extend", r#"{"seconds":-30}"#),
            m(Extend { seconds: -30 })
        );
        assert_eq!(
            post("/api/slot/extend", r#"{"left":10}"#),
            m(Left { seconds: 10 })
        );
        assert_eq!(
            post("/api/slot/default", r#"{"seconds":null}"#),
            m(SlotDefault { seconds: None })
        );
        assert_eq!(
            post("/api/slot/default", r#"{"seconds":600}"#),
            m(SlotDefault { seconds: Some(600) })
        );
        assert_eq!(
            post("/api/rejoin-block", r#"{"enabled":false}"#),
            m(RejoinBlock {
                enabled: Some(false),
                seconds: None
            })
        );
    }

    #[test]
    fn every_registry_route_parses() {
        let s = |r| Ok(Call::Streamers(r));
        assert_eq!(
            parse("/api/streamers", &Method::Get, "", "show_keys=1"),
            s(StreamerRequest::List { show_keys: true })
        );
        assert_eq!(
            parse("/api/streamers", &Method::Get, "", ""),
            s(StreamerRequest::List { show_keys: false })
        );
        assert_eq!(
            post("/api/streamers", r#"{"name":"Ünï","slot_seconds":30}"#),
            s(StreamerRequest::Add {
                name: "Ünï".into(),
                slot_seconds: Some(30)
            })
        );
        assert_eq!(
            parse("/api/streamers", &Method::Delete, r#"{"name":"a"}"#, ""),
            s(StreamerRequest::Remove { name: "a".into() })
        );
        assert_eq!(
            parse("/api/streamers", &Method::Delete, "", "name=DJ%20A"),
            s(StreamerRequest::Remove {
                name: "DJ A".into()
            })
        );
        assert_eq!(
            post("/api/streamers/rotate-key", r#"{"name":"a"}"#),
            s(StreamerRequest::RotateKey { name: "a".into() })
        );
        assert_eq!(
            post("/api/streamers/link", r#"{"name":"a","rotate":true}"#),
            s(StreamerRequest::Link {
                name: "a".into(),
                rotate: true
            })
        );
        assert_eq!(
            post("/api/streamers/link", r#"{"name":"a"}"#),
            s(StreamerRequest::Link {
                name: "a".into(),
                rotate: false
            })
        );
        assert_eq!(
            post("/api/streamers/slot", r#"{"name":"a","slot_seconds":null}"#),
            s(StreamerRequest::SetSlot {
                name: "a".into(),
                slot_seconds: None
            })
        );
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(err("/api/skip", "[1]").contains("JSON object"));
        assert!(err("/api/skip", "{nope").contains("not valid JSON"));
        assert!(err("/api/skip", r#"{"x":1}"#).contains("unknown field `x`"));
        let block = err("/api/block", r#"{"name":"a"}"#);
        assert!(block.contains("missing field `seconds`"), "{block}");
        assert!(block.contains(r#"this call takes {"name": str, "seconds": int >= 0}"#));
        assert!(err("/api/block", r#"{"seconds":5}"#).contains("missing field `name`"));
        assert!(err("/api/block", r#"{"name":"a","seconds":-5}"#).contains("integer `-5`"));
        assert!(err("/api/block", r#"{"name":"a","seconds":"5"}"#).contains("string \"5\""));
        assert!(err("/api/unblock", r#"{"name":5}"#).contains("expected a string"));
        assert!(err("/api/unblock", r#"{"name":null}"#).contains("expected a string"));
        assert!(err("/api/unblock", r#"{"name":""}"#).contains("1 to 64"));
        assert!(err(
            "/api/unblock",
            &format!(r#"{{"name":"{}"}}"#, "x".repeat(65))
        )
        .contains("1 to 64"));
        assert!(err("/api/unblock", "{\"name\":\"a\\u0007\"}").contains("control characters"));
        assert!(err("/api/move", r#"{"name":"a","position":1.5}"#).contains("floating point"));
        assert!(err("/api/slot/extend", "{}").contains("either"));
        assert!(err("/api/slot/extend", r#"{"seconds":1,"left":2}"#).contains("either"));
        assert!(err("/api/slot/default", "{}").contains("missing field `seconds`"));
        assert!(err("/api/slot/default", "{}").contains("or null"));
        assert!(err("/api/rejoin-block", r#"{"enabled":"yes"}"#).contains("expected a boolean"));
        assert!(err("/api/streamers/slot", r#"{"name":"a"}"#).contains("or null"));
        assert!(err("/api/order", r#"{"names":["a",""]}"#).contains("1 to 64"));
    }

    #[test]
    fn the_seeds_paths_take_their_old_bodies() {
        use Request::*;
        assert_eq!(post("/kill_ffmpeg", "anything"), Ok(Call::Moderate(Skip)));
        assert_eq!(post("/clear-queue", ""), Ok(Call::Moderate(Clear)));
        assert_eq!(
            post("/override-queue", r#"["b","DJ A"]"#),
            Ok(Call::Moderate(Order {
                names: vec!["b".into(), "DJ A".into()]
            }))
        );
        for bad in [r#"{"names":["a"]}"#, r#"["a",""]"#, "[1]", ""] {
            let r = post("/override-queue", bad).unwrap_err();
            assert_eq!(r.status, 400, "{bad}");
            assert!(r.body.contains("JSON array of names"), "{bad}: {}", r.body);
        }
    }

    #[test]
    fn routes_and_methods() {
        assert!(post("/api/kick", "").is_ok());
        assert_eq!(
            parse("/api/kick", &Method::Get, "", "").unwrap_err().status,
            405
        );
        let put = parse("/api/streamers", &Method::Put, "", "").unwrap_err();
        assert_eq!(put.status, 405);
        assert!(put.body.contains("GET, POST, DELETE"), "{}", put.body);
        assert_eq!(post("/api/status", "").unwrap_err().status, 405);
        assert_eq!(post("/api/nope", "").unwrap_err().status, 404);
    }
}
