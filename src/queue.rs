//! The queue rules: a pure state machine. No I/O and no clock reads: every
//! mutation is an [`Op`] that carries its own time, so the same ops replayed
//! from the journal rebuild exactly the same state.
//!
//! The head of the queue (`entries[0]`) is on air.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Most sessions remembered per key (a refused duplicate adds one that is
/// removed again at once; this only bounds a misbehaving client).
const MAX_SESSIONS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Arc<str>,
    /// nginx clientids of this key's publishes that are believed live, the
    /// first accepted one first. Empty = unknown (migrated from the seed's
    /// `QUEUE.json`): any publish_done for the key then removes it.
    #[serde(default)]
    pub sessions: Vec<u64>,
    /// When the key joined, unix ms.
    pub joined_at: u64,
    /// Address nginx reported for the first publish.
    #[serde(default)]
    pub addr: String,
}

/// A state change. `at` is unix ms at decision time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A publish on the ingest app was accepted.
    Publish {
        key: String,
        client_id: Option<u64>,
        addr: String,
        at: u64,
    },
    /// nginx reported the end of a publish.
    PublishDone {
        key: String,
        client_id: Option<u64>,
        at: u64,
    },
    /// Take the on-air streamer off (moderator skip, relay failures).
    Skip { at: u64 },
    /// Empty the queue.
    Clear { at: u64 },
    /// New order; keys left out are removed.
    Override { keys: Vec<String>, at: u64 },
}

/// What an op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The key is queued at `position` (0 = on air); `new` when it joined now.
    Queued {
        position: usize,
        new: bool,
    },
    /// The key's last live session ended and it left the queue.
    Left {
        key: Arc<str>,
        was_on_air: bool,
    },
    /// One of several sessions of a key ended (a refused duplicate): the
    /// key stays queued.
    SessionEnded,
    /// Nothing queued matches (a player, a refused publish, a repeat).
    NotQueued,
    Skipped {
        key: Option<Arc<str>>,
    },
    Cleared {
        removed: usize,
    },
    Reordered {
        removed: Vec<Arc<str>>,
    },
    /// The op was invalid; nothing changed.
    Rejected(String),
}

