//! `bench::console_load`: do open consoles take hook capacity?
//!
//! Hook latency (on_publish + on_publish_done pairs, each a durable engine
//! command, on a new TCP connection as nginx-rtmp sends them, paced at
//! 100 pairs/s) with 0 consoles, with 20 consoles, and with 20 consoles plus
//! 20 streamer pages open, side by side. A "console" is what the page does
//! in a browser: a keep-alive connection with its session cookie, GET
//! /api/status every second and GET /api/streamers (session + CSRF token,
//! an engine round trip) every 15 s; a streamer page GETs
//! /me/<token>/status every second. Release daemon, real nginx-rtmp for the
//! rig; the hooks are raw (no stream behind them).
//!
//! Environment: `MS_BENCH_QUICK=1` for 4 s per phase instead of 12 s.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOML: &str =
    "[log]\nlevel = \"warn\"\n[relay]\nmax_failures = 1000000\n[rtmp]\nstat_url = \"\"\n\
                    [queue]\nslot_seconds = 600\n";

/// One request on a keep-alive connection; the status. Reads exactly the
/// answer (Content-Length), as a browser does.
fn keep_alive(s: &mut TcpStream, req: &[u8]) -> Result<u16, String> {
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return Ok(status);
            }
        }
    }
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A browser page polling: `every` → `req`, and `slow` every 15th time.
fn page(
    port: u16,
    reqs: Vec<Vec<u8>>,
    slow: Option<Vec<u8>>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
) {
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        Some(s)
    };
    let mut conn = connect();
    let mut tick = 0u64;
    // Spread the pages over the second, as real ones are.
    std::thread::sleep(Duration::from_millis(fastrand(1000)));
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let mut batch: Vec<&Vec<u8>> = reqs.iter().collect();
        if tick % 15 == 0 {
            if let Some(s) = &slow {
                batch.push(s);
            }
        }
        for r in batch {
            let ok = match conn.as_mut() {
                Some(s) => keep_alive(s, r).map(|st| st == 200).unwrap_or(false),
                None => false,
            };
            if ok {
                polls.fetch_add(1, Ordering::Relaxed);
            } else {
                // The server closed an idle connection or answered an error:
                // a browser reconnects.
                conn = connect();
                match conn.as_mut().map(|s| keep_alive(s, r)) {
                    Some(Ok(200)) => {
                        polls.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
    }
}

fn fastrand(below: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (n ^ (n >> 7)) % below.max(1)
}

/// Paced hooks for `secs`: latencies in ms, sorted, of the durable pairs
/// and of on_connect (answered by the worker alone: what worker capacity
/// is, without the disk's fsync times in it).
fn hooks(d: &Daemon, secs: f64, base: &mut u64) -> (Vec<f64>, Vec<f64>, usize) {
    let mut lat = Vec::new();
    let mut policy = Vec::new();
    let mut errors = 0;
    let connect_path = d.hook_path("on_connect");
    let connect = connect_body("live", 1935);
    let pub_path = d.hook_path("on_publish");
    let done_path = d.hook_path("on_publish_done");
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let due = start + Duration::from_millis(i * 10);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let t = Instant::now();
        if post(d.port, &connect_path, &connect).status == 200 {
            policy.push(t.elapsed().as_secs_f64() * 1000.0);
        } else {
            errors += 1;
        }
        let key = format!("bench{}", *base + i);
        let id = *base + i;
        for (path, body) in [
            (&pub_path, publish_body("live", &key, id, "")),
            (&done_path, publish_done_body("live", &key, id)),
        ] {
            let t = Instant::now();
            let r = post(d.port, path, &body);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if r.status == 200 {
                lat.push(ms);
            } else {
                errors += 1;
            }
        }
        i += 1;
    }
    *base += i;
    lat.sort_by(|a, b| a.total_cmp(b));
    policy.sort_by(|a, b| a.total_cmp(b));
    (lat, policy, errors)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// A registry with page links and a few queued streamers, so the status
/// and pages have something to say, and a console session: the page
/// links, the session cookie and the CSRF token.
fn registry_and_login(d: &Daemon) -> (Vec<String>, String, String) {
    let mut links = Vec::new();
    for (i, name) in ["A", "B", "C", "D", "E"].iter().enumerate() {
        let r = d.admin(
            "/api/streamers",
            &format!(r#"{{"name":"DJ {name}"}}"#),
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        let key = v["key"].as_str().unwrap_or_default().to_string();
        links.push(v["link_token"].as_str().unwrap_or_default().to_string());
        assert_eq!(d.raw_publish(&key, 10 + i as u64).status, 200);
    }
    let login = d.request(
        "POST",
        "/admin/login",
        &[("Content-Type", "application/json")],
        &format!(r#"{{"token":"{}"}}"#, d.admin_token),
    );
    assert_eq!(login.status, 200, "{login:?}");
    let csrf = login.json()["csrf"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cookie = login
        .header("Set-Cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    (links, cookie, csrf)
}

/// The open pages of one phase: `consoles` consoles (status, and the
/// streamer list every 15th poll) and `pages` streamer pages, each a
/// thread polling every second until `stop`.
struct Pages {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pages {
    fn open(
        d: &Daemon,
        consoles: usize,
        pages: usize,
        links: &[String],
        (cookie, csrf): (&str, &str),
    ) -> Pages {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..consoles + pages {
            let (stop, errors, polls) = (stop.clone(), errors.clone(), polls.clone());
            let (reqs, slow) = if i < consoles {
                (
                    vec![get_req("/api/status", &[("Cookie", cookie)])],
                    Some(get_req(
                        "/api/streamers",
                        &[("Cookie", cookie), ("X-CSRF-Token", csrf)],
                    )),
                )
            } else {
                let t = &links[i % links.len()];
                (vec![get_req(&format!("/me/{t}/status"), &[])], None)
            };
            let port = d.port;
            threads.push(std::thread::spawn(move || {
                page(port, reqs, slow, stop, errors, polls)
            }));
        }
        Pages {
            stop,
            errors,
            polls,
            threads,
        }
    }
}

pub fn main() {
    let secs = if std::env::var_os("MS_BENCH_QUICK").is_some() {
        4.0
    } else {
        12.0
    };
    let rig = Rig::start(TOML);
    let d = &rig.daemon;
    let (links, cookie, csrf) = registry_and_login(d);

    println!(
        "motherstream console load bench ({} cores): hook pairs (on_publish + on_publish_done, durable) at 100 pairs/s, {secs} s per phase",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "  {:<34} {:>7} {:>8} {:>8} {:>8} | {:>10} {:>10} {:>6} {:>8}",
        "open pages",
        "durable",
        "p50 ms",
        "p99 ms",
        "max ms",
        "connect p50",
        "p99 ms",
        "errors",
        "polls/s"
    );
    let mut base = 1_000_000u64;
    let mut results = Vec::new();
    for (label, consoles, pages) in [
        ("0 consoles", 0, 0),
        ("20 consoles", 20, 0),
        ("20 consoles + 20 streamer pages", 20, 20),
        ("0 consoles (again)", 0, 0),
        ("20 consoles (again)", 20, 0),
    ] {
        let pages = Pages::open(d, consoles, pages, &links, (&cookie, &csrf));
        let (stop, errors, polls) = (&pages.stop, &pages.errors, &pages.polls);
        // Let every page make its first poll before measuring.
        std::thread::sleep(Duration::from_millis(if pages.threads.is_empty() {
            0
        } else {
            1200
        }));

        let p0 = polls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let (lat, policy, hook_errors) = hooks(d, secs, &mut base);
        let poll_rate = (polls.load(Ordering::Relaxed) - p0) as f64 / t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in pages.threads {
            let _ = t.join();
        }
        println!(
            "  {:<34} {:>7} {:>8.2} {:>8.2} {:>8.2} | {:>10.2} {:>10.2} {:>6} {:>8.1}",
            label,
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            pct(&policy, 0.5),
            pct(&policy, 0.99),
            hook_errors + errors.load(Ordering::Relaxed),
            poll_rate
        );
        results.push((pct(&lat, 0.99), pct(&policy, 0.99)));
    }
    let mean =
        |a: usize, b: usize, f: fn(&(f64, f64)) -> f64| (f(&results[a]) + f(&results[b])) / 2.0;
    let (d0, d20) = (mean(0, 3, |r| r.0), mean(1, 4, |r| r.0));
    let (c0, c20) = (mean(0, 3, |r| r.1), mean(1, 4, |r| r.1));
    println!(
        "\n  hook p99, mean of both runs: durable pair {d0:.2} ms with 0 consoles, {d20:.2} ms with 20 ({:+.0} %); \
         on_connect {c0:.2} ms with 0, {c20:.2} ms with 20 ({:+.0} %)   targets: ≤ 10 ms, within 10 %",
        (d20 / d0 - 1.0) * 100.0,
        (c20 / c0 - 1.0) * 100.0,
    );
}
