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
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};

use super::flv::{self, Tag};
use super::restart::copy_stderr;
use super::{RelayEvent, RelaySpec};
use crate::redact::Redactor;
use crate::sys;

/// Chunks (about one tag each) the writer may lag behind: ~4 s of a
/// 30 fps stream with its audio. More means ffmpeg is not reading.
const PIPE_CHUNKS: usize = 300;

pub struct Output {
    pub run: u64,
    pub pid: u32,
    pub started: Instant,
    /// Bytes handed to the writer since start.
    pub sent: u64,
    chunks: Option<Sender<Vec<u8>>>,
    child: Child,
}

/// ffmpeg's arguments for the output. The URL (with its per-run secret) is
/// the one secret left in an argv; see the README's security model.
pub fn args(url: &str) -> Vec<String> {
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
    pub fn spawn(
        spec: &RelaySpec,
        run: u64,
        url: &str,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Output> {
        let mut cmd = Command::new(&spec.ffmpeg);
        cmd.args(args(url))
            .env_clear()
            .envs(super::child_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        sys::kill_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(PIPE_CHUNKS);
        if let Some(mut stdin) = child.stdin.take() {
            std::thread::Builder::new()
                .name("output-pipe".into())
                .spawn(move || {
                    for chunk in rx {
                        if stdin.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                })?;
        }
        if let Some(err) = child.stderr.take() {
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
        let mut out = Output {
            run,
            pid,
            started: Instant::now(),
            sent: 0,
            chunks: Some(tx),
            child,
        };
        let mut header = Vec::with_capacity(13);
        flv::write_file_header(&mut header, true, true);
        out.send(header);
        Ok(out)
    }

    /// Queue tags for ffmpeg. False when the pipe is full or closed: the
    /// output is stuck or gone.
    pub fn write(&mut self, tags: &[Tag]) -> bool {
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
    pub fn kill(&mut self) {
        self.chunks = None;
        sys::signal_group(self.pid, libc::SIGKILL);
    }

    /// Ask it to finish: closing stdin makes ffmpeg flush and exit.
    pub fn finish(&mut self) {
        self.chunks = None;
    }

    /// Reap after `OutputExited`; kills it should it linger.
    pub fn reap(mut self) -> std::io::Result<ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        self.kill();
        self.child.wait()
    }
}
