//! What nginx tells the engine: a publish, a publish ending, and (at start)
//! who is still publishing. Each is decided by the queue rules; the op is
//! returned for the batch to save before anyone is answered.

use serde_json::json;

use super::{Answer, Engine, Refusal, Why};
use crate::events::Event;
use crate::key::StreamKey;
use crate::moderation;
use crate::queue::{Op, Outcome};

fn client(c: Option<u64>) -> String {
    c.map_or("-".into(), |c| c.to_string())
}

impl Engine {
    /// `on_publish`: admit (registry, queue length), then queue. Returns
    /// the answer and the op to save (None: nothing changed).
    pub(super) fn on_publish(
        &mut self,
        key: StreamKey,
        client_id: Option<u64>,
        addr: String,
        now_ms: u64,
    ) -> (Answer, Option<Op>) {
        if self.shutting_down {
            return (Err(Refusal::unavailable("shutting down")), None);
        }
        if let Err(r) = self.admit(&key, &addr) {
            return (Err(r), None);
        }
        let max = self.cfg.queue.max_length;
        if self.state.len() >= max && !self.state.contains(&key) {
            crate::log::warn_limited(format_args!(
                "refused a publish from {}: the queue is full ({max} streamers, [queue] max_length)",
                if addr.is_empty() { "an unknown address" } else { &addr }
            ));
            let msg = format!("the queue is full ({max} streamers); try again later");
            return (Err(Refusal::new(Why::Full, msg)), None);
        }
        let op = Op::Publish {
            key: key.clone(),
            client_id,
            addr: addr.clone(),
            at: now_ms,
        };
        let out = self.state.apply(&op);
        let r = match &out {
            Outcome::Queued {
                position,
                new: true,
            } => {
                self.emit(Event::Joined {
                    name: self.display(&key),
                    position: *position,
                });
                log::info!(
                    "{} joined the queue at position {} (client {}, {addr})",
                    self.display(&key),
                    position + 1,
                    client(client_id),
                );
                Ok(json!({"ok": true, "position": position}))
            }
            Outcome::Queued {
                position,
                new: false,
            } => {
                log::info!(
                    "{} published again (client {}), already queued at position {}",
                    self.display(&key),
                    client(client_id),
                    position + 1
                );
                Ok(json!({"ok": true, "position": position}))
            }
            Outcome::Blocked { until } => self.refuse_blocked(&key, &addr, *until, now_ms),
            other => Err(Refusal::new(
                Why::Internal,
                format!("unexpected outcome {other:?}"),
            )),
        };
        (r, out.changed().then_some(op))
    }

    /// `on_publish_done`: the streamer left (a forced switch when on air),
    /// or a second session of theirs ended. Always answered 200.
    pub(super) fn on_publish_done(
        &mut self,
        key: StreamKey,
        client_id: Option<u64>,
        now_ms: u64,
    ) -> Option<Op> {
        let op = Op::PublishDone {
            key: key.clone(),
            client_id,
            at: now_ms,
        };
        let out = self.state.apply(&op);
        match &out {
            Outcome::Left { was_on_air, .. } => {
                self.emit(Event::Left {
                    name: self.display(&key),
                });
                if *was_on_air {
                    log::info!(
                        "{} stopped publishing while on air; switching",
                        self.display(&key)
                    );
                    self.kill_now = Some(key);
                } else {
                    log::info!("{} left the queue", self.display(&key));
                }
            }
            Outcome::SessionEnded => log::info!(
                "a second publish of {} (client {}) ended; the first stays queued",
                self.display(&key),
                client(client_id)
            ),
            _ => {}
        }
        out.changed().then_some(op)
    }

    /// At start, before any hook is served: publishers that left while the
    /// daemon was down (their `publish_done` went nowhere) are dropped,
    /// durably. `published`: the keys nginx's stat page lists, None when
    /// it could not be read (the queue stays as saved).
    pub(super) fn drop_gone(&mut self, published: Option<&[StreamKey]>) {
        let Some(published) = published else { return };
        let Some(op) = moderation::gone(&self.state, published, self.clock.unix_ms()) else {
            if !self.state.is_empty() {
                log::info!(
                    "all {} queued streamers are still publishing (nginx stat)",
                    self.state.len()
                );
            }
            return;
        };
        if let Op::Gone { keys, .. } = &op {
            let names: Vec<String> = keys.iter().map(|k| self.display(k)).collect();
            log::info!(
                "dropping {} queued streamers whose publishers left while motherstream was down: {}",
                names.len(),
                names.join(", ")
            );
        }
        if self.state.apply(&op).changed() {
            let now = self.clock.unix_ms();
            self.persist(std::slice::from_ref(&op), now, &mut []);
        }
    }
}
