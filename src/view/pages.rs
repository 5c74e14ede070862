//! The streamers' own pages (`/me/<token>`): who a page token belongs to,
//! and what their page shows, computed from the engine's published view
//! without asking the engine. Pure: the view and the time are parameters.
//!
//! The engine rebuilds [`Pages`] when the registry changes and hands it out
//! inside every [`View`]; HTTP workers only read it.

use serde_json::{json, Value};

use super::View;
use crate::registry::Registry;

/// One registered streamer as their page needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Page {
    token: String,
    name: String,
    /// Their own slot length (0 = unlimited); None = the default.
    slot_seconds: Option<u64>,
    /// The first characters of their key, so they can tell which key they
    /// have; never the whole key (see [`Pages::me_json`]).
    key_hint: String,
}

/// Page tokens → streamers, plus what every page shows about the ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pages {
    pages: Vec<Page>,
    ingest_app: String,
    rtmp_port: u16,
}

/// How many characters of the key a page shows: 16 of its 128 bits, enough
/// to compare with what is pasted in OBS, no help in guessing the rest.
const KEY_HINT_CHARS: usize = 4;

impl Pages {
    pub(crate) fn new(reg: &Registry, ingest_app: &str, rtmp_port: u16) -> Pages {
        Pages {
            pages: reg
                .streamers()
                .iter()
                .filter(|s| !s.link_token.is_empty())
                .map(|s| Page {
                    token: s.link_token.clone(),
                    name: s.name.clone(),
                    slot_seconds: s.slot_seconds,
                    key_hint: s.key.hint(KEY_HINT_CHARS),
                })
                .collect(),
            ingest_app: ingest_app.to_string(),
            rtmp_port,
        }
    }

    /// The page of `token`, compared in constant time against every token.
    fn by_token(&self, token: &str) -> Option<&Page> {
        let mut found = None;
        for p in &self.pages {
            if crate::secret::ct_eq(p.token.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(p);
            }
        }
        found
    }

    /// The ingest application and RTMP port streamers publish to.
    pub(crate) fn ingest(&self) -> (&str, u16) {
        (&self.ingest_app, self.rtmp_port)
    }

    pub(crate) fn exists(&self, token: &str) -> bool {
        self.by_token(token).is_some()
    }

