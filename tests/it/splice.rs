//! Gapless handover against real nginx-rtmp and ffmpeg publishers: one
//! output that never reconnects, planned cuts on the next streamer's
//! keyframe, forced cuts that catch up, the slate while nobody is on air.
//! Publishers send a keyframe every 2 s (what Twitch asks streamers for)
//! at different sizes and sample rates, so the decoding viewer tells who
//! is on the output.

use std::time::{Duration, Instant};

use crate::common::viewer::Viewer;
use crate::common::*;

const FPS: u32 = 30;
const GOP: u32 = 60; // 2 s
const A: (u32, u32) = (320, 180);
const B: (u32, u32) = (640, 360);
const C: (u32, u32) = (256, 144);
/// The slate's picture size.
const SLATE: (u32, u32) = (640, 360);

fn publisher(rig: &Rig, key: &str, size: (u32, u32), rate: u32, ch: u32) -> Publisher {
    Publisher::start_full(&rig.nginx.rtmp_url("live", key), size, FPS, GOP, rate, ch)
}

fn join(rig: &Rig, key: &str, size: (u32, u32), rate: u32, ch: u32) -> Publisher {
    let mut p = publisher(rig, key, size, rate, ch);
    let ok = wait_for(Duration::from_secs(15), Duration::from_millis(20), || {
        if !p.is_running() {
            return Some(false);
        }
        rig.daemon.queue().iter().any(|n| n == key).then_some(true)
    });
    assert_eq!(ok, Some(true), "{key} did not join: {}", p.stderr());
    p
}

fn wait_output(rig: &Rig) -> String {
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        rig.nginx.output_client()
    })
    .unwrap_or_else(|| panic!("output never published; log:\n{}", rig.daemon.log()))
}

fn on_screen(rig: &Rig) -> Option<String> {
    rig.daemon.status()["on_air"]["name"]
        .as_str()
        .map(str::to_string)
}

/// The gaps of `slate_first_then_planned_cuts_on_keyframes_without_gaps`
/// (sorted around the cuts, in order at them).
fn assert_planned_cut_gaps(gaps: &[Duration], cut_gaps: &[Duration], release: bool) {
    // Every cut here goes through a bridge (2 s keyframes are bridged
    // since `BRIDGE_OVER_GOP_MS` is 0.5 s; passed through, a planned cut
    // waited 1.1-2.1 s for their keyframe). The cut's own gap (the last
    // old picture → the first new one) is held to the issue's 0.1 s on the
    // release build. Around the cut, the sources' own delivery counts too:
    // bob's publisher sends some keyframes 75 ms after the frame before
    // (33 ms otherwise), which shows whole when he is on air through his
    // bridge then. Release build, 13 quiet runs of 10 cuts: medians
    // 0.042-0.047 s, the longest 0.055-0.107 s (over 0.1 s once, right
    // after another heavy test). The debug build's longest were 0.051-0.115
    // s in 23 runs (its turn for a queue change took 38-98 ms).
    let (cut_max, around_max) = if release { (100, 150) } else { (200, 200) };
    assert!(
        cut_gaps
            .iter()
            .all(|g| *g <= Duration::from_millis(cut_max)),
        "gaps at the cuts (all ≤ {cut_max} ms): {cut_gaps:?}"
    );
    assert!(
        gaps[gaps.len() / 2] <= Duration::from_millis(60)
            && gaps[gaps.len() - 1] <= Duration::from_millis(around_max),
        "longest gaps between decoded frames around the cuts (median ≤ 60 ms, all ≤ {around_max} ms): {gaps:?}"
    );
}

