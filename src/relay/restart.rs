//! Restart mode: one ffmpeg child per streamer copying the on-air stream
//! into the output, killed and started again at every switch (the first
//! version's relay, kept for `[relay] mode = "restart"` and custom `args`).
//!
//! The relay owns the `Child`. Two small threads per run read its pipes:
//! stdout carries `-progress` blocks (output progress → stall detection),
//! stderr goes to a size-capped `ffmpeg.log`; stderr reaching EOF means the
//! process is exiting, which becomes the `Exited` event (no polling).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::{
    rtmp_url, CutKind, Mode, Notice, Relay, RelayEvent, RelaySpec, RelayView, Streamer, Want,
};
use crate::key::StreamKey;
use crate::redact::Redactor;
use crate::{private_fs, sys};

/// How many stderr lines are kept for the daemon log when a relay fails.
const TAIL_LINES: usize = 12;

/// The built-in relay: copy, no re-encode; `-fpsprobesize 0` skips ffmpeg's
/// ~1.3 s frame-rate probe (measured: switch gap 0.69 s median vs 1.82 s);
/// `-analyzeduration 1 s` bounds the wait for a stream a publisher never
/// sends (measured with a video-only publisher: first output 6.2 s after
/// start by default, 2.2 s with it; A/V streams are found at once anyway).
pub(crate) fn default_args() -> Vec<String> {
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
pub(crate) fn build_args(spec_args: &[String], input: &str, output: &str) -> Vec<String> {
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

pub(crate) struct RelayRun {
    pub(crate) run: u64,
    pub(crate) key: StreamKey,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    pub(crate) last_progress: Instant,
    pub(crate) total_size: u64,
    child: Child,
}

impl RelayRun {
    /// Start ffmpeg in its own process group, with SIGKILL as its parent-death
    /// signal so that no relay outlives a killed daemon.
    pub(crate) fn spawn(
        spec: &RelaySpec,
        run: u64,
        key: &StreamKey,
        input: &str,
        output: &str,
        redact: &Redactor,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<RelayRun> {
        let args = build_args(&spec.args, input, output);
        let mut child = super::spawn_ffmpeg(&spec.ffmpeg, &args, Stdio::null(), Stdio::piped())?;
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
                "--- relay run {run} started {} (pid {pid}) ---",
                crate::log::timestamp(std::time::SystemTime::now())
            );
            let redact = redact.clone();
            spawn_reader("relay-stderr", move || {
                let tail = copy_stderr(err, &log_path, max, &header, &redact);
                let _ = events.send(RelayEvent::Exited { run, tail });
            });
        }
        Ok(RelayRun {
            run,
            key: key.clone(),
            pid,
            started: now,
            last_progress: now,
            total_size: 0,
            child,
        })
    }

    /// Ask the relay to stop (SIGTERM to its process group).
    pub(crate) fn terminate(&self) {
        sys::signal_group(self.pid, libc::SIGTERM);
    }

    /// Stop it for sure (SIGKILL to its process group).
    pub(crate) fn kill(&self) {
        sys::signal_group(self.pid, libc::SIGKILL);
    }

    /// Reap the process once its `Exited` event arrived. stderr closing
    /// means ffmpeg is exiting; should it somehow linger, it is killed, so
    /// this never keeps the engine waiting.
    pub(crate) fn reap(mut self) -> std::io::Result<ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        self.kill();
        self.child.wait()
    }
}

/// A relay that produced output this long is healthy again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

enum Phase {
    Idle,
    Running(RelayRun),
    Stopping {
        relay: RelayRun,
        kill_at: Option<Instant>,
        /// Stopped because it stalled: its exit counts as a failure.
        failed: bool,
    },
    Backoff {
        key: StreamKey,
        until: Instant,
    },
}

/// Failure accounting for the on-air key's relay.
#[derive(Default)]
struct Health {
    key: Option<StreamKey>,
    failures: u32,
    restarts: u32,
    first_output_logged: bool,
}

