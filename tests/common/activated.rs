//! The real daemon started the way systemd's socket activation starts it:
//! the caller holds the listening socket (as `motherstream.socket` does)
//! and every start gets it as descriptor 3 with `LISTEN_FDS=1` and
//! `LISTEN_PID` = the daemon's pid. Between starts the kernel queues
//! connections on it.

use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{parse_resp, request_bytes, send_raw, signal, wait_child, wait_for, Nginx, TempDir};

pub struct Activated {
    pub dir: TempDir,
    pub listener: TcpListener,
    pub port: u16,
    pub bin: PathBuf,
    child: Option<Child>,
}

impl Activated {
    /// A socket on a free loopback port and a directory for the config
    /// (`config_path()`, written by the caller) and the log.
    pub fn new(bin: PathBuf) -> Activated {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        Activated {
            dir: TempDir::new("sockact"),
            listener,
            port,
            bin,
            child: None,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("ms.toml")
    }

    /// Write the config (`[http] listen` on `listen_port`, which the held
    /// socket overrides; `nginx`'s RTMP port, /control and /stat; state and
    /// relay log in the directory; info log to stderr; then `extra`) and
    /// `nginx`'s hook secret where the daemon reads it.
    pub fn configure(&self, nginx: &Nginx, listen_port: u16, extra: &str) {
        fs::create_dir_all(self.dir.join("state")).expect("state dir");
        fs::write(self.dir.join("state/hook.secret"), &nginx.hook_secret).expect("hook secret");
        let cfg = format!(
            "[http]\nlisten = \"127.0.0.1:{listen_port}\"\n[rtmp]\nport = {}\n\
             control_url = \"http://127.0.0.1:{nh}/control\"\nstat_url = \"http://127.0.0.1:{nh}/stat\"\n\
             [state]\ndir = \"{}\"\n[relay]\nlog_file = \"{}\"\n\
             [log]\nlevel = \"info\"\ntarget = \"stderr\"\n{extra}",
            nginx.rtmp_port,
            self.dir.join("state").display(),
            self.dir.join("ffmpeg.log").display(),
            nh = nginx.http_port
        );
        fs::write(self.config_path(), cfg).expect("config");
    }

    /// Start the daemon with the socket as descriptor 3 and wait until it
    /// answers /healthz.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log");
        let fd = self.listener.as_raw_fd();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\"")
            .arg(&self.bin)
            .arg(self.config_path())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: between fork and exec only dup2/fcntl, which are
        // async-signal-safe.
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

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            wait_child(&mut c, Duration::from_secs(5)).expect("dies on SIGKILL");
        }
    }

    /// SIGTERM and wait for the exit (as `systemctl stop` does).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            wait_child(&mut c, Duration::from_secs(20)).expect("stops on SIGTERM");
        }
    }

    pub fn log(&self) -> String {
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