#[test]
fn slate_first_then_planned_cuts_on_keyframes_without_gaps() {
    let _turn = heavy_turn();
    let (rig, release) = Rig::start_release("[queue]\nslot_seconds = 0\n", "splice::slate_first");
    let client = wait_output(&rig);
    let viewer = Viewer::start(&rig.output_url());
    // Nobody on air: the slate plays.
    assert!(
        viewer
            .wait_size(SLATE, viewer.started, Duration::from_secs(15))
            .is_some(),
        "the slate should be on the output; log:\n{}",
        rig.daemon.log()
    );
    let _a = join(&rig, "alice", A, 48_000, 2);
    let t = Instant::now();
    assert!(
        viewer.wait_size(A, t, Duration::from_secs(8)).is_some(),
        "alice should be cut in from the slate; status {}",
        rig.daemon.status()
    );
    let _b = join(&rig, "bob", B, 44_100, 1);
    // Keys stay out of every argv: the sources are read in-process, and
    // the output ffmpeg's command line names only the output.
    let out_pid = rig.daemon.status()["on_air"]["relay"]["pid"]
        .as_u64()
        .unwrap_or(0);
    let argv = std::fs::read(format!("/proc/{out_pid}/cmdline")).unwrap_or_default();
    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
    assert!(argv.contains("motherstream/live"), "output argv: {argv}");
    assert!(
        !argv.contains("alice") && !argv.contains("bob"),
        "output argv: {argv}"
    );
    // Bob is second in line: read already. Ten planned switches by moving
    // the second streamer on air (nobody is disconnected).
    let (mut gaps, mut cut_gaps) = (Vec::new(), Vec::new());
    let mut sizes = [(A, "alice"), (B, "bob")].into_iter().cycle();
    sizes.next();
    for i in 0..10 {
        let (size, name) = sizes.next().unwrap_or((A, "alice"));
        let t0 = Instant::now();
        let r = rig.daemon.admin(
            "/api/move",
            &format!(r#"{{"name":"{name}","position":0}}"#),
            None,
        );
        assert_eq!(r.status, 200, "move {i}: {}", r.body);
        let seen = viewer
            .wait_size(size, t0, Duration::from_secs(6))
            .unwrap_or_else(|| {
                panic!(
                    "switch {i}: {name} never on the output; {}",
                    rig.daemon.status()
                )
            });
        // Until the cut the old streamer stays on air.
        std::thread::sleep(Duration::from_millis(400));
        let gap = viewer.longest_video_gap(t0, Instant::now());
        gaps.push(gap);
        cut_gaps.push(viewer.gap_into(seen).unwrap_or(Duration::MAX));
        assert_eq!(
            on_screen(&rig).as_deref(),
            Some(name),
            "status names who is on screen"
        );
        eprintln!(
            "switch {i}: {name} on screen {:.2} s after the move, longest frame gap {:.3} s, at the cut {:?}",
            (seen - t0).as_secs_f64(),
            gap.as_secs_f64(),
            cut_gaps.last()
        );
    }
    gaps.sort();
    eprintln!(
        "planned cuts: median longest gap {:?}, max {:?}",
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
    assert_planned_cut_gaps(&gaps, &cut_gaps, release);
    assert_eq!(
        rig.nginx.output_client(),
        Some(client),
        "the output never reconnects"
    );
    let status = rig.daemon.status();
    // 2 s keyframes are far apart enough for a bridge (issue 18): the cut
    // lands on the bridge's IDR or on their own keyframe, whichever first.
    assert!(
        status["relay"]["last_cut"]
            .as_str()
            .is_some_and(|s| s.contains("on their keyframe") || s.contains("on a bridge keyframe")),
        "{status}"
    );
    let log = rig.daemon.log();
    for l in log
        .lines()
        .filter(|l| l.contains("bridge") || l.contains("cut to"))
    {
        eprintln!("  | {l}");
    }
    assert!(
        log.contains("kept playing"),
        "the journal says what happened at each cut"
    );
}

#[test]
fn publisher_left_successor_appears_at_once_then_slate() {
    let _turn = heavy_turn();
    let rig = Rig::start("");
    let client = wait_output(&rig);
    let viewer = Viewer::start(&rig.output_url());
    // The viewer has finished probing once it decodes the slate (a header
    // change during a player's probe is lost in that player).
    assert!(viewer
        .wait_size(SLATE, viewer.started, Duration::from_secs(15))
        .is_some());
    let mut a = join(&rig, "alice", A, 48_000, 2);
    assert!(viewer
        .wait_size(A, Instant::now(), Duration::from_secs(8))
        .is_some());
    let mut firsts = Vec::new();
    for i in 0..3 {
        let (key, size) = if i % 2 == 0 { ("bob", B) } else { ("alice", A) };
        let mut next = join(&rig, key, size, 44_100, 1);
        // Let the reader of the next streamer see a keyframe.
        std::thread::sleep(Duration::from_millis(2500));
        let t0 = Instant::now();
        a.stop();
        let seen = viewer
            .wait_size(size, t0, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{key} never shown after the publisher left"));
        firsts.push(seen - t0);
        eprintln!("publisher left: {key}'s first frame after {:?}", seen - t0);
        std::mem::swap(&mut a, &mut next);
    }
    // Queue empties: back to the slate, output still the same publisher.
    a.stop();
    assert!(viewer
        .wait_size(SLATE, Instant::now(), Duration::from_secs(5))
        .is_some());
    assert_eq!(rig.nginx.output_client(), Some(client));
    firsts.sort();
    // Measured from the SIGINT to the publisher, before nginx even sends
    // publish_done: the successor must show within 250 ms of that.
    assert!(
        firsts[firsts.len() - 1] <= Duration::from_millis(250),
        "successor's first frame after the publisher left: {firsts:?}"
    );
}

/// Slot ends, ten of them: two streamers whose encoders reconnect when
/// disconnected (as OBS does), a 4 s slot, no rejoin block. Each cut is on
/// the next streamer's keyframe; the old one is disconnected after it.
#[test]
fn slot_ends_cut_on_keyframes_and_disconnect_after_the_cut() {
    let _turn = heavy_turn();
    let (rig, release) = Rig::start_release(
        "[queue]\nslot_seconds = 4\nrejoin_block_seconds = 0\n",
        "splice::slot_ends",
    );
    let client = wait_output(&rig);
    let viewer = Viewer::start(&rig.output_url());
    assert!(viewer
        .wait_size(SLATE, viewer.started, Duration::from_secs(15))
        .is_some());
    let specs = [("alice", A, 48_000, 2), ("bob", B, 44_100, 1)];
    let mut pubs: Vec<Publisher> = specs
        .iter()
        .map(|(k, size, rate, ch)| join(&rig, k, *size, *rate, *ch))
        .collect();
    assert!(viewer
        .wait_size(A, Instant::now(), Duration::from_secs(8))
        .is_some());
    let mut gaps = Vec::new();
    let mut shown = 0usize; // index of who is on the output
    for i in 0..10 {
        let next = 1 - shown;
        let t0 = Instant::now();
        let seen = viewer
            .wait_size(specs[next].1, t0, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "slot end {i}: {} never shown; {}",
                    specs[next].0,
                    rig.daemon.status()
                )
            });
        // The old streamer was still connected at the cut: their
        // publisher is disconnected only afterwards.
        let gap = viewer.longest_video_gap(
            seen - Duration::from_millis(500),
            seen + Duration::from_millis(500),
        );
        gaps.push(gap);
        // Their encoder reconnects (and queues at the end).
        let old = shown;
        let ended = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            (!pubs[old].is_running()).then_some(Instant::now())
        });
        let ended =
            ended.unwrap_or_else(|| panic!("slot end {i}: {} was not disconnected", specs[old].0));
        assert!(
            ended >= seen - Duration::from_millis(200),
            "slot end {i}: disconnected before the cut"
        );
        let (k, size, rate, ch) = specs[old];
        pubs[old] = join(&rig, k, size, rate, ch);
        eprintln!(
            "slot end {i}: {} on screen, longest frame gap {:?}",
            specs[next].0, gap
        );
        shown = next;
    }
    gaps.sort();
    eprintln!(
        "slot ends: median longest gap {:?}, max {:?}",
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
    // The issue's 0.1 s on the release build; the debug build's figures
    // are not the product's (see `slate_first_then_planned_cuts_...`).
    let max = Duration::from_millis(if release { 100 } else { 200 });
    assert!(gaps[gaps.len() - 1] <= max, "{gaps:?}");
    assert_eq!(
        rig.nginx.output_client(),
        Some(client),
        "the output never reconnects"
    );
}

