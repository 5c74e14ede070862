//! The HTTP edge under attack, against the real binary on loopback (and a
//! real nginx-rtmp where its hooks matter): stalled and trickled bodies,
//! thousands of idle connections under `ulimit -n 1024`, a 100 MiB header
//! line, too many headers, and a listener that fails. Needs the
//! `test-hooks` feature (`cargo test --all-features`).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Raw hooks have no stream behind them: keep the daemon from skipping the
/// head for its failing relay. A short request deadline keeps the test fast.
const EXTRA: &str = "[relay]\nmax_failures = 1000\n[http]\nrequest_timeout_seconds = 2\n";
const DEADLINE: Duration = Duration::from_secs(2);

fn daemon_alone(extra: &str, bin: std::path::PathBuf) -> Daemon {
    Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{}", free_port()),
        rtmp_port: free_port(),
        nginx_http_port: free_port(),
        extra_toml: extra.to_string(),
        bin,
        hook_secret: None,
    })
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Everything the server sends until it closes or `timeout` passes.
fn read_all(s: &mut TcpStream, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let _ = s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The ways a body can stall: headers promise 2000 bytes, then nothing.
fn stalled_request(i: usize) -> Vec<u8> {
    let head = "POST /on_publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    match i % 3 {
        0 => format!("{head}Content-Length: 2000\r\n\r\napp=live&name=st"),
        1 => format!("{head}Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n"),
        _ => format!("{head}Transfer-Encoding: chunked\r\n\r\n7d0\r\napp=live"),
    }
    .into_bytes()
}

fn stall(port: u16, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(&stalled_request(i)).expect("send head");
    s
}

/// /healthz and a fresh on_publish, each timed `n` times.
fn hook_latencies(d: &Daemon, tag: &str, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut health = Vec::new();
    let mut publish = Vec::new();
    for i in 0..n {
        let (r, t) = timed(|| d.get("/healthz"));
        assert_eq!(r.status, 200, "{tag}: /healthz {r:?}");
        health.push(t);
        let (r, t) = timed(|| d.raw_publish(&format!("{tag}-{i}"), 1000 + i as u64));
        assert_eq!(r.status, 200, "{tag}: on_publish {r:?}");
        publish.push(t);
    }
    (health, publish)
}

