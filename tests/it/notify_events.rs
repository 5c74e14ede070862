//! The notification kinds beyond joins and switches, end to end against
//! real parts (the daemon, nginx-rtmp, ffmpeg publishers, a headless OBS)
//! and a local webhook receiver (`tests/common/webhook.rs`):
//! * a moderator's skip, kick (with seconds) and block arrive by name and
//!   seconds, in order, each followed by the off-air it caused; the Discord
//!   format names the streamer, the slot length and who is next;
//! * a streamer's source dropped by nginx (twice in a row) and stalled (its
//!   publisher stopped) is `relay_failed`, and `relay_recovered` once it
//!   delivers again; a single end stays quiet; the same in restart mode
//!   (its relay ffmpeg dropped, then stalled);
//! * the output ffmpeg killed is `output_failed`, then `output_recovered`;
//!   killed twice more within one outage, it is told once, counted twice;
//! * OBS killed is `obs_lost`, OBS started again on its port `obs_back`;
//!   an OBS that was not there when the daemon started is no "back".
//!
//! Every test also checks that no webhook URL reached the daemon's log.

use std::time::{Duration, Instant};

use crate::common::obs::{Obs, ObsOpts};
use crate::common::webhook::{rig_with_webhooks, Mode, Receiver};
use crate::common::*;

