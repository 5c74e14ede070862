//! `bench::pipeline`: figures for the whole pipeline, printed
//! next to their targets. Real nginx-rtmp, real ffmpeg, the release-built
//! daemon. Every request goes on a new TCP connection as nginx-rtmp sends
//! it (HTTP/1.0, Connection: Close). Every loop is bounded in count and time.
//!
//! Environment: `MS_BENCH_QUICK=1` for a short run (smaller counts, 3 switches).

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The queue is full of keys with no stream behind them: keep the head from
/// being skipped (`max_failures`), and read no `stat_url`, or the restart
/// measured below would reconcile with nginx and drop them all.
const BENCH_TOML: &str =
    "[log]\nlevel = \"warn\"\n[relay]\nmax_failures = 1000\n[rtmp]\nstat_url = \"\"\n\
     [queue]\nmax_length = 1000000\n";

fn quick() -> bool {
    std::env::var_os("MS_BENCH_QUICK").is_some()
}

// ------------------------------------------------------------ load generator

struct Load {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    secs: f64,
    lat: Vec<Duration>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * p) as usize).min(self.lat.len() - 1);
        self.lat[i].as_secs_f64() * 1000.0
    }
}

/// One request on a new connection, as nginx does: write, read to close
/// (or to Content-Length). The status code.
fn one(port: u16, req: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if matches!(len, Some(n) if buf.len() >= end + 4 + n) {
                break;
            }
        }
    }
    let status = buf
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", String::from_utf8_lossy(&buf)))?;
    Ok(status)
}

/// `total` requests from `c` threads (request i built by `make(i)`), stop
/// early at `limit`.
fn load(
    port: u16,
    c: usize,
    total: usize,
    limit: Duration,
    make: &(dyn Fn(usize) -> Vec<u8> + Sync),
) -> Load {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let deadline = start + limit;
    let results: Vec<(Vec<Duration>, usize, Option<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                sc.spawn(|| {
                    let mut lat = Vec::with_capacity(total / c + 1);
                    let mut errors = 0;
                    let mut first = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total || Instant::now() >= deadline {
                            break;
                        }
                        let req = make(i);
                        let t = Instant::now();
                        match one(port, &req) {
                            Ok(200) => lat.push(t.elapsed()),
                            Ok(st) => {
                                errors += 1;
                                first.get_or_insert(format!("status {st}"));
                            }
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert(e);
                            }
                        }
                    }
                    (lat, errors, first)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for (l, e, f) in results {
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    lat.sort();
    Load {
        ok: lat.len(),
        errors,
        first_error,
        secs,
        lat,
    }
}

fn report(what: &str, c: usize, l: &Load, target: &str) {
    println!(
        "  {what:<28} c={c:<3} {:>6} ok {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}{}   target: {target}",
        l.ok,
        l.rps(),
        l.pct(0.50),
        l.pct(0.99),
        l.errors,
        l.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

// ------------------------------------------------------------ switch gap

/// A viewer of the output: `ffmpeg -c copy -f framecrc`, each packet line
/// stamped with its arrival time.
struct Viewer {
    child: std::process::Child,
    rx: mpsc::Receiver<(Instant, String)>,
}

impl Viewer {
    fn start(url: &str) -> Viewer {
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-fpsprobesize",
                "0",
                "-i",
                url,
            ])
            .args(["-map", "0:v", "-c", "copy", "-f", "framecrc", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn viewer ffmpeg");
        let out = child.stdout.take().expect("viewer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let t = Instant::now();
                if line.starts_with('#') {
                    continue;
                }
                if tx.send((t, line)).is_err() {
                    break;
                }
            }
        });
        Viewer { child, rx }
    }

    /// Drop everything received so far; the arrival time of the last packet.
    fn drain(&self) -> Option<Instant> {
        let mut last = None;
        while let Ok((t, _)) = self.rx.try_recv() {
            last = Some(t);
        }
        last
    }

    /// The first packet arriving more than 50 ms after `t0` that also
    /// follows a silence of more than 50 ms (the old stream's tail comes
    /// within a few ms of its publisher's stop; at 30 fps packets are 33 ms
    /// apart). Its arrival time and its framecrc line.
    fn first_after_gap(
        &self,
        t0: Instant,
        mut prev: Option<Instant>,
        limit: Duration,
    ) -> Option<(Instant, String)> {
        let deadline = t0 + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (t, line) = self.rx.recv_timeout(left).ok()?;
            let gap_before = prev.map(|p| t.duration_since(p)).unwrap_or(Duration::MAX);
            prev = Some(t);
            if t > t0 + Duration::from_millis(50) && gap_before > Duration::from_millis(50) {
                return Some((t, line));
            }
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, Duration::from_secs(3));
    }
}

/// A small pseudo-random phase in [0, 1) (xorshift seeded by the clock).
fn phase(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 10_000) as f64 / 10_000.0
}

