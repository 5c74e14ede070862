//! The relay: what puts the on-air streamer into the output OBS plays.
//!
//! The engine drives it through the [`Relay`] trait: one level-triggered
//! call, [`Relay::want`]
//! ("on air: X, next: Y"), feeds it the events of its threads, and learns
//! back what is on screen ([`Notice`]). Two ways to do it:
//!
//! * `splice` (default, [`splicing`]): one output ffmpeg for the life of
//!   the daemon fed FLV on its stdin; the on-air and the next streamer are
//!   both read all the time ([`source`]); the pure [`splice`] module cuts
//!   to the next one on their keyframe with timestamps that follow the wall
//!   clock; a [`slate`] fills the output while nobody is on air.
//! * `restart` ([`restart`]): one ffmpeg per streamer, killed and started
//!   again at each switch (the first version's relay; `[relay] args`).

pub(crate) mod brb;
mod bridge;
pub mod flv;
pub(crate) mod headers;
pub(crate) mod health;
pub(crate) mod output;
pub(crate) mod restart;
pub(crate) mod slate;
pub mod source;
pub(crate) mod splice;
mod splicing;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::key::StreamKey;

pub(crate) use restart::RestartRelay;
pub(crate) use splicing::{inherit, RelayCarry, SpliceRelay};

use flv::Tag;
use splice::{CutHow, SourceId};

/// Everything the relay's threads report; the engine hands each one back
/// to [`Relay::on_event`].
#[derive(Debug)]
pub enum RelayEvent {
    /// A source delivered a tag.
    Tag {
        source: SourceId,
        tag: Tag,
        arrival: Instant,
    },
    /// A source thread ended.
    SourceEnded { source: SourceId, reason: String },
    /// The output ffmpeg's stderr closed: it is exiting.
    OutputExited { run: u64, tail: Vec<String> },
    /// Restart mode: the relay's output grew (ffmpeg `-progress`).
    Progress { run: u64, total_size: u64 },
    /// Restart mode: the relay's stderr closed.
    Exited { run: u64, tail: Vec<String> },
    /// Splice mode: a bridge encoder (of `source`, process `pid`) output a
    /// tag.
    BridgeTag {
        source: SourceId,
        pid: u32,
        tag: Tag,
        arrival: Instant,
    },
    /// Splice mode: a bridge encoder's output ended (it is exiting).
    BridgeExited {
        source: SourceId,
        pid: u32,
        why: String,
    },
}

/// How to run the relay.
#[derive(Debug, Clone)]
pub(crate) struct RelaySpec {
    pub(crate) mode: Mode,
    pub(crate) ffmpeg: String,
    /// Restart mode: arguments with `{input}` / `{output}`; empty = default.
    pub(crate) args: Vec<String>,
    pub(crate) log_path: PathBuf,
    pub(crate) log_max_bytes: u64,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) ingest_app: String,
    pub(crate) output_app: String,
    pub(crate) output_stream: String,
    pub(crate) stall: Duration,
    pub(crate) stop_grace: Duration,
    pub(crate) max_failures: u32,
    /// Splice mode: the operator's slate file ("" = built in) and its text.
    pub(crate) slate: String,
    pub(crate) slate_text: String,
    /// Where the generated slate clip is written.
    pub(crate) work_dir: PathBuf,
    /// Splice mode: a planned cut waits this long for the new streamer's
    /// keyframe before it catches up (None: their GOP + 1 s).
    pub(crate) cut_timeout: Option<Duration>,
    /// Splice mode: bridge long keyframe intervals (`relay/bridge.rs`).
    pub(crate) bridge: bool,
    /// Splice mode: when a stream counts as stalled or starved.
    pub(crate) health: health::Config,
    /// Splice mode: the operator's be-right-back picture or clip ("" =
    /// a still naming the streamer).
    pub(crate) brb: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Splice,
    Restart,
}

/// A streamer the engine wants relayed: the stream key (what nginx knows
/// them by) and the public name (what logs say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Streamer {
    pub(crate) key: StreamKey,
    pub(crate) name: String,
}

/// What the engine wants on the output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) on_air: Option<Streamer>,
    pub(crate) next: Option<Streamer>,
    /// The key whose publisher just left (its stream has ended: a forced
    /// switch, nothing to wait for or flush).
    pub(crate) left: Option<StreamKey>,
    /// The daemon is stopping: stop everything.
    pub(crate) stopping: bool,
}