/// The restart relay as the engine drives it: kill and start again at
/// each switch.
pub(crate) struct RestartRelay {
    spec: RelaySpec,
    events: Sender<RelayEvent>,
    phase: Phase,
    run: u64,
    health: Health,
    want: Want,
    /// The streamer on the output: the relay's key once it produced output.
    on_screen: Option<StreamKey>,
    switch_at: Option<Instant>,
    secret: String,
}

impl RestartRelay {
    pub(crate) fn new(spec: RelaySpec, events: Sender<RelayEvent>) -> RestartRelay {
        RestartRelay {
            spec,
            events,
            phase: Phase::Idle,
            run: 0,
            health: Health::default(),
            want: Want::default(),
            on_screen: None,
            switch_at: None,
            secret: super::new_secret(),
        }
    }

    fn desired(&self) -> Option<&Streamer> {
        if self.want.stopping {
            None
        } else {
            self.want.on_air.as_ref()
        }
    }

    fn name(&self, key: &StreamKey) -> String {
        [&self.want.on_air, &self.want.next]
            .into_iter()
            .flatten()
            .find(|s| s.key == *key)
            .map_or_else(|| "a streamer".to_string(), |s| s.name.clone())
    }

    fn reconcile(&mut self, now: Instant, gone: Option<&StreamKey>, notices: &mut Vec<Notice>) {
        let desired = self.desired().map(|s| s.key.clone());
        if let Some(d) = &desired {
            if self.health.key.as_ref() != Some(d) {
                self.health = Health {
                    key: Some(d.clone()),
                    ..Health::default()
                };
            }
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        self.phase = match phase {
            Phase::Running(r) if desired.as_ref() != Some(&r.key) => {
                if gone == Some(&r.key) {
                    r.kill();
                    Phase::Stopping {
                        relay: r,
                        kill_at: None,
                        failed: false,
                    }
                } else {
                    r.terminate();
                    Phase::Stopping {
                        relay: r,
                        kill_at: Some(now + self.spec.stop_grace),
                        failed: false,
                    }
                }
            }
            Phase::Backoff { key, until } => match &desired {
                Some(d) if *d == key && now < until => Phase::Backoff { key, until },
                Some(d) => self.spawn(d, now, notices),
                None => Phase::Idle,
            },
            Phase::Idle => match &desired {
                Some(d) => self.spawn(d, now, notices),
                None => Phase::Idle,
            },
            other => other,
        };
    }

    fn spawn(&mut self, key: &StreamKey, now: Instant, notices: &mut Vec<Notice>) -> Phase {
        self.run += 1;
        self.secret = super::new_secret();
        let input = super::ingest_url(&self.spec, key);
        let output = format!(
            "{}?ms_secret={}",
            rtmp_url(&self.spec, &self.spec.output_app, &self.spec.output_stream),
            self.secret
        );
        let name = self.name(key);
        // Without a registry the key is the public name; still no reason
        // to copy it into a log file.
        let stand_in = if StreamKey::parse(&name).as_ref() == Ok(key) {
            key.fingerprint()
        } else {
            name.clone()
        };
        let redact = Redactor::new()
            .hide_key(key, &stand_in)
            .hide(&self.secret, "<secret>");
        match RelayRun::spawn(
            &self.spec,
            self.run,
            key,
            &input,
            &output,
            &redact,
            self.events.clone(),
        ) {
            Ok(relay) => {
                log::info!(
                    "{name} is on air: relay started (pid {}, run {})",
                    relay.pid,
                    relay.run
                );
                self.health.first_output_logged = false;
                Phase::Running(relay)
            }
            Err(e) => {
                log::error!("cannot start relay {:?} for {name}: {e}", self.spec.ffmpeg);
                let why = format!("cannot start ffmpeg: {e}");
                self.failed(key.clone(), why, now, notices)
            }
        }
    }

    /// Count a failure of the on-air key's relay (reported, `why`): back
    /// off, or give the streamer up after too many.
    fn failed(
        &mut self,
        key: StreamKey,
        why: String,
        now: Instant,
        notices: &mut Vec<Notice>,
    ) -> Phase {
        self.health.failures += 1;
        let n = self.health.failures;
        notices.push(Notice::SourceFailed {
            key: key.clone(),
            why,
            failures: n,
        });
        let max = self.spec.max_failures;
        let name = self.name(&key);
        if n >= max {
            log::error!(
                "relay for {name} failed {n} times in a row; skipping to the next streamer"
            );
            notices.push(Notice::GiveUp { key });
            return Phase::Idle;
        }
        let delay = super::backoff(n);
        log::warn!(
            "relay for {name} failed ({n}/{max}); restarting in {:.1} s",
            delay.as_secs_f64()
        );
        self.health.restarts += 1;
        Phase::Backoff {
            key,
            until: now + delay,
        }
    }
}

impl Relay for RestartRelay {
    fn want(&mut self, w: &Want, now: Instant, notices: &mut Vec<Notice>) {
        let old_head = self.want.on_air.as_ref().map(|s| s.key.clone());
        // The on-air publisher left: its relay has nothing to flush, and
        // one SIGTERM would not stop an ffmpeg whose input went idle.
        let gone = w.left.clone();
        self.want = w.clone();
        if old_head.as_ref() != self.want.on_air.as_ref().map(|s| &s.key) {
            self.switch_at = Some(now);
            if self.on_screen.is_some() {
                // The picture goes with the relay that is being stopped.
                notices.push(Notice::Cut {
                    from: self.on_screen.take(),
                    to: None,
                    how: CutKind::Restart,
                    waited: Duration::ZERO,
                });
            }
        }
        self.reconcile(now, gone.as_ref(), notices);
    }