    /// The slot length of the queued streamer shown as `name`: their own,
    /// else the default in force (0 = unlimited). Guests have the default.
    fn slot_of(&self, name: &str, default: u64) -> u64 {
        self.pages
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.slot_seconds)
            .unwrap_or(default)
    }

    /// What the page of `token` shows, as JSON; None for an unknown token.
    ///
    /// The stream key is deliberately not on the page: the page link is a
    /// read-only capability that gets opened on phones, kept in browser
    /// history and written to a proxy's access log (it is in the URL); the
    /// key lets its holder go on air in the streamer's name. Keeping the two
    /// apart means a leaked link shows a queue position, nothing more. The
    /// key is shown once, when a moderator creates or rotates it.
    pub(crate) fn me_json(&self, token: &str, view: &View, now_ms: u64) -> Option<Value> {
        let page = self.by_token(token)?;
        let names: Vec<&str> = view.names.iter().map(|(n, _)| n).collect();
        let position = names.iter().position(|n| *n == page.name);
        let on_air_left = view
            .slot_ends_at_ms
            .map(|t| t.saturating_sub(now_ms).div_ceil(1000));
        // The wait is what is left of the on-air slot plus the slots of
        // everyone between; any unlimited slot makes it unknown.
        let wait_s = match position {
            Some(0) | None => None,
            Some(p) => on_air_left.and_then(|left| {
                names[1..p]
                    .iter()
                    .map(|n| self.slot_of(n, view.slot_seconds))
                    .try_fold(left, |sum, s| (s > 0).then_some(sum + s))
            }),
        };
        let on_air = position == Some(0);
        let blocked = view
            .blocked
            .iter()
            .find(|(n, until)| *n == page.name && *until > now_ms)
            .map(|(_, until)| {
                json!({
                    "until": until.div_ceil(1000),
                    "left_s": until.saturating_sub(now_ms).div_ceil(1000),
                })
            });
        Some(json!({
            "name": page.name,
            "position": position,
            "ahead": position.map(|p| p.saturating_sub(1)),
            "queue_length": names.len(),
            "on_air": on_air,
            "on_air_now": names.first(),
            "on_air_s": view
                .on_air
                .as_ref()
                .filter(|o| on_air && o.since_ms > 0)
                .map(|o| now_ms.saturating_sub(o.since_ms) / 1000),
            "slot_left_s": if on_air { on_air_left } else { None },
            "wait_s": wait_s,
            "slot_seconds": self.slot_of(&page.name, view.slot_seconds),
            "blocked": blocked,
            // What we receive from their encoder (while their stream is
            // read: on air or next), with plain hints.
            "stream": view
                .health
                .get(&page.name)
                .map(|h| super::health_json(h, now_ms)),
            "ingest": {
                "app": self.ingest_app,
                "port": self.rtmp_port,
                "key_hint": page.key_hint,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Streamer;
    use std::sync::Arc;

    fn streamer(name: &str, key: &str, token: &str, slot: Option<u64>) -> Streamer {
        Streamer {
            name: name.into(),
            key: crate::key::k(key),
            slot_seconds: slot,
            key_set_at: 0,
            link_token: token.into(),
        }
    }

    fn pages() -> Pages {
        let reg = Registry::from_streamers(
            vec![
                streamer("alice", "aaaa1111", "ta", None),
                streamer("bob", "bbbb2222", "tb", Some(300)),
                streamer("carol", "cccc3333", "tc", None),
                streamer("dave", "dddd4444", "", None),
                streamer("eve", "eeee5555", "te", Some(0)),
            ],
            true,
        );
        Pages::new(&reg, "live", 1935)
    }

    fn view(queue: &[&str], slot_left_ms: Option<u64>, default: u64, now: u64) -> View {
        View {
            names: Arc::new(queue.iter().map(|n| (*n, 1)).collect()),
            slot_ends_at_ms: slot_left_ms.map(|l| now + l),
            slot_seconds: default,
            ..View::default()
        }
    }

    #[test]
    fn unknown_and_empty_tokens_have_no_page() {
        let p = pages();
        let v = view(&["alice"], None, 0, 1000);
        assert!(p.me_json("nope", &v, 1000).is_none());
        assert!(p.me_json("", &v, 1000).is_none(), "dave has no link yet");
        assert!(!p.exists("") && p.exists("tb"));
    }

    #[test]
    fn position_and_wait_from_the_slots_ahead() {
        let p = pages();
        let now = 1_000_000;
        // alice on air with 90 s left; bob (300 s) then guest (default 600).
        let v = view(
            &["alice", "bob", "guest-1", "carol"],
            Some(90_000),
            600,
            now,
        );
        let c = p.me_json("tc", &v, now).unwrap();
        assert_eq!(c["position"], 3);
        assert_eq!(c["ahead"], 2);
        assert_eq!(c["wait_s"], 90 + 300 + 600);
        assert_eq!(c["on_air"], false);
        assert_eq!(c["on_air_now"], "alice");
        assert!(c["slot_left_s"].is_null());
        let b = p.me_json("tb", &v, now).unwrap();
        assert_eq!(b["position"], 1);
        assert_eq!(b["wait_s"], 90, "next: only the on-air slot is left");
        assert_eq!(b["slot_seconds"], 300);
        let a = p.me_json("ta", &v, now).unwrap();
        assert_eq!(a["on_air"], true);
        assert_eq!(a["slot_left_s"], 90);
        assert!(a["wait_s"].is_null());
        let e = p.me_json("te", &v, now).unwrap();
        assert!(e["position"].is_null() && e["wait_s"].is_null());
    }

    #[test]
    fn an_unlimited_slot_ahead_makes_the_wait_unknown() {
        let p = pages();
        let now = 5_000;
        let v = view(&["alice", "eve", "carol"], Some(10_000), 600, now);
        assert!(p.me_json("tc", &v, now).unwrap()["wait_s"].is_null());
        // Unlimited on-air slot.
        let v = view(&["alice", "carol"], None, 0, now);
        assert!(p.me_json("tc", &v, now).unwrap()["wait_s"].is_null());
    }

    #[test]
    fn the_page_never_carries_the_key() {
        let p = pages();
        let mut v = view(&["bob"], Some(1000), 600, 10);
        v.blocked = vec![("carol".into(), 70_000)];
        let c = p.me_json("tc", &v, 10_000).unwrap();
        let text = c.to_string();
        assert!(!text.contains("cccc3333"), "{text}");
        assert_eq!(c["ingest"]["key_hint"], "cccc");
        assert_eq!(c["ingest"]["app"], "live");
        assert_eq!(c["blocked"]["left_s"], 60);
    }
}
