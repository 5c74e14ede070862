//! The daemon with `[obs] enabled = true` against a real headless OBS 29,
//! a private nginx-rtmp and real ffmpeg publishers: a switch reaches OBS
//! (name text, loading item, OBS PLAYING the new streamer), the queue keeps
//! switching while OBS is down and the state is re-applied when it is back,
//! a wrong password changes nothing for the queue.
//!
//! Who OBS plays is read from the media item's source size: every test
//! publisher has its own picture size.
//!
//! The relay runs in its default splice mode, where a switch must not touch
//! OBS's media source at all (no restart, no reconnect to nginx, the
//! loading item left alone); the first test runs once more in restart mode
//! to keep that mode's OBS path covered. The 20-switch picture and sound
//! checks of the splice relay are in `tests/it/obs_splice.rs`.

use crate::common::obs;
use std::time::{Duration, Instant};

use crate::common::obs::{until, Obs, ObsClient, ObsOpts};
use crate::common::*;
use serde_json::json;

const ON_AIR: Duration = Duration::from_secs(20);

struct ObsRig {
    rig: Rig,
    obs: Obs,
    _pw_dir: TempDir,
}

/// nginx, then OBS playing nginx's output, then the daemon driving OBS.
fn start(password_in_config: &str) -> ObsRig {
    start_with(password_in_config, "")
}

/// As [`start`], with more daemon config (`more`: TOML tables).
fn start_with(password_in_config: &str, more: &str) -> ObsRig {
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        ..ObsOpts::default()
    });
    let pw_dir = TempDir::new("obs-pw");
    let extra = format!(
        "{}{more}",
        obs::daemon_obs_toml(obs.port, password_in_config, pw_dir.path(), true)
    );
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port: nginx.rtmp_port,
        nginx_http_port: nginx.http_port,
        extra_toml: extra,
        bin: daemon_bin(),
        hook_secret: Some(nginx.hook_secret.clone()),
    });
    ObsRig {
        rig: Rig { daemon, nginx },
        obs,
        _pw_dir: pw_dir,
    }
}

/// (media state, picture size) of OBS's media source.
fn playing(c: &mut ObsClient) -> Option<(String, (u32, u32))> {
    let state = c.media_state(obs::MEDIA).ok()?;
    let id = c.item_id(obs::MEDIA).ok()?;
    let t = c
        .request(
            "GetSceneItemTransform",
            json!({"sceneName": obs::SCENE, "sceneItemId": id}),
        )
        .ok()?;
    let tr = &t["sceneItemTransform"];
    let size = (
        tr["sourceWidth"].as_f64()? as u32,
        tr["sourceHeight"].as_f64()? as u32,
    );
    Some((state, size))
}

/// OBS shows `name` in the name text, the loading item is off, and the
/// media source is PLAYING a picture of `size`.
fn obs_shows(c: &mut ObsClient, name: &str, size: (u32, u32), timeout: Duration) {
    let mut last = None;
    let ok = crate::common::wait_for(timeout, Duration::from_millis(200), || {
        let text = c.text(obs::NAME).ok()?;
        let loading = c.item_enabled(obs::LOADING).ok()?;
        let p = playing(c)?;
        let done = text == name && !loading && p.0 == "OBS_MEDIA_STATE_PLAYING" && p.1 == size;
        last = Some((text, loading, p));
        done.then_some(())
    });
    assert!(
        ok.is_some(),
        "OBS should show {name} {size:?} within {timeout:?}; last (name, loading, media) = {last:?}"
    );
}

