//! The daemon with `[obs] enabled = true` against a real headless OBS 29,
//! a private nginx-rtmp and real ffmpeg publishers: a switch reaches OBS
//! (name text, loading item, OBS PLAYING the new streamer), the queue keeps
//! switching while OBS is down and the state is re-applied when it is back,
//! a wrong password changes nothing for the queue.
//!
//! Who OBS plays is read from the media item's source size: every test
//! publisher has its own picture size.

mod common;
#[path = "common/obs.rs"]
mod obs;

use std::time::{Duration, Instant};

use common::*;
use obs::{until, Obs, ObsClient, ObsOpts};
use serde_json::json;

const ON_AIR: Duration = Duration::from_secs(20);

struct ObsRig {
    rig: Rig,
    obs: Obs,
    _pw_dir: TempDir,
}

/// nginx, then OBS playing nginx's output, then the daemon driving OBS.
fn start(password_in_config: &str) -> ObsRig {
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        ..ObsOpts::default()
    });
    let pw_dir = TempDir::new("obs-pw");
    let pw_file = pw_dir.join("obs-password");
    std::fs::write(&pw_file, format!("{password_in_config}\n")).expect("password file");
    let extra = format!(
        r#"
[obs]
enabled = true
host = "127.0.0.1"
port = {port}
password_file = "{pw}"
scene = "{scene}"
media_source = "{media}"
loading_source = "{loading}"
name_source = "{name}"
timer_source = "{timer}"
"#,
        port = obs.port,
        pw = pw_file.display(),
        scene = obs::SCENE,
        media = obs::MEDIA,
        loading = obs::LOADING,
        name = obs::NAME,
        timer = obs::TIMER,
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
    let ok = common::wait_for(timeout, Duration::from_millis(200), || {
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

#[test]
fn a_switch_between_real_publishers_reaches_obs() {
    let o = start(&ObsOpts::default().password);
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
    obs_shows(&mut c, "alice", SIZE_A, ON_AIR);
    let _b = r.join("bob", SIZE_B);

    let t = Instant::now();
    a.stop();
    obs_shows(&mut c, "bob", SIZE_B, ON_AIR);
    eprintln!("alice stopped → OBS plays bob after {:?}", t.elapsed());
    assert!(obs_connected(r).1.contains("connected to OBS 29"));
    // Nobody again: loading back.
    drop(_b);
    until(
        Duration::from_secs(15),
        "loading after the queue empties",
        || (c.item_enabled(obs::LOADING).ok()? && c.text(obs::NAME).ok()?.is_empty()).then_some(()),
    );
}

#[test]
fn the_queue_keeps_switching_while_obs_is_down() {
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
    obs_shows(&mut c, "alice", SIZE_A, ON_AIR);
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
    obs_shows(&mut c, "bob", SIZE_B, Duration::from_secs(45));
    assert!(obs_connected(&o.rig).0);
}

#[test]
fn a_wrong_password_leaves_the_queue_alone() {
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