fn switch_gap(rig: &Rig, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let d = &rig.daemon;
    let url = |k: &str| rig.nginx.rtmp_url("live", k);
    let sizes = [("swa", (160u32, 120u32)), ("swb", (176, 144))];
    let mut pubs: Vec<Option<Publisher>> = vec![None, None];
    pubs[0] = Some(Publisher::start_args(&url("swa"), sizes[0].1, 30, 30));
    d.wait_queue(&["swa"], Duration::from_secs(15));
    if let Err(last) = wait_size(&rig.output_url(), sizes[0].1, Duration::from_secs(20)) {
        panic!("switch bench: swa never on air (last {last:?})");
    }
    pubs[1] = Some(Publisher::start_args(&url("swb"), sizes[1].1, 30, 30));
    d.wait_queue(&["swa", "swb"], Duration::from_secs(15));

    let viewer = Viewer::start(&rig.output_url());
    let flowing = wait_for(Duration::from_secs(15), Duration::from_millis(10), || {
        viewer.rx.recv_timeout(Duration::from_millis(100)).ok()
    });
    assert!(
        flowing.is_some(),
        "switch bench: the viewer receives nothing"
    );

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(88_172_645_463_325_252);
    let mut gaps = Vec::new();
    let mut hook_max = Vec::new();
    let mut on_air = 0usize;
    for run in 0..runs {
        // Random phase against the GOP: 1 s + U(0, 1 GOP = 1 s).
        std::thread::sleep(Duration::from_secs_f64(1.0 + phase(&mut seed)));
        let prev = viewer.drain();
        // Hooks keep being answered during the switch: an on_connect every
        // 10 ms from another thread, its worst latency recorded.
        let stop_probe = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let port = d.port;
        let connect_path = d.hook_path("on_connect");
        let sp = stop_probe.clone();
        let prober = std::thread::spawn(move || {
            let req = request_bytes(
                "POST",
                &connect_path,
                &[],
                connect_body("live", 1935).as_bytes(),
            );
            let mut worst = Duration::ZERO;
            let end = Instant::now() + Duration::from_secs(10);
            while !sp.load(Ordering::Relaxed) && Instant::now() < end {
                let t = Instant::now();
                let _ = one(port, &req);
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            worst
        });

        let t0 = Instant::now();
        let leaving = pubs[on_air].as_mut().expect("on-air publisher");
        signal(leaving.pid(), libc::SIGINT);
        let got = viewer.first_after_gap(t0, prev, Duration::from_secs(10));
        stop_probe.store(true, Ordering::Relaxed);
        let worst = prober.join().unwrap_or(Duration::MAX);
        let next = 1 - on_air;
        match got {
            Some((t, line)) => {
                let g = t.duration_since(t0).as_secs_f64();
                println!(
                    "    switch {}: {} → {}: gap {:.3} s (first packet: {})  worst hook during switch {:.1} ms",
                    run + 1,
                    sizes[on_air].0,
                    sizes[next].0,
                    g,
                    line.split(',').map(str::trim).collect::<Vec<_>>().join(","),
                    worst.as_secs_f64() * 1000.0
                );
                gaps.push(g);
                hook_max.push(worst.as_secs_f64() * 1000.0);
            }
            None => println!(
                "    switch {}: no packet from the next streamer within 10 s",
                run + 1
            ),
        }
        // Confirm who is on air now, then the leaver rejoins at the back.
        if let Err(last) = wait_size(&rig.output_url(), sizes[next].1, Duration::from_secs(10)) {
            println!(
                "    (after switch {} the output shows {last:?}, expected {:?})",
                run + 1,
                sizes[next].1
            );
        }
        let mut old = pubs[on_air].take().expect("publisher");
        old.stop();
        pubs[on_air] = Some(Publisher::start_args(
            &url(sizes[on_air].0),
            sizes[on_air].1,
            30,
            30,
        ));
        d.wait_queue(&[sizes[next].0, sizes[on_air].0], Duration::from_secs(15));
        on_air = next;
    }
    (gaps, hook_max)
}

/// A minimal HTTP server on one thread: read the head and body, answer a
/// fixed 200, close. Used only to show the load generator's own ceiling.
fn baseline_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind baseline");
    let port = l.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            if st.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut s) = s else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
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
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, stop)
}

