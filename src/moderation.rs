//! Slots, rejoin blocks and moderation, decided without I/O: each function
//! maps (queue state, registry, `[queue]` config, now) to the [`Op`] the
//! engine should apply, or to a refusal (`crate::refusal`; `http/` picks the status).

use crate::config::QueueConfig;
use crate::key::StreamKey;
use crate::queue::{Op, State};
use crate::refusal::Refusal;
use crate::registry::Registry;

/// Longest block, slot or extension a moderator can ask for.
const MAX_SECONDS: u64 = 366 * 24 * 3600;

/// The `[queue]` settings in force: the config, overridden by moderators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) require_registered: bool,
    pub(crate) slot_seconds: u64,
    pub(crate) rejoin_block_seconds: u64,
}

impl Policy {
    pub(crate) fn effective(cfg: &QueueConfig, state: &State) -> Policy {
        let o = state.overrides();
        Policy {
            require_registered: cfg.require_registered,
            slot_seconds: o.slot_seconds.unwrap_or(cfg.slot_seconds),
            rejoin_block_seconds: o.rejoin_block_seconds.unwrap_or(cfg.rejoin_block_seconds),
        }
    }

    /// The slot length of `key`: its own (registry), else the default.
    pub(crate) fn slot_seconds_for(&self, reg: &Registry, key: &StreamKey) -> u64 {
        reg.slot_seconds(key).unwrap_or(self.slot_seconds)
    }

    /// The block a slot end or kick imposes from `now`, if any.
    pub(crate) fn rejoin_until(&self, now: u64) -> Option<u64> {
        (self.rejoin_block_seconds > 0).then(|| now + self.rejoin_block_seconds * 1000)
    }
}

/// When the on-air slot ends (unix ms); None = nobody on air or unlimited.
pub(crate) fn slot_ends_at(state: &State, reg: &Registry, policy: &Policy) -> Option<u64> {
    let head = state.head()?;
    state.slot_ends_at(policy.slot_seconds_for(reg, &head.key))
}

/// The op that ends the on-air slot when its time is up at `now`: take the
/// streamer off and block its key for the rejoin time.
pub(crate) fn slot_expired(state: &State, reg: &Registry, policy: &Policy, now: u64) -> Option<Op> {
    let ends = slot_ends_at(state, reg, policy)?;
    if now < ends {
        return None;
    }
    let head = state.head()?;
    Some(Op::Kick {
        key: head.key.clone(),
        until: policy.rejoin_until(now),
        at: now,
    })
}

/// Whether a publish of `key` may queue as far as the registry is
/// concerned (blocks are a queue rule: see `Outcome::Blocked`).
pub(crate) fn registered_enough(reg: &Registry, policy: &Policy, key: &StreamKey) -> bool {
    !policy.require_registered || reg.by_key(key).is_some()
}

/// After a restart: the queued keys whose publishers nginx no longer has
/// (`published` = stream names publishing in the ingest app).
pub(crate) fn gone(state: &State, published: &[StreamKey], now: u64) -> Option<Op> {
    let live: std::collections::HashSet<&StreamKey> = published.iter().collect();
    let keys: Vec<StreamKey> = state
        .entries()
        .iter()
        .filter(|e| !live.contains(&e.key))
        .map(|e| e.key.clone())
        .collect();
    (!keys.is_empty()).then_some(Op::Gone { keys, at: now })
}

/// A moderator's request, as the admin endpoints parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Take the on-air streamer off (no block).
    Skip,
    /// Take a streamer off (default: the one on air), drop its publisher and
    /// block it for `seconds` (default: the rejoin block time).
    Kick {
        name: Option<String>,
        seconds: Option<u64>,
    },
    /// Refuse a streamer's publishes for `seconds` (taking it off if queued).
    Block {
        name: String,
        seconds: u64,
    },
    Unblock {
        name: String,
    },
    /// Move a queued streamer to `position` (0 = on air).
    Move {
        name: String,
        position: usize,
    },
    /// Lengthen (positive) or shorten (negative) the on-air slot.
    Extend {
        seconds: i64,
    },
    /// Let the on-air slot end `seconds` from now.
    Left {
        seconds: u64,
    },
    /// Set the default slot length (0 = unlimited; None = the config's).
    SlotDefault {
        seconds: Option<u64>,
    },
    /// Turn the rejoin block on or off or set its length (None = config).
    RejoinBlock {
        enabled: Option<bool>,
        seconds: Option<u64>,
    },
    /// Empty the queue (`/clear-queue`, `/api/clear`).
    Clear,
    /// The new order of the queue by name; those left out are removed
    /// (`/override-queue`, `/api/order`).
    Order {
        names: Vec<String>,
    },
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::invalid(message)
}

