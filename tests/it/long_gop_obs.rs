//! Issue 18 with the publisher streamers really run: a headless OBS 29
//! streaming with its default simple-output settings (x264 veryfast, CBR
//! 2500 kbit/s, keyframe interval auto = 250 frames = 8.3 s at 30 fps,
//! B-frames) to a custom RTMP server, the test nginx. Its scene: a looped
//! local file (moving test picture and a tone) as a media source with its
//! audio in the mix. The other streamer is ffmpeg with x264's defaults
//! (also 8.3 s keyframes). Real nginx-rtmp, the real daemon with its bridge
//! encoders, a decoding viewer of the output.
//!
//! Cuts TO and FROM OBS, two of them at the end of a slot (`[queue]
//! slot_seconds`): cold (slate → OBS), slot end (OBS → x264 defaults),
//! slot end (x264 defaults → OBS), forced (OBS leaves → x264 defaults).
//! Decision time: the call that made it (cold: the source queued; forced:
//! the kill), or for a slot end the last poll of `/queue-json` that still
//! showed the old head (so the measured latency is never shorter than the
//! real one).

use crate::common::long_gop_cuts;
use crate::common::obs;
use std::time::{Duration, Instant};

use crate::common::long_gop_cuts::{measure, CutSeen, XDEF};
use crate::common::obs::{Obs, ObsOpts};
use crate::common::viewer::Viewer;
use crate::common::*;

/// OBS's canvas = its output: a size no other source has, so the viewer
/// tells OBS's picture by its size.
const OBS_SIZE: (u32, u32) = (448, 252);
/// Long enough for the next streamer's bridge to warm up (their first
/// keyframe can come 8.3 s after their reader subscribed), short enough to
/// keep the test near a minute.
const SLOT_SECONDS: u64 = 20;

/// A 10 s clip (moving picture, 440 Hz tone) for OBS's media source.
fn clip(dir: &TempDir) -> String {
    let path = dir.join("clip.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=224x126:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "10", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-c:a", "aac", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.display().to_string()
}

/// Wait for `key`'s slot to end: the last poll that still showed them on
/// air (the decision came after it).
fn slot_end(rig: &Rig, key: &str) -> Instant {
    let mut last = Instant::now();
    wait_for(
        Duration::from_secs(SLOT_SECONDS + 10),
        Duration::from_millis(5),
        || {
            let before = Instant::now();
            if rig.daemon.queue().first().map(String::as_str) == Some(key) {
                last = before;
                None
            } else {
                Some(())
            }
        },
    )
    .unwrap_or_else(|| panic!("{key}'s slot never ended; log:\n{}", rig.daemon.log()));
    last
}

/// The output's nginx client id once published, and a viewer of it that
/// has seen the slate.
fn output_on_slate(rig: &Rig) -> (String, Viewer) {
    let client = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        rig.nginx.output_client()
    })
    .unwrap_or_else(|| panic!("output never published; log:\n{}", rig.daemon.log()));
    let viewer = Viewer::start(&rig.output_url());
    assert!(
        viewer
            .wait_size(
                long_gop_cuts::SLATE,
                viewer.started,
                Duration::from_secs(15)
            )
            .is_some(),
        "no slate at the viewer; log:\n{}",
        rig.daemon.log()
    );
    (client, viewer)
}

/// OBS streaming into the queue as "obs", with the default output
/// settings (the loading item left out).
fn start_obs(rig: &Rig, dir: &TempDir) -> Obs {
    let server = rig.nginx.rtmp_url("live", "");
    // The queue shows guests by name: let the harness map OBS's back.
    remember_key("obs");
    Obs::start(ObsOpts {
        media_url: clip(dir),
        media_audio: true,
        width: OBS_SIZE.0,
        height: OBS_SIZE.1,
        fps: 30,
        omit: vec![obs::LOADING],
        publish: Some((server.trim_end_matches('/').to_string(), "obs".into())),
        ..ObsOpts::default()
    })
}

/// The median of `f` over the cuts.
fn median_of(cuts: &[CutSeen], f: &dyn Fn(&CutSeen) -> f64) -> f64 {
    let mut v: Vec<f64> = cuts.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
}

/// Bounds on every cut: generous for the window around it (one cut can
/// meet a burst of load on this shared machine; the old way froze 10-59
/// s), the 0.1 s for the cut's own gap on the release build.
fn assert_each_cut(cuts: &[CutSeen], release: bool, log: &str) {
    let what = |c: &CutSeen| format!("{} cut to {}", c.kind, c.to);
    for c in cuts {
        let p = c
            .picture
            .unwrap_or_else(|| panic!("{}: never shown; log:\n{log}", what(c)));
        assert!(
            p <= Duration::from_millis(1000),
            "{}: picture after {p:?}",
            what(c)
        );
        assert!(
            c.gap <= Duration::from_millis(400),
            "{}: frozen {:?}",
            what(c),
            c.gap
        );
        let cut_max = Duration::from_millis(if release { 100 } else { 200 });
        assert!(
            c.cut_gap.is_some_and(|g| g <= cut_max),
            "{}: the cut's own frame gap {:?}",
            what(c),
            c.cut_gap
        );
        assert!(
            c.video_step <= 0.25,
            "{}: PTS step {:.3} s",
            what(c),
            c.video_step
        );
        assert!(
            c.audio_hole <= 0.25,
            "{}: audio hole {:.3} s",
            what(c),
            c.audio_hole
        );
    }
}

