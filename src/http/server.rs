//! The server and its liveness: the `tiny_http` server on the listening
//! socket, its N workers (each takes a request and hands it to
//! [`super::handle`]) and what the watchdog reads of them ([`Liveness`]).
//! The reply writers that hand out the engine's answers are in
//! `answers.rs`.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Limits, Request, Server};

use super::answers::{self, respond, Job, REPLY_WRITERS};
use super::{handle, Ctx, Reply, MAX_ANSWER, MAX_BODY, MAX_HEAD, MAX_HEADERS, MAX_LINE};
use crate::engine::Command;

pub struct HttpPool {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
    ctx: Arc<Ctx>,
    liveness: Arc<Liveness>,
}

/// What the HTTP server may cost: the limits of the patched tiny_http
/// (vendor/tiny_http/PATCHES.md) from `[http]`.
pub fn limits(cfg: &crate::config::HttpConfig) -> Limits {
    Limits {
        max_connections: cfg.effective_max_connections(crate::sys::open_files_limit()),
        request_timeout: Duration::from_secs(cfg.request_timeout_seconds),
        // A worker or the engine that has not answered within the request
        // deadline is stuck; the client gets 503 rather than a socket held
        // open for ever (the watchdog probe reports the stuck part).
        answer_timeout: Duration::from_secs(cfg.request_timeout_seconds),
        max_answer_bytes: MAX_ANSWER,
        max_head_bytes: MAX_HEAD,
        max_line_bytes: MAX_LINE,
        max_headers: MAX_HEADERS,
        max_body: MAX_BODY,
        linger: Duration::from_secs(2),
    }
}

/// What the HTTP side is doing, for the watchdog's report of a stuck part:
/// whether the accept loop runs, and which worker is busy since when.
pub struct Liveness {
    server: Arc<Server>,
    /// Per worker: when it took the request it is handling (unix ms), 0 idle.
    busy_since_ms: Vec<AtomicU64>,
    /// The listener failed: the daemon is exiting with an error.
    listener_lost: AtomicBool,
}

impl Liveness {
    pub fn new(server: Arc<Server>, workers: usize) -> Liveness {
        Liveness {
            server,
            busy_since_ms: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            listener_lost: AtomicBool::new(false),
        }
    }

    /// No worker is handling a request (a hand-over waits for it).
    pub fn workers_idle(&self) -> bool {
        self.busy_since_ms
            .iter()
            .all(|b| b.load(Ordering::Relaxed) == 0)
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// One line for the log: the accept loop, the workers, the connections.
    pub(crate) fn describe(&self) -> String {
        if !self.server.listener_alive() {
            return "the accept loop has stopped".into();
        }
        let since: Vec<u64> = self
            .busy_since_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        format!(
            "{}, {} connections open",
            workers_busy(&since, crate::clock::unix_ms()),
            self.server.num_connections()
        )
    }
}

/// Pure part of [`Liveness::describe`]: `since` holds when each worker took
/// its request (unix ms, 0 idle).
fn workers_busy(since: &[u64], now_ms: u64) -> String {
    let busy: Vec<u64> = since
        .iter()
        .filter(|&&t| t != 0)
        .map(|&t| now_ms.saturating_sub(t))
        .collect();
    match busy.iter().max() {
        None => format!("all {} workers idle", since.len()),
        Some(longest) => format!(
            "{} of {} workers busy, the longest for {:.1} s",
            busy.len(),
            since.len(),
            *longest as f64 / 1000.0
        ),
    }
}

/// The listening socket, for `/debug/close-listener`.
#[cfg(feature = "test-hooks")]
pub(super) static TEST_LISTENER: std::sync::OnceLock<TcpListener> = std::sync::OnceLock::new();

impl HttpPool {
    /// The server on a listening socket from `listen::acquire` (bound,
    /// from systemd or handed over); `listen` names it in errors.
    pub fn serve_on(
        listener: TcpListener,
        listen: &str,
        limits: Limits,
    ) -> Result<Arc<Server>, String> {
        #[cfg(feature = "test-hooks")]
        if let Ok(l) = listener.try_clone() {
            let _ = TEST_LISTENER.set(l);
        }
        log::debug!(
            "HTTP limits: {} connections, {} s per request, head {} bytes / {} headers, body {} bytes",
            limits.max_connections,
            limits.request_timeout.as_secs(),
            limits.max_head_bytes,
            limits.max_headers,
            limits.max_body
        );
        Server::from_listener_with_limits(listener, None, limits)
            .map(Arc::new)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))
    }

    /// One worker per slot of `liveness`.
    pub fn start(liveness: Arc<Liveness>, ctx: Arc<Ctx>) -> std::io::Result<HttpPool> {
        let server = liveness.server.clone();
        let n = liveness.busy_since_ms.len();
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (server, ctx, live) = (server.clone(), ctx.clone(), liveness.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || worker(&server, &ctx, &live, i))?,
            );
        }
        let mut writers = Vec::with_capacity(REPLY_WRITERS);
        for i in 0..REPLY_WRITERS {
            let (rx, trace) = (ctx.answers.rx.clone(), ctx.probe.clone());
            writers.push(
                std::thread::Builder::new()
                    .name(format!("http-reply-{i}"))
                    .spawn(move || answers::reply_writer(&rx, &trace))?,
            );
        }
        Ok(HttpPool {
            server,
            workers,
            writers,
            ctx,
            liveness,
        })
    }

    /// Whether the pool ended because the listener failed.
    pub fn listener_lost(&self) -> bool {
        self.liveness.listener_lost.load(Ordering::SeqCst)
    }

    /// Stop accepting, wake every worker and join them.
    pub fn stop(self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        // Answers already queued are handed out first (the channel is FIFO).
        for _ in 0..self.writers.len() {
            let _ = self.ctx.answers.tx.send(Job::Stop);
        }
        for w in self.writers {
            let _ = w.join();
        }
    }
}

fn worker(server: &Server, ctx: &Ctx, live: &Liveness, i: usize) {
    let busy = &live.busy_since_ms[i];
    loop {
        match server.recv() {
            Ok(req) => {
                if ctx.stopping.load(Ordering::SeqCst) {
                    respond(req, Reply::error(503, "shutting down"), &[]);
                    continue;
                }
                busy.store(crate::clock::unix_ms().max(1), Ordering::Relaxed);
                handle(req, ctx);
                busy.store(0, Ordering::Relaxed);
            }
            Err(_) if ctx.stopping.load(Ordering::SeqCst) => return,
            // The accept loop has ended: no hook will reach us again. Stop
            // cleanly (queue saved, relay stopped) and exit non-zero, so
            // that systemd starts a daemon that listens.
            Err(e) if !server.listener_alive() => {
                if !live.listener_lost.swap(true, Ordering::SeqCst) {
                    log::error!("{e}; stopping so that systemd restarts motherstream");
                    let _ = ctx.engine.send(Command::Shutdown);
                }
            }
            Err(e) => log::warn!("HTTP server: {e}"),
        }
    }
}

pub(super) fn addr_of(req: &Request) -> String {
    req.remote_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_workers_are_described_with_the_longest_wait() {
        assert_eq!(workers_busy(&[0, 0], 100_000), "all 2 workers idle");
        assert_eq!(
            workers_busy(&[97_500, 0, 99_000], 100_000),
            "2 of 3 workers busy, the longest for 2.5 s"
        );
    }
}
