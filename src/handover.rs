//! `motherstream upgrade`: the running daemon hands the show to the binary
//! on disk without a visible break, in place (same PID), as nginx's binary
//! upgrade and systemd's `daemon-reexec` do.
//!
//! How (the engine drives it, `engine/upgrade.rs`): the admin call is
//! answered, the HTTP accept loop pauses (new connections wait in the
//! kernel's queue), the requests in flight are answered, the relay lets go
//! of its output ffmpeg (queued bytes written, pipes kept), the live state
//! goes into a memfd as JSON with a format number, the descriptors that
//! carry the show lose FD_CLOEXEC (the HTTP socket, ffmpeg's stdin and
//! stderr, the memfd), and the process `execve`s the binary at the path it
//! was started from. The new image finds [`STATE_FD`] and
//! [`crate::listen::HANDOVER_LISTEN_FD`] in its environment, adopts them and
//! the output ffmpeg (still its child), and sends READY=1 with its version.
//!
//! Queue, registry, slots and blocks are on disk already (durable before
//! acknowledged); the memfd carries only what lives in memory.
//! A state this binary cannot read (another format) is a fallback to a
//! plain restart: the carried ffmpeg is stopped and a new output started,
//! with one log line saying so; the HTTP socket is kept either way.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// One `/metrics` counter's value (one label set) in a hand-over's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CounterCarry {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

/// One `/metrics` histogram's state (one label set) in a hand-over's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct HistogramCarry {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    /// (upper bound, cumulative count) of each bucket but +Inf.
    pub(crate) buckets: Vec<(f64, u64)>,
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

use serde::{Deserialize, Serialize};

use crate::relay::RelayCarry;
use obs::ObsCarry;
use recording::RecordingCarry;

pub(crate) mod obs;
pub(crate) mod recording;

/// Environment variable naming the memfd with the carried state.
pub(crate) const STATE_FD: &str = "MOTHERSTREAM_HANDOVER_FD";
/// The state format this binary writes and reads. A change of meaning of
/// any field needs a new number (the reader then falls back to a restart).
pub(crate) const FORMAT: u32 = 1;

/// The version this binary reports (`--version`, /api/status, /healthz,
/// STATUS, the log): `MOTHERSTREAM_VERSION` at build time, else the
/// package version.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        #[cfg(feature = "test-hooks")]
        if let Some(v) = test_version() {
            return v;
        }
        option_env!("MOTHERSTREAM_VERSION")
            .unwrap_or(env!("CARGO_PKG_VERSION"))
            .to_string()
    })
}

/// Tests run two "versions" of one build: `<binary>.test-version` next to
/// the executable, if present, names this one.
#[cfg(feature = "test-hooks")]
fn test_version() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut p = exe.into_os_string();
    p.push(".test-version");
    let v = std::fs::read_to_string(PathBuf::from(p)).ok()?;
    Some(v.trim().to_string()).filter(|v| !v.is_empty())
}

