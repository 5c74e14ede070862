//! The queue rules: a pure state machine. No I/O and no clock reads: every
//! mutation is an [`Op`] that carries its own time, so the same ops replayed
//! from the journal rebuild exactly the same state.
//!
//! The head of the queue (`entries[0]`) is on air.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::key::StreamKey;

/// Most sessions remembered per key (a refused duplicate adds one that is
/// removed again at once; this only bounds a misbehaving client).
const MAX_SESSIONS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(with = "crate::key::persist")]
    pub(crate) key: StreamKey,
    /// nginx clientids of this key's publishes that are believed live, the
    /// first accepted one first. Empty = unknown (migrated from the seed's
    /// `QUEUE.json`): any publish_done for the key then removes it.
    #[serde(default)]
    pub(crate) sessions: Sessions,
    /// When the key joined, unix ms.
    pub(crate) joined_at: u64,
    /// Address nginx reported for the first publish.
    #[serde(default)]
    pub(crate) addr: String,
}

/// Session ids of one key: almost always exactly one, kept inline so a
/// long queue costs no allocation per entry for them.
pub(crate) type Sessions = smallvec::SmallVec<[u64; 1]>;

/// A state change. `at` is unix ms at decision time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// A publish on the ingest app was accepted.
    Publish {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        client_id: Option<u64>,
        addr: String,
        at: u64,
    },
    /// nginx reported the end of a publish.
    PublishDone {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        client_id: Option<u64>,
        at: u64,
    },
    /// Take the on-air streamer off (moderator skip, relay failures).
    Skip { at: u64 },
    /// Empty the queue.
    Clear { at: u64 },
    /// New order; keys left out are removed.
    Override {
        #[serde(with = "crate::key::persist::vec")]
        keys: Vec<StreamKey>,
        at: u64,
    },
    /// Take a key off the queue wherever it is (moderator kick or block,
    /// slot end) and, with `until`, refuse its publishes until then (unix ms).
    Kick {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        until: Option<u64>,
        at: u64,
    },
    /// Lift a key's block.
    Unblock {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        at: u64,
    },
    /// Move a queued key to `position` (0 = on air; past the end = last).
    Move {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        position: usize,
        at: u64,
    },
    /// Set when the on-air slot of `key` ends (unix ms); None = back to the
    /// slot length. Ignored unless `key` is on air.
    SetSlotEnd {
        #[serde(with = "crate::key::persist")]
        key: StreamKey,
        ends_at: Option<u64>,
        at: u64,
    },
    /// Moderator override of `[queue] slot_seconds`; None = the config's.
    SetDefaultSlot { seconds: Option<u64>, at: u64 },
    /// Moderator override of `[queue] rejoin_block_seconds`; None = the config's.
    SetRejoinBlock { seconds: Option<u64>, at: u64 },
    /// These keys' publishers are gone (nginx's /stat after a restart).
    Gone {
        #[serde(with = "crate::key::persist::vec")]
        keys: Vec<StreamKey>,
        at: u64,
    },
}

impl Op {
    /// When the op was decided, unix ms.
    pub(crate) fn at(&self) -> u64 {
        match self {
            Op::Publish { at, .. }
            | Op::PublishDone { at, .. }
            | Op::Skip { at }
            | Op::Clear { at }
            | Op::Override { at, .. }
            | Op::Kick { at, .. }
            | Op::Unblock { at, .. }
            | Op::Move { at, .. }
            | Op::SetSlotEnd { at, .. }
            | Op::SetDefaultSlot { at, .. }
            | Op::SetRejoinBlock { at, .. }
            | Op::Gone { at, .. } => *at,
        }
    }
}