#[test]
fn stalled_bodies_hold_no_worker_and_get_408_at_the_deadline() {
    let rig = Rig::start(EXTRA);
    let d = &rig.daemon;
    for n in [4usize, 16, 64] {
        let opened = Instant::now();
        let mut stalled: Vec<TcpStream> = (0..n).map(|i| stall(d.port, i)).collect();
        // One more that trickles a byte of its body every 300 ms: the
        // deadline bounds the whole request, not each read.
        let mut trickle = stall(d.port, 0);
        let trickler = {
            let mut w = trickle.try_clone().expect("clone");
            std::thread::spawn(move || {
                for _ in 0..40 {
                    if w.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));

        let (health, publish) = hook_latencies(d, &format!("n{n}"), 5);
        let (mh, mp) = (median(health.clone()), median(publish.clone()));
        eprintln!(
            "{n} stalled bodies: /healthz median {mh:?} max {:?}; on_publish median {mp:?} max {:?}",
            health.iter().max().unwrap(),
            publish.iter().max().unwrap()
        );
        assert!(
            mh <= Duration::from_millis(100),
            "{n} stalled: /healthz median {mh:?}"
        );
        assert!(
            mp <= Duration::from_millis(100),
            "{n} stalled: on_publish median {mp:?}"
        );
        assert!(
            health
                .iter()
                .chain(&publish)
                .all(|t| *t < Duration::from_secs(1)),
            "{n} stalled: an answer took a second or more: {health:?} {publish:?}"
        );
        if n == 64 {
            // nginx's own hook gets through too: a real publisher joins.
            let _p = rig.join("realpub", SIZE_A);
        }

        // Every stalled request is answered 408 once its deadline passes.
        for (i, s) in stalled.iter_mut().enumerate() {
            let answer = read_all(s, DEADLINE + Duration::from_secs(3));
            let first = answer
                .lines()
                .find(|l| !l.contains(" 100 ") && l.starts_with("HTTP/"));
            assert!(
                first.is_some_and(|l| l.contains(" 408 ")),
                "stalled request {i} (kind {}) of {n}: {answer:?}",
                i % 3
            );
        }
        let waited = opened.elapsed();
        assert!(
            waited >= DEADLINE - Duration::from_millis(200),
            "408 before the deadline: {waited:?}"
        );
        let answer = read_all(&mut trickle, Duration::from_secs(4));
        assert!(answer.contains(" 408 "), "trickled body: {answer:?}");
        assert!(
            opened.elapsed() < DEADLINE + Duration::from_secs(3),
            "the trickled body stretched its deadline: {:?}",
            opened.elapsed()
        );
        drop(trickle);
        let _ = trickler.join();
    }
    assert!(pid_alive(d.pid()));
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// A shell wrapper that runs the daemon with 1024 descriptors, as systemd
/// gives a service by default (`exec`: the PID stays the daemon's).
fn ulimit_wrapper(dir: &TempDir, n: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("motherstream-ulimit.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nulimit -n {n} || exit 99\nexec {:?} \"$@\"\n",
            daemon_bin()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn two_thousand_idle_connections_do_not_shut_the_door() {
    let dir = TempDir::new("ulimit");
    let d = daemon_alone(EXTRA, ulimit_wrapper(&dir, 1024));
    let pid = d.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "the daemon does not run with 1024 descriptors:\n{limits}"
    );
    let mut idle = Vec::new();
    let mut worst = Duration::ZERO;
    let mut max_fds = 0;
    for i in 0..2000 {
        match TcpStream::connect(("127.0.0.1", d.port)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {i} refused by the kernel: {e}"),
        }
        if i % 250 == 249 {
            let (r, t) = timed(|| d.get("/healthz"));
            assert_eq!(r.status, 200, "after {} idle connections: {r:?}", i + 1);
            let (r, t2) = timed(|| d.raw_publish(&format!("idle{i}"), i as u64));
            assert_eq!(
                r.status,
                200,
                "on_publish after {} idle connections: {r:?}",
                i + 1
            );
            worst = worst.max(t).max(t2);
            max_fds = max_fds.max(open_fds(pid));
        }
    }
    let (h, p) = hook_latencies(&d, "during", 5);
    let during = median(h.into_iter().chain(p).collect());
    let fds = open_fds(pid);
    eprintln!(
        "2000 idle connections: worst answer {worst:?}, median during {during:?}, daemon fds {fds} (max seen {max_fds}), rss {} KiB",
        status_kib(pid, "VmRSS")
    );
    assert!(worst < Duration::from_secs(2), "an answer took {worst:?}");
    assert!(
        fds < 1024 - 64,
        "the daemon holds {fds} descriptors of 1024"
    );
    assert!(
        d.log().contains("at the connection limit"),
        "no warning about the connection cap"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let (h, p) = hook_latencies(&d, "after", 3);
    eprintln!("after: /healthz {h:?}, on_publish {p:?}");
    assert!(pid_alive(pid));
}

/// Send `head` (then `filler` bytes of `b'a'` and the end of the head)
/// from one thread while another reads the answer, as a client that keeps
/// sending would; the answer and how long it took.
fn send_huge(port: u16, head: &str, filler: usize) -> (String, Duration) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let head = head.to_string();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        let _ = w.set_write_timeout(Some(Duration::from_secs(10)));
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b'a'; 1 << 20];
        let mut left = filler;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
        let _ = w.write_all(b"\r\n\r\n");
    });
    let mut r = s;
    let answer = read_all(&mut r, Duration::from_secs(10));
    let took = t0.elapsed();
    drop(r);
    let _ = writer.join();
    (answer, took)
}

#[test]
fn a_100_mib_header_line_gets_431_and_costs_no_memory() {
    let d = daemon_alone(EXTRA, daemon_bin());
    let pid = d.pid();
    let before = status_kib(pid, "VmRSS");
    let (answer, took) = send_huge(
        d.port,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ",
        100 << 20,
    );
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "100 MiB header line: {answer:?}"
    );
    assert!(answer.contains("\"error\""), "no JSON error: {answer:?}");
    let (rss, hwm) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    eprintln!("100 MiB header: 431 after {took:?}; RSS {before} KiB before, {rss} KiB after, peak {hwm} KiB");
    assert!(rss < 20 * 1024, "RSS {rss} KiB after a 100 MiB header");
    assert!(
        hwm < 20 * 1024,
        "peak RSS {hwm} KiB during a 100 MiB header"
    );

    // A 100 KiB request line: 414.
    let (answer, _) = send_huge(d.port, "GET /healthz?", 100 << 10);
    assert!(
        answer.starts_with("HTTP/1.1 414 "),
        "100 KiB request line: {answer:?}"
    );
    // Many short headers over 16 KiB in all (fewer than 100): 431.
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..90 {
        head.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(200)));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.write_all(head.as_bytes()).expect("send");
    let answer = read_all(&mut s, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "18 KiB head: {answer:?}"
    );
    assert_eq!(d.get("/healthz").status, 200);
    assert!(pid_alive(pid));
}