/// What the engine itself carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EngineCarry {
    pub(crate) started_at_ms: u64,
    pub(crate) cuts: u64,
    pub(crate) last_cut: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Carried {
    pub(crate) format: u32,
    /// The version that wrote it.
    pub(crate) from_version: String,
    /// Hand-overs since the daemon was started (this one included).
    pub(crate) handovers: u32,
    pub(crate) engine: EngineCarry,
    pub(crate) relay: RelayCarry,
    /// `/metrics` counters (added in format 1 with a default: a state
    /// without them starts the counters at 0).
    #[serde(default)]
    pub(crate) metrics: Vec<CounterCarry>,
    /// The recorder's state (`[recording]` on; added in format 1 with a
    /// default: none is a recorder that starts afresh).
    #[serde(default)]
    pub(crate) recording: Option<RecordingCarry>,
    /// The OBS websocket session (added in format 1 with a default: none
    /// is a new connection).
    #[serde(default)]
    pub(crate) obs: Option<ObsCarry>,
    /// `/metrics` histograms (added in format 1 with a default: a state
    /// without them starts the histograms empty).
    #[serde(default)]
    pub(crate) histograms: Vec<HistogramCarry>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// Parse a carried state; Err says why it cannot be used.
pub(crate) fn parse(text: &str) -> Result<Carried, String> {
    let f: FormatOnly = serde_json::from_str(text)
        .map_err(|e| format!("not a hand-over state this binary knows ({e})"))?;
    if f.format != FORMAT {
        return Err(format!(
            "state format {} (this binary reads format {FORMAT})",
            f.format
        ));
    }
    serde_json::from_str(text)
        .map_err(|e| format!("format {FORMAT} state that does not parse: {e}"))
}

/// The state as a memfd that survives `execve` (FD_CLOEXEC cleared).
pub(crate) fn write(c: &Carried) -> Result<std::fs::File, String> {
    let text = serde_json::to_vec(c).map_err(|e| format!("cannot encode the state: {e}"))?;
    let mut f = crate::sys::fds::memfd("motherstream-handover")
        .map_err(|e| format!("cannot create a memfd: {e}"))?;
    f.write_all(&text)
        .and_then(|_| f.rewind())
        .map_err(|e| format!("cannot write the state to the memfd: {e}"))?;
    crate::sys::fds::set_cloexec(f.as_raw_fd(), false)
        .map_err(|e| format!("cannot keep the memfd across exec: {e}"))?;
    Ok(f)
}

/// What this process inherited from a hand-over, read once at start.
#[derive(Default)]
struct Inherited {
    engine: Option<EngineCarry>,
    metrics: Option<Vec<CounterCarry>>,
    recording: Option<RecordingCarry>,
    obs: Option<ObsCarry>,
    histograms: Option<Vec<HistogramCarry>>,
    handovers: u32,
    from_version: Option<String>,
}

static INHERITED: Mutex<Option<Inherited>> = Mutex::new(None);

/// How the daemon was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A normal start.
    Fresh,
    /// Handed over from `from_version`.
    HandedOver {
        from_version: String,
        handovers: u32,
    },
    /// A hand-over whose state could not be used: a restart.
    FellBack { why: String },
}

/// Read the carried state named by the environment (once, at start, after
/// the logger and before any thread). On a state it cannot read, the
/// carried output ffmpeg (a child of this process) is stopped: the relay
/// then starts afresh, as after a restart.
pub fn inherit() -> Start {
    let Some(fd) = std::env::var(STATE_FD)
        .ok()
        .as_deref()
        .and_then(crate::listen::parse_fd)
    else {
        return Start::Fresh;
    };
    let text = crate::sys::fds::adopt_fd(fd)
        .map(std::fs::File::from)
        .and_then(|mut f| {
            let mut s = String::new();
            f.read_to_string(&mut s).map(|_| s)
        })
        .map_err(|e| format!("cannot read the hand-over state (descriptor {fd}): {e}"));
    match text.and_then(|t| parse(&t)) {
        Ok(c) => {
            let start = Start::HandedOver {
                from_version: c.from_version.clone(),
                handovers: c.handovers,
            };
            crate::handover_timing::handed_over(c.relay.let_go_mono_ms);
            crate::relay::inherit(c.relay);
            if let Ok(mut g) = INHERITED.lock() {
                *g = Some(Inherited {
                    engine: Some(c.engine),
                    metrics: Some(c.metrics),
                    recording: c.recording,
                    obs: c.obs,
                    histograms: Some(c.histograms),
                    handovers: c.handovers,
                    from_version: Some(c.from_version),
                });
            }
            start
        }
        Err(why) => {
            FELL_BACK.store(true, std::sync::atomic::Ordering::Relaxed);
            for pid in crate::sys::fds::own_children() {
                crate::sys::signal_group(pid, libc::SIGKILL);
                crate::sys::fds::kill_and_reap(pid);
            }
            close_carried_fds();
            Start::FellBack { why }
        }
    }
}

/// A state that cannot be read does not say which descriptors it carried
/// (the output ffmpeg's pipes, the sources' sockets): close every one this
/// image inherited but the standard streams and the HTTP socket (handed
/// over, or systemd's). Run before any thread starts, so everything open
/// without FD_CLOEXEC was inherited.
fn close_carried_fds() {
    let keep_listen = std::env::var(crate::listen::HANDOVER_LISTEN_FD)
        .ok()
        .as_deref()
        .and_then(crate::listen::parse_fd);
    let systemd: std::ops::Range<i32> = match (
        std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok()),
        std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<i32>().ok()),
    ) {
        (Some(pid), Some(n)) if pid == std::process::id() => 3..3 + n.max(0),
        _ => 0..0,
    };
    for fd in crate::sys::fds::without_cloexec() {
        if fd > 2 && Some(fd) != keep_listen && !systemd.contains(&fd) {
            log::debug!("hand-over fallback: closing inherited descriptor {fd}");
            crate::sys::fds::close_inherited(fd);
        }
    }
}

