//! Cuts between the encoders streamers really use, through a real
//! nginx-rtmp and the real daemon, seen by the decoding viewer: ffmpeg with
//! x264's defaults (keyframe every 8.3 s at 30 fps, B-frames), GStreamer
//! `x264enc` at 60 fps (keyframe every 4.2 s, B-frames), an ffmpeg 2 s-GOP
//! publisher. Used by `it::long_gop` (asserts) and
//! `bench::long_gop_cuts` (old way vs new way table). `MS_CUTS_DEBUG=1`
//! prints every frame gap over 60 ms and decoded-PTS step over 50 ms
//! around each cut.

use std::time::{Duration, Instant};

use super::viewer::Viewer;
use super::*;

pub const SLATE: (u32, u32) = (640, 360);
pub const XDEF: (u32, u32) = (320, 180);
pub const GST: (u32, u32) = (384, 216);
pub const SHORT: (u32, u32) = (480, 270);

#[derive(Debug, Clone)]
pub struct CutSeen {
    pub kind: &'static str,
    pub to: &'static str,
    /// Decision → first decoded frame of the new streamer at the viewer.
    pub picture: Option<Duration>,
    /// Longest gap between decoded video frames around the cut (the
    /// streamers' own delivery included).
    pub gap: Duration,
    /// The cut's own gap: the last frame before the new streamer's first
    /// one → that first one, at the viewer.
    pub cut_gap: Option<Duration>,
    /// Largest video PTS step and audio timeline hole around the cut (s).
    pub video_step: f64,
    pub audio_hole: f64,
    /// Fast-forward: decoded frames less than 5 ms of PTS after the one
    /// before (a catch-up squeezes a buffered GOP 1 ms apart).
    pub squeezed: usize,
}

pub struct RunSeen {
    pub cuts: Vec<CutSeen>,
    pub output_reconnected: bool,
    /// The daemon's CPU seconds over the run (its threads: the splicer and
    /// the in-process readers), and the wall seconds.
    pub daemon_cpu: f64,
    pub wall: f64,
    /// "bridge encoder ... stopped" lines: (CPU s, ran s) per bridge.
    pub bridges: Vec<(f64, f64)>,
    pub log: String,
    /// The daemon was the release build (see `common::release_build`).
    pub release: bool,
}

fn queued(rig: &Rig, key: &str, p: &mut Publisher) -> Instant {
    queued_while(rig, key, Duration::from_secs(15), &mut || {
        if !p.is_running() {
            panic!("{key}'s publisher exited: {}", p.stderr());
        }
        true
    })
}

