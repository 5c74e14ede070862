//! The output: one ffmpeg child for the life of the daemon, FLV on its
//! stdin, `-c copy` to `<output_app>/<output_stream>`, which OBS plays.
//!
//! The owner (the relay, on the engine thread) never writes the pipe
//! itself: tags go as byte chunks into a bounded channel that a writer
//! thread drains into ffmpeg's stdin, so a stuck or dead ffmpeg can never
//! block the engine; a full channel means the output is stuck, and the
//! owner restarts it. stderr goes to the capped relay log; its EOF means
//! the process is exiting and becomes `RelayEvent::OutputExited`.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::flv::{self, Tag};
use super::restart::copy_stderr;
use super::{RelayEvent, RelaySpec};
use crate::redact::Redactor;
use crate::sys;

/// Chunks (about one tag each) the writer may lag behind: ~4 s of a
/// 30 fps stream with its audio. More means ffmpeg is not reading.
const PIPE_CHUNKS: usize = 300;

pub(crate) struct Output {
    pub(crate) run: u64,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    /// Bytes handed to the writer since start.
    pub(crate) sent: u64,
    chunks: Option<Sender<Vec<u8>>>,
    /// None when adopted across a hand-over (`execve`): std's `Child` cannot
    /// be rebuilt, so it is reaped by pid.
    child: Option<Child>,
    /// Our own copies of ffmpeg's stdin and stderr pipes (close-on-exec),
    /// kept so that the pipes outlive the threads using them and can be
    /// handed to a new binary.
    stdin_keep: Option<OwnedFd>,
    stderr_keep: Option<OwnedFd>,
    writer: Option<JoinHandle<()>>,
    /// The thread that forked it: its PR_SET_PDEATHSIG fires when *that
    /// thread* ends, so only that thread may `execve` at a hand-over.
    pub(crate) spawner_tid: u32,
}

/// What a hand-over carries of the output (see `crate::handover`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct OutputCarry {
    pub(crate) pid: u32,
    pub(crate) run: u64,
    pub(crate) stdin_fd: i32,
    pub(crate) stderr_fd: i32,
    pub(crate) sent: u64,
    /// How long it had been running at the hand-over.
    pub(crate) uptime_ms: u64,
    /// `Output::spawner_tid`: the thread that must `execve`.
    pub(crate) spawner_tid: u32,
}