/// A slow disk does not hold the picture: each save of the queue is held
/// 600 ms (test hook) while alice is on air, bob joins and alice's slot
/// ends, and the output plays on; then carol joins and bob's publisher
/// leaves, and carol is on at once. Saving on the engine thread, which also
/// feeds the output, froze the picture for as long as each save took
/// (3-720 ms measured while other programs wrote to the same disk); the
/// relay learning of a publisher's leaving only once that was saved held
/// the forced cut as long (0.57-1.07 s measured).
#[test]
fn a_slow_disk_does_not_freeze_the_picture() {
    let _turn = heavy_turn();
    let rig = Rig::start("[queue]\nslot_seconds = 8\nrejoin_block_seconds = 0\n");
    wait_output(&rig);
    let viewer = Viewer::start(&rig.output_url());
    assert!(viewer
        .wait_size(SLATE, viewer.started, Duration::from_secs(15))
        .is_some());
    let _alice = join(&rig, "alice", A, 48_000, 2);
    let shown = viewer
        .wait_size(A, Instant::now(), Duration::from_secs(8))
        .expect("alice on the output");
    std::fs::write(rig.daemon.state_dir().join("test-save-delay-ms"), "600")
        .expect("write the test hook's file");
    let t0 = Instant::now();
    let mut bob = join(&rig, "bob", B, 44_100, 1);
    viewer
        .wait_size(B, t0, Duration::from_secs(12))
        .unwrap_or_else(|| panic!("bob never shown; log:\n{}", rig.daemon.log()));
    std::thread::sleep(Duration::from_secs(1));
    let _carol = join(&rig, "carol", C, 48_000, 1);
    // Their reader and bridge under way; bob's 8 s slot is not over.
    std::thread::sleep(Duration::from_millis(2000));
    let left = Instant::now();
    bob.stop();
    let carol = viewer
        .wait_size(C, left, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("carol never shown; log:\n{}", rig.daemon.log()));
    std::thread::sleep(Duration::from_millis(500));
    let log = rig.daemon.log();
    let held = log.matches("test hook: holding this save").count();
    assert!(
        held >= 4,
        "joins, the slot end and bob's leaving were saved slowly; log:\n{log}"
    );
    let gap = viewer.longest_video_gap(shown, Instant::now());
    let forced = carol - left;
    eprintln!(
        "{held} saves held 600 ms each; longest frame gap {gap:?}; carol shown {forced:?} after bob left"
    );
    assert!(
        gap <= Duration::from_millis(300),
        "the picture stood still {gap:?} while the queue was saved"
    );
    // Measured from the SIGINT to bob's publisher (nginx's publish_done
    // comes after it): 0.07-0.21 s without a slow disk.
    assert!(
        forced <= Duration::from_millis(450),
        "carol shown {forced:?} after bob left: the cut waited for the save"
    );
}