static FELL_BACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process was handed a state it could not use and restarted instead.
pub(crate) fn fell_back() -> bool {
    FELL_BACK.load(std::sync::atomic::Ordering::Relaxed)
}

fn with<T>(f: impl FnOnce(&mut Inherited) -> T) -> Option<T> {
    let mut g = INHERITED.lock().ok()?;
    g.as_mut().map(f)
}

/// The engine's carried state, once.
pub(crate) fn take_engine() -> Option<EngineCarry> {
    with(|i| i.engine.take()).flatten()
}

/// The metrics counters carried over, once.
pub(crate) fn take_metrics() -> Option<Vec<CounterCarry>> {
    with(|i| i.metrics.take()).flatten()
}

/// The recorder's carried state, once.
pub fn take_recording() -> Option<RecordingCarry> {
    with(|i| i.recording.take()).flatten()
}

/// The carried OBS session, once (its socket is this process's to close).
pub(crate) fn take_obs() -> Option<ObsCarry> {
    with(|i| i.obs.take()).flatten()
}

/// The metrics histograms carried over, once.
pub(crate) fn take_histograms() -> Option<Vec<HistogramCarry>> {
    with(|i| i.histograms.take()).flatten()
}

/// Hand-overs so far (0: started afresh).
pub(crate) fn handovers() -> u32 {
    with(|i| i.handovers).unwrap_or(0)
}

/// The version this process was handed over from, if it was.
pub fn from_version() -> Option<String> {
    with(|i| i.from_version.clone()).flatten()
}

/// The HTTP side and the exec, as the engine drives a hand-over (the
/// daemon's is in `main.rs`).
pub trait Stage: Send + Sync {
    /// Stop accepting connections (they queue in the kernel).
    fn pause(&self) -> Result<(), String>;
    /// Accept again (the hand-over was abandoned).
    fn resume(&self);
    /// Connections open on the HTTP side (requests being read, answered,
    /// or idle keep-alive ones).
    fn open_connections(&self) -> usize;
    /// No HTTP worker is handling a request and no answer waits to be
    /// written.
    fn idle(&self) -> bool;
    /// `execve` with `state`; on this thread when `here` (it started the
    /// output ffmpeg, whose PR_SET_PDEATHSIG watches it), else on the main
    /// thread. Returns only on failure.
    fn exec(&self, state: std::fs::File, here: bool) -> String;
}

/// The binary to exec and its arguments, as this process was started
/// (`/proc/self/exe` reads "… (deleted)" once dpkg replaced the file; the
/// path it was started from names the new one).
#[derive(Debug, Clone)]
pub struct Exe {
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<String>,
}

impl Exe {
    pub fn current() -> Option<Exe> {
        let path = std::env::current_exe().ok()?;
        let s = path.to_string_lossy();
        let path = PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string());
        Some(Exe {
            path,
            args: std::env::args().collect(),
        })
    }
}