/// ffmpeg's arguments for the output. The URL (with its per-run secret) is
/// the one secret left in an argv; see the README's security model.
pub(crate) fn args(url: &str) -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        // Without it the output buffered ~1.3 s at start and sent it as a
        // burst, which OBS kept as permanent delay (splice notes).
        "-fpsprobesize",
        "0",
        "-f",
        "flv",
        "-i",
        "pipe:0",
        "-c",
        "copy",
        "-f",
        "flv",
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Output {
    /// Start ffmpeg (own process group, SIGKILL when the daemon dies, empty
    /// environment) and write the FLV file header.
    pub(crate) fn spawn(
        spec: &RelaySpec,
        run: u64,
        url: &str,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Output> {
        let mut child =
            super::spawn_ffmpeg(&spec.ffmpeg, args(url), Stdio::piped(), Stdio::null())?;
        let pid = child.id();
        let stdin = child.stdin.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        let mut out = Output::attach(spec, run, pid, url, stdin, stderr, events)?;
        out.child = Some(child);
        let mut header = Vec::with_capacity(13);
        flv::write_file_header(&mut header, true, true);
        out.send(header);
        Ok(out)
    }

    /// The writer and stderr threads on ffmpeg's pipes.
    fn attach(
        spec: &RelaySpec,
        run: u64,
        pid: u32,
        url: &str,
        stdin: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Output> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(PIPE_CHUNKS);
        let mut writer = None;
        if let Some(fd) = &stdin {
            let mut pipe = std::fs::File::from(fd.try_clone()?);
            writer = Some(
                std::thread::Builder::new()
                    .name("output-pipe".into())
                    .spawn(move || {
                        for chunk in rx {
                            if pipe.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        if let Some(fd) = &stderr {
            let err = std::fs::File::from(fd.try_clone()?);
            let log_path = spec.log_path.clone();
            let max = spec.log_max_bytes;
            let header = format!(
                "--- output run {run} started {} (pid {pid}) ---",
                crate::log::timestamp(std::time::SystemTime::now())
            );
            let redact = match url.split_once('?') {
                Some((_, q)) => Redactor::new().hide(q, "<secret>"),
                None => Redactor::new(),
            };
            std::thread::Builder::new()
                .name("output-stderr".into())
                .spawn(move || {
                    let tail = copy_stderr(err, &log_path, max, &header, &redact);
                    let _ = events.send(RelayEvent::OutputExited { run, tail });
                })?;
        }
        Ok(Output {
            run,
            pid,
            started: Instant::now(),
            sent: 0,
            chunks: Some(tx),
            child: None,
            stdin_keep: stdin,
            stderr_keep: stderr,
            writer,
            spawner_tid: sys::fds::gettid(),
        })
    }

    /// Take over the output a previous binary of this process handed over:
    /// same ffmpeg (still our child), same pipes, same publish on nginx.
    pub(crate) fn adopt(
        spec: &RelaySpec,
        c: &OutputCarry,
        url: &str,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Output> {
        let stdin = sys::fds::adopt_fd(c.stdin_fd)?;
        let stderr = sys::fds::adopt_fd(c.stderr_fd)?;
        sys::fds::set_cloexec(stdin.as_raw_fd(), true)?;
        sys::fds::set_cloexec(stderr.as_raw_fd(), true)?;
        let mut out = Output::attach(spec, c.run, c.pid, url, Some(stdin), Some(stderr), events)?;
        out.sent = c.sent;
        out.started = Instant::now()
            .checked_sub(Duration::from_millis(c.uptime_ms))
            .unwrap_or_else(Instant::now);
        // The exec'ing thread became this process's main thread, which is
        // now ffmpeg's parent (see `spawner_tid`).
        out.spawner_tid = std::process::id();
        Ok(out)
    }

    /// Let go of the pipes for a hand-over: everything queued is written
    /// first (at most `timeout`), then the kept descriptors lose
    /// close-on-exec. Err: ffmpeg is not reading (nothing changed but the
    /// writer, which is gone: the caller must not go on using this output).
    pub(crate) fn detach(&mut self, timeout: Duration) -> Result<OutputCarry, String> {
        let (Some(stdin), Some(stderr)) = (&self.stdin_keep, &self.stderr_keep) else {
            return Err("the output has no pipes".into());
        };
        self.chunks = None;
        let end = Instant::now() + timeout;
        if let Some(w) = self.writer.take() {
            while !w.is_finished() {
                if Instant::now() >= end {
                    return Err(format!(
                        "the output ffmpeg (pid {}) did not take what was queued for it within {} ms",
                        self.pid,
                        timeout.as_millis()
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for fd in [stdin, stderr] {
            sys::fds::set_cloexec(fd.as_raw_fd(), false)
                .map_err(|e| format!("cannot keep the output's pipe open across exec: {e}"))?;
        }
        Ok(OutputCarry {
            pid: self.pid,
            run: self.run,
            stdin_fd: stdin.as_raw_fd(),
            stderr_fd: stderr.as_raw_fd(),
            sent: self.sent,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            spawner_tid: self.spawner_tid,
        })
    }

    /// Queue tags for ffmpeg. False when the pipe is full or closed: the
    /// output is stuck or gone.
    pub(crate) fn write(&mut self, tags: &[Tag]) -> bool {
        if tags.is_empty() {
            return true;
        }
        let mut buf = Vec::with_capacity(tags.iter().map(|t| t.data.len() + 15).sum());
        for t in tags {
            flv::write_tag(&mut buf, t);
        }
        self.send(buf)
    }

    fn send(&mut self, buf: Vec<u8>) -> bool {
        let n = buf.len() as u64;
        match &self.chunks {
            Some(tx) => match tx.try_send(buf) {
                Ok(()) => {
                    self.sent += n;
                    true
                }
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }

    /// Stop it for sure: close its stdin and SIGKILL its process group.
    pub(crate) fn kill(&mut self) {
        self.chunks = None;
        self.stdin_keep = None;
        sys::signal_group(self.pid, libc::SIGKILL);
    }

    /// Ask it to finish: closing stdin makes ffmpeg flush and exit.
    pub(crate) fn finish(&mut self) {
        self.chunks = None;
        self.stdin_keep = None;
    }

    /// Reap after `OutputExited`; kills it should it linger.
    pub(crate) fn reap(mut self) -> std::io::Result<ExitStatus> {
        match self.child.take() {
            Some(mut child) => {
                if let Some(st) = child.try_wait()? {
                    return Ok(st);
                }
                self.kill();
                child.wait()
            }
            None => {
                if let Some(st) = sys::fds::waitpid(self.pid, false)? {
                    return Ok(st);
                }
                self.kill();
                sys::fds::waitpid(self.pid, true)?
                    .ok_or_else(|| std::io::Error::other("waitpid returned no status"))
            }
        }
    }
}