// ------------------------------------------------------------ main

/// Requests per run at 1, 8 and 64 clients: reads and on_connect, and
/// on_publish (each a durable enqueue, kept short enough that the "small
/// queue" runs stay well below the 10,000-entry run).
struct Counts {
    hooks: [usize; 3],
    publishes: [usize; 3],
}

const LIMIT: Duration = Duration::from_secs(20);

pub fn main() {
    let q = quick();
    let counts = if q {
        Counts {
            hooks: [300, 1000, 3000],
            publishes: [300, 1000, 2000],
        }
    } else {
        Counts {
            hooks: [2000, 8000, 20_000],
            publishes: [1000, 4000, 5000],
        }
    };
    let switch_runs = if q { 3 } else { 5 };

    println!(
        "motherstream pipeline bench ({} cores, release binary {:?})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        daemon_bin()
    );

    let mut rig = Rig::start(BENCH_TOML);
    let pid = start_to_serving(&mut rig);
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = rss_kib(pid).unwrap_or(0);

    let qj = hooks_and_reads(&rig, &counts);
    let base = publishes(&rig, &counts);
    publishes_at_10000_queued(&rig, &counts, base, &qj);
    rss_and_big_restart(&mut rig, pid, rss_idle);

    println!("\nswitch gap at the output (publishers 30 fps, GOP 1 s; t0 = SIGINT of the on-air publisher; viewer ffmpeg -c copy -f framecrc):");
    rig.daemon.admin("/clear-queue", "", None);
    let (mut gaps, hooks) = switch_gap(&rig, switch_runs);
    println!(
        "  median of {} runs: {:.3} s   target: ≤ 0.8 s;  worst hook latency during the switches: {:.1} ms",
        gaps.len(),
        median(&mut gaps),
        hooks.iter().cloned().fold(0.0, f64::max)
    );
}

