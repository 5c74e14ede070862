//! The engine's side of streamers, slots and moderation: admission of
//! publishes (registry, blocks), the slot timer, moderators' requests and
//! registry management. Decisions come from `moderation` and `registry`;
//! this file executes them (persist, reply, disconnect, log).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Answer, Engine, Refusal, Why};
use crate::events::Event;
use crate::key::StreamKey;
use crate::moderation::{self, Request};
use crate::queue::{Op, Outcome};
use crate::registry::{self, RegistryError};

/// Wait before retrying a slot end whose state change could not be saved.
const SLOT_RETRY: Duration = Duration::from_secs(1);

/// Registry management from the admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamerRequest {
    List {
        show_keys: bool,
    },
    Add {
        name: String,
        slot_seconds: Option<u64>,
    },
    Remove {
        name: String,
    },
    RotateKey {
        name: String,
    },
    SetSlot {
        name: String,
        slot_seconds: Option<u64>,
    },
    /// The streamer's page link: the one they have (made if missing), or a
    /// new one with `rotate` (the old link stops working).
    Link {
        name: String,
        rotate: bool,
    },
}

fn secs_left(until: u64, now: u64) -> u64 {
    until.saturating_sub(now).div_ceil(1000)
}

/// When a refused publish of each blocked key was last logged at info: an
/// encoder retries every few seconds, so one info line per block (and per
/// minute), the rest at debug.
#[derive(Default)]
pub(super) struct BlockLog(HashMap<StreamKey, u64>);

impl BlockLog {
    /// Whether a refusal of `key` at `now` (unix ms) is worth an info line.
    fn worth_info(&mut self, key: &StreamKey, now: u64) -> bool {
        let recent = |t: &u64| now.saturating_sub(*t) < 60_000;
        if self.0.get(key).is_some_and(recent) {
            return false;
        }
        self.0.retain(|_, t| recent(t));
        self.0.insert(key.clone(), now);
        true
    }
}

impl Engine {
    /// Whether a publish of `key` may go on to the queue rules. Logs the
    /// refusal with the address and a fingerprint of the key, never the key.
    pub(super) fn admit(&mut self, key: &StreamKey, addr: &str) -> Result<(), Refusal> {
        // A key we do not know may have been added a moment ago (`streamer
        // add`), maybe creating the registry: look (one stat) before it is
        // admitted, refused or shown anywhere under the wrong name.
        if self.registry.get().by_key(key).is_none() {
            self.refresh_registry(false);
        }
        let policy = self.policy();
        if moderation::registered_enough(self.registry.get(), &policy, key) {
            return Ok(());
        }
        crate::log::warn_limited(format_args!(
            "refused a publish from {addr}: unknown stream key ({})",
            key.fingerprint()
        ));
        Err(Refusal::new(Why::Forbidden, "unknown stream key"))
    }

    pub(super) fn refuse_blocked(
        &mut self,
        key: &StreamKey,
        addr: &str,
        until: u64,
        now: u64,
    ) -> Answer {
        let msg = format!(
            "refused a publish of {} from {addr}: blocked from rejoining for another {} s",
            self.display(key),
            secs_left(until, now)
        );
        if self.block_log.worth_info(key, now) {
            log::info!("{msg}");
        } else {
            log::debug!("{msg}");
        }
        Err(Refusal::new(
            Why::Forbidden,
            format!(
                "blocked from rejoining for another {} s",
                secs_left(until, now)
            ),
        ))
    }

    /// Re-read `streamers.json` if it changed (or always, with `force`);
    /// a change is published. Returns whether the registry changed.
    pub(super) fn refresh_registry(&mut self, force: bool) -> bool {
        let changed = self
            .registry
            .refresh(&self.cfg.state_dir(), self.clock.now(), force);
        if changed {
            self.publish_view();
        }
        changed
    }

