//! The way back: the engine's answers go, as plain data, through one queue
//! to the `http-reply` threads, which turn each into a status and a body,
//! stop its hook timer and hand it to its connection's thread; and the
//! writers of every reply.

use std::io::Read;
use std::sync::Arc;
#[cfg(feature = "test-hooks")]
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tiny_http::{Header, Request, Response};

use super::probe::{ProbeTrace, Stage};
use super::{Ctx, Reply};
use crate::engine::{self, Command, Responder};
use crate::log::warn_limited;
use crate::metrics::HookTimer;
use crate::refusal::{Answer, Refusal};
use crate::view::View;

/// What the reply writers do.
pub(super) enum Job {
    /// Hand an engine's answer to its connection.
    Answer {
        req: Box<Request>,
        answer: Answer,
        pending: Pending,
    },
    /// Stop (one per writer, after the answers queued before it).
    Stop,
    /// Test hook: block this writer, as a stuck reply path would.
    #[cfg(feature = "test-hooks")]
    Wedge(Duration),
}

/// The queue between the engine's responders and the reply writers.
pub struct Answers {
    pub(super) tx: Sender<Job>,
    pub(super) rx: Receiver<Job>,
}

impl Answers {
    /// Answers not yet taken by a writer thread.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}

impl Default for Answers {
    fn default() -> Answers {
        // Unbounded, yet bounded by what can be pending: the command queue
        // (MAX_PENDING) and the connection cap.
        let (tx, rx) = crossbeam_channel::unbounded();
        Answers { tx, rx }
    }
}

/// Queue an answer for the reply writers. The queue holds its own
/// receiver, so a send cannot fail while the daemon runs; were it ever
/// closed, the answer is handed out here rather than lost.
pub(super) fn send_answer(tx: &Sender<Job>, job: Job) {
    if let Err(e) = tx.send(job) {
        if let Job::Answer {
            req,
            answer,
            pending,
        } = e.into_inner()
        {
            respond(*req, pending.finish(answer), &[]);
        }
    }
}

/// What goes with a request to the engine and back: the watchdog probe it
/// is, if it is one, and the hook timer its answer stops.
#[derive(Default)]
pub(super) struct Pending {
    pub(crate) probe: Option<u64>,
    pub(crate) timer: Option<HookTimer>,
}

impl Pending {
    /// The answer as the client gets it; the hook timer stops with its
    /// status.
    fn finish(self, answer: Answer) -> Reply {
        let reply = Reply::from_answer(answer);
        if let Some(t) = self.timer {
            t.done(reply.status);
        }
        reply
    }
}

/// How many threads hand out the engine's answers. Handing one out never
/// waits on a client (the connection's own thread writes it, see
/// vendor/tiny_http/PATCHES.md); two keep one slow formatting from
/// delaying the rest.
pub(super) const REPLY_WRITERS: usize = 2;

pub(super) fn reply_writer(jobs: &Receiver<Job>, trace: &ProbeTrace) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Answer {
                req,
                answer,
                pending,
            } => {
                let probe = pending.probe;
                let reply = pending.finish(answer);
                // Noted before the hand-out: the probe may read the answer
                // the moment it is handed out.
                if let Some(n) = probe {
                    trace.passed(Stage::Reply, n);
                }
                respond(*req, reply, &[]);
            }
            Job::Stop => return,
            #[cfg(feature = "test-hooks")]
            Job::Wedge(d) => {
                log::warn!(
                    "test hook: wedging an http-reply thread for {} s",
                    d.as_secs()
                );
                std::thread::sleep(d);
            }
        }
    }
}

/// Hand a request to the engine without waiting for it. A full command
/// queue means the engine is far behind: answer 503 at once rather than
/// queue without bound. The engine's responder only stamps the probe (an
/// answer given on the engine thread) and queues the plain [`Answer`]: its
/// status, its JSON and the hook timer are the reply writer's.
pub(super) fn forward(
    ctx: &Ctx,
    req: Request,
    pending: Pending,
    make: impl FnOnce(Responder) -> Command,
) {
    let (tx, trace) = (ctx.answers.tx.clone(), ctx.probe.clone());
    let cmd = make(Responder::new(move |answer| {
        if let Some(n) = pending.probe.filter(|_| engine::on_engine_thread()) {
            trace.passed(Stage::Engine, n);
        }
        let req = Box::new(req);
        send_answer(
            &tx,
            Job::Answer {
                req,
                answer,
                pending,
            },
        )
    }));
    if let Err(e) = ctx.engine.try_send(cmd) {
        let busy = matches!(e, crossbeam_channel::TrySendError::Full(_));
        if busy {
            warn_limited(format_args!("the engine is overloaded; answering 503"));
        }
        e.into_inner().answer(Err(Refusal::unavailable(if busy {
            "engine busy; try again"
        } else {
            "shutting down"
        })));
    }
}

pub(super) fn respond(req: Request, reply: Reply, extra: &[(&str, &str)]) {
    respond_body(
        req,
        reply.status,
        std::io::Cursor::new(reply.body.into_bytes()),
        extra,
    )
}

/// `/queue-json`'s body, read straight out of the engine's published view.
pub(super) struct ViewJson {
    view: Arc<View>,
    pos: usize,
}

impl ViewJson {
    pub(crate) fn new(view: Arc<View>) -> ViewJson {
        ViewJson { view, pos: 0 }
    }
}

impl Read for ViewJson {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.view.queue_json().as_bytes()[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

pub(super) trait SizedBody: Read {
    fn len(&self) -> usize;
}

impl SizedBody for std::io::Cursor<Vec<u8>> {
    fn len(&self) -> usize {
        self.get_ref().len()
    }
}

impl SizedBody for ViewJson {
    fn len(&self) -> usize {
        self.view.queue_json().len()
    }
}

pub(super) fn respond_body(
    req: Request,
    status: u16,
    body: impl SizedBody,
    extra: &[(&str, &str)],
) {
    let len = body.len();
    let mut resp = Response::new(status.into(), Vec::new(), body, Some(len), None);
    let has_ctype = extra.iter().any(|(k, _)| *k == "Content-Type");
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if !has_ctype {
        headers.push(("Content-Type", "application/json"));
    }
    headers.push(("Cache-Control", "no-store"));
    for (k, v) in headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    // The client may have gone away; nothing to do about it.
    let _ = req.respond(resp);
}