fn not_found(name: &str) -> Refusal {
    Refusal::not_found(format!(
        "no streamer {name:?} in the queue, the registry or the block list"
    ))
}

fn check_seconds(what: &str, s: u64) -> Result<(), Refusal> {
    if s > MAX_SECONDS {
        return Err(bad(format!("{what} {s} is more than a year")));
    }
    Ok(())
}

/// The stream key a moderator means by `name`: a queued streamer's public
/// name, a registered name (any case), a blocked streamer's public name, or
/// the key itself when it is queued or blocked.
pub(crate) fn resolve(name: &str, state: &State, reg: &Registry, now: u64) -> Option<StreamKey> {
    if let Some(e) = state.entries().iter().find(|e| reg.display(&e.key) == name) {
        return Some(e.key.clone());
    }
    if let Some(s) = reg.by_name(name) {
        return Some(s.key.clone());
    }
    let blocks = state.blocks(now);
    if let Some((k, _)) = blocks.iter().find(|(k, _)| reg.display(k) == name) {
        return Some((*k).clone());
    }
    StreamKey::parse(name)
        .ok()
        .filter(|k| state.contains(k) || state.blocked_until(k, now).is_some())
}

/// Decide a moderator's request: the op to apply, or why not.
pub(crate) fn plan(
    req: &Request,
    state: &State,
    reg: &Registry,
    cfg: &QueueConfig,
    now: u64,
) -> Result<Op, Refusal> {
    let policy = Policy::effective(cfg, state);
    match req {
        Request::Skip => {
            head_key(state)?;
            Ok(Op::Skip { at: now })
        }
        Request::Clear => Ok(Op::Clear { at: now }),
        Request::Order { names } => plan_order(names, state, reg, now),
        Request::Kick { name, seconds } => {
            let key = match name {
                Some(n) => resolve(n, state, reg, now).ok_or_else(|| not_found(n))?,
                None => head_key(state)?,
            };
            let until = match seconds {
                Some(s) => {
                    check_seconds("seconds", *s)?;
                    (*s > 0).then(|| now + s * 1000)
                }
                None => policy.rejoin_until(now),
            };
            Ok(Op::Kick {
                key,
                until,
                at: now,
            })
        }
        Request::Block { name, seconds } => plan_block(name, *seconds, state, reg, now),
        Request::Unblock { name } => {
            let key = resolve(name, state, reg, now).ok_or_else(|| not_found(name))?;
            if state.blocked_until(&key, now).is_none() {
                return Err(bad(format!("{name:?} is not blocked")));
            }
            Ok(Op::Unblock { key, at: now })
        }
        Request::Move { name, position } => plan_move(name, *position, state, reg, now),
        Request::Extend { seconds } => plan_extend(*seconds, state, reg, &policy, now),
        Request::Left { seconds } => {
            let key = head_key(state)?;
            check_seconds("left", *seconds)?;
            Ok(Op::SetSlotEnd {
                key,
                ends_at: Some(now + seconds * 1000),
                at: now,
            })
        }
        Request::SlotDefault { seconds } => {
            if let Some(s) = seconds {
                check_seconds("seconds", *s)?;
            }
            Ok(Op::SetDefaultSlot {
                seconds: *seconds,
                at: now,
            })
        }
        Request::RejoinBlock { enabled, seconds } => Ok(Op::SetRejoinBlock {
            seconds: rejoin_block(*enabled, *seconds, cfg)?,
            at: now,
        }),
    }
}

/// Who is on air, for the requests about them.
fn head_key(state: &State) -> Result<StreamKey, Refusal> {
    state
        .head()
        .map(|h| h.key.clone())
        .ok_or_else(|| bad("nobody is on air"))
}