#[test]
fn cuts_to_and_from_obs_with_default_output_settings_land_within_half_a_second() {
    let _turn = heavy_turn();
    let (rig, release) = Rig::start_release(
        &format!(
            "[queue]\nslot_seconds = {SLOT_SECONDS}\nrejoin_block_seconds = 0\n[relay]\nbridge = true\n"
        ),
        "long_gop_obs",
    );
    let (client, mut viewer) = output_on_slate(&rig);
    let dir = TempDir::new("obs-pub");
    let xdef_url = rig.nginx.rtmp_url("live", "xdef");
    let mut obs = start_obs(&rig, &dir);
    let pid = rig.daemon.pid();
    let cpu0 = long_gop_cuts::cpu_seconds(pid);
    let t0 = Instant::now();
    let mut cuts: Vec<CutSeen> = Vec::new();

    // Cold: OBS starts streaming into an empty queue.
    let obs_pid = obs.pid().expect("OBS runs");
    let mut obs_alive = || pid_alive(obs_pid);
    let decided = long_gop_cuts::queued_while(&rig, "obs", Duration::from_secs(30), &mut obs_alive);
    cuts.push(measure(&viewer, "cold", "obs", OBS_SIZE, decided));

    let mut xdef = Publisher::start_x264_defaults(&xdef_url, XDEF, 30, 48_000, 2);
    long_gop_cuts::queued_while(&rig, "xdef", Duration::from_secs(15), &mut || {
        xdef.is_running()
    });

    // OBS's slot ends; the slot end takes them off (OBS reconnects by
    // itself and queues again).
    let decided = slot_end(&rig, "obs");
    cuts.push(measure(&viewer, "slot end", "xdef", XDEF, decided));
    long_gop_cuts::queued_while(&rig, "obs", Duration::from_secs(20), &mut obs_alive);

    let decided = slot_end(&rig, "xdef");
    cuts.push(measure(&viewer, "slot end", "obs", OBS_SIZE, decided));

    // x264 defaults again, then OBS leaves (killed, as in a crash).
    drop(xdef);
    let mut xdef2 = Publisher::start_x264_defaults(&xdef_url, XDEF, 30, 48_000, 2);
    long_gop_cuts::queued_while(&rig, "xdef", Duration::from_secs(15), &mut || {
        xdef2.is_running()
    });
    // Its reader's first keyframe can come 8.3 s after it subscribed.
    std::thread::sleep(Duration::from_millis(9500));
    let decided = Instant::now();
    obs.kill9();
    cuts.push(measure(&viewer, "forced", "xdef", XDEF, decided));

    let wall = t0.elapsed().as_secs_f64();
    let daemon_cpu = long_gop_cuts::cpu_seconds(pid) - cpu0;
    let output_reconnected = rig.nginx.output_client() != Some(client);
    let viewer_stayed = viewer.is_running();
    let log = rig.daemon.log();
    xdef2.stop();
    drop(obs);
    long_gop_cuts::print_cut_lines(&log);

    assert_each_cut(&cuts, release, &log);
    let median = |f: &dyn Fn(&CutSeen) -> f64| median_of(&cuts, f);
    let picture = median(&|c| c.picture.map_or(f64::INFINITY, |d| d.as_secs_f64()));
    let gap = median(&|c| c.gap.as_secs_f64());
    let step = median(&|c| c.video_step);
    let hole = median(&|c| c.audio_hole);
    eprintln!(
        "medians: picture {picture:.3} s, frame gap {gap:.3} s, PTS step {step:.3} s, audio hole {hole:.3} s; daemon CPU {daemon_cpu:.1} s in {wall:.0} s; bridges (CPU s, ran s) {:?}",
        long_gop_cuts::bridges(&log)
    );
    assert!(picture <= 0.5, "median decision → picture {picture:.3} s");
    // Around the cuts, OBS's own stream: the release build measured medians
    // of 0.081-0.117 s in 5 runs; the longest gaps lay between two
    // consecutive frames of OBS (its PTS 33 ms apart, 0.06-0.13 s between
    // their arrivals) in the 0.5 s before or the 1.5 s after a cut, and a
    // cut's own gap was at most 0.073 s (`MS_CUTS_DEBUG=1` lists them). The headless OBS renders in
    // software on this 2-core machine. The debug build measured
    // 0.069-0.103 s. Bounded at 0.15 s; the cut's own gap is held to the
    // issue's 0.1 s above.
    assert!(gap <= 0.15, "median longest frame gap {gap:.3} s");
    assert!(step <= 0.1, "median PTS step {step:.3} s");
    assert!(hole <= 0.1, "median audio hole {hole:.3} s");
    assert!(!output_reconnected, "the output never reconnects");
    assert!(
        viewer_stayed,
        "the viewer never reconnects (its ffmpeg ran throughout)"
    );
    let obs_name = rig.daemon.guest("obs");
    assert!(
        log.contains(&format!("cut to {obs_name} on a bridge keyframe")),
        "the slot-end cut to OBS went through a bridge; log:\n{log}"
    );
    assert!(
        !log.contains("cannot be spliced"),
        "no valid stream refused; log:\n{log}"
    );
}
