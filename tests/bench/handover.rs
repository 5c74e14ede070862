//! Restart vs hand-over, side by side in one run (`bench::handover`;
//! `MS_BENCH_EVENTS` per mode, default 3; `MS_BENCH_MODES=handover`
//! for the two hand-overs only): one private
//! nginx-rtmp per mode, the release daemon, alice on air (30 fps, keyframe
//! every 2 s) and bob queued, a decoding viewer of the output and a client
//! opening a connection to `/healthz` every 20 ms. Each event:
//!
//! * `restart, own socket`: SIGTERM, wait for the exit, start again (what
//!   systemd's restart did before motherstream.socket);
//! * `restart, socket activation`: the same with the socket held outside
//!   the daemon (as systemd does with motherstream.socket);
//! * `hand-over, sources read again`: `motherstream upgrade` with
//!   `MOTHERSTREAM_HANDOVER_REREAD` set (the sources' RTMP sessions are
//!   dropped and read again after exec: the way before they were carried);
//! * `hand-over, sessions carried`: `motherstream upgrade`.
//!
//! Printed per mode: the longest gap between decoded frames at the viewer
//! (frozen picture), the longest time without a frame of the streamer on
//! air (the slate counts as without), the longest gap between audio frames, whether the output was
//! republished (its nginx client id changed), and the hook probes refused,
//! failed or slow.

use std::time::{Duration, Instant};

use crate::common::activated::Activated;
use crate::common::on_air::{alice, bob, longest_gap, viewer_on_slate, Stage, ALICE, GOP};
use crate::common::prober::{Probe, Prober};
use crate::common::*;

/// `motherstream::relay` is not reachable from the bench: the same name.
const REREAD_ENV: &str = "MOTHERSTREAM_HANDOVER_REREAD";
const EXTRA_TOML: &str = "[queue]\nslot_seconds = 0\n[log]\nlevel = \"info\"\n";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    RestartOwnSocket,
    RestartActivated,
    /// The hand-over as it was before sessions were carried: the sources
    /// read again after exec (`MOTHERSTREAM_HANDOVER_REREAD`).
    HandOverReread,
    HandOver,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::RestartOwnSocket => "restart, own socket",
            Mode::RestartActivated => "restart, socket activation",
            Mode::HandOverReread => "hand-over, sources read again",
            Mode::HandOver => "hand-over, sessions carried",
        }
    }
}

/// The daemon under test, however it is started.
enum Under {
    Own(Stage),
    Activated(Activated, Nginx),
}

impl Under {
    fn nginx(&self) -> &Nginx {
        match self {
            Under::Own(s) => &s.nginx,
            Under::Activated(_, n) => n,
        }
    }
}

struct Row {
    video_gaps: Vec<f64>,
    /// Longest time without a frame of the streamer on air (the slate
    /// counts as without).
    away: Vec<f64>,
    audio_gaps: Vec<f64>,
    republished: usize,
    events: usize,
    probes: Vec<Probe>,
}

fn gap(frames: &[crate::common::viewer::Frame], video: bool, from: Instant, to: Instant) -> f64 {
    longest_gap(frames, video, from, to).map_or(0.0, |d| d.as_secs_f64())
}

/// The daemon started as `mode` wants (the hand-over stage from a copy of
/// the binary, as the test does), and its hook port.
fn start_under(mode: Mode) -> (Under, u16) {
    match mode {
        Mode::RestartOwnSocket | Mode::HandOver | Mode::HandOverReread => {
            // The daemon inherits the bench's environment (and keeps it
            // across exec).
            if mode == Mode::HandOverReread {
                std::env::set_var(REREAD_ENV, "1");
            } else {
                std::env::remove_var(REREAD_ENV);
            }
            let stage = Stage::start(&daemon_bin(), EXTRA_TOML);
            let port = stage.hook_port;
            (Under::Own(stage), port)
        }
        Mode::RestartActivated => {
            let mut a = Activated::new(daemon_bin());
            let nginx = Nginx::start(a.port);
            a.configure(&nginx, a.port, "[queue]\nslot_seconds = 0\n");
            a.spawn();
            wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
                nginx.output_client()
            })
            .expect("output published");
            let port = a.port;
            (Under::Activated(a, nginx), port)
        }
    }
}