/// `Order`: every name in the queue, none twice, an order the queue allows.
fn plan_order(names: &[String], state: &State, reg: &Registry, now: u64) -> Result<Op, Refusal> {
    let mut keys: Vec<StreamKey> = Vec::with_capacity(names.len());
    for n in names {
        let key = resolve(n, state, reg, now)
            .filter(|k| state.contains(k))
            .ok_or_else(|| bad(format!("{n:?} is not in the queue")))?;
        if keys.contains(&key) {
            return Err(bad(format!("{n:?} is listed twice")));
        }
        keys.push(key);
    }
    state.check_override(&keys).map_err(bad)?;
    Ok(Op::Override { keys, at: now })
}

/// `Block`: a kick with an end.
fn plan_block(
    name: &str,
    seconds: u64,
    state: &State,
    reg: &Registry,
    now: u64,
) -> Result<Op, Refusal> {
    if seconds == 0 {
        return Err(bad(
            "seconds must be > 0 (use /api/unblock to lift a block)",
        ));
    }
    check_seconds("seconds", seconds)?;
    // Without a registry a moderator may name a key (they know it)
    // to block it before it ever publishes.
    let key = resolve(name, state, reg, now)
        .or_else(|| {
            (!reg.in_use())
                .then(|| StreamKey::parse(name).ok())
                .flatten()
        })
        .ok_or_else(|| not_found(name))?;
    Ok(Op::Kick {
        key,
        until: Some(now + seconds * 1000),
        at: now,
    })
}

/// `Move`: a queued streamer to a position inside the queue.
fn plan_move(
    name: &str,
    position: usize,
    state: &State,
    reg: &Registry,
    now: u64,
) -> Result<Op, Refusal> {
    let key = resolve(name, state, reg, now).ok_or_else(|| not_found(name))?;
    if !state.contains(&key) {
        return Err(Refusal::not_found(format!("{name:?} is not in the queue")));
    }
    if position >= state.len() {
        return Err(bad(format!(
            "position {position} is past the end of the queue (0 to {})",
            state.len() - 1
        )));
    }
    Ok(Op::Move {
        key,
        position,
        at: now,
    })
}

/// `Extend`: the current slot's end moved by `seconds` (negative: sooner).
fn plan_extend(
    seconds: i64,
    state: &State,
    reg: &Registry,
    policy: &Policy,
    now: u64,
) -> Result<Op, Refusal> {
    let key = head_key(state)?;
    if seconds == 0 {
        return Err(bad("seconds must not be 0"));
    }
    check_seconds("seconds", seconds.unsigned_abs())?;
    let Some(ends) = slot_ends_at(state, reg, policy) else {
        return Err(bad(
            "the current slot is unlimited; set the time left with {\"left\": seconds}",
        ));
    };
    let delta = seconds.unsigned_abs() * 1000;
    let new_end = if seconds > 0 {
        ends.saturating_add(delta)
    } else {
        // Shortened into the past: it ends at once.
        ends.saturating_sub(delta).max(now)
    };
    Ok(Op::SetSlotEnd {
        key,
        ends_at: Some(new_end),
        at: now,
    })
}

