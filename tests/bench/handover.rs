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
use crate::common::prober::{Probe, Prober};
use crate::common::viewer::Viewer;
use crate::common::*;

const FPS: u32 = 30;
/// `motherstream::relay` is not reachable from the bench: the same name.
const REREAD_ENV: &str = "MOTHERSTREAM_HANDOVER_REREAD";
const GOP: u32 = 60;

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

fn config(nginx: &Nginx, dir: &std::path::Path, port: u16) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[rtmp]\nport = {}\ncontrol_url = \"http://127.0.0.1:{nh}/control\"\n\
         stat_url = \"http://127.0.0.1:{nh}/stat\"\n[state]\ndir = \"{}\"\n[relay]\nlog_file = \"{}\"\n\
         [log]\nlevel = \"info\"\ntarget = \"stderr\"\n[queue]\nslot_seconds = 0\n",
        nginx.rtmp_port,
        dir.join("state").display(),
        dir.join("ffmpeg.log").display(),
        nh = nginx.http_port
    )
}

fn gap(frames: &[crate::common::viewer::Frame], video: bool, from: Instant, to: Instant) -> f64 {
    let t: Vec<Instant> = frames
        .iter()
        .filter(|f| f.size.is_some() == video && f.at >= from && f.at <= to)
        .map(|f| f.at)
        .collect();
    t.windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .fold(0.0, f64::max)
}

/// A private nginx-rtmp and the daemon on it, started as `mode` wants;
/// the daemon's hook port.
fn start_under(mode: Mode) -> (Nginx, Under, u16) {
    match mode {
        Mode::RestartOwnSocket | Mode::HandOver | Mode::HandOverReread => {
            // The daemon inherits the bench's environment (and keeps it
            // across exec).
            if mode == Mode::HandOverReread {
                std::env::set_var(REREAD_ENV, "1");
            } else {
                std::env::remove_var(REREAD_ENV);
            }
            let hook_port = free_port();
            let nginx = Nginx::start(hook_port);
            let d = Daemon::start(DaemonOpts {
                listen: format!("127.0.0.1:{hook_port}"),
                rtmp_port: nginx.rtmp_port,
                nginx_http_port: nginx.http_port,
                extra_toml: "[queue]\nslot_seconds = 0\n[log]\nlevel = \"info\"\n".into(),
                bin: daemon_bin(),
                hook_secret: Some(nginx.hook_secret.clone()),
            });
            (nginx, Under::Own(d), hook_port)
        }
        Mode::RestartActivated => {
            let mut a = Activated::new(daemon_bin());
            let nginx = Nginx::start(a.port);
            std::fs::create_dir_all(a.dir.join("state")).expect("state dir");
            std::fs::write(a.dir.join("state/hook.secret"), &nginx.hook_secret).expect("secret");
            std::fs::write(a.config_path(), config(&nginx, a.dir.path(), a.port)).expect("config");
            a.spawn();
            let port = a.port;
            (nginx, Under::Activated(a), port)
        }
    }
}

fn run(mode: Mode, events: usize) -> Row {
    let (nginx, mut under, port) = start_under(mode);
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        nginx.output_client()
    })
    .expect("output published");
    let viewer = Viewer::start(&nginx.rtmp_url("motherstream", "live"));
    viewer
        .wait_size((640, 360), viewer.started, Duration::from_secs(15))
        .expect("slate at the viewer");
    let mut alice = Publisher::start_full(
        &nginx.rtmp_url("live", "alice"),
        (320, 180),
        FPS,
        GOP,
        48_000,
        2,
    );
    viewer
        .wait_size((320, 180), Instant::now(), Duration::from_secs(15))
        .expect("alice at the viewer");
    let mut bob = Publisher::start_full(
        &nginx.rtmp_url("live", "bob"),
        (640, 360),
        FPS,
        GOP,
        44_100,
        1,
    );
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
            (Under::Own(d), Mode::HandOver | Mode::HandOverReread) => {
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
        let _ = viewer.wait_size((320, 180), Instant::now(), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(3000));
        let frames = viewer.frames();
        let to = Instant::now();
        row.video_gaps.push(gap(&frames, true, t0, to));
        let alice_frames: Vec<crate::common::viewer::Frame> = frames
            .iter()
            .filter(|f| f.size == Some((320, 180)))
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