/// How a cut was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutKind {
    /// Splice: on the new streamer's keyframe, the old one kept playing.
    Keyframe,
    /// Splice: the old one was gone; caught up from the new one's last keyframe.
    CatchUp,
    /// Splice: no keyframe came in time; caught up.
    TimeoutCatchUp,
    /// Splice: on an IDR of their bridge (a re-encode until their own
    /// next keyframe), the old one kept playing.
    Bridge,
    /// Splice: the old one was gone; caught up from their bridge's last IDR.
    BridgeCatchUp,
    /// Restart mode: a new relay produced its first output (or stopped).
    Restart,
}

impl CutKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CutKind::Keyframe => "on their keyframe",
            CutKind::CatchUp => "catching up from their last keyframe",
            CutKind::TimeoutCatchUp => "catching up (no keyframe in time)",
            CutKind::Bridge => "on a bridge keyframe (re-encoded until their own)",
            CutKind::BridgeCatchUp => "catching up from their bridge's last keyframe",
            CutKind::Restart => "by restarting the relay",
        }
    }
}

impl From<CutHow> for CutKind {
    fn from(h: CutHow) -> CutKind {
        match h {
            CutHow::Keyframe => CutKind::Keyframe,
            CutHow::CatchUp => CutKind::CatchUp,
            CutHow::TimeoutCatchUp => CutKind::TimeoutCatchUp,
            CutHow::Bridge => CutKind::Bridge,
            CutHow::BridgeCatchUp => CutKind::BridgeCatchUp,
        }
    }
}

/// What the relay tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The output now shows `to` (None: the slate / nothing).
    Cut {
        from: Option<StreamKey>,
        to: Option<StreamKey>,
        how: CutKind,
        /// From the decision to the cut.
        waited: Duration,
    },
    /// The on-air streamer's relay failed `max_failures` times in a row:
    /// the engine skips them (a queue change it persists).
    GiveUp { key: StreamKey },
    /// A wanted streamer's stream ended or could not be read; it is read
    /// again with backoff (metrics and notifications).
    SourceFailed {
        key: StreamKey,
        why: String,
        /// Failures in a row, this one included.
        failures: u32,
    },
    /// Their stream delivers again after `failures` failures.
    SourceBack { key: StreamKey, failures: u32 },
    /// The output ffmpeg died or cannot start (OBS sees a reconnect).
    OutputFailed { why: String },
    /// It died or failed to start again before it was back: counted in
    /// the metrics, not told again (one outage, one message).
    OutputFailedAgain,
    /// The output has run a while again after a failure.
    OutputBack,
    /// Splice mode: how a read streamer's stream comes through. Sent when
    /// its state changes (`changed`), else about once a second with fresh
    /// figures; `report.state` None: no longer read.
    Health {
        key: StreamKey,
        report: health::Report,
        changed: bool,
    },
}

/// The relay as the view and STATUS show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RelayView {
    /// "live", "starting", "switching", "slate", "backoff", "stopping", "idle".
    pub(crate) state: &'static str,
    pub(crate) pid: Option<u32>,
    pub(crate) restarts: u32,
    /// Stream key shown on the output right now.
    pub(crate) on_screen: Option<StreamKey>,
}

/// A relay as the engine drives it: the splice relay, the restart relay,
/// or a test's recorder (`engine/memory.rs`).
pub(crate) trait Relay: Send {
    /// What the queue wants on air now (level-triggered).
    fn want(&mut self, w: &Want, now: Instant, notices: &mut Vec<Notice>);
    /// An event of one of the relay's threads.
    fn on_event(&mut self, ev: RelayEvent, now: Instant, notices: &mut Vec<Notice>);
    /// Time passed (called at [`Relay::deadline`]).
    fn tick(&mut self, now: Instant, notices: &mut Vec<Notice>);
    /// When [`Relay::tick`] must be called next.
    fn deadline(&self) -> Option<Instant>;
    fn view(&self) -> RelayView;
    /// Whether every child has been reaped (shutdown waits for it).
    fn stopped(&self) -> bool;
    /// The secret in the output's publish URL, new for every output run:
    /// `on_publish` of the output app must carry it.
    fn output_secret(&self) -> &str;
    fn mode(&self) -> Mode;
    /// A new config: takes effect from the next child start.
    fn set_spec(&mut self, spec: RelaySpec);
    /// Why a hand-over to a new binary cannot happen now.
    fn can_hand_over(&self) -> Result<(), String> {
        Err(
            "only the splice relay ([relay] mode = \"splice\") can be handed over; restart instead"
                .into(),
        )
    }
    /// When a hand-over should exec (the splice relay times it to the
    /// on-air streamer's keyframes).
    fn hand_over_at(&self, now: Instant) -> Instant {
        now
    }
    /// The first step of a hand-over: readers let go of their sessions
    /// (see `splicing::handover`).
    fn detach_sources(&mut self) {}
    /// Let go of the output for a hand-over (see `splicing::handover`).
    fn hand_over(&mut self, _now: Instant) -> Result<RelayCarry, String> {
        Err("only the splice relay can be handed over".into())
    }
}