/// Start to serving: the first start plus four restarts on an empty state;
/// the daemon's pid after them.
fn start_to_serving(rig: &mut Rig) -> u32 {
    let pid = rig.daemon.pid();
    let mut starts = vec![rig.daemon.last_start.as_secs_f64() * 1000.0];
    for _ in 0..4 {
        rig.daemon.kill9();
        rig.daemon.restart();
        starts.push(rig.daemon.last_start.as_secs_f64() * 1000.0);
    }
    let pid = if rig.daemon.pid() != pid {
        rig.daemon.pid()
    } else {
        pid
    };
    println!("\nstart to serving (spawn → first 200 from /healthz), empty state:");
    println!(
        "  runs {:?} ms  median {:.1} ms   target: ≤ 50 ms",
        starts
            .iter()
            .map(|s| (s * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        median(&mut starts.clone())
    );
    pid
}

/// on_connect and /queue-json (5 queued) at 1, 8 and 64 clients, after
/// the ceiling of the load generator here; the /queue-json request.
fn hooks_and_reads(rig: &Rig, counts: &Counts) -> Vec<u8> {
    let port = rig.daemon.port;
    let connect_path = rig.daemon.hook_path("on_connect");
    let [n1, n8, n64] = counts.hooks;
    println!("\nhook latency and throughput (new TCP connection per request, HTTP/1.0, Connection: Close):");
    // The ceiling of this load generator + loopback TCP on this machine: a
    // minimal one-thread server answering a fixed 200, same requests.
    let (bport, stop) = baseline_server();
    let connect0 = request_bytes(
        "POST",
        &connect_path,
        &[],
        connect_body("live", 1935).as_bytes(),
    );
    let l = load(bport, 64, n64, LIMIT, &|_| connect0.clone());
    report(
        "(baseline: minimal server)",
        64,
        &l,
        "ceiling of client + loopback here",
    );
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(("127.0.0.1", bport));
    let connect = request_bytes(
        "POST",
        &connect_path,
        &[],
        connect_body("live", 1935).as_bytes(),
    );
    for (c, n) in [(1, n1), (8, n8), (64, n64)] {
        let l = load(port, c, n, LIMIT, &|_| connect.clone());
        report("on_connect", c, &l, "≥ 20,000 req/s");
    }
    // /queue-json with a short queue (what overlays poll in practice).
    for i in 0..5 {
        rig.daemon
            .raw_publish(&format!("viewer{i}"), 100 + i as u64);
    }
    let qj = request_bytes("GET", "/queue-json", &[], b"");
    for (c, n) in [(1, n1), (8, n8), (64, n64)] {
        let l = load(port, c, n, LIMIT, &|_| qj.clone());
        report("GET /queue-json (5 queued)", c, &l, "≥ 20,000 req/s");
    }
    qj
}

/// on_publish, distinct keys (each one a durable enqueue), from an
/// emptied queue each time; the next unused key number.
fn publishes(rig: &Rig, counts: &Counts) -> usize {
    let port = rig.daemon.port;
    let publish_path = rig.daemon.hook_path("on_publish");
    let [p1, p8, p64] = counts.publishes;
    let mut base = 1_000_000usize;
    for (c, n) in [(1, p1), (8, p8), (64, p64)] {
        rig.daemon.admin("/clear-queue", "", None);
        let b = base;
        let l = load(port, c, n, LIMIT, &|i| {
            request_bytes(
                "POST",
                &publish_path,
                &[],
                publish_body("live", &format!("k{}", b + i), (b + i) as u64, "").as_bytes(),
            )
        });
        let target = if c == 64 {
            "≥ 10,000 req/s, p99 ≤ 5 ms"
        } else {
            ""
        };
        report("on_publish (durable)", c, &l, target);
        base += n;
    }
    base
}

/// on_publish and /queue-json with 10,000 entries already queued.
fn publishes_at_10000_queued(rig: &Rig, counts: &Counts, base: usize, qj: &[u8]) {
    let port = rig.daemon.port;
    let publish_path = rig.daemon.hook_path("on_publish");
    rig.daemon.admin("/clear-queue", "", None);
    let b = base;
    let fill = load(port, 64, 10_000, Duration::from_secs(120), &|i| {
        request_bytes(
            "POST",
            &publish_path,
            &[],
            publish_body("live", &format!("f{}", b + i), (b + i) as u64, "").as_bytes(),
        )
    });
    let b = base + 10_000;
    let queued = rig.daemon.queue().len();
    println!(
        "  (filled the queue: {} ok in {:.1} s → {queued} entries)",
        fill.ok, fill.secs
    );
    let l = load(port, 64, counts.publishes[2], LIMIT, &|i| {
        request_bytes(
            "POST",
            &publish_path,
            &[],
            publish_body("live", &format!("k{}", b + i), (b + i) as u64, "").as_bytes(),
        )
    });
    report(
        &format!("on_publish at {queued} queued"),
        64,
        &l,
        "≥ 10,000 req/s, p99 ≤ 5 ms (flat)",
    );
    let l = load(port, 8, counts.hooks[1], LIMIT, &|_| qj.to_vec());
    report(
        &format!("/queue-json at {} queued", rig.daemon.queue().len()),
        8,
        &l,
        "(informative)",
    );
}

/// RSS idle, right after the load and settled; then a restart with the
/// big state: how long to serve.
fn rss_and_big_restart(rig: &mut Rig, pid: u32, rss_idle: u64) {
    let rss_load = rss_kib(pid).unwrap_or(0);
    // The daemon returns freed heap to the kernel 1 s after a burst: also
    // report where it settles.
    std::thread::sleep(Duration::from_secs(2));
    let rss_settled = rss_kib(pid).unwrap_or(0);
    println!("\nRSS (VmRSS of the daemon):");
    println!(
        "  idle {:.1} MiB   right after the load {:.1} MiB   2 s later {:.1} MiB ({} entries queued)   target: ≤ 10 MiB",
        rss_idle as f64 / 1024.0,
        rss_load as f64 / 1024.0,
        rss_settled as f64 / 1024.0,
        rig.daemon.queue().len()
    );
    rig.daemon.kill9();
    rig.daemon.restart();
    println!(
        "  start to serving with {} entries in queue.json: {:.1} ms (informative)",
        rig.daemon.queue().len(),
        rig.daemon.last_start.as_secs_f64() * 1000.0
    );
}
