//! What reaches the engine (commands) and where its answers go.

#[cfg(test)]
use crossbeam_channel::Receiver;

use super::StreamerRequest;
use crate::key::StreamKey;
use crate::moderation;
use crate::refusal::{Answer, Refusal};

/// Where the engine's answer goes: straight back to the HTTP client (the
/// worker that parsed the request does not wait, so the number of requests
/// in one group commit is bounded by the load, not by the worker count), or
/// a channel for callers that want to wait.
pub struct Responder(Box<dyn FnOnce(Answer) + Send>);

impl Responder {
    pub(crate) fn new(f: impl FnOnce(Answer) + Send + 'static) -> Responder {
        Responder(Box::new(f))
    }

    #[cfg(test)]
    pub(crate) fn channel() -> (Responder, Receiver<Answer>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            Responder::new(move |r| {
                let _ = tx.send(r);
            }),
            rx,
        )
    }

    pub(crate) fn send(self, r: Answer) {
        (self.0)(r)
    }
}

pub enum Command {
    Publish {
        key: StreamKey,
        client_id: Option<u64>,
        addr: String,
        reply: Responder,
    },
    PublishDone {
        key: StreamKey,
        client_id: Option<u64>,
        reply: Responder,
    },
    Health {
        reply: Responder,
    },
    /// A moderator's request (skip, kick, block, move, slot changes...).
    Moderate {
        req: moderation::Request,
        reply: Responder,
    },
    /// Manage the streamer registry.
    Streamers {
        req: StreamerRequest,
        reply: Responder,
    },
    /// `POST /api/upgrade`: hand the show over to the binary on disk.
    Upgrade {
        reply: Responder,
    },
    /// SIGHUP: re-read the config file.
    Reload,
    /// `streamers.json` changed on disk (inotify).
    RegistryChanged,
    /// SIGTERM/SIGINT: stop gracefully.
    Shutdown,
    /// Block the engine loop (tests prove the watchdog stops).
    #[cfg(feature = "test-hooks")]
    Wedge {
        secs: u64,
    },
}

pub(super) fn refuse(c: Command) {
    c.answer(Err(Refusal::unavailable("shutting down")));
}

impl Command {
    /// Answer a command without deciding it (shutdown, overload).
    pub(crate) fn answer(self, r: Answer) {
        match self {
            Command::Publish { reply, .. }
            | Command::PublishDone { reply, .. }
            | Command::Moderate { reply, .. }
            | Command::Streamers { reply, .. }
            | Command::Health { reply }
            | Command::Upgrade { reply } => reply.send(r),
            _ => {}
        }
    }
}