/// Replace this process with `exe`, handing over `state` and the HTTP
/// socket `listener`. Returns only on failure (the descriptors get their
/// close-on-exec back).
pub fn exec(exe: &Exe, state: &std::fs::File, listener: &std::net::TcpListener) -> String {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&exe.path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => return format!("{} is not an executable file", exe.path.display()),
        Err(e) => return format!("{}: {e}", exe.path.display()),
    }
    let lfd = listener.as_raw_fd();
    if let Err(e) = crate::sys::fds::set_cloexec(lfd, false) {
        return format!("cannot keep the HTTP socket across exec: {e}");
    }
    // systemd's LISTEN_* named this process's first image; the socket now
    // travels under our own name (see `listen`).
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "LISTEN_PID" | "LISTEN_FDS" | "LISTEN_FDNAMES" | STATE_FD
            ) && k != crate::listen::HANDOVER_LISTEN_FD
        })
        .collect();
    env.push((STATE_FD.into(), state.as_raw_fd().to_string()));
    env.push((crate::listen::HANDOVER_LISTEN_FD.into(), lfd.to_string()));
    let err = crate::sys::fds::execve(&exe.path, &exe.args, &env);
    let _ = crate::sys::fds::set_cloexec(lfd, true);
    format!("execve {}: {err}", exe.path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::output::OutputCarry;
    use crate::relay::splice::Timeline;

    fn sample() -> Carried {
        Carried {
            format: FORMAT,
            from_version: "1.0.0".into(),
            handovers: 2,
            engine: EngineCarry {
                started_at_ms: 1,
                cuts: 3,
                last_cut: Some("cut to alice".into()),
            },
            relay: RelayCarry {
                output: OutputCarry {
                    pid: 42,
                    run: 1,
                    stdin_fd: 7,
                    stderr_fd: 8,
                    sent: 1000,
                    uptime_ms: 5000,
                    spawner_tid: 42,
                },
                secret: "s".into(),
                epoch_mono_ms: 10,
                timeline: Timeline {
                    base: Some(-5),
                    last_video: Some(100),
                    last_audio: Some(101),
                    last_any: Some(101),
                    max_pts: Some(140),
                },
                on_screen: Some("alice".into()),
                output_restarts: 0,
                output_failures: 0,
                on_screen_gop_ms: Some(2000),
                let_go_mono_ms: 5,
                resume_lag_ms: Some(120),
                sources: Vec::new(),
            },
            metrics: vec![CounterCarry {
                name: "motherstream_hooks_total".into(),
                labels: vec![("endpoint".into(), "publish".into())],
                value: 3.0,
            }],
            recording: Some(RecordingCarry {
                recorder: "motherstream".into(),
                on_screen: None,
                heading: None,
                files: vec![recording::RecordingFile {
                    key: crate::key::StreamKey::parse(&"a".repeat(32)).unwrap(),
                    name: "alice".into(),
                    shown_ms: Some(4),
                    stopped_ms: None,
                    path: "/spool/a.flv".into(),
                }],
                space_low: None,
                start_failing: false,
                retry_in_ms: None,
                recent: Vec::new(),
            }),
            obs: Some(ObsCarry {
                fd: 9,
                host: "127.0.0.1".into(),
                port: 4455,
                connections: 1,
                pending: vec![0x81, 0x7e],
                on_air: Some("alice".into()),
                next_up: None,
                switch_seq: 3,
                slot_ends_at_ms: Some(5),
            }),
            histograms: vec![HistogramCarry {
                name: "motherstream_hook_latency_seconds".into(),
                labels: vec![("endpoint".into(), "publish".into())],
                buckets: vec![(0.005, 2), (0.01, 3)],
                sum: 0.021,
                count: 3,
            }],
        }
    }

    #[test]
    fn state_round_trips() {
        let c = sample();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn other_formats_and_garbage_are_refused_with_the_reason() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format"] = 2.into();
        let e = parse(&v.to_string()).unwrap_err();
        assert!(e.contains("format 2") && e.contains("format 1"), "{e}");
        assert!(parse("not json")
            .unwrap_err()
            .contains("not a hand-over state"));
        let e = parse(r#"{"format":1,"relay":{}}"#).unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
    }

    /// A state written before sessions were carried (no `sources`) is
    /// read: its sources are read again (and a recorder without a carried
    /// state starts afresh).
    #[test]
    fn a_state_without_carried_sessions_or_metrics_still_parses() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["relay"].as_object_mut().unwrap().remove("sources");
        v.as_object_mut().unwrap().remove("metrics");
        v.as_object_mut().unwrap().remove("recording");
        v.as_object_mut().unwrap().remove("obs");
        v.as_object_mut().unwrap().remove("histograms");
        let mut want = sample();
        want.metrics.clear();
        want.recording = None;
        want.obs = None;
        want.histograms.clear();
        assert_eq!(parse(&v.to_string()).unwrap(), want);
    }

    #[test]
    fn memfd_holds_the_state_and_survives_exec() {
        let f = write(&sample()).unwrap();
        let flags = crate::sys::fds::set_cloexec(f.as_raw_fd(), false);
        assert!(flags.is_ok());
        let mut s = String::new();
        (&f).read_to_string(&mut s).unwrap();
        assert_eq!(parse(&s).unwrap(), sample());
    }
}
