//! The relay: one ffmpeg child copying the on-air stream into the output.
//!
//! The engine owns the `Child`. Two small threads per run read its pipes:
//! stdout carries `-progress` blocks (output progress → stall detection),
//! stderr goes to a size-capped `ffmpeg.log`; stderr reaching EOF means the
//! process is exiting, which becomes the `Exited` event (no polling).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::redact::Redactor;
use crate::{private_fs, sys};

/// The only environment ffmpeg gets: it needs to find itself and nothing
/// else, and the daemon's environment may hold secrets (`OBS_PASSWORD`).
const CHILD_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// How many stderr lines are kept for the daemon log when a relay fails.
const TAIL_LINES: usize = 12;

#[derive(Debug)]
pub enum RelayEvent {
    /// The output grew (from ffmpeg's `-progress` report).
    Progress { run: u64, total_size: u64 },
    /// The relay's stderr closed: the process is exiting.
    Exited { run: u64, tail: Vec<String> },
}

/// How to run ffmpeg.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    pub ffmpeg: String,
    /// Arguments with `{input}` / `{output}` placeholders; empty = default.
    pub args: Vec<String>,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
}

/// The built-in relay: copy, no re-encode; `-fpsprobesize 0` skips ffmpeg's
/// ~1.3 s frame-rate probe (measured: switch gap 0.69 s median vs 1.82 s);
/// `-analyzeduration 1 s` bounds the wait for a stream a publisher never
/// sends (measured with a video-only publisher: first output 6.2 s after
/// start by default, 2.2 s with it; A/V streams are found at once anyway).
pub fn default_args() -> Vec<String> {
    [
        "-hide_banner",
        "-loglevel",
        "warning",
        "-fpsprobesize",
        "0",
        "-analyzeduration",
        "1000000",
        "-i",
        "{input}",
        "-c",
        "copy",
        "-f",
        "flv",
        "{output}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The full argument list: progress reporting first (the daemon needs it
/// whatever the operator's args are), then the relay args with URLs filled in.
pub fn build_args(spec_args: &[String], input: &str, output: &str) -> Vec<String> {
    let base = if spec_args.is_empty() {
        default_args()
    } else {
        spec_args.to_vec()
    };
    let mut args: Vec<String> = ["-nostdin", "-nostats", "-progress", "pipe:1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(
        base.iter()
            .map(|a| a.replace("{input}", input).replace("{output}", output)),
    );
    args
}

pub struct Relay {
    pub run: u64,
    pub key: String,
    pub pid: u32,
    pub started: Instant,
    pub last_progress: Instant,
    pub total_size: u64,
    child: Child,
}

impl Relay {
    /// Start ffmpeg in its own process group, with SIGKILL as its parent-death
    /// signal so that no relay outlives a killed daemon, and with a clean
    /// environment. Every stderr line passes through `redact` before it is
    /// logged (ffmpeg prints its URLs, which hold the key and the secret).
    pub fn spawn(
        spec: &RelaySpec,
        run: u64,
        key: &str,
        input: &str,
        output: &str,
        redact: Redactor,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Relay> {
        let args = build_args(&spec.args, input, output);
        let mut cmd = Command::new(&spec.ffmpeg);
        cmd.env_clear();
        for k in CHILD_ENV {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        sys::kill_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let now = Instant::now();
        if let Some(out) = child.stdout.take() {
            let ev = events.clone();
            spawn_reader("relay-progress", move || read_progress(out, run, ev));
        }
        if let Some(err) = child.stderr.take() {
            let log_path = spec.log_path.clone();
            let max = spec.log_max_bytes;
            let header = format!(
                "--- relay run {run} for {} started {} (pid {pid}) ---",
                redact.apply(key),
                crate::log::timestamp(std::time::SystemTime::now())
            );
            spawn_reader("relay-stderr", move || {
                let tail = copy_stderr(err, &log_path, max, &header, &redact);
                let _ = events.send(RelayEvent::Exited { run, tail });
            });
        }
        Ok(Relay {
            run,
            key: key.to_string(),
            pid,
            started: now,
            last_progress: now,
            total_size: 0,
            child,
        })
    }

    /// Ask the relay to stop (SIGTERM to its process group).
    pub fn terminate(&self) {
        sys::signal_group(self.pid, libc::SIGTERM);
    }

    /// Stop it for sure (SIGKILL to its process group).
    pub fn kill(&self) {
        sys::signal_group(self.pid, libc::SIGKILL);
    }

    /// Reap the process once its `Exited` event arrived. stderr closing
    /// means ffmpeg is exiting; should it somehow linger, it is killed, so
    /// this never keeps the engine waiting.
    pub fn reap(mut self) -> std::io::Result<ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        self.kill();
        self.child.wait()
    }
}

fn spawn_reader(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        log::error!("cannot start relay pipe reader thread: {e}");
    }
}

/// Parse ffmpeg `-progress` blocks (`key=value` lines, each block ending in
/// `progress=continue|end`) and report when the output grows.
fn read_progress(out: impl std::io::Read, run: u64, events: Sender<RelayEvent>) {
    let mut last = 0u64;
    let mut size = 0u64;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if let Some(v) = line.strip_prefix("total_size=") {
            size = v.trim().parse().unwrap_or(size);
        } else if line.starts_with("progress=") && size > last {
            last = size;
            if events
                .send(RelayEvent::Progress {
                    run,
                    total_size: size,
                })
                .is_err()
            {
                break;
            }
        }
    }
}

/// Copy stderr lines, redacted, into the relay log (rotated at `max` bytes
/// to `<log>.1`) and return the last lines (redacted too: they go to the
/// journal).
fn copy_stderr(
    err: impl std::io::Read,
    path: &Path,
    max: u64,
    header: &str,
    redact: &Redactor,
) -> Vec<String> {
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut log = CappedLog::open(path, max);
    log.write_line(header);
    for line in BufReader::new(err).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let text = redact.apply(text.trim_end_matches('\r'));
        log.write_line(&text);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    tail.into()
}

struct CappedLog {
    path: PathBuf,
    max: u64,
    file: Option<File>,
    size: u64,
    warned: bool,
}

impl CappedLog {
    fn open(path: &Path, max: u64) -> CappedLog {
        let mut l = CappedLog {
            path: path.to_path_buf(),
            max,
            file: None,
            size: 0,
            warned: false,
        };
        l.reopen();
        l
    }

    fn reopen(&mut self) {
        match private_fs::open(&self.path, private_fs::options().create(true).append(true)) {
            Ok(f) => {
                private_fs::tighten(&f, &self.path);
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
            }
            Err(e) => {
                if !self.warned {
                    log::warn!("cannot write relay log {}: {e}", self.path.display());
                    self.warned = true;
                }
                self.file = None;
            }
        }
    }

    fn write_line(&mut self, line: &str) {
        if self.size + line.len() as u64 + 1 > self.max && self.max > 0 {
            let old = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, old);
            self.reopen();
        }
        if let Some(f) = &mut self.file {
            if writeln!(f, "{line}").is_ok() {
                self.size += line.len() as u64 + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_fill_urls_and_keep_progress() {
        let a = build_args(&[], "rtmp://i", "rtmp://o");
        assert_eq!(&a[..4], ["-nostdin", "-nostats", "-progress", "pipe:1"]);
        assert!(a.contains(&"rtmp://i".to_string()));
        assert_eq!(a.last().unwrap(), "rtmp://o");
        let i = a.iter().position(|x| x == "-fpsprobesize").unwrap();
        assert!(i < a.iter().position(|x| x == "-i").unwrap());
        let custom = vec!["-i".into(), "{input}".into(), "x{output}".into()];
        let a = build_args(&custom, "I", "O");
        assert_eq!(&a[4..], ["-i", "I", "xO"]);
    }

    #[test]
    fn progress_reports_only_growth() {
        let text = "total_size=0\nprogress=continue\ntotal_size=100\nprogress=continue\n\
                    total_size=100\nprogress=continue\ntotal_size=250\nprogress=end\n";
        let (tx, rx) = crossbeam_channel::unbounded();
        read_progress(text.as_bytes(), 7, tx);
        let sizes: Vec<u64> = rx
            .try_iter()
            .map(|e| match e {
                RelayEvent::Progress { run, total_size } => {
                    assert_eq!(run, 7);
                    total_size
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [100, 250]);
    }

    #[test]
    fn stderr_log_is_capped_and_tail_kept() {
        let dir = std::env::temp_dir().join(format!("ms-relaylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ffmpeg.log");
        let lines: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
        let tail = copy_stderr(
            lines.as_bytes(),
            &path,
            300,
            "--- header ---",
            &Redactor::new(),
        );
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 099");
        let cur = std::fs::metadata(&path).unwrap().len();
        assert!(cur <= 300, "log is {cur} bytes");
        assert!(path.with_extension("log.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stderr_lines_are_redacted_in_the_log_and_the_tail() {
        let dir = std::env::temp_dir().join(format!("ms-relayredact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ffmpeg.log");
        let key = "k3y0000000000000000000000000000a";
        let text = format!(
            "Input #0, flv, from 'rtmp://127.0.0.1:1/live/{key}':\n\
             rtmp://127.0.0.1:1/motherstream/live?ms_secret=s3cr3t: Broken pipe\n"
        );
        let r = Redactor::new()
            .hide(key, "DJ Alice")
            .hide("s3cr3t", "<secret>");
        let tail = copy_stderr(text.as_bytes(), &path, 1 << 20, "--- header ---", &r);
        let log = std::fs::read_to_string(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        for t in tail.iter().map(String::as_str).chain([log.as_str()]) {
            assert!(!t.contains(key) && !t.contains("s3cr3t"), "{t}");
        }
        assert!(log.contains("/live/DJ Alice'"), "{log}");
        assert!(log.contains("/motherstream/live?<redacted>"), "{log}");
        assert_eq!(mode, 0o600);
    }
}