    /// When the on-air slot ends, as an engine deadline.
    pub(super) fn slot_deadline(&self) -> Option<Instant> {
        let ends = moderation::slot_ends_at(&self.state, self.registry.get(), &self.policy())?;
        let t = self.clock.now() + Duration::from_millis(ends.saturating_sub(self.clock.unix_ms()));
        Some(match self.slot_retry_at {
            Some(r) => t.max(r),
            None => t,
        })
    }

    /// If the on-air slot is over: take the streamer off (blocked for the
    /// rejoin time), switch, and disconnect them through nginx.
    pub(super) fn end_slot(&mut self) {
        if self.shutting_down || self.slot_retry_at.is_some_and(|r| self.clock.now() < r) {
            return;
        }
        let now = self.clock.unix_ms();
        let Some(op) =
            moderation::slot_expired(&self.state, self.registry.get(), &self.policy(), now)
        else {
            return;
        };
        let Op::Kick { key, until, .. } = &op else {
            return;
        };
        let key = key.clone();
        log::info!(
            "{}'s slot is over; switching to {}{}",
            self.display(&key),
            self.state
                .entries()
                .get(1)
                .map_or("nobody".into(), |e| self.display(&e.key)),
            until.map_or(String::new(), |u| format!(
                " ({} s before they may rejoin)",
                secs_left(u, now)
            ))
        );
        self.emit(Event::SlotEnded {
            name: self.display(&key),
        });
        self.drops.queue(key);
        self.apply_internal(op);
        if self.store_failed {
            self.slot_retry_at = Some(self.clock.now() + SLOT_RETRY);
            self.drops.discard_pending();
        } else {
            self.slot_retry_at = None;
            self.run_drops();
        }
    }

    /// Disconnect the publishers taken off by the batch just saved.
    pub(super) fn run_drops(&mut self) {
        if self.store_failed {
            self.drops.discard_pending();
            return;
        }
        let on_screen = self.relay.view().on_screen;
        let now = self.clock.now();
        let registry = &self.registry;
        self.drops
            .run(on_screen.as_ref(), now, |k| registry.display(k));
    }

