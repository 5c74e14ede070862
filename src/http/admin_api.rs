//! The moderation and registry endpoints: path + method + JSON body →
//! an engine request, or a 400/405 that says what is wrong. Pure, so every
//! bad input is unit-tested without a server.
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

use serde_json::{Map, Value};
use tiny_http::Method;

use super::Reply;
use crate::engine::StreamerRequest;
use crate::moderation::Request;

/// What an admin API call asks the engine for.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    Moderate(Request),
    Streamers(StreamerRequest),
    /// Hand the running show over to the binary on disk.
    Upgrade,
}

/// The methods a path accepts (for 405 and `Allow`), None = not ours.
pub fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/api/skip"
        | "/api/clear"
        | "/api/order"
        | "/api/kick"
        | "/api/block"
        | "/api/unblock"
        | "/api/move"
        | "/api/slot/extend"
        | "/api/slot/default"
        | "/api/rejoin-block"
        | "/api/streamers/rotate-key"
        | "/api/streamers/slot"
        | "/api/streamers/link"
        | "/api/upgrade" => Some("POST"),
        "/api/streamers" => Some("GET, POST, DELETE"),
        _ => None,
    }
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::error(400, msg.into())
}

/// Parse a call; `allowed(path)` is Some and the method is one of them.
pub fn parse(path: &str, method: &Method, body: &str, query: &str) -> Result<Call, Reply> {
    let q = crate::hook::parse_form(query);
    let qget = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if path == "/api/streamers" && *method == Method::Get {
        let show_keys = matches!(qget("show_keys").as_deref(), Some("1" | "true" | "yes"));
        return Ok(Call::Streamers(StreamerRequest::List { show_keys }));
    }
    let mut b = Body::parse(body)?;
    if let (true, Some(n)) = (b.0.is_empty(), qget("name")) {
        b.0.insert("name".into(), Value::String(n));
    }
    let call = match (path, method) {
        ("/api/skip", _) => Call::Moderate(Request::Skip),
        ("/api/upgrade", _) => Call::Upgrade,
        ("/api/clear", _) => Call::Moderate(Request::Clear),
        ("/api/order", _) => Call::Moderate(Request::Order {
            names: b.names("names")?,
        }),
        ("/api/kick", _) => Call::Moderate(Request::Kick {
            name: b.opt_name("name")?,
            seconds: b.opt_u64("seconds")?,
        }),
        ("/api/block", _) => Call::Moderate(Request::Block {
            name: b.name("name")?,
            seconds: b.u64("seconds")?,
        }),
        ("/api/unblock", _) => Call::Moderate(Request::Unblock {
            name: b.name("name")?,
        }),
        ("/api/move", _) => Call::Moderate(Request::Move {
            name: b.name("name")?,
            position: usize::try_from(b.u64("position")?)
                .map_err(|_| bad("\"position\" is too large"))?,
        }),
        ("/api/slot/extend", _) => {
            let left = b.opt_u64("left")?;
            let secs = b.opt_i64("seconds")?;
            match (secs, left) {
                (Some(seconds), None) => Call::Moderate(Request::Extend { seconds }),
                (None, Some(seconds)) => Call::Moderate(Request::Left { seconds }),
                _ => {
                    return Err(bad(
                        "give either {\"seconds\": N} (+ extends, - shortens) or {\"left\": N}",
                    ))
                }
            }
        }
        ("/api/slot/default", _) => Call::Moderate(Request::SlotDefault {
            seconds: b.u64_or_null("seconds")?,
        }),
        ("/api/rejoin-block", _) => {
            let enabled = b.opt_bool("enabled")?;
            let seconds = b.opt_u64("seconds")?;
            Call::Moderate(Request::RejoinBlock { enabled, seconds })
        }
        ("/api/streamers", Method::Post) => Call::Streamers(StreamerRequest::Add {
            name: b.name("name")?,
            slot_seconds: b.opt_u64("slot_seconds")?,
        }),
        ("/api/streamers", _) => Call::Streamers(StreamerRequest::Remove {
            name: b.name("name")?,
        }),
        ("/api/streamers/rotate-key", _) => Call::Streamers(StreamerRequest::RotateKey {
            name: b.name("name")?,
        }),
        ("/api/streamers/slot", _) => Call::Streamers(StreamerRequest::SetSlot {
            name: b.name("name")?,
            slot_seconds: b.u64_or_null("slot_seconds")?,
        }),
        ("/api/streamers/link", _) => Call::Streamers(StreamerRequest::Link {
            name: b.name("name")?,
            rotate: b.opt_bool("rotate")?.unwrap_or(false),
        }),
        _ => return Err(Reply::error(404, format!("no such endpoint: {path}"))),
    };
    b.finish()?;
    Ok(call)
}