impl Outcome {
    pub fn changed(&self) -> bool {
        match self {
            Outcome::Queued { .. }
            | Outcome::Left { .. }
            | Outcome::SessionEnded
            | Outcome::Reordered { .. } => true,
            Outcome::Skipped { key } => key.is_some(),
            Outcome::Cleared { removed } => *removed > 0,
            Outcome::NotQueued | Outcome::Rejected(_) => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    entries: Vec<Entry>,
    /// When the current head went on air, unix ms.
    #[serde(default)]
    on_air_since: Option<u64>,
    /// Increments each time a different key goes on air.
    #[serde(default)]
    switch_seq: u64,
    /// Keys present in `entries`, for O(1) membership at large queues.
    #[serde(skip)]
    keys: HashSet<Arc<str>>,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Build from entries (restore, migration). Duplicate and invalid keys
    /// are dropped; returns the dropped ones for the log.
    pub fn from_parts(
        entries: Vec<Entry>,
        on_air_since: Option<u64>,
        switch_seq: u64,
    ) -> (State, Vec<String>) {
        let mut s = State {
            on_air_since,
            switch_seq,
            ..State::default()
        };
        let mut dropped = Vec::new();
        for e in entries {
            if !crate::hook::valid_name(&e.key) || s.keys.contains(&e.key) {
                dropped.push(e.key.to_string());
                continue;
            }
            s.keys.insert(e.key.clone());
            s.entries.push(e);
        }
        if s.entries.is_empty() {
            s.on_air_since = None;
        }
        (s, dropped)
    }

    /// Rebuild the key index after deserializing.
    pub fn reindex(self) -> (State, Vec<String>) {
        State::from_parts(self.entries, self.on_air_since, self.switch_seq)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn head(&self) -> Option<&Entry> {
        self.entries.first()
    }

    pub fn on_air_since(&self) -> Option<u64> {
        self.on_air_since
    }

    pub fn switch_seq(&self) -> u64 {
        self.switch_seq
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    pub fn position(&self, key: &str) -> Option<usize> {
        if !self.contains(key) {
            return None;
        }
        self.entries.iter().position(|e| &*e.key == key)
    }

    /// Check an override list without changing anything.
    pub fn check_override(&self, keys: &[String]) -> Result<(), String> {
        let mut seen = HashSet::new();
        for k in keys {
            if !self.contains(k) {
                return Err(format!("{k:?} is not in the queue"));
            }
            if !seen.insert(k.as_str()) {
                return Err(format!("{k:?} is listed twice"));
            }
        }
        Ok(())
    }

    pub fn apply(&mut self, op: &Op) -> Outcome {
        let head_before = self.head().map(|e| e.key.clone());
        let (outcome, at) = match op {
            Op::Publish {
                key,
                client_id,
                addr,
                at,
            } => (self.publish(key, *client_id, addr, *at), *at),
            Op::PublishDone { key, client_id, at } => (self.publish_done(key, *client_id), *at),
            Op::Skip { at } => {
                let key = if self.entries.is_empty() {
                    None
                } else {
                    Some(self.remove_at(0).key)
                };
                (Outcome::Skipped { key }, *at)
            }
            Op::Clear { at } => {
                let removed = self.entries.len();
                self.entries.clear();
                self.keys.clear();
                (Outcome::Cleared { removed }, *at)
            }
            Op::Override { keys, at } => (self.override_order(keys), *at),
        };
        let head_after = self.head().map(|e| e.key.clone());
        if head_after != head_before {
            self.on_air_since = head_after.as_ref().map(|_| at);
            if head_after.is_some() {
                self.switch_seq += 1;
            }
        }
        outcome
    }

    fn publish(&mut self, key: &str, client_id: Option<u64>, addr: &str, at: u64) -> Outcome {
        if let Some(pos) = self.position(key) {
            let e = &mut self.entries[pos];
            if let Some(c) = client_id {
                if !e.sessions.contains(&c) {
                    if e.sessions.len() >= MAX_SESSIONS {
                        e.sessions.remove(0);
                    }
                    e.sessions.push(c);
                }
            }
            return Outcome::Queued {
                position: pos,
                new: false,
            };
        }
        let key: Arc<str> = Arc::from(key);
        self.keys.insert(key.clone());
        self.entries.push(Entry {
            key,
            sessions: client_id.into_iter().collect(),
            joined_at: at,
            addr: addr.to_string(),
        });
        Outcome::Queued {
            position: self.entries.len() - 1,
            new: true,
        }
    }

    fn publish_done(&mut self, key: &str, client_id: Option<u64>) -> Outcome {
        let Some(pos) = self.position(key) else {
            return Outcome::NotQueued;
        };
        let e = &mut self.entries[pos];
        if !e.sessions.is_empty() {
            match client_id {
                Some(c) => match e.sessions.iter().position(|s| *s == c) {
                    Some(i) => {
                        e.sessions.remove(i);
                    }
                    // Not a session we accepted for this key (e.g. a late
                    // duplicate from before a restart): ignore it.
                    None => return Outcome::NotQueued,
                },
                None => e.sessions.clear(),
            }
            if !e.sessions.is_empty() {
                return Outcome::SessionEnded;
            }
        }
        let left = self.remove_at(pos);
        Outcome::Left {
            key: left.key,
            was_on_air: pos == 0,
        }
    }

    fn override_order(&mut self, keys: &[String]) -> Outcome {
        if let Err(e) = self.check_override(keys) {
            return Outcome::Rejected(e);
        }
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        let mut index = std::collections::HashMap::with_capacity(old.len());
        for (i, e) in old.iter().enumerate() {
            if let Some(e) = e {
                index.insert(e.key.clone(), i);
            }
        }
        for k in keys {
            if let Some(e) = index.get(k.as_str()).and_then(|&i| old[i].take()) {
                self.entries.push(e);
            }
        }
        let removed: Vec<Arc<str>> = old.into_iter().flatten().map(|e| e.key).collect();
        for k in &removed {
            self.keys.remove(k);
        }
        Outcome::Reordered { removed }
    }

    fn remove_at(&mut self, pos: usize) -> Entry {
        let e = self.entries.remove(pos);
        self.keys.remove(&e.key);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(s: &mut State, key: &str, cid: u64, at: u64) -> Outcome {
        s.apply(&Op::Publish {
            key: key.into(),
            client_id: Some(cid),
            addr: "127.0.0.1".into(),
            at,
        })
    }

    fn done(s: &mut State, key: &str, cid: u64) -> Outcome {
        s.apply(&Op::PublishDone {
            key: key.into(),
            client_id: Some(cid),
            at: 99,
        })
    }

    fn keys(s: &State) -> Vec<&str> {
        s.entries().iter().map(|e| &*e.key).collect()
    }

    #[test]
    fn join_order_and_head_on_air() {
        let mut s = State::new();
        assert_eq!(
            publish(&mut s, "a", 1, 10),
            Outcome::Queued {
                position: 0,
                new: true
            }
        );
        assert_eq!(s.on_air_since(), Some(10));
        assert_eq!(s.switch_seq(), 1);
        assert_eq!(
            publish(&mut s, "b", 2, 20),
            Outcome::Queued {
                position: 1,
                new: true
            }
        );
        publish(&mut s, "c", 3, 30);
        assert_eq!(keys(&s), ["a", "b", "c"]);
        assert_eq!(s.on_air_since(), Some(10), "a waiting join keeps the head");
        assert_eq!(s.switch_seq(), 1);
    }

    #[test]
    fn publish_is_idempotent() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        let o = publish(&mut s, "a", 1, 11);
        assert_eq!(
            o,
            Outcome::Queued {
                position: 0,
                new: false
            }
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.entries()[0].sessions, vec![1]);
    }

    #[test]
    fn head_leaving_puts_next_on_air() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        publish(&mut s, "b", 2, 20);
        let o = done(&mut s, "a", 1);
        assert_eq!(
            o,
            Outcome::Left {
                key: "a".into(),
                was_on_air: true
            }
        );
        assert_eq!(keys(&s), ["b"]);
        assert_eq!(s.on_air_since(), Some(99));
        assert_eq!(s.switch_seq(), 2);
    }

    #[test]
    fn waiting_streamer_leaving_keeps_head() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        publish(&mut s, "b", 2, 20);
        publish(&mut s, "c", 3, 30);
        assert_eq!(
            done(&mut s, "b", 2),
            Outcome::Left {
                key: "b".into(),
                was_on_air: false
            }
        );
        assert_eq!(keys(&s), ["a", "c"]);
        assert_eq!(s.on_air_since(), Some(10));
        assert_eq!(s.switch_seq(), 1);
    }

    #[test]
    fn refused_duplicate_does_not_dequeue_the_live_publisher() {
        let mut s = State::new();
        publish(&mut s, "a", 3, 10);
        // nginx calls on_publish for the duplicate (clientid 7), refuses it
        // ("Already publishing"), then sends publish_done with clientid 7.
        publish(&mut s, "a", 7, 11);
        assert_eq!(done(&mut s, "a", 7), Outcome::SessionEnded);
        assert_eq!(keys(&s), ["a"]);
        assert_eq!(s.entries()[0].sessions, vec![3]);
        // The real publisher leaving removes it.
        assert!(matches!(done(&mut s, "a", 3), Outcome::Left { .. }));
        assert!(s.is_empty());
        assert_eq!(s.on_air_since(), None);
    }

    #[test]
    fn unknown_session_done_is_ignored() {
        let mut s = State::new();
        publish(&mut s, "a", 3, 10);
        assert_eq!(done(&mut s, "a", 4), Outcome::NotQueued);
        assert_eq!(done(&mut s, "zz", 4), Outcome::NotQueued);
        assert_eq!(s.len(), 1);
        assert!(!Outcome::NotQueued.changed());
    }

    #[test]
    fn migrated_entry_without_sessions_leaves_on_any_done() {
        let (mut s, dropped) = State::from_parts(
            vec![Entry {
                key: "old".into(),
                sessions: vec![],
                joined_at: 0,
                addr: String::new(),
            }],
            None,
            0,
        );
        assert!(dropped.is_empty());
        assert!(matches!(done(&mut s, "old", 42), Outcome::Left { .. }));
    }

    #[test]
    fn skip_clear_and_empty_skip() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        publish(&mut s, "b", 2, 20);
        assert_eq!(
            s.apply(&Op::Skip { at: 50 }),
            Outcome::Skipped {
                key: Some("a".into())
            }
        );
        assert_eq!(keys(&s), ["b"]);
        assert_eq!(s.on_air_since(), Some(50));
        assert_eq!(
            s.apply(&Op::Clear { at: 60 }),
            Outcome::Cleared { removed: 1 }
        );
        assert!(s.is_empty());
        assert!(!s.contains("b"));
        let o = s.apply(&Op::Skip { at: 70 });
        assert_eq!(o, Outcome::Skipped { key: None });
        assert!(!o.changed());
        assert!(!s.apply(&Op::Clear { at: 80 }).changed());
    }

    #[test]
    fn override_reorders_and_removes_left_out() {
        let mut s = State::new();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            publish(&mut s, k, i as u64, i as u64);
        }
        let o = s.apply(&Op::Override {
            keys: vec!["c".into(), "a".into()],
            at: 100,
        });
        assert_eq!(
            o,
            Outcome::Reordered {
                removed: vec!["b".into(), "d".into()]
            }
        );
        assert_eq!(keys(&s), ["c", "a"]);
        assert!(!s.contains("b"));
        assert_eq!(s.on_air_since(), Some(100));
    }