/// `RejoinBlock`: the rejoin block to set (Some(0): off; None: the
/// configured default).
fn rejoin_block(
    enabled: Option<bool>,
    seconds: Option<u64>,
    cfg: &QueueConfig,
) -> Result<Option<u64>, Refusal> {
    if let Some(s) = seconds {
        check_seconds("seconds", s)?;
    }
    match (enabled, seconds) {
        (Some(false), Some(s)) if s > 0 => {
            Err(bad("enabled false with seconds > 0 contradict each other"))
        }
        (Some(false), _) => Ok(Some(0)),
        (_, Some(s)) => Ok(Some(s)),
        (Some(true), None) if cfg.rejoin_block_seconds > 0 => Ok(None),
        (Some(true), None) => Err(bad(
            "[queue] rejoin_block_seconds is 0: give the block length in seconds",
        )),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::k;
    use crate::queue::Outcome;
    use crate::refusal::Why;
    use crate::registry::Streamer;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccc";

    fn reg() -> Registry {
        let s = |name: &str, key: &str, slot: Option<u64>| Streamer {
            name: name.into(),
            key: k(key),
            slot_seconds: slot,
            key_set_at: 0,
            link_token: String::new(),
        };
        Registry::from_streamers(
            vec![
                s("Alice", A, None),
                s("Bob", B, Some(30)),
                s("Carol", C, Some(0)),
            ],
            true,
        )
    }

    fn cfg(slot: u64, rejoin: u64) -> QueueConfig {
        QueueConfig {
            require_registered: true,
            slot_seconds: slot,
            rejoin_block_seconds: rejoin,
            ..QueueConfig::default()
        }
    }

    use crate::queue::tests::publish;

    fn queue(s: &State) -> Vec<&str> {
        s.entries().iter().map(|e| e.key.expose()).collect()
    }

    /// alice (on air since 1000), bob, carol.
    fn three() -> State {
        let mut s = State::new();
        publish(&mut s, A, 1, 1000);
        publish(&mut s, B, 2, 2000);
        publish(&mut s, C, 3, 3000);
        s
    }

    fn run(req: Request, s: &mut State, c: &QueueConfig, now: u64) -> Result<Outcome, Refusal> {
        let op = plan(&req, s, &reg(), c, now)?;
        Ok(s.apply(&op))
    }

    #[test]
    fn slot_deadline_default_per_streamer_and_unlimited() {
        let r = reg();
        let c = cfg(60, 0);
        let mut s = three();
        let p = Policy::effective(&c, &s);
        assert_eq!(slot_ends_at(&s, &r, &p), Some(61_000));
        assert_eq!(slot_expired(&s, &r, &p, 60_999), None);
        let op = slot_expired(&s, &r, &p, 61_000).unwrap();
        assert_eq!(
            op,
            Op::Kick {
                key: k(A),
                until: None,
                at: 61_000
            }
        );
        s.apply(&op);
        // bob's own 30 s slot starts when he goes on air.
        assert_eq!(slot_ends_at(&s, &r, &p), Some(61_000 + 30_000));
        s.apply(&slot_expired(&s, &r, &p, 91_000).unwrap());
        // carol's 0 = unlimited, whatever the default.
        assert_eq!(queue(&s), [C]);
        assert_eq!(slot_ends_at(&s, &r, &p), None);
        assert_eq!(slot_expired(&s, &r, &p, u64::MAX / 2), None);
        // No default and no own slot: unlimited.
        let s2 = three();
        assert_eq!(
            slot_ends_at(&s2, &r, &Policy::effective(&cfg(0, 0), &s2)),
            None
        );
        assert_eq!(slot_ends_at(&State::new(), &r, &p), None);
    }

    #[test]
    fn slot_end_blocks_the_key_from_rejoining_until_the_block_ends() {
        let r = reg();
        let c = cfg(60, 120);
        let mut s = three();
        let p = Policy::effective(&c, &s);
        let op = slot_expired(&s, &r, &p, 61_000).unwrap();
        assert!(matches!(
            s.apply(&op),
            Outcome::Kicked {
                position: Some(0),
                until: Some(181_000)
            }
        ));
        assert_eq!(queue(&s), [B, C]);
        assert_eq!(s.on_air_since(), Some(61_000));
        // The encoder reconnects at once: refused.
        assert_eq!(
            publish(&mut s, A, 9, 61_500),
            Outcome::Blocked { until: 181_000 }
        );
        assert_eq!(
            publish(&mut s, A, 10, 180_999),
            Outcome::Blocked { until: 181_000 }
        );
        assert_eq!(queue(&s), [B, C]);
        // And accepted once the block is over; the block is pruned.
        assert!(matches!(
            publish(&mut s, A, 11, 181_000),
            Outcome::Queued {
                position: 2,
                new: true
            }
        ));
        assert!(s.blocks(0).is_empty());
    }

    #[test]
    fn blocks_survive_replay_and_expire_deterministically() {
        let r = reg();
        let c = cfg(10, 30);
        let mut s = three();
        let mut ops = Vec::new();
        let p = Policy::effective(&c, &s);
        let op = slot_expired(&s, &r, &p, 11_000).unwrap();
        s.apply(&op);
        ops.push(op);
        let op = Op::Publish {
            key: k(A),
            client_id: Some(5),
            addr: String::new(),
            at: 12_000,
        };
        assert!(matches!(s.apply(&op), Outcome::Blocked { .. }));
        let json = serde_json::to_string(&s).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        let (back, _) = back.reindex();
        assert_eq!(back, s);
        assert_eq!(back.blocked_until(&k(A), 12_000), Some(41_000));
        let mut replay = three();
        for op in &ops {
            replay.apply(op);
        }
        assert_eq!(replay, s);
    }

    #[test]
    fn registered_enough_follows_require_registered() {
        let r = reg();
        let mut c = cfg(0, 0);
        let p = Policy::effective(&c, &State::new());
        assert!(registered_enough(&r, &p, &k(A)));
        assert!(!registered_enough(&r, &p, &k("unknownkey")));
        c.require_registered = false;
        let p = Policy::effective(&c, &State::new());
        assert!(registered_enough(&r, &p, &k("unknownkey")));
    }

    #[test]
    fn skip_takes_the_head_off_without_a_block() {
        let c = cfg(0, 300);
        let mut s = three();
        let o = run(Request::Skip, &mut s, &c, 5000).unwrap();
        assert_eq!(o, Outcome::Skipped { key: Some(k(A)) });
        assert_eq!(queue(&s), [B, C]);
        assert!(s.blocks(5000).is_empty());
        let mut empty = State::new();
        assert_eq!(
            run(Request::Skip, &mut empty, &c, 1).unwrap_err().why,
            Why::Invalid
        );
    }

    #[test]
    fn kick_defaults_to_the_head_and_the_rejoin_block() {
        let c = cfg(0, 300);
        let mut s = three();
        let o = run(
            Request::Kick {
                name: None,
                seconds: None,
            },
            &mut s,
            &c,
            5000,
        )
        .unwrap();
        assert_eq!(
            o,
            Outcome::Kicked {
                position: Some(0),
                until: Some(305_000)
            }
        );
        // A waiting streamer by name, with an explicit block; any case.
        let o = run(
            Request::Kick {
                name: Some("carol".into()),
                seconds: Some(10),
            },
            &mut s,
            &c,
            6000,
        )
        .unwrap();
        assert_eq!(
            o,
            Outcome::Kicked {
                position: Some(1),
                until: Some(16_000)
            }
        );
        assert_eq!(queue(&s), [B]);
        // seconds 0 = no block; rejoin off = no block.
        let o = run(
            Request::Kick {
                name: Some("Bob".into()),
                seconds: Some(0),
            },
            &mut s,
            &c,
            7000,
        )
        .unwrap();
        assert_eq!(
            o,
            Outcome::Kicked {
                position: Some(0),
                until: None
            }
        );
        assert!(s.blocked_until(&k(B), 7000).is_none());
        let e = run(
            Request::Kick {
                name: Some("nobody".into()),
                seconds: None,
            },
            &mut s,
            &c,
            8000,
        )
        .unwrap_err();
        assert_eq!(e.why, Why::NotFound, "{e:?}");
        let e = run(
            Request::Kick {
                name: None,
                seconds: None,
            },
            &mut s,
            &c,
            8000,
        )
        .unwrap_err();
        assert_eq!(e.why, Why::Invalid);
    }

    #[test]
    fn block_and_unblock() {
        let c = cfg(0, 0);
        let mut s = three();
        // A registered streamer who is not even queued can be blocked.
        let mut s2 = State::new();
        let o = run(
            Request::Block {
                name: "Bob".into(),
                seconds: 60,
            },
            &mut s2,
            &c,
            1000,
        )
        .unwrap();
        assert_eq!(
            o,
            Outcome::Kicked {
                position: None,
                until: Some(61_000)
            }
        );
        assert!(o.changed());
        assert_eq!(
            publish(&mut s2, B, 1, 2000),
            Outcome::Blocked { until: 61_000 }
        );
        // A queued one leaves the queue.
        run(
            Request::Block {
                name: "Alice".into(),
                seconds: 60,
            },
            &mut s,
            &c,
            5000,
        )
        .unwrap();
        assert_eq!(queue(&s), [B, C]);
        // Unblock by name lets the key back in at once.
        let o = run(
            Request::Unblock {
                name: "Alice".into(),
            },
            &mut s,
            &c,
            6000,
        )
        .unwrap();
        assert_eq!(o, Outcome::Unblocked { was_blocked: true });
        assert!(matches!(
            publish(&mut s, A, 7, 6500),
            Outcome::Queued { .. }
        ));
        // Errors: zero seconds, not blocked, unknown.
        for (req, why) in [
            (
                Request::Block {
                    name: "Bob".into(),
                    seconds: 0,
                },
                Why::Invalid,
            ),
            (
                Request::Block {
                    name: "Bob".into(),
                    seconds: MAX_SECONDS + 1,
                },
                Why::Invalid,
            ),
            (Request::Unblock { name: "Bob".into() }, Why::Invalid),
            (Request::Unblock { name: "zed".into() }, Why::NotFound),
            (
                Request::Block {
                    name: "zed".into(),
                    seconds: 5,
                },
                Why::NotFound,
            ),
        ] {
            let before = s.clone();
            let e = run(req.clone(), &mut s, &c, 7000).unwrap_err();
            assert_eq!(e.why, why, "{req:?}: {e:?}");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn without_a_registry_any_key_can_be_blocked_by_its_name() {
        let none = Registry::default();
        let c = QueueConfig::default();
        let s = State::new();
        let op = plan(
            &Request::Block {
                name: "somekey".into(),
                seconds: 5,
            },
            &s,
            &none,
            &c,
            0,
        )
        .unwrap();
        assert_eq!(
            op,
            Op::Kick {
                key: k("somekey"),
                until: Some(5000),
                at: 0
            }
        );
    }

    #[test]
    fn guests_are_resolved_by_their_public_name() {
        let r = reg();
        let mut s = State::new();
        publish(&mut s, "guestkey1", 1, 0);
        let name = r.display(&k("guestkey1"));
        assert_eq!(resolve(&name, &s, &r, 0), Some(k("guestkey1")));
        // Blocked guests too (they are no longer queued).
        s.apply(&Op::Kick {
            key: k("guestkey1"),
            until: Some(10_000),
            at: 1,
        });
        assert_eq!(resolve(&name, &s, &r, 2), Some(k("guestkey1")));
        assert_eq!(resolve(&name, &s, &r, 10_000), None, "block expired");
    }

    #[test]
    fn move_reorders_and_can_change_who_is_on_air() {
        let c = cfg(60, 0);
        let mut s = three();
        let o = run(
            Request::Move {
                name: "Carol".into(),
                position: 1,
            },
            &mut s,
            &c,
            5000,
        )
        .unwrap();
        assert_eq!(o, Outcome::Moved { from: 2, to: 1 });
        assert_eq!(queue(&s), [A, C, B]);
        assert_eq!(s.on_air_since(), Some(1000), "head unchanged");
        // Extend alice, then move bob on air: the extension is alice's only.
        run(Request::Extend { seconds: 30 }, &mut s, &c, 5000).unwrap();
        let seq = s.switch_seq();
        run(
            Request::Move {
                name: "Bob".into(),
                position: 0,
            },
            &mut s,
            &c,
            6000,
        )
        .unwrap();
        assert_eq!(queue(&s), [B, A, C]);
        assert_eq!(s.on_air_since(), Some(6000));
        assert_eq!(s.switch_seq(), seq + 1);
        assert_eq!(
            slot_ends_at(&s, &reg(), &Policy::effective(&c, &s)),
            Some(36_000)
        );
        for (req, why) in [
            (
                Request::Move {
                    name: "Bob".into(),
                    position: 3,
                },
                Why::Invalid,
            ),
            (
                Request::Move {
                    name: "zed".into(),
                    position: 0,
                },
                Why::NotFound,
            ),
        ] {
            assert_eq!(run(req, &mut s, &c, 7000).unwrap_err().why, why);
        }
        // A registered streamer who is not queued: not found.
        let mut s2 = State::new();
        publish(&mut s2, A, 1, 0);
        let e = run(
            Request::Move {
                name: "Bob".into(),
                position: 0,
            },
            &mut s2,
            &c,
            1,
        )
        .unwrap_err();
        assert_eq!(e.why, Why::NotFound);
    }

    #[test]
    fn extend_shorten_and_left() {
        let r = reg();
        let c = cfg(60, 0);
        let mut s = three();
        let p = |s: &State| Policy::effective(&c, s);
        run(Request::Extend { seconds: 30 }, &mut s, &c, 2000).unwrap();
        assert_eq!(slot_ends_at(&s, &r, &p(&s)), Some(91_000));
        run(Request::Extend { seconds: -60 }, &mut s, &c, 3000).unwrap();
        assert_eq!(slot_ends_at(&s, &r, &p(&s)), Some(31_000));
        // Shortened into the past: ends now.
        run(Request::Extend { seconds: -3600 }, &mut s, &c, 4000).unwrap();
        assert_eq!(slot_ends_at(&s, &r, &p(&s)), Some(4000));
        assert!(slot_expired(&s, &r, &p(&s), 4000).is_some());
        run(Request::Left { seconds: 10 }, &mut s, &c, 5000).unwrap();
        assert_eq!(slot_ends_at(&s, &r, &p(&s)), Some(15_000));
        assert_eq!(
            run(Request::Extend { seconds: 0 }, &mut s, &c, 5000)
                .unwrap_err()
                .why,
            Why::Invalid
        );
        // An unlimited slot cannot be extended, but can be given a time left.
        let c0 = cfg(0, 0);
        let mut u = three();
        let e = run(Request::Extend { seconds: 10 }, &mut u, &c0, 5000).unwrap_err();
        assert!(e.message.contains("unlimited"), "{e:?}");
        run(Request::Left { seconds: 10 }, &mut u, &c0, 5000).unwrap();
        assert_eq!(
            slot_ends_at(&u, &r, &Policy::effective(&c0, &u)),
            Some(15_000)
        );
        // Nobody on air.
        let mut e = State::new();
        assert_eq!(
            run(Request::Left { seconds: 1 }, &mut e, &c, 1)
                .unwrap_err()
                .why,
            Why::Invalid
        );
        // The moderator's end is reset when the head changes.
        s.apply(&Op::Skip { at: 6000 });
        assert_eq!(slot_ends_at(&s, &r, &p(&s)), Some(36_000), "bob's own 30 s");
    }

    #[test]
    fn slot_default_and_rejoin_block_overrides() {
        let r = reg();
        let c = cfg(60, 120);
        let mut s = three();
        run(Request::SlotDefault { seconds: Some(10) }, &mut s, &c, 2000).unwrap();
        assert_eq!(Policy::effective(&c, &s).slot_seconds, 10);
        assert_eq!(
            slot_ends_at(&s, &r, &Policy::effective(&c, &s)),
            Some(11_000)
        );
        run(Request::SlotDefault { seconds: Some(0) }, &mut s, &c, 2000).unwrap();
        assert_eq!(slot_ends_at(&s, &r, &Policy::effective(&c, &s)), None);
        let o = run(Request::SlotDefault { seconds: None }, &mut s, &c, 2000).unwrap();
        assert_eq!(o, Outcome::Set { changed: true });
        assert_eq!(Policy::effective(&c, &s).slot_seconds, 60);
        let rb = |enabled, seconds| Request::RejoinBlock { enabled, seconds };
        run(rb(Some(false), None), &mut s, &c, 1).unwrap();
        assert_eq!(Policy::effective(&c, &s).rejoin_block_seconds, 0);
        assert_eq!(Policy::effective(&c, &s).rejoin_until(5), None);
        run(rb(Some(true), None), &mut s, &c, 1).unwrap();
        assert_eq!(Policy::effective(&c, &s).rejoin_block_seconds, 120);
        run(rb(None, Some(5)), &mut s, &c, 1).unwrap();
        assert_eq!(Policy::effective(&c, &s).rejoin_until(1000), Some(6000));
        assert_eq!(
            run(rb(Some(false), Some(5)), &mut s, &c, 1)
                .unwrap_err()
                .why,
            Why::Invalid
        );
        assert_eq!(
            run(rb(Some(true), None), &mut s, &cfg(60, 0), 1)
                .unwrap_err()
                .why,
            Why::Invalid
        );
        // Overrides are part of the durable state.
        let (back, _) = serde_json::from_str::<State>(&serde_json::to_string(&s).unwrap())
            .unwrap()
            .reindex();
        assert_eq!(back.overrides(), s.overrides());
    }

    #[test]
    fn reconcile_drops_only_the_gone_and_keeps_the_order() {
        let mut s = three();
        assert_eq!(gone(&s, &[k(A), k(B), k(C)], 9), None);
        let op = gone(&s, &[k(C), k("other"), k(A)], 9).unwrap();
        assert_eq!(
            op,
            Op::Gone {
                keys: vec![k(B)],
                at: 9
            }
        );
        s.apply(&op);
        assert_eq!(queue(&s), [A, C]);
        assert_eq!(s.on_air_since(), Some(1000));
        let op = gone(&s, &[k(C)], 10).unwrap();
        s.apply(&op);
        assert_eq!(queue(&s), [C]);
        assert_eq!(s.on_air_since(), Some(10), "the next went on air");
        assert_eq!(gone(&State::new(), &[], 1), None);
    }
}