#[test]
fn too_many_headers_get_431_and_a_hundred_are_fine() {
    let d = daemon_alone(EXTRA, daemon_bin());
    let headers = |n: usize| -> String {
        let mut h =
            String::from("GET /healthz HTTP/1.1\r\nConnection: close\r\nHost: 127.0.0.1\r\n");
        for i in 2..n {
            h.push_str(&format!("X-H{i}: v\r\n"));
        }
        h + "\r\n"
    };
    for (n, want) in [(100, " 200 "), (101, " 431 "), (5000, " 431 ")] {
        let mut s = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        let _ = s.write_all(headers(n).as_bytes());
        let answer = read_all(&mut s, Duration::from_secs(5));
        let status = answer.lines().next().unwrap_or("");
        assert!(
            status.contains(want),
            "{n} headers: want{want}, got {answer:?}"
        );
    }
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn a_failed_listener_makes_the_daemon_exit_non_zero() {
    let mut d = daemon_alone(EXTRA, daemon_bin());
    let r = d.post("/debug/close-listener", "");
    assert_eq!(r.status, 200, "{r:?}");
    let st = d
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after its listener failed:\n{}", d.log()));
    assert!(!st.success(), "exit status {st} after the listener failed");
    assert_eq!(st.code(), Some(1), "{st}");
    let log = d.log();
    assert!(
        log.contains("listener"),
        "nothing about the listener in the log:\n{log}"
    );
}

#[test]
fn running_out_of_descriptors_pauses_the_accept_loop_but_does_not_end_it() {
    // A connection cap above what 1024 descriptors allow: accept() meets
    // EMFILE. It must back off, and take connections again once some close.
    let dir = TempDir::new("emfile");
    let extra = "[relay]\nmax_failures = 1000\n[http]\nmax_connections = 5000\nrequest_timeout_seconds = 60\n";
    let d = daemon_alone(extra, ulimit_wrapper(&dir, 1024));
    let pid = d.pid();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().expect("addr");
    let mut idle = Vec::new();
    let t0 = Instant::now();
    while idle.len() < 1500 && t0.elapsed() < Duration::from_secs(30) {
        // Once the daemon's descriptors and the listen backlog are full,
        // connect() waits for SYN retries: stop there. (Not sooner: on a
        // busy machine the accept loop may lag a backlog behind for a while.)
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    let exhausted = wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        d.log().contains("cannot accept a connection").then_some(())
    });
    let fds = open_fds(pid);
    assert!(
        exhausted.is_some(),
        "{} connections opened but no accept error logged; daemon fds {fds}",
        idle.len()
    );
    // The clients go away, descriptors come back, the loop accepts again.
    drop(idle);
    let t1 = Instant::now();
    let served = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.write_all(&request_bytes("GET", "/healthz", &[], b""))
            .ok()?;
        let answer = read_all(&mut s, Duration::from_secs(3));
        answer.lines().next()?.contains(" 200 ").then_some(())
    });
    eprintln!(
        "descriptors exhausted at {fds} open; serving again {:?} after the clients left",
        t1.elapsed()
    );
    assert!(
        served.is_some(),
        "not serving again after the descriptors came back:\n{}",
        tail(&d.log_path(), 20)
    );
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(d.raw_publish("after-emfile", 7).status, 200);
    assert!(pid_alive(pid));
}
