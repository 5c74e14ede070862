//! nginx-rtmp hook bodies → typed requests. Pure: no I/O.
//!
//! nginx appends the publisher's raw `?args` after its own fields, so a key
//! can repeat (`name`, `call`, even `clientid`): the form is kept as ordered
//! pairs and the **first** value of a key is the real one.

use std::fmt;

use crate::key::StreamKey;

/// Which hook nginx called (from the request path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookKind {
    Connect,
    Disconnect,
    Publish,
    PublishDone,
    Done,
    Play,
    PlayDone,
    Update,
    RecordDone,
}

impl HookKind {
    pub(crate) fn from_path(path: &str) -> Option<HookKind> {
        Some(match path {
            "/on_connect" => HookKind::Connect,
            "/on_disconnect" => HookKind::Disconnect,
            "/on_publish" => HookKind::Publish,
            "/on_publish_done" => HookKind::PublishDone,
            "/on_done" => HookKind::Done,
            "/on_play" => HookKind::Play,
            "/on_play_done" => HookKind::PlayDone,
            "/on_update" => HookKind::Update,
            "/on_record_done" => HookKind::RecordDone,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HookKind::Connect => "on_connect",
            HookKind::Disconnect => "on_disconnect",
            HookKind::Publish => "on_publish",
            HookKind::PublishDone => "on_publish_done",
            HookKind::Done => "on_done",
            HookKind::Play => "on_play",
            HookKind::PlayDone => "on_play_done",
            HookKind::Update => "on_update",
            HookKind::RecordDone => "on_record_done",
        }
    }

    /// Hooks that concern one stream and so must carry a valid `name`.
    fn needs_name(self) -> bool {
        !matches!(self, HookKind::Connect | HookKind::Disconnect)
    }
}

/// A parsed hook request. Its `Debug` names the form's fields but shows
/// none of their values (the stream key, `ms_secret`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Hook {
    pub(crate) kind: HookKind,
    pub(crate) app: String,
    /// The stream name (in the ingest app, a stream key): Some for every
    /// hook that concerns a stream, which is refused without a valid one.
    pub(crate) stream: Option<StreamKey>,
    /// nginx's session id; absent only on on_connect.
    pub(crate) client_id: Option<u64>,
    /// The client's IP address as nginx saw it (see [`client_ip`]); empty
    /// when `addr` was missing or not an address.
    pub(crate) addr: String,
    pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookError {
    MissingField(&'static str),
    BadName(String),
    BadClientId(String),
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::MissingField(k) => write!(f, "missing field {k:?}"),
            HookError::BadName(n) => write!(
                f,
                "invalid stream name {:?}: must match [A-Za-z0-9_-]{{1,64}}",
                truncate(n, 80)
            ),
            HookError::BadClientId(c) => write!(f, "invalid clientid {:?}", truncate(c, 40)),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `^[A-Za-z0-9_-]{1,64}$`: the stream key rule ([`crate::key::check`]),
/// also used for the other names that travel in URLs (page tokens, config
/// names).
pub(crate) fn valid_name(s: &str) -> bool {
    crate::key::check(s).is_ok()
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Hook")
            .field("kind", &self.kind)
            .field("app", &self.app)
            .field("stream", &self.stream)
            .field("client_id", &self.client_id)
            .field("addr", &self.addr)
            .field("fields", &fields)
            .finish()
    }
}

impl Hook {
    /// Parse a hook from its kind and the form string (POST body or GET query).
    pub(crate) fn parse(kind: HookKind, form: &str) -> Result<Hook, HookError> {
        let pairs = parse_form(form);
        let first = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let app = first("app").ok_or(HookError::MissingField("app"))?;
        let addr = first("addr").map(|a| client_ip(&a)).unwrap_or_default();
        let client_id = match first("clientid") {
            Some(c) => Some(c.parse::<u64>().map_err(|_| HookError::BadClientId(c))?),
            None if kind == HookKind::Connect => None,
            None => return Err(HookError::MissingField("clientid")),
        };
        let name = first("name");
        let stream = name.as_deref().and_then(|n| StreamKey::parse(n).ok());
        if kind.needs_name() && stream.is_none() {
            return Err(match name {
                None => HookError::MissingField("name"),
                Some(n) => HookError::BadName(n),
            });
        }
        Ok(Hook {
            kind,
            app,
            stream,
            client_id,
            addr,
            pairs,
        })
    }

    /// First value of a field (nginx's own fields come before the
    /// publisher's `?args`).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client connected from loopback (`addr` as nginx saw it).
    pub(crate) fn is_from_loopback(&self) -> bool {
        self.addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

/// nginx's `addr` field → the client's IP address, normalized, or "" when it
/// is not one. nginx sends a bare address, except for its own push relay
/// (`127.0.0.1:1935/app/name`); anything else is a forgery, and is never
/// stored or logged verbatim (a 60 KB `addr` once went into queue.json).
pub(crate) fn client_ip(addr: &str) -> String {
    use std::net::{IpAddr, SocketAddr};
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return ip.to_string();
    }
    let head = addr.split('/').next().unwrap_or("");
    head.parse::<SocketAddr>()
        .map_or_else(|_| String::new(), |sa| sa.ip().to_string())
}

/// Parse `application/x-www-form-urlencoded` into ordered pairs. Malformed
/// percent escapes are kept literally and bytes that are not UTF-8 become
/// U+FFFD (nginx never sends either, but a client poking at the port must
/// not crash anything).
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::k;

    const PUBLISH: &str = "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&clientid=3&call=publish&name=key1&type=live&foo=bar";

    #[test]
    fn parses_captured_publish() {
        let h = Hook::parse(HookKind::Publish, PUBLISH).unwrap();
        assert_eq!(h.app, "live");
        assert_eq!(h.stream, Some(k("key1")));
        assert_eq!(h.client_id, Some(3));
        assert_eq!(h.get("flashver"), Some("FMLE/3.0 (compatible; Lavf59.27"));
        assert_eq!(h.get("foo"), Some("bar"));
        assert!(h.is_from_loopback());
    }

    #[test]
    fn first_value_wins_against_injected_args() {
        let body = "app=live&addr=10.1.2.3&clientid=2&call=publish&name=key1&type=live&name=evil&call=play&x=%26y&clientid=99";
        let h = Hook::parse(HookKind::Publish, body).unwrap();
        assert_eq!(h.stream, Some(k("key1")));
        assert_eq!(h.client_id, Some(2));
        assert_eq!(h.get("call"), Some("publish"));
        assert_eq!(h.get("x"), Some("&y"));
        assert!(!h.is_from_loopback());
    }

    #[test]
    fn debug_shows_no_key_and_no_secret() {
        let body =
            "app=motherstream&addr=127.0.0.1&clientid=3&name=topsecretkey&ms_secret=hushhush";
        let h = Hook::parse(HookKind::Publish, body).unwrap();
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("hushhush"),
            "{shown}"
        );
        assert!(
            shown.contains("ms_secret") && shown.contains("key#"),
            "{shown}"
        );
    }

    #[test]
    fn connect_has_no_clientid() {
        let body = "app=live&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:19350/live&pageurl=&addr=127.0.0.1&epoch=1812812&call=connect";
        let h = Hook::parse(HookKind::Connect, body).unwrap();
        assert_eq!(h.client_id, None);
        assert_eq!(h.stream, None);
    }

    #[test]
    fn disconnect_with_empty_app_twice() {
        let body =
            "app=&flashver=&swfurl=&tcurl=&pageurl=&addr=127.0.0.1&clientid=1&call=disconnect&app=";
        let h = Hook::parse(HookKind::Disconnect, body).unwrap();
        assert_eq!(h.app, "");
        assert_eq!(h.client_id, Some(1));
    }

    #[test]
    fn rejects_bad_names_and_missing_fields() {
        for (body, want) in [
            ("app=live&clientid=1&name=a%20b", "invalid stream name"),
            ("app=live&clientid=1&name=", "invalid stream name"),
            ("app=live&clientid=1", "missing field \"name\""),
            ("clientid=1&name=k", "missing field \"app\""),
            ("app=live&name=k", "missing field \"clientid\""),
            ("app=live&clientid=x&name=k", "invalid clientid"),
        ] {
            let e = Hook::parse(HookKind::Publish, body).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        let long = format!("app=live&clientid=1&name={}", "a".repeat(65));
        assert!(Hook::parse(HookKind::Publish, &long).is_err());
        let ok = format!("app=live&clientid=1&name={}", "a".repeat(64));
        assert!(Hook::parse(HookKind::Publish, &ok).is_ok());
    }

    #[test]
    fn addr_is_an_ip_address_or_nothing() {
        assert_eq!(client_ip("127.0.0.1"), "127.0.0.1");
        assert_eq!(client_ip("::1"), "::1");
        assert_eq!(client_ip("2001:DB8::1"), "2001:db8::1");
        assert_eq!(client_ip("127.0.0.1:19350/motherstream/live"), "127.0.0.1");
        for junk in [
            "",
            "1.2.3.4\n<6>fake line",
            "1.2.3.4 ",
            "localhost",
            "999.1.1.1",
            &"9".repeat(60_000),
        ] {
            assert_eq!(client_ip(junk), "", "{junk:?}");
        }
        let body = "app=live&addr=1.2.3.4%0A%3C6%3Efake&clientid=1&call=publish&name=k";
        let h = Hook::parse(HookKind::Publish, body).unwrap();
        assert_eq!(h.addr, "");
        assert!(!h.is_from_loopback());
        let relay = "app=&addr=127.0.0.1:19350/motherstream/live&clientid=5&call=play&name=k";
        assert!(Hook::parse(HookKind::Play, relay)
            .unwrap()
            .is_from_loopback());
    }

    #[test]
    fn decode_is_total() {
        let decode = |v: &str| parse_form(&format!("v={v}"))[0].1.clone();
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%41+b"), "A b");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert_eq!(
            parse_form("&a=1&&b&c=%3D="),
            [("a", "1"), ("b", ""), ("c", "==")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn every_captured_fixture_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nginx-rtmp");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures dir") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let path_s = v["path"].as_str().unwrap();
                let route = path_s.split('?').next().unwrap();
                let Some(kind) = HookKind::from_path(route) else {
                    continue;
                };
                let form = if v["method"] == "GET" {
                    path_s.split_once('?').map(|x| x.1).unwrap_or("")
                } else {
                    v["body"].as_str().unwrap()
                };
                let h = Hook::parse(kind, form)
                    .unwrap_or_else(|e| panic!("{}: {form}: {e}", path.display()));
                // The decoded pairs must agree with the capture's own decoding
                // on the first value of every key.
                let captured = if v["method"] == "GET" {
                    &v["query"]
                } else {
                    &v["form"]
                };
                for pair in captured.as_array().unwrap() {
                    let k = pair[0].as_str().unwrap();
                    let first = captured
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p[0] == k)
                        .unwrap()[1]
                        .as_str()
                        .unwrap();
                    assert_eq!(h.get(k), Some(first), "{k} in {form}");
                }
                n += 1;
            }
        }
        assert!(n > 50, "only {n} fixture hooks parsed");
    }
}