    #[test]
    fn override_with_unknown_or_repeated_key_changes_nothing() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 1);
        publish(&mut s, "b", 2, 2);
        let before = s.clone();
        for bad in [vec!["a", "x"], vec!["a", "a"]] {
            let keys: Vec<String> = bad.iter().map(|k| k.to_string()).collect();
            let o = s.apply(&Op::Override { keys, at: 5 });
            assert!(matches!(o, Outcome::Rejected(_)), "{o:?}");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn replaying_ops_rebuilds_the_same_state() {
        let ops = vec![
            Op::Publish {
                key: "a".into(),
                client_id: Some(1),
                addr: "x".into(),
                at: 1,
            },
            Op::Publish {
                key: "b".into(),
                client_id: Some(2),
                addr: "y".into(),
                at: 2,
            },
            Op::Skip { at: 3 },
            Op::Publish {
                key: "c".into(),
                client_id: None,
                addr: "z".into(),
                at: 4,
            },
        ];
        let mut a = State::new();
        for op in &ops {
            a.apply(op);
        }
        let json = serde_json::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_json::from_str(&json).unwrap();
        let mut b = State::new();
        for op in &back {
            b.apply(op);
        }
        assert_eq!(a, b);
        assert_eq!(keys(&b), ["b", "c"]);
    }

    #[test]
    fn from_parts_drops_duplicates_and_invalid_keys() {
        let e = |k: &str| Entry {
            key: k.into(),
            sessions: vec![],
            joined_at: 0,
            addr: String::new(),
        };
        let (s, dropped) = State::from_parts(vec![e("a"), e("a"), e("b c"), e("b")], Some(5), 3);
        assert_eq!(keys(&s), ["a", "b"]);
        assert_eq!(dropped, ["a", "b c"]);
        assert_eq!(s.on_air_since(), Some(5));
    }

    #[test]
    fn sessions_are_bounded() {
        let mut s = State::new();
        for c in 0..100 {
            publish(&mut s, "a", c, c);
        }
        assert_eq!(s.entries()[0].sessions.len(), MAX_SESSIONS);
    }
}