/// The instant `key` is first seen in the queue, within `timeout`, while
/// `alive` says their publisher runs.
pub fn queued_while(
    rig: &Rig,
    key: &str,
    timeout: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> Instant {
    wait_for(timeout, Duration::from_millis(10), || {
        assert!(alive(), "{key}'s publisher exited");
        rig.daemon
            .queue()
            .iter()
            .any(|n| n == key)
            .then(Instant::now)
    })
    .unwrap_or_else(|| panic!("{key} never queued; log:\n{}", rig.daemon.log()))
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    let t: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    t as f64 / 100.0
}

pub fn measure(
    viewer: &Viewer,
    kind: &'static str,
    to: &'static str,
    size: (u32, u32),
    decided: Instant,
) -> CutSeen {
    let seen = viewer.wait_size(size, decided, Duration::from_secs(12));
    let end = seen.unwrap_or_else(Instant::now) + Duration::from_millis(1500);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    // From half a second before the decision; from the slate's last
    // frame for a cut away from the slate (the slate's own frame gaps are
    // not the cut's).
    let from = match (kind, seen) {
        ("cold", Some(s)) => viewer
            .video()
            .into_iter()
            .filter(|f| f.at < s)
            .map(|f| f.at)
            .next_back()
            .unwrap_or(decided),
        _ => decided - Duration::from_millis(500),
    };
    let c = CutSeen {
        kind,
        to,
        picture: seen.map(|s| s - decided),
        gap: viewer.longest_video_gap(from, end),
        cut_gap: seen.and_then(|s| viewer.gap_into(s)),
        video_step: viewer.largest_video_pts_step(from, end),
        audio_hole: viewer.largest_audio_hole(from, end),
        squeezed: {
            let p: Vec<f64> = viewer
                .video()
                .into_iter()
                .filter(|f| f.at >= from && f.at <= end)
                .filter_map(|f| f.pts)
                .collect();
            p.windows(2).filter(|w| (w[1] - w[0]).abs() < 0.005).count()
        },
    };
    eprintln!("{c:?}");
    if std::env::var_os("MS_CUTS_DEBUG").is_some() {
        let v: Vec<_> = viewer
            .video()
            .into_iter()
            .filter(|f| f.at >= from && f.at <= end)
            .collect();
        for w in v.windows(2) {
            let gap = w[1].at - w[0].at;
            if gap > Duration::from_millis(60) {
                eprintln!(
                    "  gap {gap:?}: {:?}@{:?} -> {:?}@{:?} (arrival +{:?})",
                    w[0].size,
                    w[0].pts,
                    w[1].size,
                    w[1].pts,
                    w[1].at - decided
                );
            }
            if let (Some(a), Some(b)) = (w[0].pts, w[1].pts) {
                if (b - a).abs() > 0.05 {
                    eprintln!(
                        "  step {:.3} s: {:?}@{a:.3} -> {:?}@{b:.3} (arrival +{:?})",
                        b - a,
                        w[0].size,
                        w[1].size,
                        w[1].at - decided
                    );
                }
            }
        }
    }
    c
}

/// One run of six cuts: cold (slate → x264 defaults), skip (→ GStreamer
/// 60 fps), move (→ 2 s GOP), forced (publisher leaves → GStreamer),
/// forced (→ x264 defaults), skip (x264 defaults → 2 s GOP).
pub fn run(bridge: bool) -> RunSeen {
    let (rig, release) = Rig::start_release(
        &format!(
            "[queue]\nslot_seconds = 0\nrejoin_block_seconds = 0\n[relay]\nbridge = {bridge}\n"
        ),
        "the long-GOP cuts",
    );
    let client = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        rig.nginx.output_client()
    })
    .unwrap_or_else(|| panic!("output never published; log:\n{}", rig.daemon.log()));
    let viewer = Viewer::start(&rig.output_url());
    assert!(
        viewer
            .wait_size(SLATE, viewer.started, Duration::from_secs(15))
            .is_some(),
        "no slate at the viewer; log:\n{}",
        rig.daemon.log()
    );
    let pid = rig.daemon.pid();
    let cpu0 = cpu_seconds(pid);
    let t_start = Instant::now();
    let url = |k: &str| rig.nginx.rtmp_url("live", k);
    let mut cuts = Vec::new();

    // Cold: a streamer joins an empty queue; the slate is on.
    let mut xdef = Publisher::start_x264_defaults(&url("xdef"), XDEF, 30, 48_000, 2);
    let decided = queued(&rig, "xdef", &mut xdef);
    cuts.push(measure(&viewer, "cold", "xdef", XDEF, decided));

    let mut gst = Publisher::start_gstreamer(&url("gst"), GST, 60, 44_100);
    queued(&rig, "gst", &mut gst);
    let mut short = Publisher::start_full(&url("short"), SHORT, 30, 60, 44_100, 1);
    queued(&rig, "short", &mut short);
    // gst is next: its reader sees no video until its next keyframe (up to
    // 4.2 s); its bridge starts once that keyframe is 2.5 s old with no
    // second one, and warms up.
    std::thread::sleep(Duration::from_millis(8000));
    let decided = Instant::now();
    let r = rig.daemon.admin("/api/skip", "{}", None);
    assert_eq!(r.status, 200, "skip: {}", r.body);
    cuts.push(measure(&viewer, "skip", "gst", GST, decided));

    // short is next now.
    std::thread::sleep(Duration::from_millis(3000));
    let decided = Instant::now();
    let r = rig
        .daemon
        .admin("/api/move", r#"{"name":"short","position":0}"#, None);
    assert_eq!(r.status, 200, "move: {}", r.body);
    cuts.push(measure(&viewer, "move", "short", SHORT, decided));

    // gst is next again (its bridge restarts from its buffered GOP).
    std::thread::sleep(Duration::from_millis(2500));
    let decided = Instant::now();
    short.stop();
    cuts.push(measure(&viewer, "forced", "gst", GST, decided));

    let mut xdef2 = Publisher::start_x264_defaults(&url("xdef"), XDEF, 30, 48_000, 2);
    queued(&rig, "xdef", &mut xdef2);
    // Its reader's first keyframe comes up to 8.3 s after it subscribed.
    std::thread::sleep(Duration::from_millis(9500));
    let decided = Instant::now();
    gst.stop();
    cuts.push(measure(&viewer, "forced", "xdef", XDEF, decided));

    // From B-frames and an 8.3 s GOP back to a 2 s streamer, bridged.
    let mut short2 = Publisher::start_full(&url("short"), SHORT, 30, 60, 44_100, 1);
    queued(&rig, "short", &mut short2);
    std::thread::sleep(Duration::from_millis(3000));
    let decided = Instant::now();
    let r = rig.daemon.admin("/api/skip", "{}", None);
    assert_eq!(r.status, 200, "skip: {}", r.body);
    cuts.push(measure(&viewer, "skip", "short", SHORT, decided));

    let wall = t_start.elapsed().as_secs_f64();
    let daemon_cpu = cpu_seconds(pid) - cpu0;
    let output_reconnected = rig.nginx.output_client() != Some(client);
    short2.stop();
    xdef2.stop();
    drop(xdef);
    std::thread::sleep(Duration::from_millis(300));
    let log = rig.daemon.log();
    let bridges = bridges(&log);
    print_cut_lines(&log);
    RunSeen {
        cuts,
        output_reconnected,
        daemon_cpu,
        wall,
        bridges,
        log,
        release,
    }
}

/// "bridge encoder ... stopped" lines of a daemon log: (CPU s, ran s).
pub fn bridges(log: &str) -> Vec<(f64, f64)> {
    log.lines()
        .filter(|l| l.contains("bridge encoder for") && l.contains("s of CPU in"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("): ")?;
            let mut w = rest.split_whitespace();
            let cpu: f64 = w.next()?.parse().ok()?;
            let ran: f64 = rest.split(" in ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((cpu, ran))
        })
        .collect()
}

/// The daemon's lines about bridges and cuts, for the test's output.
pub fn print_cut_lines(log: &str) {
    for l in log
        .lines()
        .filter(|l| l.contains("bridge") || l.contains("cut to") || l.contains("took over"))
    {
        eprintln!("  | {l}");
    }
}