/// One restart or hand-over, as `mode` does it.
fn event(under: &mut Under, mode: Mode) {
    match under {
        Under::Own(s) if matches!(mode, Mode::HandOver | Mode::HandOverReread) => {
            let (status, said, _) = s.upgrade();
            assert!(status.success(), "upgrade: {said}");
        }
        Under::Own(s) => {
            s.daemon.terminate();
            s.daemon.restart();
        }
        Under::Activated(a, _) => {
            a.terminate();
            a.spawn();
        }
    }
}

fn run(mode: Mode, events: usize) -> Row {
    let (mut under, port) = start_under(mode);
    let viewer = viewer_on_slate(under.nginx());
    let mut alice = alice(under.nginx(), GOP);
    viewer
        .wait_size(ALICE, Instant::now(), Duration::from_secs(15))
        .expect("alice at the viewer");
    let mut bob = bob(under.nginx());
    std::thread::sleep(Duration::from_millis(4500));
    let prober = Prober::start(port);
    let mut row = Row {
        video_gaps: Vec::new(),
        away: Vec::new(),
        audio_gaps: Vec::new(),
        republished: 0,
        events,
        probes: Vec::new(),
    };
    for _ in 0..events {
        let client = under.nginx().output_client();
        let t0 = Instant::now();
        event(&mut under, mode);
        // Back on the output (the next keyframe), then a margin.
        let _ = viewer.wait_size(ALICE, Instant::now(), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(3000));
        let frames = viewer.frames();
        let to = Instant::now();
        row.video_gaps.push(gap(&frames, true, t0, to));
        let alice_frames: Vec<crate::common::viewer::Frame> = frames
            .iter()
            .filter(|f| f.size == Some(ALICE))
            .cloned()
            .collect();
        row.away.push(gap(&alice_frames, true, t0, to));
        row.audio_gaps.push(gap(&frames, false, t0, to));
        if under.nginx().output_client() != client {
            row.republished += 1;
        }
    }
    row.probes = prober.finish();
    if let Under::Own(s) = &under {
        for l in
            s.daemon.log().lines().filter(|l| {
                l.contains("handing over") || l.contains("hand-over: first tag written")
            })
        {
            println!("  {}: {l}", mode.name());
        }
    }
    let _ = (alice.stop(), bob.stop());
    row
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: usize = std::env::var("MS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // MS_BENCH_MODES=handover: only the two hand-overs.
    let only_handovers = std::env::var("MS_BENCH_MODES").is_ok_and(|m| m == "handover");
    let modes: &[Mode] = if only_handovers {
        &[Mode::HandOverReread, Mode::HandOver]
    } else {
        &[
            Mode::RestartOwnSocket,
            Mode::RestartActivated,
            Mode::HandOverReread,
            Mode::HandOver,
        ]
    };
    let rows: Vec<(Mode, Row)> = modes.iter().map(|&m| (m, run(m, events))).collect();
    println!(
        "\n{:<34} {:>18} {:>18} {:>18} {:>12} {:>22} {:>12}",
        "mode",
        "frozen picture s",
        "streamer gone s",
        "audio gap s",
        "republished",
        "hooks refused/failed",
        "slowest hook"
    );
    for (mode, r) in &rows {
        let refused = r
            .probes
            .iter()
            .filter(|p| matches!(&p.outcome, Err(e) if e.contains("refused")))
            .count();
        let failed = r
            .probes
            .iter()
            .filter(|p| !matches!(p.outcome, Ok(200)))
            .count();
        let slowest = r.probes.iter().map(|p| p.took).max().unwrap_or_default();
        let max = |v: &Vec<f64>| v.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<34} {:>8.2} (max {:>4.2}) {:>8.2} (max {:>4.2}) {:>8.2} (max {:>4.2}) {:>6}/{:<5} {:>9}/{:<4} of {:<5} {:>9.0} ms",
            mode.name(),
            median(r.video_gaps.clone()),
            max(&r.video_gaps),
            median(r.away.clone()),
            max(&r.away),
            median(r.audio_gaps.clone()),
            max(&r.audio_gaps),
            r.republished,
            r.events,
            refused,
            failed,
            r.probes.len(),
            slowest.as_secs_f64() * 1000.0
        );
    }
}
