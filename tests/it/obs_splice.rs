//! The splice relay as the audience sees it: a real headless OBS 29 plays
//! the output while two streamers (different sizes and sample rates; one
//! with the lab's 2 s keyframes, one with x264's defaults as OBS sends
//! them: a keyframe every 8.3 s, B-frames) take turns over 20 planned
//! switches (`/api/move`,
//! which disconnects nobody). Across every cut OBS's picture keeps moving
//! (screenshots every 100 ms), its meters never go silent, its media
//! source is never restarted nor reconnected, the loading item never
//! flashes, and the name text changes with the picture. OBS's picture
//! delay (read from a wall-clock time code in the picture) is the same
//! after each streamer's last switch as after their first, and OBS's log has no audio
//! buffering trouble.

use std::time::{Duration, Instant};

use crate::common::obs::{until, EventWatch, Obs, ObsClient, ObsEvent, Seen};
use crate::common::obs_cut::{
    planned_switch, player_clients, switch_obs, switch_publisher, switch_watch, wait_seen, wall_us,
    Cut, TcPlayer,
};
use crate::common::*;

const SWITCHES: usize = 20;

#[test]
fn twenty_planned_cuts_in_real_obs_without_freeze_silence_or_drift() {
    let _turn = heavy_turn();
    let dir = TempDir::new("obs-splice");
    let (obs, rig) = start(&dir);
    let watch = switch_watch(&obs);
    let mut c = obs.client();
    let base = wall_us();
    let url = |k: &str| rig.nginx.rtmp_url("live", k);
    let alice = switch_publisher(Seen::Red, &url("alice"), "alice", base, dir.path());
    rig.daemon.wait_queue(&["alice"], Duration::from_secs(15));
    assert!(
        wait_seen(&mut c, Seen::Red, Duration::from_secs(30)).is_some(),
        "OBS never showed alice; {}\n{}",
        rig.daemon.status(),
        obs.log_tail()
    );
    let bob = switch_publisher(Seen::Blue, &url("bob"), "bob", base, dir.path());
    rig.daemon
        .wait_queue(&["alice", "bob"], Duration::from_secs(15));
    // Bob's reader has seen a keyframe; OBS has settled on alice.
    std::thread::sleep(Duration::from_millis(2500));
    let stat = || rig.nginx.http_get("/stat").body;
    // OBS is the only player of the output so far.
    let obs_player = until(Duration::from_secs(5), "OBS plays the output", || {
        player_clients(&stat(), "motherstream").pop()
    });
    let player = TcPlayer::start(&rig.output_url(), dir.path());
    let log_before = obs.log_all();
    let t_start = Instant::now();

    let cuts = switch(&rig, &mut c, &watch, &player, base);
    let t_end = Instant::now();
    let log_after = obs.log_all();

    assert_no_freeze_nor_silence(&cuts);
    assert_steady_delay_and_names(&cuts);
    let events = watch.all_events(t_start, t_end);
    assert_obs_undisturbed(&rig, &events, &obs_player, (&log_before, &log_after));
    assert_keyframe_cuts(&rig);
    let on_screen: Vec<f64> = cuts
        .iter()
        .filter_map(|c| c.on_screen.map(|d| d.as_secs_f64()))
        .collect();
    if let Some((med, min, max)) = obs_cut::stats(on_screen) {
        eprintln!("move → new streamer in OBS: median {med:.2} s ({min:.2}–{max:.2})");
    }
    drop(player);
    drop(c);
    drop(watch);
    drop((alice, bob));
}

/// A private nginx, OBS playing the output (30 fps, so screenshots 100 ms
/// apart fall on different frames) and the daemon cueing it.
fn start(dir: &TempDir) -> (Obs, Rig) {
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = switch_obs(&nginx);
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port: nginx.rtmp_port,
        nginx_http_port: nginx.http_port,
        extra_toml: format!(
            "[queue]\nslot_seconds = 0\n{}",
            obs.daemon_toml(dir.path(), false)
        ),
        bin: daemon_bin(),
        hook_secret: Some(nginx.hook_secret.clone()),
    });
    (obs, Rig { daemon, nginx })
}

/// Twenty planned moves, alternating bob and alice on top; each cut as
/// OBS shows it (and as a second player of the output sees it).
fn switch(
    rig: &Rig,
    c: &mut ObsClient,
    watch: &EventWatch,
    player: &TcPlayer,
    base: u64,
) -> Vec<Cut> {
    let mut cuts: Vec<Cut> = Vec::new();
    for i in 0..SWITCHES {
        let (key, seen) = if i % 2 == 0 {
            ("bob", Seen::Blue)
        } else {
            ("alice", Seen::Red)
        };
        let (t0, cut) = planned_switch(
            &rig.daemon,
            c,
            watch,
            i,
            key,
            seen,
            base,
            Duration::from_millis(800),
        );
        eprintln!(
            "switch {}: {key} on screen {:?} (player {:?}), name {:?}, delay {:.3?} s (player {:.3?}), frozen {}, silent {}/{} meter windows: {}",
            i + 1,
            cut.on_screen,
            player.first_after(t0, seen),
            cut.name_at,
            cut.delay(),
            player.delay(seen, t0, Instant::now(), base),
            cut.frozen,
            cut.silent,
            cut.meter_windows,
            cut.timeline
        );
        assert!(
            cut.on_screen.is_some(),
            "switch {}: {key} never on screen in OBS: {}\n{}",
            i + 1,
            cut.timeline,
            rig.daemon.status()
        );
        cuts.push(cut);
    }
    cuts
}