    /// A moderator's request: plan, apply, log; returns the answer and
    /// whether it changed the queue state (to be saved before answering).
    pub(super) fn moderate(
        &mut self,
        req: &Request,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> (Answer, bool) {
        let op = match moderation::plan(req, &self.state, self.registry.get(), &self.cfg.queue, now)
        {
            Ok(op) => op,
            Err(r) => return (Err(r), false),
        };
        let head_before = self.state.head().map(|h| h.key.clone());
        let out = self.state.apply(&op);
        if let Outcome::Rejected(e) = out {
            return (Err(Refusal::invalid(e)), false);
        }
        self.log_moderation(req, &op, &out, head_before.as_ref(), now);
        let ev = match (req, &op, &out) {
            (_, Op::Skip { .. }, Outcome::Skipped { key: Some(k) }) => Some(Event::Skipped {
                name: self.display(k),
            }),
            (Request::Block { .. }, Op::Kick { key, until, .. }, _) => Some(Event::Blocked {
                name: self.display(key),
                seconds: until.map(|u| secs_left(u, now)),
            }),
            (_, Op::Kick { key, until, .. }, _) => Some(Event::Kicked {
                name: self.display(key),
                seconds: until.map(|u| secs_left(u, now)),
            }),
            _ => None,
        };
        if let Some(ev) = ev {
            self.emit(ev);
        }
        // Skip and kick disconnect the publisher: a skipped streamer's
        // encoder reconnects and queues again at the end; a kicked one is
        // refused while blocked.
        let dropped = match (&op, &out) {
            (Op::Kick { key, .. }, _) => Some(key.clone()),
            (Op::Skip { .. }, Outcome::Skipped { key: Some(k) }) => Some(k.clone()),
            _ => None,
        };
        if let Some(key) = dropped {
            self.drops.queue(key);
        }
        let changed = out.changed();
        if changed {
            ops.push(op);
        }
        (self.queue_reply(), changed)
    }

    fn log_moderation(
        &self,
        req: &Request,
        op: &Op,
        out: &Outcome,
        head_before: Option<&StreamKey>,
        now: u64,
    ) {
        let block = |until: &Option<u64>| {
            until.map_or(String::new(), |u| {
                format!(", blocked for {} s", secs_left(u, now))
            })
        };
        match (req, op, out) {
            (_, Op::Skip { .. }, Outcome::Skipped { key: Some(k) }) => {
                log::info!("moderator skipped {}", self.display(k))
            }
            (Request::Block { .. }, Op::Kick { key, until, .. }, _) => {
                log::info!("moderator blocked {}{}", self.display(key), block(until))
            }
            (_, Op::Kick { key, until, .. }, Outcome::Kicked { position, .. }) => log::info!(
                "moderator kicked {}{}{}",
                self.display(key),
                match position {
                    Some(0) => " off the air".to_string(),
                    Some(p) => format!(" from position {}", p + 1),
                    None => " (not queued)".to_string(),
                },
                block(until)
            ),
            (_, Op::Unblock { key, .. }, _) => {
                log::info!("moderator unblocked {}", self.display(key))
            }
            (_, Op::Move { key, .. }, Outcome::Moved { from, to }) => log::info!(
                "moderator moved {} from position {} to {}{}",
                self.display(key),
                from + 1,
                to + 1,
                if *to == 0 || head_before == Some(key) {
                    "; switching"
                } else {
                    ""
                }
            ),
            (_, Op::SetSlotEnd { key, ends_at, .. }, _) => log::info!(
                "moderator set the end of {}'s slot: {} s left",
                self.display(key),
                ends_at.map_or(0, |t| secs_left(t, now))
            ),
            (_, Op::SetDefaultSlot { seconds, .. }, _) => log::info!(
                "moderator set the default slot length: {}",
                seconds.map_or("back to the config's".into(), |s| format!("{s} s"))
            ),
            (_, Op::Clear { .. }, Outcome::Cleared { removed }) => {
                log::info!("moderator cleared the queue ({removed} entries)")
            }
            (_, Op::Override { .. }, Outcome::Reordered { removed }) => log::info!(
                "moderator set the queue order: {} entries, {} removed",
                self.state.len(),
                removed.len()
            ),
            (_, Op::SetRejoinBlock { seconds, .. }, _) => log::info!(
                "moderator set the rejoin block: {}",
                seconds.map_or("back to the config's".into(), |s| if s == 0 {
                    "off".into()
                } else {
                    format!("{s} s")
                })
            ),
            _ => {}
        }
    }

    /// Registry management: the file is changed under its lock (durable
    /// before the answer); a removed or replaced key of a queued streamer
    /// is taken off when registration is required.
    pub(super) fn manage_streamers(
        &mut self,
        req: StreamerRequest,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> (Answer, bool) {
        let (reply, old_key) = match req {
            StreamerRequest::List { show_keys } => {
                return (Ok(self.list_streamers(show_keys, now)), false)
            }
            req => match self.change_registry(req, now) {
                Ok(r) => r,
                Err(e) => return (Err(Refusal::from(e)), false),
            },
        };
        self.registry.written(&self.cfg.state_dir());
        let mut changed = false;
        if let Some(old) = old_key {
            // The old key no longer admits anyone: take it off the queue and
            // disconnect it, unless unregistered keys may stream anyway.
            if self.cfg.queue.require_registered {
                let op = Op::Kick {
                    key: old.clone(),
                    until: None,
                    at: now,
                };
                if self.state.apply(&op).changed() {
                    ops.push(op);
                    changed = true;
                }
                self.drops.queue(old);
            }
        }
        (reply, changed)
    }

    /// `streamer list`: every registered streamer, with their keys only
    /// when the admin asked (`show_keys`).
    fn list_streamers(&mut self, show_keys: bool, now: u64) -> serde_json::Value {
        self.refresh_registry(false);
        let list: Vec<_> = self
            .registry
            .get()
            .streamers()
            .iter()
            .map(|s| {
                let mut v = json!({
                    "name": s.name,
                    "slot_seconds": s.slot_seconds,
                    "queued": self.state.position(&s.key),
                    "blocked_until": self.state.blocked_until(&s.key, now).map(|u| u.div_ceil(1000)),
                    "has_link": !s.link_token.is_empty(),
                });
                if show_keys {
                    // The admin asked for the keys (`show_keys`).
                    v["key"] = json!(s.key.expose());
                }
                v
            })
            .collect();
        json!({"ok": true, "streamers": list})
    }

    /// A change of `streamers.json`: the answer, and the key
    /// that no longer admits anyone (removed or replaced), if any.
    fn change_registry(
        &mut self,
        req: StreamerRequest,
        now: u64,
    ) -> Result<(Answer, Option<StreamKey>), RegistryError> {
        let dir = self.cfg.state_dir();
        Ok(match req {
            // Not a change (`manage_streamers` answers it before).
            StreamerRequest::List { show_keys } => (Ok(self.list_streamers(show_keys, now)), None),
            StreamerRequest::Add { name, slot_seconds } => {
                let ((name, key, link), reg) = registry::update(&dir, |r| {
                    let key = registry::new_key()?;
                    let (name, key) = {
                        let s = r.add(&name, slot_seconds, key, now)?;
                        (s.name.clone(), s.key.clone())
                    };
                    let (_, link) = r.link(&name, true)?;
                    Ok((name, key, link))
                })?;
                log::info!("streamer {} added", crate::log::escape(&name));
                self.registry.set(reg);
                (
                    // The new key, once, to the admin who made it.
                    Ok(
                        json!({"ok": true, "name": name, "key": key.expose(), "slot_seconds": slot_seconds, "link_token": link}),
                    ),
                    None,
                )
            }
            StreamerRequest::Remove { name } => {
                let (s, reg) = registry::update(&dir, |r| r.remove(&name))?;
                log::info!("streamer {} removed", crate::log::escape(&s.name));
                self.registry.set(reg);
                (Ok(json!({"ok": true, "removed": s.name})), Some(s.key))
            }
            StreamerRequest::RotateKey { name } => {
                let ((name, key, old), reg) = registry::update(&dir, |r| {
                    let key = registry::new_key()?;
                    let old = r.rotate_key(&name, key.clone(), now)?;
                    let name = r.by_key(&key).map_or(name.clone(), |s| s.name.clone());
                    Ok((name, key, old))
                })?;
                log::info!("streamer {} has a new key", crate::log::escape(&name));
                self.registry.set(reg);
                (
                    // The new key, once, to the admin who asked.
                    Ok(json!({"ok": true, "name": name, "key": key.expose()})),
                    Some(old),
                )
            }
            StreamerRequest::SetSlot { name, slot_seconds } => {
                let ((), reg) = registry::update(&dir, |r| r.set_slot(&name, slot_seconds))?;
                log::info!(
                    "streamer {}'s slot: {}",
                    crate::log::escape(&name),
                    slot_seconds.map_or("the default".into(), |s| format!("{s} s"))
                );
                self.registry.set(reg);
                (
                    Ok(json!({"ok": true, "name": name, "slot_seconds": slot_seconds})),
                    None,
                )
            }
            StreamerRequest::Link { name, rotate } => {
                let ((name, token), reg) = registry::update(&dir, |r| r.link(&name, rotate))?;
                if rotate {
                    log::info!("streamer {} has a new page link", crate::log::escape(&name));
                }
                self.registry.set(reg);
                (
                    Ok(
                        json!({"ok": true, "name": name, "link_token": token, "path": format!("/me/{token}")}),
                    ),
                    None,
                )
            }
        })
    }
}