/// What an op did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The key is queued at `position` (0 = on air); `new` when it joined now.
    Queued {
        position: usize,
        new: bool,
    },
    /// The key's last live session ended and it left the queue.
    Left {
        key: StreamKey,
        was_on_air: bool,
    },
    /// One of several sessions of a key ended (a refused duplicate): the
    /// key stays queued.
    SessionEnded,
    /// Nothing queued matches (a player, a refused publish, a repeat).
    NotQueued,
    Skipped {
        key: Option<StreamKey>,
    },
    Cleared {
        removed: usize,
    },
    Reordered {
        removed: Vec<StreamKey>,
    },
    /// The key is blocked from rejoining until `until` (unix ms).
    Blocked {
        until: u64,
    },
    /// The key was taken off (`position` = where it was, None when it was
    /// not queued) and blocked until `until`.
    Kicked {
        position: Option<usize>,
        until: Option<u64>,
    },
    Unblocked {
        was_blocked: bool,
    },
    Moved {
        from: usize,
        to: usize,
    },
    /// A slot or policy setting took a new value (`changed` = it differs).
    Set {
        changed: bool,
    },
    /// Entries dropped because their publishers are gone.
    Dropped {
        removed: Vec<StreamKey>,
    },
    /// The op was invalid; nothing changed.
    Rejected(String),
}

impl Outcome {
    pub(crate) fn changed(&self) -> bool {
        match self {
            Outcome::Queued { .. }
            | Outcome::Left { .. }
            | Outcome::SessionEnded
            | Outcome::Reordered { .. } => true,
            Outcome::Skipped { key } => key.is_some(),
            Outcome::Cleared { removed } => *removed > 0,
            Outcome::Kicked { position, until } => position.is_some() || until.is_some(),
            Outcome::Unblocked { was_blocked } => *was_blocked,
            Outcome::Moved { from, to } => from != to,
            Outcome::Set { changed } => *changed,
            Outcome::Dropped { removed } => !removed.is_empty(),
            Outcome::NotQueued | Outcome::Blocked { .. } | Outcome::Rejected(_) => false,
        }
    }
}

/// Queue settings a moderator changed at run time (None = the config's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Overrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slot_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rejoin_block_seconds: Option<u64>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        *self == Overrides::default()
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
    /// Keys refused until the given unix ms (rejoin blocks, moderator blocks).
    /// Expired ones are pruned by the next op.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(with = "crate::key::persist::map")]
    blocks: BTreeMap<StreamKey, u64>,
    /// When the current head's slot ends, if a moderator set it (extend,
    /// shorten); reset whenever the head changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot_ends_at: Option<u64>,
    /// Moderator overrides of the `[queue]` config, kept across restarts.
    #[serde(default, skip_serializing_if = "Overrides::is_empty")]
    overrides: Overrides,
    /// Keys present in `entries`, for O(1) membership at large queues.
    #[serde(skip)]
    keys: HashSet<StreamKey>,
    /// Bumped by every change to `entries` other than an append, so a
    /// reader that mirrors the order can extend its copy instead of
    /// rebuilding it (the common change is a join at the end).
    #[serde(skip)]
    reorder_gen: Generation,
}

/// A change counter that is not part of the state's value: two states with
/// the same entries are equal whatever their history.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Generation(pub(crate) u64);

impl PartialEq for Generation {
    fn eq(&self, _: &Generation) -> bool {
        true
    }
}

impl Eq for Generation {}

impl State {
    pub(crate) fn new() -> State {
        State::default()
    }