/// (event, name) of each body, in arrival order.
fn story(bodies: &[Value]) -> Vec<(String, String)> {
    bodies
        .iter()
        .map(|b| {
            (
                b["event"].as_str().unwrap_or("?").to_string(),
                b["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

fn ok_json(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
}

/// Skip alice (on air), kick bob (on air) for two minutes, block dave
/// (next, not on screen) then carol (on air).
fn skip_kick_and_block(rig: &Rig) {
    // Skip alice: she keeps playing until bob's keyframe.
    ok_json(&rig.daemon.admin("/api/skip", "{}", None), "skip");
    rig.daemon.wait_on_screen("bob", Duration::from_secs(15));
    // Kick bob (on air) for two minutes.
    ok_json(
        &rig.daemon.admin("/api/kick", r#"{"seconds": 120}"#, None),
        "kick",
    );
    rig.daemon.wait_on_screen("carol", Duration::from_secs(15));
    // The block is real: bob's key is refused.
    assert_eq!(rig.daemon.raw_publish("bob", 9001).status, 403);
    // Block dave (next, not on screen), then carol (on air).
    ok_json(
        &rig.daemon
            .admin("/api/block", r#"{"name": "dave", "seconds": 300}"#, None),
        "block dave",
    );
    ok_json(
        &rig.daemon
            .admin("/api/block", r#"{"name": "carol", "seconds": 45}"#, None),
        "block carol",
    );
}

/// The JSON webhook's story: who, what, in order, with seconds and
/// reasons.
fn assert_json_story(json: &Receiver) {
    let want = [
        pair("on_air", "alice"),
        pair("skipped", "alice"),
        pair("off_air", "alice"),
        pair("on_air", "bob"),
        pair("kicked", "bob"),
        pair("off_air", "bob"),
        pair("on_air", "carol"),
        pair("blocked", "dave"),
        pair("blocked", "carol"),
        pair("off_air", "carol"),
    ];
    json.wait_count(want.len(), Duration::from_secs(15));
    // Let anything that should not come show up.
    std::thread::sleep(Duration::from_millis(500));
    let bodies = json.bodies();
    assert_eq!(story(&bodies), want, "{bodies:#?}");
    let reasons: Vec<&str> = bodies
        .iter()
        .filter(|b| b["event"] == "off_air")
        .map(|b| b["reason"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(reasons, ["skipped", "kicked", "blocked"], "{bodies:#?}");
    assert_eq!(bodies[4]["blocked_seconds"], 120, "{}", bodies[4]);
    assert_eq!(bodies[7]["blocked_seconds"], 300, "{}", bodies[7]);
    assert_eq!(bodies[8]["blocked_seconds"], 45, "{}", bodies[8]);
    let on_air: Vec<(&Value, &Value)> = bodies
        .iter()
        .filter(|b| b["event"] == "on_air")
        .map(|b| (&b["slot_seconds"], &b["next"]))
        .collect();
    assert_eq!(
        on_air,
        [
            (&Value::from(600), &Value::Null),
            (&Value::from(600), &Value::from("carol")),
            (&Value::from(600), &Value::from("dave")),
        ],
        "{bodies:#?}"
    );
    assert!(
        bodies.iter().all(|b| b["at"].as_u64().is_some()),
        "{bodies:#?}"
    );
}

#[test]
fn skip_kick_and_block_are_told_by_name_and_seconds_in_order() {
    let _turn = light_turn();
    let ([json, discord], rig) = rig_with_webhooks(
        "[queue]\nslot_seconds = 600\n",
        [
            (
                "mods",
                &[r#"events = ["on_air", "off_air", "kicked", "blocked", "skipped"]"#],
            ),
            (
                "chat",
                &[
                    r#"format = "discord""#,
                    r#"events = ["on_air", "kicked", "blocked", "skipped"]"#,
                ],
            ),
        ],
    );
    let _alice = rig.join("alice", SIZE_A);
    rig.daemon.wait_on_screen("alice", Duration::from_secs(15));
    let _bob = rig.join("bob", SIZE_B);
    let _carol = rig.join("carol", SIZE_C);
    let _dave = rig.join("dave", SIZE_A);

    skip_kick_and_block(&rig);

    assert_json_story(&json);

    // The same story for people, as Discord shows it.
    let chat = discord.wait_count(8, Duration::from_secs(10));
    let texts: Vec<&str> = chat
        .iter()
        .map(|b| b["content"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        texts,
        [
            "🔴 **alice** is on air now (10 min slot). Next up: nobody yet.",
            "**alice** was skipped by a moderator.",
            "🔴 **bob** is on air now (10 min slot). Next up: **carol**.",
            "**bob** was kicked by a moderator and may rejoin in 2 min.",
            "🔴 **carol** is on air now (10 min slot). Next up: **dave**.",
            "**dave** was blocked by a moderator for 5 min.",
            "**carol** was blocked by a moderator for 45 s.",
        ],
        "{chat:#?}"
    );
    assert!(
        chat.iter()
            .all(|b| b["allowed_mentions"]["parse"] == serde_json::json!([])),
        "{chat:#?}"
    );

    let log = rig.daemon.log();
    json.assert_not_in(&log);
    discord.assert_not_in(&log);
}

/// Connections to `app/stream` in nginx-rtmp's /stat (publisher and
/// players).
fn nclients(nginx: &Nginx, app: &str, stream: &str) -> usize {
    let xml = nginx.http_get("/stat").body;
    let Some(a) = xml.find(&format!("<name>{app}</name>")) else {
        return 0;
    };
    let section = &xml[a..];
    let section = &section[..section.find("</application>").unwrap_or(section.len())];
    section
        .split("<stream>")
        .skip(1)
        .find(|s| {
            s.trim_start()
                .starts_with(&format!("<name>{stream}</name>"))
        })
        .and_then(|s| {
            let i = s.find("<nclients>")? + "<nclients>".len();
            let j = s[i..].find('<')? + i;
            s[i..j].parse().ok()
        })
        .unwrap_or(0)
}

/// Wait until the daemon reads `stream` (its publisher plus one reader).
fn wait_read(nginx: &Nginx, stream: &str) {
    let ok = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        (nclients(nginx, "live", stream) >= 2).then_some(())
    });
    assert!(ok.is_some(), "nobody reads live/{stream}");
}

/// Drop the players of `live/stream` (the daemon's reader) through
/// nginx-rtmp's control module, as a network blip would.
fn drop_reader(nginx: &Nginx, stream: &str) {
    wait_read(nginx, stream);
    let r = nginx.http_get(&format!("/control/drop/subscriber?app=live&name={stream}"));
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "1"),
        "drop/subscriber {stream}"
    );
}

#[test]
fn a_dropped_or_stalled_source_is_told_and_so_is_its_recovery() {
    // Stall detection counts seconds without output: timing-sensitive.
    let _turn = heavy_turn();
    let ([hook], rig) = rig_with_webhooks(
        "[queue]\nslot_seconds = 0\n\n[relay]\nstall_seconds = 2\n",
        [(
            "ops",
            &[
                r#"events = ["relay_failed", "relay_recovered", "off_air", "on_air", "gave_up", "unstable", "back"]"#,
            ],
        )],
    );
    let _alice = rig.join("alice", SIZE_A);
    rig.daemon.wait_on_screen("alice", Duration::from_secs(15));
    let mut bob = rig.join("bob", SIZE_B);
    hook.wait_event("on_air", Duration::from_secs(10), |b| b["name"] == "alice")
        .expect("on_air alice");

    // Bob (next) loses his reader once: how streamers leave, so quiet.
    drop_reader(&rig.nginx, "bob");
    // Read again after 0.5 s; then dropped a second time in a row.
    drop_reader(&rig.nginx, "bob");
    let t = Instant::now();
    let failed = hook
        .wait_event("relay_failed", Duration::from_secs(10), |b| {
            b["name"] == "bob"
        })
        .unwrap_or_else(|| panic!("no relay_failed for bob: {:#?}", hook.bodies()));
    assert_eq!(failed["failures"], 2, "{failed}");
    let why = failed["why"].as_str().unwrap_or("");
    assert!(
        why.contains("closed") || why.contains("ended"),
        "why: {failed}"
    );
    let back = hook
        .wait_event("relay_recovered", Duration::from_secs(10), |b| {
            b["name"] == "bob"
        })
        .unwrap_or_else(|| panic!("no relay_recovered for bob: {:#?}", hook.bodies()));
    assert_eq!(back["failures"], 2, "{back}");
    eprintln!(
        "dropped twice: recovered {:.2} s after the second drop",
        t.elapsed().as_secs_f64()
    );

    // Bob's encoder freezes (SIGSTOP): splice mode judges his stream by
    // media arrival (`stall_seconds` is the restart relay's): unstable
    // within a second, his reader kept, back once it runs again.
    assert!(signal(bob.pid(), libc::SIGSTOP));
    let t = Instant::now();
    let stalled = hook.wait_event("unstable", Duration::from_secs(10), |b| b["name"] == "bob");
    let stalled_after = t.elapsed();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(signal(bob.pid(), libc::SIGCONT));
    let stalled =
        stalled.unwrap_or_else(|| panic!("no stall reported for bob: {:#?}", hook.bodies()));
    assert_eq!(stalled["state"], "stalled", "{stalled}");
    assert_eq!(stalled["on_air"], false, "{stalled}");
    assert!(
        stalled_after <= Duration::from_millis(1500),
        "a stall is told {stalled_after:?} after the media stops"
    );
    let back = hook.wait_event("back", Duration::from_secs(10), |b| b["name"] == "bob");
    assert!(back.is_some(), "{:#?}", hook.bodies());
    eprintln!(
        "stall reported {:.2} s after SIGSTOP",
        stalled_after.as_secs_f64()
    );
    assert!(bob.is_running());

    // Nothing else: alice stayed on air throughout, bob was never given up.
    std::thread::sleep(Duration::from_millis(300));
    let bodies = hook.bodies();
    assert_eq!(
        story(&bodies),
        [
            pair("on_air", "alice"),
            pair("relay_failed", "bob"),
            pair("relay_recovered", "bob"),
            pair("unstable", "bob"),
            pair("back", "bob"),
        ],
        "{bodies:#?}"
    );
    assert_eq!(rig.daemon.on_screen().as_deref(), Some("alice"));
    let m = rig.daemon.get("/metrics").body;
    assert!(
        m.lines()
            .any(|l| l == "motherstream_source_restarts_total 2"),
        "two failures counted (the quiet first one too):\n{m}"
    );
    assert!(
        m.lines()
            .any(|l| l == "motherstream_stream_health_changes_total{state=\"stalled\"} 1"),
        "the stall counted:\n{m}"
    );
    hook.assert_not_in(&rig.daemon.log());
}

/// The daemon's output ffmpeg: its child process pushing to the output app
/// (`-f flv -i pipe:0 … rtmp://…/motherstream/live?…`).
fn output_children(daemon: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Field 4 of /proc/PID/stat is the parent (after the `(comm)`).
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(daemon) {
            continue;
        }
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<String> = argv
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let pushes = argv
            .iter()
            .any(|a| a.starts_with("rtmp://") && a.contains("/motherstream/live"));
        if argv.iter().any(|a| a == "pipe:0") && pushes {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_output_is_told_and_so_is_its_recovery() {
    // Stall detection counts seconds without output: timing-sensitive.
    let _turn = heavy_turn();
    let ([hook], rig) = rig_with_webhooks("[queue]\nslot_seconds = 0\n", [("ops", &[])]);
    let _alice = rig.join("alice", SIZE_A);
    rig.daemon.wait_on_screen("alice", Duration::from_secs(15));
    let first = hook.wait_until(Duration::from_secs(10), |b| {
        story(b).contains(&pair("on_air", "alice"))
    });
    let daemon = rig.daemon.pid();
    let outs = output_children(daemon);
    assert_eq!(outs.len(), 1, "one output ffmpeg: {outs:?}");
    assert_eq!(
        rig.daemon.relay_pid(),
        Some(outs[0]),
        "the one /api/status names"
    );

    let t = Instant::now();
    assert!(signal(outs[0], libc::SIGKILL));
    let failed = hook
        .wait_event("output_failed", Duration::from_secs(10), |_| true)
        .unwrap_or_else(|| panic!("no output_failed: {:#?}", hook.bodies()));
    let failed_after = t.elapsed();
    assert_eq!(
        failed["detail"], "ffmpeg exited (killed by signal 9)",
        "{failed}"
    );
    let back = hook.wait_event("output_recovered", Duration::from_secs(15), |_| true);
    let back_after = t.elapsed();
    assert!(back.is_some(), "no output_recovered: {:#?}", hook.bodies());
    eprintln!(
        "output killed: output_failed after {:.3} s, output_recovered after {:.2} s",
        failed_after.as_secs_f64(),
        back_after.as_secs_f64()
    );
    // A new output, and it has run a while before it counts as back.
    let now = output_children(daemon);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], outs[0]);
    assert!(back_after >= Duration::from_secs(3), "{back_after:?}");
    rig.assert_on_air(SIZE_A, Duration::from_secs(15));

    // Exactly these two, nothing about alice (she never left the screen).
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<(String, String)> = story(&hook.bodies())[first.len()..].to_vec();
    assert_eq!(
        after,
        [pair("output_failed", ""), pair("output_recovered", "")],
        "{:#?}",
        hook.bodies()
    );
    let metric = |line: &str| {
        let m = rig.daemon.get("/metrics").body;
        assert!(m.lines().any(|l| l == line), "{line}:\n{m}");
    };
    metric("motherstream_output_up 1");
    metric("motherstream_output_restarts_total 1");

    // Killed again, and its successor too before it counts as back: one
    // outage (one message each way), two more deaths counted.
    let told = hook.bodies().len();
    let second = output_children(daemon);
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(signal(second[0], libc::SIGKILL));
    let third = wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        let c = output_children(daemon);
        (c.len() == 1 && c[0] != second[0]).then(|| c[0])
    })
    .expect("the output is started again");
    assert!(signal(third, libc::SIGKILL));
    hook.wait_event("output_recovered", Duration::from_secs(20), |_| true);
    let back = hook.wait_until(Duration::from_secs(20), |b| {
        story(&b[told..]).contains(&pair("output_recovered", ""))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        story(&hook.bodies()[told..]),
        [pair("output_failed", ""), pair("output_recovered", "")],
        "{back:#?}"
    );
    metric("motherstream_output_up 1");
    metric("motherstream_output_restarts_total 3");
    hook.assert_not_in(&rig.daemon.log());
}

#[test]
fn restart_mode_relay_failed_and_recovered() {
    // Stall detection counts seconds without output: timing-sensitive.
    let _turn = heavy_turn();
    let ([hook], rig) = rig_with_webhooks(
        "[queue]\nslot_seconds = 0\n\n[relay]\nmode = \"restart\"\nstall_seconds = 2\n",
        [("ops", &[r#"events = ["relay_failed", "relay_recovered"]"#])],
    );
    let mut alice = rig.join("alice", SIZE_A);
    rig.daemon.wait_on_screen("alice", Duration::from_secs(20));
    // The relay ffmpeg reads live/alice: nginx drops it, twice in a row.
    drop_reader(&rig.nginx, "alice");
    rig.daemon.wait_on_screen("alice", Duration::from_secs(20));
    drop_reader(&rig.nginx, "alice");
    let failed = hook
        .wait_event("relay_failed", Duration::from_secs(10), |b| {
            b["name"] == "alice"
        })
        .unwrap_or_else(|| panic!("{:#?}", hook.bodies()));
    assert_eq!(failed["failures"], 2, "{failed}");
    assert!(
        failed["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("relay exited")),
        "{failed}"
    );
    let back = hook
        .wait_event("relay_recovered", Duration::from_secs(20), |b| {
            b["name"] == "alice"
        })
        .unwrap_or_else(|| panic!("no relay_recovered: {:#?}", hook.bodies()));
    assert_eq!(back["failures"], 2, "{back}");

    // Her encoder freezes: the relay's output stalls (its -progress stops).
    assert!(signal(alice.pid(), libc::SIGSTOP));
    let stalled = hook.wait_event("relay_failed", Duration::from_secs(10), |b| {
        b["failures"] == 3
    });
    assert!(signal(alice.pid(), libc::SIGCONT));
    let stalled = stalled.unwrap_or_else(|| panic!("no stall: {:#?}", hook.bodies()));
    assert_eq!(stalled["why"], "stalled: no output for 2 s", "{stalled}");
    let back = hook.wait_event("relay_recovered", Duration::from_secs(20), |b| {
        b["failures"] == 3
    });
    assert!(back.is_some(), "{:#?}", hook.bodies());
    rig.daemon.wait_on_screen("alice", Duration::from_secs(20));
    assert!(alice.is_running());
    assert_eq!(
        story(&hook.bodies()),
        [
            pair("relay_failed", "alice"),
            pair("relay_recovered", "alice"),
            pair("relay_failed", "alice"),
            pair("relay_recovered", "alice"),
        ],
        "{:#?}",
        hook.bodies()
    );
    hook.assert_not_in(&rig.daemon.log());
}

#[test]
fn obs_killed_is_lost_and_started_again_is_back() {
    let _turn = heavy_turn();
    let hook = Receiver::start(Mode::Ok);
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let mut obs = Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        ..ObsOpts::default()
    });
    // OBS is not there yet when the daemon starts.
    obs.kill9();
    let pw_dir = TempDir::new("obs-pw");
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port: nginx.rtmp_port,
        nginx_http_port: nginx.http_port,
        extra_toml: format!(
            "{}\n[[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"obs_lost\", \"obs_back\"]\n",
            obs.daemon_toml(pw_dir.path(), true),
            hook.url()
        ),
        bin: daemon_bin(),
        hook_secret: Some(nginx.hook_secret.clone()),
    });
    let rig = Rig { daemon, nginx };
    hook.known_names(rig.daemon.guest_names());
    let connected = || rig.daemon.status()["obs"]["connected"] == true;
    let wait_connected = |want: bool, within: Duration| {
        let ok = wait_for(within, Duration::from_millis(50), || {
            (connected() == want).then_some(())
        });
        assert!(
            ok.is_some(),
            "OBS connected should be {want} within {within:?}: {}",
            rig.daemon.status()["obs"]
        );
    };
    // Not connected at start, then OBS comes up: connected, but nothing
    // was lost, so nothing is back.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!connected());
    obs.restart();
    let t = Instant::now();
    wait_connected(true, Duration::from_secs(40));
    eprintln!(
        "first connection {:.2} s after OBS answered",
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.bodies(), Vec::<Value>::new(), "no loss before");

    // OBS crashes: lost.
    let t = Instant::now();
    obs.kill9();
    let lost = hook
        .wait_event("obs_lost", Duration::from_secs(10), |_| true)
        .unwrap_or_else(|| panic!("no obs_lost: {:#?}", hook.bodies()));
    eprintln!(
        "obs_lost {:.3} s after the kill: {}",
        t.elapsed().as_secs_f64(),
        lost["reason"]
    );
    assert!(
        lost["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{lost}"
    );
    assert!(!connected());

    // Started again on the same port: back.
    obs.restart();
    let t = Instant::now();
    let back = hook.wait_event("obs_back", Duration::from_secs(40), |_| true);
    assert!(back.is_some(), "no obs_back: {:#?}", hook.bodies());
    eprintln!(
        "obs_back {:.2} s after OBS answered again",
        t.elapsed().as_secs_f64()
    );
    assert!(connected());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        story(&hook.bodies()),
        [pair("obs_lost", ""), pair("obs_back", "")],
        "{:#?}",
        hook.bodies()
    );
    hook.assert_not_in(&rig.daemon.log());
}