/// A JSON object body whose fields are taken one by one; leftovers are an
/// error (a typo must not silently mean "default").
struct Body(Map<String, Value>);

impl Body {
    fn parse(text: &str) -> Result<Body, Reply> {
        if text.trim().is_empty() {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err(bad("the body must be a JSON object")),
            Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
        }
    }

    fn finish(self) -> Result<(), Reply> {
        match self.0.keys().next() {
            Some(k) => Err(bad(format!("unknown field {k:?}"))),
            None => Ok(()),
        }
    }

    fn take(&mut self, k: &str) -> Option<Value> {
        self.0.remove(k).filter(|v| !v.is_null())
    }

    fn opt_name(&mut self, k: &str) -> Result<Option<String>, Reply> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let n = s.chars().count();
                if n == 0 || n > 64 || s.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "{k:?} must be 1 to 64 characters without control characters"
                    )));
                }
                Ok(Some(s))
            }
            Some(_) => Err(bad(format!("{k:?} must be a string"))),
        }
    }

    /// A required array of names (at most the queue cap's worth).
    fn names(&mut self, k: &str) -> Result<Vec<String>, Reply> {
        match self.take(k) {
            Some(Value::Array(items)) if items.len() <= 1_000_000 => items
                .into_iter()
                .map(|v| {
                    let mut one = Body(Map::from_iter([(k.to_string(), v)]));
                    one.name(k)
                })
                .collect(),
            Some(_) => Err(bad(format!("{k:?} must be an array of names"))),
            None => Err(bad(format!("{k:?} is required"))),
        }
    }

    fn name(&mut self, k: &str) -> Result<String, Reply> {
        self.opt_name(k)?
            .ok_or_else(|| bad(format!("{k:?} is required")))
    }

    fn opt_u64(&mut self, k: &str) -> Result<Option<u64>, Reply> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(format!("{k:?} must be a whole number >= 0"))),
        }
    }

    fn u64(&mut self, k: &str) -> Result<u64, Reply> {
        self.opt_u64(k)?
            .ok_or_else(|| bad(format!("{k:?} is required")))
    }

    /// A field that must be present, as a number or null.
    fn u64_or_null(&mut self, k: &str) -> Result<Option<u64>, Reply> {
        if !self.0.contains_key(k) {
            return Err(bad(format!("{k:?} is required (a number, or null)")));
        }
        self.opt_u64(k)
    }

    fn opt_i64(&mut self, k: &str) -> Result<Option<i64>, Reply> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(format!("{k:?} must be a whole number"))),
        }
    }

    fn opt_bool(&mut self, k: &str) -> Result<Option<bool>, Reply> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(bad(format!("{k:?} must be true or false"))),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_route_parses() {
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
        assert!(err("/api/order", r#"{"names":"a"}"#).contains("array of names"));
        assert!(err("/api/order", r#"{"names":[1]}"#).contains("must be a string"));
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
        assert!(err("/api/skip", r#"{"x":1}"#).contains("unknown field \"x\""));
        assert!(err("/api/block", r#"{"name":"a"}"#).contains("\"seconds\" is required"));
        assert!(err("/api/block", r#"{"seconds":5}"#).contains("\"name\" is required"));
        assert!(err("/api/block", r#"{"name":"a","seconds":-5}"#).contains(">= 0"));
        assert!(err("/api/block", r#"{"name":"a","seconds":"5"}"#).contains("whole number"));
        assert!(err("/api/unblock", r#"{"name":5}"#).contains("must be a string"));
        assert!(err("/api/unblock", r#"{"name":""}"#).contains("1 to 64"));
        assert!(err(
            "/api/unblock",
            &format!(r#"{{"name":"{}"}}"#, "x".repeat(65))
        )
        .contains("1 to 64"));
        assert!(err("/api/move", r#"{"name":"a","position":1.5}"#).contains("whole number"));
        assert!(err("/api/slot/extend", "{}").contains("either"));
        assert!(err("/api/slot/extend", r#"{"seconds":1,"left":2}"#).contains("either"));
        assert!(err("/api/slot/default", "{}").contains("or null"));
        assert!(err("/api/rejoin-block", r#"{"enabled":"yes"}"#).contains("true or false"));
        assert!(err("/api/streamers/slot", r#"{"name":"a"}"#).contains("or null"));
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(allowed("/api/kick"), Some("POST"));
        assert_eq!(allowed("/api/streamers"), Some("GET, POST, DELETE"));
        assert_eq!(allowed("/api/status"), None);
        assert_eq!(allowed("/api/nope"), None);
    }
}