fn obs_connected(r: &Rig) -> (bool, String) {
    let st = r.daemon.status();
    (
        st["obs"]["connected"].as_bool().unwrap_or(false),
        st["obs"]["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Splice,
    Restart,
}

/// A publisher leaves, the next one is on air in OBS; then the queue
/// empties and the loading item is back. `strict`: the forced cut must go
/// straight to the next streamer, catching up (no slate in between).
fn a_switch_reaches_obs(mode: Mode, strict: bool) {
    let more = match mode {
        Mode::Splice => "",
        Mode::Restart => "[relay]\nmode = \"restart\"\n",
    };
    let o = start_with(&ObsOpts::default().password, more);
    let r = &o.rig;
    let mut c = o.obs.client();
    until(
        Duration::from_secs(10),
        "daemon reports OBS connected",
        || obs_connected(r).0.then_some(()),
    );
    // Nobody on air: loading shown, name blank.
    until(
        Duration::from_secs(5),
        "loading while nobody is on air",
        || (c.item_enabled(obs::LOADING).ok()? && c.text(obs::NAME).ok()?.is_empty()).then_some(()),
    );
    assert!(
        c.input_settings(obs::MEDIA).expect("settings")["ffmpeg_options"]
            .as_str()
            .unwrap_or("")
            .contains("fpsprobesize=0")
    );

    let mut a = r.join("alice", SIZE_A);
    r.assert_on_air(SIZE_A, ON_AIR);
    obs_shows(&mut c, &o.rig.daemon.guest("alice"), SIZE_A, ON_AIR);
    let _b = r.join("bob", SIZE_B);
    // Splice mode reads bob from now on; give his reader a keyframe.
    std::thread::sleep(Duration::from_millis(1500));
    let stat = || r.nginx.http_get("/stat").body;
    let obs_player =
        crate::common::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            obs_cut::player_clients(&stat(), "motherstream").pop()
        });
    if obs_player.is_none() {
        eprintln!("{mode:?}: no player of the output in /stat:\n{}", stat());
    }
    let watch = o
        .obs
        .watch(obs::EV_SCENE_ITEMS | obs::EV_MEDIA_INPUTS, obs::MEDIA);

    let t = Instant::now();
    a.stop();
    obs_shows(&mut c, &o.rig.daemon.guest("bob"), SIZE_B, ON_AIR);
    eprintln!(
        "{mode:?}: alice stopped → OBS plays bob after {:?}",
        t.elapsed()
    );
    assert!(obs_connected(r).1.contains("connected to OBS 29"));
    // Let a late restart or reconnect of the media source show up.
    std::thread::sleep(Duration::from_millis(1500));
    let events: Vec<String> = watch
        .all_events(t, Instant::now())
        .iter()
        .map(|e| format!("{} {}", e.kind, e.data))
        .collect();
    let players = obs_cut::player_clients(&stat(), "motherstream");
    eprintln!("{mode:?}: OBS events across the switch: {events:?}; players {players:?} (OBS was {obs_player:?})");
    if mode == Mode::Splice {
        // One output that never reconnects: OBS's media source is left
        // alone (no restart, no playback ended/started, no reconnect) and
        // the loading item does not flash.
        assert!(
            events.is_empty(),
            "OBS events across a splice switch: {events:?}"
        );
        let obs_player = obs_player.expect("OBS plays the output");
        assert!(
            players.contains(&obs_player),
            "OBS reconnected to nginx across a splice switch: {obs_player} → {players:?}"
        );
    }
    let cuts: Vec<String> = r
        .daemon
        .log()
        .lines()
        .filter(|l| l.contains("cut to") || l.contains("on screen"))
        .map(str::to_string)
        .collect();
    eprintln!("{mode:?}: cuts in the journal:\n{}", cuts.join("\n"));
    if strict {
        let last_two: Vec<&String> = cuts.iter().rev().take(2).collect();
        assert!(
            // From their own last keyframe, or their bridge's (issue 18).
            last_two[0].contains(&format!(
                "cut to {} catching up from their",
                o.rig.daemon.guest("bob")
            )),
            "a publisher who left is a forced cut straight to the next one, not through the slate: {last_two:?}"
        );
    }
    drop(watch);
    // Nobody again: loading back.
    drop(_b);
    until(
        Duration::from_secs(15),
        "loading after the queue empties",
        || (c.item_enabled(obs::LOADING).ok()? && c.text(obs::NAME).ok()?.is_empty()).then_some(()),
    );
}

#[test]
fn a_switch_between_real_publishers_reaches_obs() {
    let _turn = heavy_turn();
    a_switch_reaches_obs(Mode::Splice, false);
}

#[test]
fn a_switch_reaches_obs_in_restart_mode() {
    let _turn = heavy_turn();
    a_switch_reaches_obs(Mode::Restart, false);
}

/// The on-air publisher's reader sees the end of their stream some tens of
/// ms before nginx's publish_done reaches the engine; the splice relay
/// holds the last picture meanwhile (it used to cut to the slate and then
/// wait for the next streamer's keyframe), then catches up to the next one.
#[test]
fn a_publisher_leaving_cuts_straight_to_the_next_one() {
    let _turn = heavy_turn();
    a_switch_reaches_obs(Mode::Splice, true);
}

#[test]
fn the_queue_keeps_switching_while_obs_is_down() {
    let _turn = heavy_turn();
    let mut o = start(&ObsOpts::default().password);
    until(
        Duration::from_secs(10),
        "daemon reports OBS connected",
        || obs_connected(&o.rig).0.then_some(()),
    );
    let mut a = o.rig.join("alice", SIZE_A);
    let _b = o.rig.join("bob", SIZE_B);
    o.rig.assert_on_air(SIZE_A, ON_AIR);
    let mut c = o.obs.client();
    obs_shows(&mut c, &o.rig.daemon.guest("alice"), SIZE_A, ON_AIR);
    drop(c);

    o.obs.kill9();
    until(Duration::from_secs(10), "daemon reports OBS down", || {
        (!obs_connected(&o.rig).0).then_some(())
    });
    // The switch happens without OBS, as fast as ever.
    let t = Instant::now();
    a.stop();
    o.rig.daemon.wait_queue(&["bob"], Duration::from_secs(10));
    o.rig.assert_on_air(SIZE_B, ON_AIR);
    eprintln!("switch with OBS down took {:?}", t.elapsed());
    let t = Instant::now();
    let r = o.rig.daemon.get("/healthz");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_millis(500));

    // OBS back (stale collection on disk): bob is re-applied.
    o.obs.restart();
    let mut c = o.obs.client();
    obs_shows(
        &mut c,
        &o.rig.daemon.guest("bob"),
        SIZE_B,
        Duration::from_secs(45),
    );
    assert!(obs_connected(&o.rig).0);
}