    /// Build from entries (restore, migration). Repeated keys are dropped;
    /// returns the dropped ones (their fingerprints go to the log).
    pub(crate) fn from_parts(
        entries: Vec<Entry>,
        on_air_since: Option<u64>,
        switch_seq: u64,
    ) -> (State, Vec<StreamKey>) {
        let mut s = State {
            on_air_since,
            switch_seq,
            ..State::default()
        };
        let mut dropped = Vec::new();
        for e in entries {
            if s.keys.contains(&e.key) {
                dropped.push(e.key);
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
    pub(crate) fn reindex(self) -> (State, Vec<StreamKey>) {
        let (mut s, dropped) = State::from_parts(self.entries, self.on_air_since, self.switch_seq);
        s.blocks = self.blocks;
        s.overrides = self.overrides;
        if !s.entries.is_empty() {
            s.slot_ends_at = self.slot_ends_at;
        }
        (s, dropped)
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn head(&self) -> Option<&Entry> {
        self.entries.first()
    }

    pub(crate) fn on_air_since(&self) -> Option<u64> {
        self.on_air_since
    }

    pub(crate) fn switch_seq(&self) -> u64 {
        self.switch_seq
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn overrides(&self) -> Overrides {
        self.overrides
    }

    /// Until when `key` is refused, if it is blocked at `now`.
    pub(crate) fn blocked_until(&self, key: &StreamKey, now: u64) -> Option<u64> {
        self.blocks.get(key).copied().filter(|u| *u > now)
    }

    /// Blocks still in force at `now`: (key, until), soonest first.
    pub(crate) fn blocks(&self, now: u64) -> Vec<(&StreamKey, u64)> {
        let mut v: Vec<(&StreamKey, u64)> = self
            .blocks
            .iter()
            .filter(|(_, u)| **u > now)
            .map(|(k, u)| (k, *u))
            .collect();
        v.sort_by_key(|(k, u)| (*u, *k));
        v
    }

    /// When the on-air slot ends (unix ms): a moderator's setting, else
    /// `on_air_since + slot_seconds`; None with nobody on air or an
    /// unlimited slot (`slot_seconds` 0).
    pub(crate) fn slot_ends_at(&self, slot_seconds: u64) -> Option<u64> {
        self.head()?;
        if let Some(t) = self.slot_ends_at {
            return Some(t);
        }
        let since = self.on_air_since?;
        (slot_seconds > 0).then(|| since.saturating_add(slot_seconds.saturating_mul(1000)))
    }

    pub(crate) fn contains(&self, key: &StreamKey) -> bool {
        self.keys.contains(key)
    }

    pub(crate) fn position(&self, key: &StreamKey) -> Option<usize> {
        if !self.contains(key) {
            return None;
        }
        self.entries.iter().position(|e| e.key == *key)
    }

    /// Check an override list without changing anything.
    pub(crate) fn check_override(&self, keys: &[StreamKey]) -> Result<(), String> {
        let mut seen = HashSet::new();
        for k in keys {
            if !self.contains(k) {
                return Err(format!("{} is not in the queue", k.fingerprint()));
            }
            if !seen.insert(k) {
                return Err(format!("{} is listed twice", k.fingerprint()));
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        let head_before = self.head().map(|e| e.key.clone());
        let at = op.at();
        // Expired blocks go with the next op: deterministic on replay.
        self.blocks.retain(|_, until| *until > at);
        let outcome = match op {
            Op::Publish {
                key,
                client_id,
                addr,
                at,
            } => match self.blocked_until(key, *at) {
                Some(until) => Outcome::Blocked { until },
                None => self.publish(key, *client_id, addr, *at),
            },
            Op::PublishDone { key, client_id, .. } => self.publish_done(key, *client_id),
            Op::Skip { .. } => {
                let key = if self.entries.is_empty() {
                    None
                } else {
                    Some(self.remove_at(0).key)
                };
                Outcome::Skipped { key }
            }
            Op::Clear { .. } => {
                let removed = self.entries.len();
                self.reordered();
                self.entries.clear();
                self.keys.clear();
                Outcome::Cleared { removed }
            }
            Op::Override { keys, .. } => self.override_order(keys),
            Op::Kick { key, until, .. } => {
                let position = self.position(key);
                if let Some(pos) = position {
                    self.remove_at(pos);
                }
                let until = until.filter(|u| *u > at);
                if let Some(u) = until {
                    let e = self.blocks.entry(key.clone()).or_insert(u);
                    *e = u;
                }
                Outcome::Kicked { position, until }
            }
            Op::Unblock { key, .. } => Outcome::Unblocked {
                was_blocked: self.blocks.remove(key).is_some(),
            },
            Op::Move { key, position, .. } => match self.position(key) {
                None => Outcome::Rejected(format!("{} is not in the queue", key.fingerprint())),
                Some(from) => {
                    self.reordered();
                    let e = self.entries.remove(from);
                    let to = (*position).min(self.entries.len());
                    self.entries.insert(to, e);
                    Outcome::Moved { from, to }
                }
            },
            Op::SetSlotEnd { key, ends_at, .. } => {
                if self.head().map(|h| &h.key) != Some(key) {
                    Outcome::Rejected(format!("{} is not on air", key.fingerprint()))
                } else {
                    let changed = self.slot_ends_at != *ends_at;
                    self.slot_ends_at = *ends_at;
                    Outcome::Set { changed }
                }
            }
            Op::SetDefaultSlot { seconds, .. } => {
                let changed = self.overrides.slot_seconds != *seconds;
                self.overrides.slot_seconds = *seconds;
                Outcome::Set { changed }
            }
            Op::SetRejoinBlock { seconds, .. } => {
                let changed = self.overrides.rejoin_block_seconds != *seconds;
                self.overrides.rejoin_block_seconds = *seconds;
                Outcome::Set { changed }
            }
            Op::Gone { keys, .. } => {
                let mut removed = Vec::new();
                for k in keys {
                    if let Some(pos) = self.position(k) {
                        removed.push(self.remove_at(pos).key);
                    }
                }
                Outcome::Dropped { removed }
            }
        };
        let head_after = self.head().map(|e| e.key.clone());
        if head_after != head_before {
            self.on_air_since = head_after.as_ref().map(|_| at);
            self.slot_ends_at = None;
            if head_after.is_some() {
                self.switch_seq += 1;
            }
        }
        outcome
    }

    fn publish(&mut self, key: &StreamKey, client_id: Option<u64>, addr: &str, at: u64) -> Outcome {
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
        let key = key.clone();
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

    fn publish_done(&mut self, key: &StreamKey, client_id: Option<u64>) -> Outcome {
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

    fn override_order(&mut self, keys: &[StreamKey]) -> Outcome {
        if let Err(e) = self.check_override(keys) {
            return Outcome::Rejected(e);
        }
        self.reordered();
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
            if let Some(e) = index.get(k).and_then(|&i| old[i].take()) {
                self.entries.push(e);
            }
        }
        let removed: Vec<StreamKey> = old.into_iter().flatten().map(|e| e.key).collect();
        for k in &removed {
            self.keys.remove(k);
        }
        Outcome::Reordered { removed }
    }

    fn reordered(&mut self) {
        self.reorder_gen.0 += 1;
    }

    /// See `reorder_gen`: unchanged while entries were only appended.
    pub(crate) fn reorder_gen(&self) -> u64 {
        self.reorder_gen.0
    }

    fn remove_at(&mut self, pos: usize) -> Entry {
        self.reordered();
        let e = self.entries.remove(pos);
        self.keys.remove(&e.key);
        e
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::k;

    /// A publish from loopback with clientid `cid` (shared with the
    /// moderation tests).
    pub(crate) fn publish(s: &mut State, key: &str, cid: u64, at: u64) -> Outcome {
        s.apply(&Op::Publish {
            key: k(key),
            client_id: Some(cid),
            addr: "127.0.0.1".into(),
            at,
        })
    }

    fn done(s: &mut State, key: &str, cid: u64) -> Outcome {
        s.apply(&Op::PublishDone {
            key: k(key),
            client_id: Some(cid),
            at: 99,
        })
    }

    fn keys(s: &State) -> Vec<&str> {
        s.entries().iter().map(|e| e.key.expose()).collect()
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
        assert_eq!(s.entries()[0].sessions.as_slice(), [1]);
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
                key: k("a"),
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
                key: k("b"),
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
        assert_eq!(s.entries()[0].sessions.as_slice(), [3]);
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
                key: k("old"),
                sessions: Sessions::new(),
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
            Outcome::Skipped { key: Some(k("a")) }
        );
        assert_eq!(keys(&s), ["b"]);
        assert_eq!(s.on_air_since(), Some(50));
        assert_eq!(
            s.apply(&Op::Clear { at: 60 }),
            Outcome::Cleared { removed: 1 }
        );
        assert!(s.is_empty());
        assert!(!s.contains(&k("b")));
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
            keys: vec![k("c"), k("a")],
            at: 100,
        });
        assert_eq!(
            o,
            Outcome::Reordered {
                removed: vec![k("b"), k("d")]
            }
        );
        assert_eq!(keys(&s), ["c", "a"]);
        assert!(!s.contains(&k("b")));
        assert_eq!(s.on_air_since(), Some(100));
    }

    #[test]
    fn override_with_unknown_or_repeated_key_changes_nothing() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 1);
        publish(&mut s, "b", 2, 2);
        let before = s.clone();
        for bad in [vec!["a", "x"], vec!["a", "a"]] {
            let keys: Vec<StreamKey> = bad.iter().map(|x| k(x)).collect();
            let o = s.apply(&Op::Override { keys, at: 5 });
            assert!(matches!(o, Outcome::Rejected(_)), "{o:?}");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn replaying_ops_rebuilds_the_same_state() {
        let ops = vec![
            Op::Publish {
                key: k("a"),
                client_id: Some(1),
                addr: "x".into(),
                at: 1,
            },
            Op::Publish {
                key: k("b"),
                client_id: Some(2),
                addr: "y".into(),
                at: 2,
            },
            Op::Skip { at: 3 },
            Op::Publish {
                key: k("c"),
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
    fn from_parts_drops_repeated_keys() {
        let e = |key: &str| Entry {
            key: k(key),
            sessions: Sessions::new(),
            joined_at: 0,
            addr: String::new(),
        };
        let (s, dropped) = State::from_parts(vec![e("a"), e("a"), e("b"), e("b")], Some(5), 3);
        assert_eq!(keys(&s), ["a", "b"]);
        assert_eq!(dropped, [k("a"), k("b")]);
        assert_eq!(s.on_air_since(), Some(5));
    }

    #[test]
    fn kick_unblock_and_their_no_op_cases() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        publish(&mut s, "b", 2, 20);
        // Not queued, no block: nothing changes.
        let o = s.apply(&Op::Kick {
            key: k("zz"),
            until: None,
            at: 30,
        });
        assert_eq!(
            o,
            Outcome::Kicked {
                position: None,
                until: None
            }
        );
        assert!(!o.changed());
        // A block already over when decided is no block.
        let o = s.apply(&Op::Kick {
            key: k("b"),
            until: Some(30),
            at: 30,
        });
        assert_eq!(
            o,
            Outcome::Kicked {
                position: Some(1),
                until: None
            }
        );
        assert_eq!(keys(&s), ["a"]);
        assert!(!s
            .apply(&Op::Unblock {
                key: k("b"),
                at: 31
            })
            .changed());
        // Kicking the head switches.
        s.apply(&Op::Kick {
            key: k("a"),
            until: Some(100),
            at: 40,
        });
        assert!(s.is_empty());
        assert_eq!(s.on_air_since(), None);
        assert_eq!(s.blocks(40), [(&k("a"), 100)]);
        assert_eq!(s.blocks(100), []);
        // A later block replaces an earlier one.
        s.apply(&Op::Kick {
            key: k("a"),
            until: Some(500),
            at: 41,
        });
        assert_eq!(s.blocked_until(&k("a"), 41), Some(500));
    }

    #[test]
    fn move_slot_end_and_gone_validate_their_keys() {
        let mut s = State::new();
        publish(&mut s, "a", 1, 10);
        publish(&mut s, "b", 2, 20);
        let before = s.clone();
        let o = s.apply(&Op::Move {
            key: k("zz"),
            position: 0,
            at: 30,
        });
        assert!(matches!(o, Outcome::Rejected(_)));
        let o = s.apply(&Op::SetSlotEnd {
            key: k("b"),
            ends_at: Some(99),
            at: 30,
        });
        assert!(matches!(o, Outcome::Rejected(_)), "b is not on air");
        assert_eq!(s, before);
        // Past the end = last.
        let o = s.apply(&Op::Move {
            key: k("a"),
            position: 99,
            at: 31,
        });
        assert_eq!(o, Outcome::Moved { from: 0, to: 1 });
        assert_eq!(keys(&s), ["b", "a"]);
        assert_eq!(s.on_air_since(), Some(31));
        let o = s.apply(&Op::Gone {
            keys: vec![k("zz"), k("a")],
            at: 32,
        });
        assert_eq!(
            o,
            Outcome::Dropped {
                removed: vec![k("a")]
            }
        );
        assert_eq!(keys(&s), ["b"]);
    }

    #[test]
    fn reorder_gen_moves_only_when_not_an_append() {
        let mut s = State::new();
        let g0 = s.reorder_gen();
        publish(&mut s, "a", 1, 1);
        publish(&mut s, "b", 2, 2);
        publish(&mut s, "a", 3, 3);
        assert_eq!(s.reorder_gen(), g0, "joins and repeats are appends");
        done(&mut s, "b", 2);
        let g1 = s.reorder_gen();
        assert!(g1 > g0, "a leave reorders");
        s.apply(&Op::Skip { at: 9 });
        assert!(s.reorder_gen() > g1);
        let mut t = s.clone();
        t.reorder_gen = Generation(99);
        assert_eq!(t, s, "the counter is not part of the value");
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
