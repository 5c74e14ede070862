//! systemd integration of the real binary: sd_notify over a NOTIFY_SOCKET
//! this test binds (READY after the port answers, STATUS, WATCHDOG interval,
//! RELOADING/READY on SIGHUP, STOPPING + exit 0 on SIGTERM), the watchdog
//! pings stopping when the engine is wedged, and journald `<N>` prefixes.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A datagram socket standing where systemd's notify socket would be.
struct NotifySocket {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    got: Vec<(Instant, String)>,
}

impl NotifySocket {
    fn bind(dir: &TempDir) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        NotifySocket {
            sock,
            path,
            got: Vec::new(),
        }
    }

    /// Read datagrams until `pred` matches one (returns its arrival time)
    /// or the timeout passes.
    fn wait(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        let end = Instant::now() + timeout;
        if let Some((t, _)) = self.got.iter().find(|(_, m)| pred(m)) {
            return Some(*t);
        }
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let t = Instant::now();
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = pred(&msg);
                self.got.push((t, msg));
                if hit {
                    return Some(t);
                }
            }
        }
        None
    }

    /// Like `wait`, but only for datagrams that arrive at or after `after`.
    fn wait_after(
        &mut self,
        after: Instant,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((t, _)) = self.got.iter().find(|(t, m)| *t >= after && pred(m)) {
                return Some(*t);
            }
            if Instant::now() >= end {
                return None;
            }
            self.collect_for(Duration::from_millis(50));
        }
    }

    /// Drain everything for `d`, keeping it.
    fn collect_for(&mut self, d: Duration) {
        let _ = self.wait(d, |_| false);
    }

    fn times_of(&self, what: &str, after: Instant) -> Vec<Instant> {
        self.got
            .iter()
            .filter(|(t, m)| *t >= after && m.lines().any(|l| l == what))
            .map(|(t, _)| *t)
            .collect()
    }

    fn dump(&self) -> String {
        self.got
            .iter()
            .map(|(_, m)| m.replace('\n', "|"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Sd {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    nginx: Nginx,
}

impl Sd {
    /// Start the daemon the way systemd would: NOTIFY_SOCKET, WATCHDOG_USEC
    /// and WATCHDOG_PID (= the daemon's own pid, via exec from sh).
    fn start(notify: &NotifySocket, watchdog_usec: u64, extra_env: &[(&str, &str)]) -> Sd {
        let dir = TempDir::new("sd");
        let port = free_port();
        let nginx = Nginx::start(port);
        fs::create_dir_all(dir.join("state")).expect("state dir");
        fs::write(dir.join("state/hook.secret"), &nginx.hook_secret).expect("hook secret");
        let cfg = format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[rtmp]\nport = {}\n[state]\ndir = \"{}\"\n\
             [relay]\nlog_file = \"{}\"\n[log]\nlevel = \"info\"\n",
            nginx.rtmp_port,
            dir.join("state").display(),
            dir.join("ffmpeg.log").display()
        );
        fs::write(dir.join("ms.toml"), cfg).expect("config");
        let log = fs::File::create(dir.join("daemon.log")).expect("log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\"")
            .arg(daemon_bin())
            .arg(dir.join("ms.toml"))
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", watchdog_usec.to_string())
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn motherstream");
        Sd {
            dir,
            port,
            child: Some(child),
            nginx,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Sd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = wait_child(&mut c, Duration::from_secs(5));
        }
    }
}

/// Kills a child the test started if the test panics first.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = wait_child(&mut c, Duration::from_secs(5));
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn notify_ready_status_watchdog_reload_and_stop() {
    let _turn = heavy_turn();
    let dir = TempDir::new("sdsock");
    let mut ns = NotifySocket::bind(&dir);
    let mut sd = Sd::start(&ns, 1_000_000, &[]);

    // READY=1 is sent only once the HTTP port is bound: the port must
    // answer the moment READY arrives.
    let ready = ns.wait(Duration::from_secs(10), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(ready.is_some(), "no READY=1; got:\n{}", ns.dump());
    assert_eq!(get(sd.port, "/healthz").status, 200);

    // Watchdog: WATCHDOG_USEC=1 s → a probe, and a ping, every 1/3 s.
    let t0 = Instant::now();
    ns.collect_for(Duration::from_millis(3200));
    let pings = ns.times_of("WATCHDOG=1", t0);
    assert!(
        (8..=11).contains(&pings.len()),
        "{} pings in 3.2 s; got:\n{}",
        pings.len(),
        ns.dump()
    );
    let gaps: Vec<f64> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let m = median(gaps);
    assert!((0.25..=0.45).contains(&m), "median ping interval {m:.3} s");

    // STATUS follows the queue: a real publisher goes on air.
    assert!(
        ns.got
            .iter()
            .any(|(_, m)| m.contains("STATUS=nobody on air")),
        "no idle STATUS; got:\n{}",
        ns.dump()
    );
    let mut alice = Publisher::start(sd.nginx.rtmp_port, "alice", SIZE_A);
    // Unregistered: STATUS names the guest, never the key.
    let shown = GuestNames::in_dir(&sd.dir.join("state")).guest("alice");
    let on_air = ns.wait(Duration::from_secs(15), |m| {
        m.contains(&format!("STATUS=on air: {shown}")) && m.contains("relay ok")
    });
    assert!(
        on_air.is_some(),
        "STATUS never said alice is on air with a working relay; got:\n{}",
        ns.dump()
    );
    let relay: u32 = {
        let s = get(sd.port, "/api/status").json();
        s["on_air"]["relay"]["pid"].as_u64().expect("relay pid") as u32
    };

    // SIGHUP: RELOADING=1 then READY=1; the on-air relay is untouched.
    let before_hup = Instant::now();
    assert!(signal(sd.pid(), libc::SIGHUP));
    let reloading = ns.wait(Duration::from_secs(5), |m| m.contains("RELOADING=1"));
    assert!(reloading.is_some(), "no RELOADING=1; got:\n{}", ns.dump());
    let reloading = reloading.unwrap_or(before_hup);
    let ready_again = ns.wait_after(reloading, Duration::from_secs(5), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(
        ready_again.is_some(),
        "no READY=1 after RELOADING=1; got:\n{}",
        ns.dump()
    );
    assert!(pid_alive(relay), "reload must not touch the on-air relay");
    assert!(sd.log().contains("configuration reloaded"), "{}", sd.log());

    // SIGTERM: STOPPING=1, exit 0, no relay left behind.
    assert!(signal(sd.pid(), libc::SIGTERM));
    let stopping = ns.wait(Duration::from_secs(5), |m| m.contains("STOPPING=1"));
    assert!(stopping.is_some(), "no STOPPING=1; got:\n{}", ns.dump());
    let mut child = sd.child.take().expect("child");
    let st = wait_child(&mut child, Duration::from_secs(5)).expect("exit within 5 s of SIGTERM");
    assert!(st.success(), "exit status {st}");
    assert!(
        wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
            (!pid_alive(relay)).then_some(())
        })
        .is_some(),
        "relay {relay} outlived the daemon"
    );
    alice.stop();
}

/// A daemon under a 1 s watchdog that has said READY=1, and its notify
/// socket.
fn ready_with_1s_watchdog(dir: &TempDir) -> (NotifySocket, Sd) {
    let mut ns = NotifySocket::bind(dir);
    let sd = Sd::start(&ns, 1_000_000, &[]);
    assert!(ns
        .wait(Duration::from_secs(10), |m| m
            .lines()
            .any(|l| l == "READY=1"))
        .is_some());
    (ns, sd)
}

#[test]
fn a_wedged_engine_stops_the_watchdog_pings() {
    let _turn = heavy_turn();
    let dir = TempDir::new("sdwedge");
    let (mut ns, sd) = ready_with_1s_watchdog(&dir);
    ns.collect_for(Duration::from_millis(1200));
    let r = post(sd.port, "/debug/wedge?secs=3", "");
    assert_eq!(r.status, 200, "{r:?}");
    let wedged_at = Instant::now();
    ns.collect_for(Duration::from_millis(2500));
    // One ping may already have been in flight as the wedge began.
    let during = ns
        .times_of("WATCHDOG=1", wedged_at + Duration::from_millis(100))
        .len();
    assert_eq!(during, 0, "pings kept coming while wedged:\n{}", ns.dump());
    // Hooks and /healthz wait on the engine meanwhile; after the wedge the
    // pings resume (systemd would have restarted us by then).
    assert_pings_resume(&mut ns);
    assert_outage_logged_once(&sd.log(), "the engine");
}

/// From the test hook's wedge on, the log names the stuck part once (and
/// nothing else as stuck) and the recovery once. (A probe that was merely
/// slow before the wedge, on a loaded machine, is an outage of its own.)
/// Watchdog pings come again (two within 2.5 s) once the wedge is over.
fn assert_pings_resume(ns: &mut NotifySocket) {
    let resumed = Instant::now();
    ns.collect_for(Duration::from_millis(2500));
    assert!(
        ns.times_of("WATCHDOG=1", resumed).len() >= 2,
        "pings did not resume:\n{}",
        ns.dump()
    );
}

fn assert_outage_logged_once(log: &str, part: &str) {
    let from = log
        .find("test hook: wedging")
        .unwrap_or_else(|| panic!("no wedge in the log:\n{log}"));
    let after = &log[from..];
    for l in after.lines().filter(|l| l.contains("hook")) {
        eprintln!("daemon: {l}");
    }
    let stuck: Vec<&str> = after
        .lines()
        .filter(|l| l.contains("a hook would not be answered now"))
        .collect();
    assert_eq!(stuck.len(), 1, "the stuck part is logged once:\n{after}");
    assert!(
        stuck[0].contains(&format!("a hook would not be answered now: {part}")),
        "the stuck part is not {part}: {}",
        stuck[0]
    );
    assert_eq!(
        after.matches("hooks are answered again").count(),
        1,
        "the recovery is logged once:\n{after}"
    );
}

#[test]
fn a_wedged_reply_path_stops_the_watchdog_pings_and_is_named_once() {
    let _turn = heavy_turn();
    let dir = TempDir::new("sdreply");
    let (mut ns, sd) = ready_with_1s_watchdog(&dir);
    let t0 = Instant::now();
    ns.collect_for(Duration::from_millis(1200));
    let before = ns.times_of("WATCHDOG=1", t0).len();
    assert!(
        before >= 2,
        "{before} pings before the wedge:\n{}",
        ns.dump()
    );
    // The engine still answers; what it answers is never handed out.
    let r = post(sd.port, "/debug/wedge?secs=4&part=reply", "");
    assert_eq!(r.status, 200, "{r:?}");
    let wedged_at = Instant::now();
    ns.collect_for(Duration::from_millis(3000));
    // A probe already past the reply writers may still land.
    let during = ns.times_of("WATCHDOG=1", wedged_at + Duration::from_millis(150));
    assert!(
        during.is_empty(),
        "pings kept coming while the reply path was wedged:\n{}",
        ns.dump()
    );
    let last_before = ns
        .times_of("WATCHDOG=1", t0)
        .into_iter()
        .filter(|t| *t < wedged_at + Duration::from_millis(150))
        .max()
        .expect("a ping before the wedge");
    assert!(
        Instant::now() - last_before > Duration::from_secs(1),
        "systemd (WatchdogSec=1s) would not have restarted the daemon"
    );
    // The wedge ends: hooks are answered and the pings resume.
    assert_pings_resume(&mut ns);
    assert_outage_logged_once(&sd.log(), "the http-reply threads");
}

#[test]
fn nothing_is_sent_without_notify_socket_and_journald_gets_priorities() {
    let _turn = light_turn();
    // JOURNAL_STREAM set: stderr lines carry sd-daemon <N> prefixes and no
    // timestamps; NOTIFY_SOCKET unset: the daemon runs fine without it.
    let dir = TempDir::new("sdjournal");
    let port = free_port();
    let nginx = Nginx::start(port);
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[rtmp]\nport = {}\n[state]\ndir = \"{}\"\n",
        nginx.rtmp_port,
        dir.path().display()
    );
    fs::write(dir.join("ms.toml"), cfg).expect("config");
    fs::write(dir.join("hook.secret"), &nginx.hook_secret).expect("hook secret");
    let hook = |port: u16, name: &str, body: &str| {
        post(port, &format!("/hook/{}/{name}", nginx.hook_secret), body)
    };
    let log = fs::File::create(dir.join("daemon.log")).expect("log");
    let child = Command::new(daemon_bin())
        .arg("--config")
        .arg(dir.join("ms.toml"))
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(Some(child));
    let up = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (get(port, "/healthz").status == 200).then_some(())
    });
    assert!(up.is_some(), "daemon did not serve");
    // A refused hijack is a warning (<4>), a join is info (<6>).
    let r = hook(
        port,
        "on_publish",
        &publish_body("motherstream", "live", 9, ""),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        hook(port, "on_publish", &publish_body("live", "alice", 3, "")).status,
        200
    );
    let mut c = child.0.take().expect("child");
    signal(c.id(), libc::SIGTERM);
    let st = wait_child(&mut c, Duration::from_secs(10));
    if st.is_none() {
        signal(c.id(), libc::SIGKILL);
        let _ = wait_child(&mut c, Duration::from_secs(5));
    }
    let st = st.expect("exit within 10 s of SIGTERM");
    assert!(st.success(), "{st}");
    let text = fs::read_to_string(dir.join("daemon.log")).expect("log");
    assert!(!text.is_empty());
    for line in text.lines() {
        let ok = line.len() > 3
            && line.starts_with('<')
            && line.as_bytes()[2] == b'>'
            && (b'0'..=b'7').contains(&line.as_bytes()[1]);
        assert!(ok, "line without a <N> prefix: {line:?}\n{text}");
        assert!(
            !line[3..].starts_with("20"),
            "journald lines carry no timestamp: {line:?}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("<4>") && l.contains("only motherstream's relay")),
        "{text}"
    );
    let alice = GuestNames::in_dir(dir.path()).guest("alice");
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>") && l.contains(&format!("{alice} joined"))),
        "{text}"
    );
}