#[test]
fn a_wrong_password_leaves_the_queue_alone() {
    let _turn = heavy_turn();
    let o = start("definitely-wrong");
    let r = &o.rig;
    let detail = until(Duration::from_secs(10), "OBS error in /api/status", || {
        let (connected, detail) = obs_connected(r);
        assert!(!connected);
        detail.contains("password").then_some(detail)
    });
    eprintln!("/api/status obs.detail: {detail}");
    let mut a = r.join("alice", SIZE_A);
    let _b = r.join("bob", SIZE_B);
    r.assert_on_air(SIZE_A, ON_AIR);
    a.stop();
    r.daemon.wait_queue(&["bob"], Duration::from_secs(10));
    r.assert_on_air(SIZE_B, ON_AIR);
    let log = r.daemon.log();
    assert_eq!(
        log.matches("OBS rejected the password").count(),
        1,
        "one log line, not one per retry:\n{log}"
    );
    // OBS was not touched.
    let mut c = o.obs.client();
    assert!(c.text(obs::NAME).expect("name").is_empty());
}

/// The local port of `pid`'s established TCP connection to `port` on
/// loopback (its sockets, found in /proc/net/tcp by inode).
fn connection_to(pid: u32, port: u16) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hex_port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
        (hex_port(remote)? == port && *state == "01" && inodes.iter().any(|i| i == inode))
            .then(|| hex_port(local))
            .flatten()
    })
}

/// `motherstream upgrade` with OBS connected: the identified websocket
/// session goes on in the new binary (the same TCP connection, no second
/// Identify, OBS sees no new client), and a switch after it still reaches
/// OBS.
#[test]
fn an_upgrade_keeps_the_obs_session() {
    let _turn = heavy_turn();
    let o = start(&ObsOpts::default().password);
    let r = &o.rig;
    until(
        Duration::from_secs(10),
        "daemon reports OBS connected",
        || obs_connected(r).0.then_some(()),
    );
    let mut a = r.join("alice", SIZE_A);
    let _b = r.join("bob", SIZE_B);
    r.assert_on_air(SIZE_A, ON_AIR);
    let mut c = o.obs.client();
    obs_shows(&mut c, &r.daemon.guest("alice"), SIZE_A, ON_AIR);
    let pid = r.daemon.pid();
    let before = connection_to(pid, o.obs.port).expect("the daemon's connection to OBS");

    crate::recording::upgrade(r);
    until(
        Duration::from_secs(10),
        "daemon reports OBS connected after the hand-over",
        || obs_connected(r).0.then_some(()),
    );
    let after = connection_to(pid, o.obs.port);
    let log = r.daemon.log();
    for l in log
        .lines()
        .filter(|l| l.contains("OBS") || l.contains("obs-websocket") || l.contains("taking over"))
    {
        eprintln!("  log: {l}");
    }
    let obs_log = o.obs.log_all();
    let obs_clients: Vec<&str> = obs_log
        .lines()
        .filter(|l| l.contains("WebSocket client"))
        .collect();
    eprintln!(
        "daemon's connection to OBS: port {before} before the hand-over, {after:?} after; OBS's log:\n{}",
        obs_clients.join("\n")
    );
    assert!(log.contains("taking over from"), "the hand-over happened");
    assert_eq!(after, Some(before), "the same TCP connection to OBS");
    assert_eq!(
        log.matches("identified to obs-websocket").count(),
        1,
        "one Identify in all"
    );
    assert!(log.contains("the session carried over the hand-over goes on"));
    // OBS's side: the daemon's client never left.
    let ours = format!(":{before}`");
    assert!(
        obs_clients.iter().any(|l| l.contains("has connected")),
        "OBS logs its clients"
    );
    assert!(
        !obs_clients
            .iter()
            .any(|l| l.contains("has disconnected") && l.contains(&ours)),
        "OBS saw the daemon's session end"
    );

    // A switch after the hand-over still reaches OBS.
    let t = Instant::now();
    a.stop();
    obs_shows(&mut c, &r.daemon.guest("bob"), SIZE_B, ON_AIR);
    eprintln!(
        "after the hand-over: alice stopped → OBS plays bob after {:?}",
        t.elapsed()
    );
    assert_eq!(connection_to(pid, o.obs.port), Some(before));
}