/// The picture never froze, never showed anything but a streamer, and the
/// sound never stopped.
fn assert_no_freeze_nor_silence(cuts: &[Cut]) {
    // The picture never froze and never showed anything but a streamer.
    // Across the cut: from half a second before the new picture.
    let frozen: u32 = cuts
        .iter()
        .map(|c| c.frozen_at_cut(Duration::from_millis(500)))
        .sum();
    let samples: u32 = cuts.iter().map(|c| c.samples).sum();
    let timelines: Vec<&str> = cuts.iter().map(|c| c.timeline.as_str()).collect();
    eprintln!(
        "frozen screenshots: {frozen} across the cuts, {} in all {samples}",
        cuts.iter().map(|c| c.frozen).sum::<u32>()
    );
    assert_eq!(
        frozen, 0,
        "frozen screenshots (lower case) across the cuts: {timelines:?}"
    );
    assert!(
        cuts.iter().all(|c| c.off.is_empty()),
        "neither streamer on screen (L loading, g grey, K black): {timelines:?}"
    );
    // The sound never stopped.
    let silent: Vec<(u32, u32)> = cuts.iter().map(|c| (c.silent, c.meter_windows)).collect();
    assert!(
        silent.iter().all(|(s, n)| *s == 0 && *n > 10),
        "silent / all InputVolumeMeters windows per cut: {silent:?}"
    );
}

/// OBS's delay did not creep, and the name changed with the picture.
fn assert_steady_delay_and_names(cuts: &[Cut]) {
    // OBS's delay did not creep: each streamer's first switch against
    // their last (their encoders' own delays differ: x264's defaults keep
    // more frames than the lab's zerolatency).
    let delays: Vec<String> = cuts
        .iter()
        .map(|c| c.delay().map_or("-".into(), |d| format!("{d:.2}")))
        .collect();
    eprintln!("OBS picture delay after each switch (s): {delays:?}");
    for (first, last) in [(0, SWITCHES - 2), (1, SWITCHES - 1)] {
        let d1 = cuts[first].delay().expect("delay after the first switch");
        let dn = cuts[last].delay().expect("delay after the last switch");
        assert!(
            (dn - d1).abs() <= 0.2,
            "OBS's picture delay: {d1:.3} s after switch {}, {dn:.3} s after switch {}: {delays:?}",
            first + 1,
            last + 1
        );
    }
    // The name changes at the cut, with the picture: never before the new
    // picture by more than OBS's own delay (the text is set when the cut
    // reaches the output; OBS shows that picture its delay later), never
    // long after it.
    for (i, cut) in cuts.iter().enumerate() {
        let (Some(p), Some(n)) = (cut.on_screen, cut.name_at) else {
            panic!("switch {}: name text never changed: {cut:?}", i + 1);
        };
        let lead = p.as_secs_f64() - n.as_secs_f64();
        let d = cut
            .delay()
            .or_else(|| cuts[0].delay())
            .expect("delay after switch 1");
        assert!(
            lead <= d + 0.3 && lead >= -0.5,
            "switch {}: name text {n:?} vs picture {p:?} after the move (OBS delay {d:.2} s)",
            i + 1
        );
    }
}

/// OBS's media source and its audio buffering were left alone.
fn assert_obs_undisturbed(rig: &Rig, events: &[ObsEvent], obs_player: &str, log: (&str, &str)) {
    let (log_before, log_after) = log;
    // The media source was never restarted, ended or reconnected, and the
    // loading item never touched.
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.is_empty(),
        "OBS events during the switches (media restarts, playback ended/started, item shown/hidden): {kinds:?}"
    );
    let players = player_clients(&rig.nginx.http_get("/stat").body, "motherstream");
    assert!(
        players.iter().any(|p| p == obs_player),
        "OBS's media source reconnected to nginx: player {obs_player} gone, players now {players:?}"
    );
    // OBS's audio buffering stayed calm.
    eprintln!(
        "OBS log, audio buffering:\n{}",
        log_after
            .lines()
            .filter(|l| l.contains("buffering") || l.contains("lagging"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let new_log = log_after.get(log_before.len()..).unwrap_or(log_after);
    for bad in ["audio is lagging", "Max audio buffering"] {
        assert!(
            !new_log.contains(bad),
            "OBS logged {bad:?} during the switches:\n{}",
            new_log
                .lines()
                .filter(|l| l.contains("audio"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Every switch was a keyframe cut with the old streamer kept playing.
fn assert_keyframe_cuts(rig: &Rig) {
    // Every switch was a keyframe cut (theirs, or their bridge's: 2 s
    // keyframes get a bridge) with the old streamer kept playing.
    let log = rig.daemon.log();
    let kept = |key: &str| format!("; {} kept playing", rig.daemon.guest(key));
    let (alice_kept, bob_kept) = (kept("alice"), kept("bob"));
    let cut_lines: Vec<&str> = log.lines().filter(|l| l.contains("cut to")).collect();
    let keyframe_cuts = cut_lines
        .iter()
        .filter(|l| {
            (l.contains("on their keyframe") || l.contains("on a bridge keyframe"))
                && (l.contains(&alice_kept) || l.contains(&bob_kept))
        })
        .count();
    assert_eq!(
        keyframe_cuts,
        SWITCHES,
        "daemon journal:\n{}",
        cut_lines.join("\n")
    );
}
