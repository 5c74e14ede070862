//! Bench: cuts to the encoders streamers really use, the old way (no
//! bridge: a planned cut waits for the new streamer's own keyframe, a
//! forced one catches up their whole GOP) and the new way (`[relay] bridge
//! = true`: a re-encode with an IDR every 0.25 s until their own next
//! keyframe), side by side in one run.
//!
//! `bench::long_gop_cuts`; env `MS_BENCH_ROUNDS` (runs per
//! way, alternating, default 1).
//!
//! Real everything: a private nginx-rtmp, the daemon, a decoding ffmpeg
//! viewer of the output. Publishers: ffmpeg with x264's defaults (320x180,
//! 30 fps, a keyframe every 8.3 s, B-frames), GStreamer x264enc (384x216,
//! 60 fps, every 4.2 s, B-frames), ffmpeg with a 2 s GOP (480x270). Cuts:
//! cold (slate → x264 defaults), skip (→ GStreamer), move (→ 2 s GOP),
//! forced twice (the on-air publisher leaves). Per cut: decision → first
//! new picture at the viewer, the cut's own gap (last frame before it →
//! the new streamer's first), the longest gap between decoded frames
//! around it (the streamers' own delivery included), the largest PTS step, the largest audio hole, frames fast-forwarded (`ff`:
//! decoded less than 5 ms of PTS apart). CPU: the daemon's (splicer and
//! in-process readers) over the run, and each bridge encoder's (from
//! /proc at its stop, as the daemon logs it).

use crate::common::long_gop_cuts;
use crate::common::long_gop_cuts::{CutSeen, RunSeen};

fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or("never".into(), |d| {
        format!("{:.0}", d.as_secs_f64() * 1000.0)
    })
}

fn row(c: &CutSeen) -> String {
    format!(
        "{:>7} {:>5} {:>5.0} {:>5.0} {:>5.0} {:>4}",
        ms(c.picture),
        ms(c.cut_gap),
        c.gap.as_secs_f64() * 1000.0,
        c.video_step * 1000.0,
        c.audio_hole * 1000.0,
        c.squeezed
    )
}

fn summary(name: &str, runs: &[RunSeen]) {
    let mut pics: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.picture.map_or(f64::INFINITY, |d| d.as_secs_f64()))
        .collect();
    pics.sort_by(f64::total_cmp);
    let gaps = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.gap.as_secs_f64())
        .fold(0.0, f64::max);
    let cut_gaps = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.cut_gap.map_or(f64::INFINITY, |d| d.as_secs_f64()))
        .fold(0.0, f64::max);
    let steps = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.video_step)
        .fold(0.0, f64::max);
    let holes = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.audio_hole)
        .fold(0.0, f64::max);
    let cpu: f64 = runs.iter().map(|r| r.daemon_cpu).sum();
    let wall: f64 = runs.iter().map(|r| r.wall).sum();
    let bridge_cpu: f64 = runs.iter().flat_map(|r| &r.bridges).map(|b| b.0).sum();
    let bridge_ran: f64 = runs.iter().flat_map(|r| &r.bridges).map(|b| b.1).sum();
    let n_bridges: usize = runs.iter().map(|r| r.bridges.len()).sum();
    let reconnects = runs.iter().filter(|r| r.output_reconnected).count();
    let squeezed = runs
        .iter()
        .flat_map(|r| r.cuts.iter())
        .map(|c| c.squeezed)
        .max()
        .unwrap_or(0);
    println!(
        "{name:<10} picture median {:.2} s, max {:.2} s; longest gap at a cut {cut_gaps:.3} s, around one {:.3} s; largest PTS step {:.3} s; largest audio hole {:.3} s; most frames fast-forwarded {squeezed}; output reconnects {reconnects}",
        pics[pics.len() / 2],
        pics[pics.len() - 1],
        gaps,
        steps,
        holes
    );
    let bridges = if n_bridges == 0 {
        "no bridge runs".to_string()
    } else {
        format!(
            "{n_bridges} bridge runs: {bridge_cpu:.1} s CPU in {bridge_ran:.0} s ({:.1} % of a core while running)",
            100.0 * bridge_cpu / bridge_ran.max(0.001)
        )
    };
    println!(
        "{:<10} daemon CPU {:.1} s in {:.0} s ({:.1} % of a core); {bridges}",
        "",
        cpu,
        wall,
        100.0 * cpu / wall.max(0.001)
    );
}

pub fn main() {
    let rounds: usize = std::env::var("MS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        old.push(long_gop_cuts::run(false));
        new.push(long_gop_cuts::run(true));
    }
    println!();
    println!("cuts to long-GOP streamers, {rounds} run(s) per way; times in ms");
    println!(
        "{:<7} {:<6} | {:>7} {:>5} {:>5} {:>5} {:>5} {:>4} | {:>7} {:>5} {:>5} {:>5} {:>5} {:>4}",
        "cut",
        "to",
        "old:pic",
        "cut",
        "gap",
        "step",
        "hole",
        "ff",
        "new:pic",
        "cut",
        "gap",
        "step",
        "hole",
        "ff"
    );
    for (o, n) in old.iter().zip(&new) {
        for (a, b) in o.cuts.iter().zip(&n.cuts) {
            println!("{:<7} {:<6} | {} | {}", a.kind, a.to, row(a), row(b));
        }
    }
    for r in old.iter().chain(&new) {
        if r.cuts.iter().any(|c| c.picture.is_none()) {
            eprintln!("a cut never showed; the daemon's cut lines:");
            for l in r.log.lines().filter(|l| l.contains("cut to")) {
                eprintln!("  {l}");
            }
        }
    }
    summary("old way", &old);
    summary("new way", &new);
}
