//! Restart vs hand-over, side by side in one run (`bench::handover`;
//! `MS_BENCH_EVENTS` per mode, default 3): one private nginx-rtmp per mode,
//! the release daemon, alice on air (30 fps, keyframe every 2 s) and bob
//! queued, a decoding viewer of the output and a client
//! opening a connection to `/healthz` every 20 ms. Each event:
//!
//! * `restart, own socket`: SIGTERM, wait for the exit, start again (what
//!   systemd's restart did before motherstream.socket);
//! * `restart, socket activation`: the same with the socket held outside
//!   the daemon (as systemd does with motherstream.socket);
//! * `hand-over`: `motherstream upgrade`.
//!
//! Printed per mode: the longest gap between decoded frames at the viewer
//! (frozen picture), the longest time without a frame of the streamer on
//! air (the slate counts as without), the longest gap between audio frames, whether the output was
//! republished (its nginx client id changed), and the hook probes refused,
//! failed or slow.

use std::time::{Duration, Instant};

use crate::common::activated::Activated;
use crate::common::on_air::{self, longest_gap, viewer_on_slate, ALICE, GOP};
use crate::common::prober::{Probe, Prober};
use crate::common::viewer::Frame;
use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    RestartOwnSocket,
    RestartActivated,
    HandOver,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::RestartOwnSocket => "restart, own socket",
            Mode::RestartActivated => "restart, socket activation",
            Mode::HandOver => "hand-over (motherstream upgrade)",
        }
    }
}

/// The daemon under test, however it is started.
enum Under {
    Own(Daemon),
    Activated(Activated),
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

/// Longest gap (s) between frames of one kind within [from, to]; 0 with
/// fewer than two.
fn gap(frames: &[Frame], video: bool, from: Instant, to: Instant) -> f64 {
    longest_gap(frames, video, from, to).map_or(0.0, |d| d.as_secs_f64())
}

fn run(mode: Mode, events: usize) -> Row {
    let (nginx, mut under, port) = match mode {
        Mode::RestartOwnSocket | Mode::HandOver => {
            let Rig { daemon, nginx } =
                Rig::start("[queue]\nslot_seconds = 0\n[log]\nlevel = \"info\"\n");
            let port = daemon.port;
            (nginx, Under::Own(daemon), port)
        }
        Mode::RestartActivated => {
            let mut a = Activated::new(daemon_bin());
            let nginx = Nginx::start(a.port);
            a.configure(&nginx, a.port, "[queue]\nslot_seconds = 0\n");
            a.spawn();
            let port = a.port;
            (nginx, Under::Activated(a), port)
        }
    };
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        nginx.output_client()
    })
    .expect("output published");
    let viewer = viewer_on_slate(&nginx);
    let mut alice = on_air::alice(&nginx, GOP);
    viewer
        .wait_size(ALICE, Instant::now(), Duration::from_secs(15))
        .expect("alice at the viewer");
    let mut bob = on_air::bob(&nginx);
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
        let client = nginx.output_client();
        let t0 = Instant::now();
        match (&mut under, mode) {
            (Under::Own(d), Mode::HandOver) => {
                let out = std::process::Command::new(daemon_bin())
                    .arg("--config")
                    .arg(d.config_path())
                    .arg("upgrade")
                    .output()
                    .expect("motherstream upgrade");
                assert!(
                    out.status.success(),
                    "upgrade: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            (Under::Own(d), _) => {
                d.terminate();
                d.restart();
            }
            (Under::Activated(a), _) => {
                a.terminate();
                a.spawn();
            }
        }
        // Back on the output (the next keyframe), then a margin.
        let _ = viewer.wait_size(ALICE, Instant::now(), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(3000));
        let frames = viewer.frames();
        let to = Instant::now();
        row.video_gaps.push(gap(&frames, true, t0, to));
        let alice_frames: Vec<Frame> = frames
            .iter()
            .filter(|f| f.size == Some(ALICE))
            .cloned()
            .collect();
        row.away.push(gap(&alice_frames, true, t0, to));
        row.audio_gaps.push(gap(&frames, false, t0, to));
        if nginx.output_client() != client {
            row.republished += 1;
        }
    }
    row.probes = prober.finish();
    let _ = (alice.stop(), bob.stop());
    row
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn main() {
    let events: usize = std::env::var("MS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let modes = [
        Mode::RestartOwnSocket,
        Mode::RestartActivated,
        Mode::HandOver,
    ];
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