/// The relay `spec.mode` asks for, reporting on `events`.
pub(crate) fn start(spec: RelaySpec, events: Sender<RelayEvent>) -> Box<dyn Relay> {
    match spec.mode {
        Mode::Splice => Box::new(SpliceRelay::new(spec, events)),
        Mode::Restart => {
            // A splice output handed over to a binary now configured
            // for restart mode: it cannot be used; stop it.
            if let Some(c) = splicing::take_carried() {
                log::warn!(
                    "[relay] mode = \"restart\": the handed-over output ffmpeg (pid {}) is stopped; OBS sees a reconnect",
                    c.output.pid
                );
                crate::sys::signal_group(c.output.pid, libc::SIGKILL);
                crate::sys::fds::kill_and_reap(c.output.pid);
            }
            Box::new(RestartRelay::new(spec, events))
        }
    }
}

/// Restart delay after `n` consecutive failures: 0.5 s doubling to 8 s.
pub(crate) fn backoff(n: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << n.saturating_sub(1).min(4));
    Duration::from_millis(ms.min(8000))
}

/// Every ffmpeg the daemon runs (the output, a restart relay, a bridge
/// encoder, the slate maker) starts here: an empty environment but for
/// [`child_env`], its own process group (a stop signals ffmpeg and
/// whatever it forks), SIGKILL when the daemon dies, stderr piped for the
/// capped log. The caller says what stdin and stdout are.
pub(crate) fn spawn_ffmpeg<I, S>(
    ffmpeg: &str,
    args: I,
    stdin: Stdio,
    stdout: Stdio,
) -> std::io::Result<std::process::Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(ffmpeg);
    cmd.args(args)
        .env_clear()
        .envs(child_env())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0);
    crate::sys::kill_with_parent(&mut cmd);
    cmd.spawn()
}

/// Children get an empty environment but for these: nothing of the
/// daemon's (an OBS password in `Environment=`, say) reaches ffmpeg.
pub(crate) fn child_env() -> Vec<(String, String)> {
    // ffmpeg needs to find itself, its locale and the time zone.
    ["PATH", "LANG", "LC_ALL", "TZ"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

pub(crate) fn describe_exit(r: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match r {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".into(),
        },
        Err(e) => format!("cannot reap: {e}"),
    }
}

pub(crate) fn format_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return " (none)".into();
    }
    tail.iter().map(|l| format!("\n  ffmpeg: {l}")).collect()
}

/// A new output secret (a publish with it is the relay's own).
pub(crate) fn new_secret() -> String {
    crate::secret::random_hex(16).unwrap_or_else(|e| {
        log::error!("cannot read random bytes for the output secret: {e}");
        format!("{:x}", std::process::id() as u64 ^ crate::clock::unix_ms())
    })
}

/// `rtmp://host:port/<ingest app>/<key>`: where a streamer's stream is read.
pub(crate) fn ingest_url(spec: &RelaySpec, key: &StreamKey) -> String {
    // An RTMP URL: the reason `expose` exists.
    rtmp_url(spec, &spec.ingest_app, key.expose())
}

/// `rtmp://host:port/app/stream` with IPv6 hosts bracketed.
pub(crate) fn rtmp_url(spec: &RelaySpec, app: &str, stream: &str) -> String {
    let host = if spec.host.contains(':') {
        format!("[{}]", spec.host)
    } else {
        spec.host.clone()
    };
    format!("rtmp://{host}:{}/{app}/{stream}", spec.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(s, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