    fn on_event(&mut self, ev: RelayEvent, now: Instant, notices: &mut Vec<Notice>) {
        match ev {
            RelayEvent::Progress { run, total_size } => {
                let names = (self.want.on_air.clone(), self.want.next.clone());
                let name_of = |key: &StreamKey| {
                    [&names.0, &names.1]
                        .into_iter()
                        .flatten()
                        .find(|s| s.key == *key)
                        .map_or_else(|| "a streamer".to_string(), |s| s.name.clone())
                };
                if let Phase::Running(r) = &mut self.phase {
                    if r.run == run {
                        r.last_progress = now;
                        r.total_size = total_size;
                        if !self.health.first_output_logged {
                            self.health.first_output_logged = true;
                            let name = name_of(&r.key);
                            log::info!(
                                "relay for {name} is live: first output {} ms after start",
                                now.duration_since(r.started).as_millis()
                            );
                            let key = r.key.clone();
                            // Live again after failing: recovered.
                            if self.health.failures > 0 && self.health.key.as_ref() == Some(&key) {
                                notices.push(Notice::SourceBack {
                                    key: key.clone(),
                                    failures: self.health.failures,
                                });
                            }
                            notices.push(Notice::Cut {
                                from: self.on_screen.take(),
                                to: Some(key.clone()),
                                how: CutKind::Restart,
                                waited: self
                                    .switch_at
                                    .take()
                                    .map_or(Duration::ZERO, |t| now.duration_since(t)),
                            });
                            self.on_screen = Some(key);
                        }
                        if self.health.failures > 0 && now.duration_since(r.started) > HEALTHY_AFTER
                        {
                            self.health.failures = 0;
                        }
                    }
                }
            }
            RelayEvent::Exited { run, tail } => {
                let phase = std::mem::replace(&mut self.phase, Phase::Idle);
                let desired = self.desired().map(|s| s.key.clone());
                self.phase = match phase {
                    Phase::Running(r) if r.run == run => {
                        let key = r.key.clone();
                        let status = super::describe_exit(r.reap());
                        if self.on_screen.as_ref() == Some(&key) {
                            notices.push(Notice::Cut {
                                from: self.on_screen.take(),
                                to: None,
                                how: CutKind::Restart,
                                waited: Duration::ZERO,
                            });
                        }
                        if desired.as_ref() == Some(&key) {
                            log::warn!(
                                "relay for {} exited unexpectedly ({status}); last ffmpeg output:{}",
                                self.name(&key),
                                super::format_tail(&tail)
                            );
                            let why = format!("relay exited ({status})");
                            self.failed(key, why, now, notices)
                        } else {
                            Phase::Idle
                        }
                    }
                    Phase::Stopping { relay, failed, .. } if relay.run == run => {
                        let key = relay.key.clone();
                        let status = super::describe_exit(relay.reap());
                        log::debug!("relay run {run} stopped ({status})");
                        if failed && desired.as_ref() == Some(&key) {
                            let why =
                                format!("stalled: no output for {} s", self.spec.stall.as_secs());
                            self.failed(key, why, now, notices)
                        } else {
                            Phase::Idle
                        }
                    }
                    other => other,
                };
                self.reconcile(now, None, notices);
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        self.phase = match phase {
            Phase::Running(r) if now.duration_since(r.last_progress) >= self.spec.stall => {
                log::warn!(
                    "relay for {} stalled (no output for {} s); restarting it",
                    self.name(&r.key),
                    self.spec.stall.as_secs()
                );
                r.kill();
                Phase::Stopping {
                    relay: r,
                    kill_at: None,
                    failed: true,
                }
            }
            Phase::Stopping {
                relay,
                kill_at: Some(k),
                failed,
            } if now >= k => {
                log::debug!("relay run {} ignored SIGTERM; sending SIGKILL", relay.run);
                relay.kill();
                Phase::Stopping {
                    relay,
                    kill_at: None,
                    failed,
                }
            }
            other => other,
        };
        if matches!(&self.phase, Phase::Backoff { until, .. } if now >= *until) {
            self.reconcile(now, None, notices);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Running(r) => Some(r.last_progress + self.spec.stall),
            Phase::Stopping {
                kill_at: Some(k), ..
            } => Some(*k),
            Phase::Backoff { until, .. } => Some(*until),
            _ => None,
        }
    }

    fn view(&self) -> RelayView {
        let (state, pid) = match &self.phase {
            Phase::Running(r) if r.total_size > 0 => ("live", Some(r.pid)),
            Phase::Running(r) => ("starting", Some(r.pid)),
            Phase::Stopping { relay, .. } => ("stopping", Some(relay.pid)),
            Phase::Backoff { .. } => ("backoff", None),
            Phase::Idle => ("idle", None),
        };
        let restarts = match self.desired() {
            Some(s) if self.health.key.as_ref() == Some(&s.key) => self.health.restarts,
            _ => 0,
        };
        RelayView {
            state,
            pid,
            restarts,
            on_screen: self.on_screen.clone(),
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Backoff { .. })
    }

    fn output_secret(&self) -> &str {
        &self.secret
    }

    fn set_spec(&mut self, spec: RelaySpec) {
        self.spec = spec;
    }

    fn mode(&self) -> Mode {
        Mode::Restart
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

/// Copy stderr lines into the relay log (rotated at `max` bytes to
/// `<log>.1`) and return the last lines.
pub(super) fn copy_stderr(
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
        let text = redact.apply(String::from_utf8_lossy(&line).trim_end_matches('\r'));
        let text = text.as_str();
        log.write_line(text);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.to_string());
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
            &Redactor::default(),
        );
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 099");
        let cur = std::fs::metadata(&path).unwrap().len();
        assert!(cur <= 300, "log is {cur} bytes");
        assert!(path.with_extension("log.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
