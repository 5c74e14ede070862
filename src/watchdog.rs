//! WATCHDOG=1 means "a hook would be answered now". A thread sends
//! `GET /healthz` to the daemon's own listener over loopback every third of
//! `WATCHDOG_USEC`: accept → connection thread → worker → engine →
//! `http-reply` thread → connection thread, the path every hook takes. The
//! ping goes out only when that request was answered by the engine within
//! the probe's deadline. Each stage stamps the probe's number in a
//! [`ProbeTrace`] (`http/probe.rs`) as it passes, so a failed probe names
//! the part that is stuck; it is logged once when hooks stop being
//! answered and once when they are answered again.
//!
//! Timing: probes start every W/3 (W = `WATCHDOG_USEC`) and each has W/4
//! to come back, so one slow probe is survived (the next one's ping still
//! lands within W of the last) and a wedged daemon stops pinging at once:
//! systemd restarts it within W of the last good answer. Without a watchdog
//! nothing runs (no idle wake-ups).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::http::probe::{ProbeTrace, Stage, PROBE_HEADER};
use crate::http::Liveness;
use crate::systemd::Notifier;

/// Probe period and deadline for a watchdog timeout of `w` (never so short
/// that the probes would spin).
pub fn timing(w: Duration) -> (Duration, Duration) {
    let floor = Duration::from_millis(10);
    ((w / 3).max(floor), (w / 4).max(floor))
}

/// Where to reach our own listener: its bound address, with a wildcard
/// address replaced by the loopback address of its family.
pub fn probe_addr(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

pub struct Watchdog {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Start probing `addr` every `w / 3`, pinging systemd after each
    /// probe the engine answered within `w / 4`.
    pub fn spawn(
        addr: SocketAddr,
        w: Duration,
        trace: Arc<ProbeTrace>,
        liveness: Arc<Liveness>,
        notifier: Notifier,
    ) -> std::io::Result<Watchdog> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let (period, deadline) = timing(w);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut probe = 0u64;
                // The part named when the probes began to fail, and when.
                let mut stuck: Option<(String, Instant)> = None;
                let mut next = Instant::now() + period;
                loop {
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    next = (next + period).max(Instant::now());
                    probe += 1;
                    let t0 = Instant::now();
                    match round_trip(addr, &trace, probe, deadline) {
                        Ok(()) => {
                            if let Some((part, since)) = stuck.take() {
                                log::info!(
                                    "hooks are answered again after {:.1} s; watchdog pings resume (the stuck part was {part})",
                                    since.elapsed().as_secs_f64()
                                );
                            }
                            notifier.watchdog();
                        }
                        Err(e) => {
                            if stuck.is_none() {
                                let part = diagnose(&trace, probe, &liveness, &e);
                                log::error!(
                                    "a hook would not be answered now: {part} (a probe through {addr} got no answer within {} ms: {e}); withholding the watchdog ping so that systemd restarts motherstream",
                                    deadline.as_millis()
                                );
                                stuck = Some((part, t0));
                            }
                        }
                    }
                }
            })?;
        Ok(Watchdog { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// One probe: `GET /healthz` on a new connection, answered by the engine
/// (any status it gives) within `deadline`.
fn round_trip(
    addr: SocketAddr,
    trace: &ProbeTrace,
    probe: u64,
    deadline: Duration,
) -> Result<(), String> {
    let until = Instant::now() + deadline;
    let left = || {
        until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&addr, deadline).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{PROBE_HEADER}: {}\r\n\r\n",
        trace.header(probe)
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    // `Connection: close`: the answer ends when the daemon closes.
    loop {
        if Instant::now() >= until {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if got.len() < 4096 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("answer too long".into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out".into())
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if !got.starts_with(b"HTTP/1.1 ") {
        return Err(format!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(60)])
        ));
    }
    // A 503 from a worker (engine queue full) is no proof of life; an
    // answer the engine gave (200, or 503 while the disk fails) is.
    if !trace.reached(Stage::Engine, probe) || !trace.reached(Stage::Reply, probe) {
        return Err(format!(
            "answered without the engine: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(60)])
        ));
    }
    Ok(())
}

/// The part a failed probe got stuck in: the first stage it did not pass.
fn diagnose(trace: &ProbeTrace, probe: u64, liveness: &Liveness, err: &str) -> String {
    if trace.reached(Stage::Reply, probe) {
        "the connection's thread (it was given the answer and did not write it)".into()
    } else if trace.reached(Stage::Engine, probe) {
        "the http-reply threads (the engine answered; the answer was not handed on)".into()
    } else if trace.reached(Stage::Worker, probe) {
        "the engine (a worker handed it the request; it did not answer)".into()
    } else if err.starts_with("connect") {
        format!(
            "the HTTP listener (it does not accept connections; {})",
            liveness.describe()
        )
    } else {
        format!(
            "the HTTP server before the engine (no worker took the request; {})",
            liveness.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_lands_within_the_timeout_after_one_failed_probe() {
        let w = Duration::from_secs(30);
        let (period, deadline) = timing(w);
        // Last ping at 0; the next probe (at `period`) fails at its
        // deadline; the one after starts at 2 × period and may take up to
        // its deadline.
        assert!(2 * period + deadline < w);
        assert!(period >= Duration::from_secs(1), "≤ 1 wake-up a second");
    }

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(probe_addr(a("0.0.0.0:8483")), a("127.0.0.1:8483"));
        assert_eq!(probe_addr(a("[::]:8483")), a("[::1]:8483"));
        assert_eq!(probe_addr(a("10.0.0.5:80")), a("10.0.0.5:80"));
    }
}
