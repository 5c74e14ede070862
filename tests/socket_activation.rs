//! Socket activation as systemd does it (`motherstream.socket`): this test
//! holds the listening socket, as systemd would, and starts the real daemon
//! with it as descriptor 3 (`LISTEN_FDS=1`, `LISTEN_PID` = the daemon's
//! pid). A `kill -9` and a stop-and-start (`systemctl restart`) with a
//! client opening a connection every 20 ms: no connection is refused, the
//! kernel queues them while the daemon is down. The log says which socket
//! is used and warns when it differs from `[http] listen`.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::prober::Prober;
use common::*;

struct Activated {
    dir: TempDir,
    listener: TcpListener,
    port: u16,
    child: Option<Child>,
    _nginx: Nginx,
}

impl Activated {
    fn new() -> Activated {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let nginx = Nginx::start(port);
        let dir = TempDir::new("sockact");
        fs::create_dir_all(dir.join("state")).expect("state dir");
        fs::write(dir.join("state/hook.secret"), &nginx.hook_secret).expect("hook secret");
        let a = Activated {
            dir,
            listener,
            port,
            child: None,
            _nginx: nginx,
        };
        a.write_config(port);
        a
    }

    fn write_config(&self, listen_port: u16) {
        let cfg = format!(
            "[http]\nlisten = \"127.0.0.1:{listen_port}\"\n[rtmp]\nport = {}\n[state]\ndir = \"{}\"\n\
             [relay]\nlog_file = \"{}\"\n[log]\nlevel = \"info\"\ntarget = \"stderr\"\n",
            self._nginx.rtmp_port,
            self.dir.join("state").display(),
            self.dir.join("ffmpeg.log").display()
        );
        fs::write(self.dir.join("ms.toml"), cfg).expect("config");
    }

    /// Start the daemon with the socket as descriptor 3, as systemd does.
    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log");
        let fd = self.listener.as_raw_fd();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\"")
            .arg(daemon_bin())
            .arg(self.dir.join("ms.toml"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: between fork and exec only dup2, which is
        // async-signal-safe; it also clears close-on-exec on descriptor 3.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it then.
                let r = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("spawn motherstream"));
        let req = request_bytes("GET", "/healthz", &[], b"");
        let ok = wait_for(Duration::from_secs(20), Duration::from_millis(5), || {
            let raw = send_raw(self.port, &req, Duration::from_secs(2)).ok()?;
            (parse_resp(&raw).status == 200).then_some(())
        });
        assert!(ok.is_some(), "the daemon never served:\n{}", self.log());
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            wait_child(&mut c, Duration::from_secs(5)).expect("dies on SIGKILL");
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            wait_child(&mut c, Duration::from_secs(20)).expect("stops on SIGTERM");
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
        self.kill9();
    }
}

#[test]
fn restart_and_kill9_refuse_no_connection() {
    let mut a = Activated::new();
    // First start: [http] listen names another port; the socket wins and
    // the mismatch is logged.
    a.write_config(free_port());
    a.spawn();
    assert!(
        a.log()
            .contains("the socket from systemd (motherstream.socket)"),
        "{}",
        a.log()
    );
    assert!(
        a.log().contains("differs from [http] listen"),
        "{}",
        a.log()
    );
    a.terminate();
    a.write_config(a.port);

    a.spawn();
    let prober = Prober::start(a.port);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    a.kill9();
    a.spawn();
    let kill9_back = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    a.terminate();
    a.spawn();
    let restart_back = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let probes = prober.finish();
    let refused = probes
        .iter()
        .filter(|p| matches!(&p.outcome, Err(e) if e.contains("refused")))
        .count();
    let not_200: Vec<_> = probes
        .iter()
        .filter(|p| matches!(p.outcome, Ok(st) if st != 200))
        .collect();
    // A request being answered at the instant of SIGKILL dies with the
    // process (reset): that is the kill, not a refusal.
    let lost = probes
        .iter()
        .filter(|p| matches!(&p.outcome, Err(e) if !e.contains("refused")))
        .count();
    let slowest = probes.iter().map(|p| p.took).max().unwrap_or_default();
    eprintln!(
        "socket activation: kill -9 → serving again in {:.0} ms, SIGTERM + start in {:.0} ms; {} probes: {refused} refused, {} not 200, {lost} reset in flight at the kill; slowest {:.0} ms",
        kill9_back.as_secs_f64() * 1000.0,
        restart_back.as_secs_f64() * 1000.0,
        probes.len(),
        not_200.len(),
        slowest.as_secs_f64() * 1000.0
    );
    for l in a.log().lines().filter(|l| {
        ["SIGTERM", "stopped accepting", "shutting down", "stopped;", "starting:"]
            .iter()
            .any(|k| l.contains(k))
    }) {
        eprintln!("  log: {l}");
    }
    assert_eq!(refused, 0, "connections refused");
    assert!(not_200.is_empty(), "answered but not 200: {not_200:?}");
    assert!(lost <= 1, "{lost} connections lost (one kill -9)");
    assert!(probes.len() >= 20, "the prober ran: {}", probes.len());
    assert!(
        a.log().contains("stopped accepting: connections wait"),
        "the stop paused the accept loop"
    );
}
