//! Streamers, slots and moderation end to end: the real daemon, a private
//! nginx-rtmp with the control module and /stat, real ffmpeg publishers.

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const ON_AIR: Duration = Duration::from_secs(20);
const QUICK: Duration = Duration::from_secs(10);

/// `motherstream --config <the daemon's> streamer ARGS`: (exit code, stdout, stderr).
fn cli(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .arg("streamer")
        .args(args)
        .env_remove("STATE_DIRECTORY")
        .output()
        .expect("run motherstream streamer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `streamer add NAME [args]` → the printed key.
fn add(d: &Daemon, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["add", name];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(d, &args);
    assert_eq!(code, 0, "streamer add {name}: {err}");
    let key = out.trim().to_string();
    assert_eq!(key.len(), 32, "the key is printed alone on stdout: {out:?}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    key
}

/// Lines the daemon logged at info level or above.
fn public_log(d: &Daemon) -> String {
    d.log()
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every public output and the info log, for "no key in here" checks.
fn public_outputs(d: &Daemon) -> String {
    let mut all = String::new();
    for p in ["/queue-json", "/api/status", "/queue-list", "/timer"] {
        let r = d.get(p);
        assert_eq!(r.status, 200, "{p}");
        all.push_str(&r.body);
    }
    all.push_str(&public_log(d));
    all
}

fn assert_no_key(d: &Daemon, keys: &[&str]) {
    let all = public_outputs(d);
    for k in keys {
        assert!(
            !all.contains(k),
            "a stream key appears in public output or the info log:\n{all}"
        );
    }
}

/// A publish with `key` is refused: ffmpeg gives up and nothing is queued.
fn assert_refused(rig: &Rig, key: &str) {
    let before = rig.daemon.queue();
    let mut p = rig.publish(key, SIZE_C);
    let st = p.wait_exit(QUICK);
    assert!(
        matches!(st, Some(s) if !s.success()),
        "a refused publisher should exit with an error, got {st:?}"
    );
    assert_eq!(
        rig.daemon.queue(),
        before,
        "a refused publish changed the queue"
    );
}

fn admin(d: &Daemon, path: &str, body: &str) -> Value {
    let r = d.admin(path, body, None);
    assert_eq!(r.status, 200, "{path} {body}: {r:?}");
    let v = r.json();
    assert_eq!(v["ok"], true, "{path}: {v}");
    v
}

fn admin_err(d: &Daemon, path: &str, body: &str, status: u16) -> String {
    let r = d.admin(path, body, None);
    assert_eq!(r.status, status, "{path} {body}: {r:?}");
    r.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {r:?}"))
        .to_string()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn registered_keys_only_and_names_never_keys() {
    let _turn = light_turn();
    let rig = Rig::start("[queue]\nrequire_registered = true\n");
    let d = &rig.daemon;
    // CLI round trip: add prints a key; the running daemon takes it at once.
    let alice = add(d, "DJ Alice", &[]);
    let bob = add(d, "Bob", &["--slot-seconds", "600"]);
    let (code, list, _) = cli(d, &["list"]);
    assert_eq!(code, 0);
    assert!(list.contains("DJ Alice") && list.contains("600s"), "{list}");
    assert!(!list.contains(&alice) && !list.contains(&bob), "{list}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.state_dir().join("streamers.json"))
            .expect("streamers.json")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // An unknown key is refused, and the log names the address, not the key.
    assert_refused(&rig, "intruder0123456789");
    let log = public_log(d);
    assert!(
        log.contains("refused a publish from 127.0.0.1: unknown stream key (key#"),
        "{log}"
    );
    assert!(!log.contains("intruder0123456789"), "{log}");

    let _a = rig.join_as(&alice, "DJ Alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let _b = rig.join_as(&bob, "Bob", SIZE_B);
    assert_eq!(d.queue(), ["DJ Alice", "Bob"]);
    let st = d.status();
    assert_eq!(st["on_air"]["name"], "DJ Alice", "{st}");
    assert_eq!(st["next_up"], "Bob", "{st}");
    d.wait_relay(QUICK);
    assert_no_key(d, &[&alice, &bob]);

    // Renaming is not a thing, but removing is: with registration
    // required, the removed streamer's key no longer streams.
    let auth = format!("Bearer {}", d.admin_token);
    let r = d.request(
        "DELETE",
        "/api/streamers",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        r#"{"name":"Bob"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.wait_queue(&["DJ Alice"], QUICK);
    assert_refused(&rig, &bob);
    assert_no_key(d, &[&alice, &bob]);
}

#[test]
fn without_a_registry_a_key_is_shown_as_its_guest_name_before_and_after_one_exists() {
    let _turn = light_turn();
    let rig = Rig::start("[relay]\nmax_failures = 1000\n");
    let d = &rig.daemon;
    assert_eq!(d.raw_publish("rawkey1", 1).status, 200);
    let guest = d.guest("rawkey1");
    assert_eq!(
        d.queue_raw(),
        std::slice::from_ref(&guest),
        "never the key itself"
    );
    // The registry appears (CLI, daemon running): the guest keeps its name.
    let key = add(d, "Carol", &[]);
    wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        d.log().contains("streamer registry").then_some(())
    })
    .unwrap_or_else(|| panic!("the daemon did not log reading the registry:\n{}", d.log()));
    assert_eq!(d.raw_publish(&key, 2).status, 200);
    assert_eq!(d.queue_raw(), [guest.clone(), "Carol".to_string()]);
    // No key in any public output or the info log, before or after.
    let log = public_log(d);
    assert!(!log.contains("rawkey1") && !log.contains(&key), "{log}");
    assert!(log.contains(&guest), "{log}");
    for p in ["/queue-json", "/api/status"] {
        let body = d.get(p).body;
        assert!(!body.contains("rawkey1") && !body.contains(&key), "{body}");
    }
    // Moderators address the guest by its public name.
    let v = admin(
        d,
        "/api/move",
        &format!(r#"{{"name":"{guest}","position":1}}"#),
    );
    assert_eq!(names(&v["queue"]), ["Carol", guest.as_str()]);
}

#[test]
fn blank_and_look_alike_names_are_refused_by_the_admin_api_and_the_cli() {
    let _turn = light_turn();
    let rig = Rig::start("[relay]\nmax_failures = 1000\n");
    let d = &rig.daemon;
    admin(d, "/api/streamers", r#"{"name":"alice"}"#);
    // Hangul fillers, the blank braille cell, the combining grapheme
    // joiner: each shows as nothing, alone or beside visible letters.
    for name in [
        "\u{3164}",
        "\u{FFA0}",
        "\u{115F}",
        "\u{2800}",
        "\u{034F}",
        "\u{3164}\u{3164}\u{3164}",
        "bob\u{3164}",
        "\u{2800}dave",
    ] {
        let body = serde_json::json!({ "name": name }).to_string();
        let e = admin_err(d, "/api/streamers", &body, 400);
        assert!(e.contains("show as nothing"), "{name:?}: {e}");
        let (code, out, err) = cli(d, &["add", name]);
        assert_eq!(code, 1, "{name:?}: {err}");
        assert!(err.contains("show as nothing"), "{name:?}: {err}");
        assert!(out.is_empty(), "no key printed: {out:?}");
    }
    // Only marks or spaces: nothing to see.
    for name in ["\u{0301}\u{0301}", "\u{3000}"] {
        let body = serde_json::json!({ "name": name }).to_string();
        let e = admin_err(d, "/api/streamers", &body, 400);
        assert!(
            e.contains("visible character") || e.contains("spaces"),
            "{name:?}: {e}"
        );
    }
    // Look-alikes of alice: Cyrillic а (U+0430), Greek ο in "bοb" once
    // bob exists, a capital I for an l; and of the reserved guest names.
    admin(d, "/api/streamers", r#"{"name":"bob"}"#);
    for (name, like) in [
        ("\u{0430}lice", "alice"),
        ("ALICE\u{0301}", ""),
        ("b\u{03BF}b", "bob"),
        ("aIice", "alice"),
        ("gue\u{0455}t-1", "guest-"),
    ] {
        let body = serde_json::json!({ "name": name }).to_string();
        let r = d.admin("/api/streamers", &body, None);
        if like.is_empty() {
            // Another letter (an accent) makes another name.
            assert_eq!(r.status, 200, "{name:?}: {r:?}");
            continue;
        }
        assert_eq!(r.status, 400, "{name:?}: {r:?}");
        let e = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            e.contains("looks like") && e.contains(like),
            "{name:?}: {e}"
        );
        let (code, _, err) = cli(d, &["add", name]);
        assert_eq!(code, 1, "{name:?}: {err}");
        assert!(err.contains("looks like"), "{name:?}: {err}");
    }
    let list = d.admin_get("/api/streamers").json();
    let have: Vec<&str> = list["streamers"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(have, ["alice", "bob", "ALICE\u{0301}"], "{list}");
}

#[test]
fn short_slot_kicks_the_publisher_switches_and_blocks_the_rejoin() {
    let _turn = light_turn();
    let rig = Rig::start("[queue]\nrequire_registered = true\nrejoin_block_seconds = 6\n");
    let d = &rig.daemon;
    let alice = add(d, "alice", &["--slot-seconds", "4"]);
    let bob = add(d, "bob", &[]);
    let t0 = Instant::now();
    let mut a = rig.join_as(&alice, "alice", SIZE_A);
    let _b = rig.join_as(&bob, "bob", SIZE_B);
    let st = d.status();
    let left = st["on_air"]["slot_left_s"].as_u64().unwrap_or(99);
    assert!((1..=4).contains(&left), "slot_left_s {left}: {st}");
    assert!(st["on_air"]["slot_ends_at"].as_u64().is_some(), "{st}");
    assert_eq!(st["next_up"], "bob");

    // The slot ends: alice's ffmpeg is disconnected by nginx.
    let st = a.wait_exit(Duration::from_secs(12));
    let kicked_after = t0.elapsed();
    assert!(
        st.is_some(),
        "alice was not disconnected at the end of her slot"
    );
    assert!(
        kicked_after >= Duration::from_secs(4),
        "kicked too early: {kicked_after:?}"
    );
    d.wait_queue(&["bob"], QUICK);
    rig.assert_on_air(SIZE_B, ON_AIR);
    let on_air_after = t0.elapsed();
    let st = d.status();
    assert_eq!(st["on_air"]["name"], "bob");
    assert_eq!(
        st["on_air"]["slot_left_s"],
        Value::Null,
        "bob has no limit: {st}"
    );
    assert_eq!(st["blocked"][0]["name"], "alice", "{st}");
    eprintln!(
        "figures: 4 s slot; alice's ffmpeg exited {:.2} s after she joined, bob on the output by {:.2} s",
        kicked_after.as_secs_f64(),
        on_air_after.as_secs_f64()
    );

    // Her encoder reconnects at once: refused while blocked.
    assert_refused(&rig, &alice);
    assert!(
        public_log(d).contains("refused a publish of alice from 127.0.0.1: blocked from rejoining"),
        "{}",
        public_log(d)
    );
    // When the block ends (6 s after the kick) is timed in memory, on a
    // manual clock: engine::tests::a_short_slot_ends_blocks_the_rejoin_and_the_block_ends.
    assert_no_key(d, &[&alice, &bob]);
}

/// Alice, bob and carol registered through the admin API; their keys.
fn registry(d: &Daemon) -> Vec<String> {
    let mut keys = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let v = admin(d, "/api/streamers", &format!(r#"{{"name":"{name}"}}"#));
        keys.push(v["key"].as_str().expect("key").to_string());
    }
    admin_err(d, "/api/streamers", r#"{"name":"ALICE"}"#, 409);
    let list = d.admin_get("/api/streamers");
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("carol") && !list.body.contains(&keys[2]),
        "{}",
        list.body
    );
    let shown = d.admin_get("/api/streamers?show_keys=1");
    assert!(shown.body.contains(&keys[2]), "{}", shown.body);
    keys
}

/// Slot time left (unlimited, set, extended, shortened), the default slot
/// and the rejoin block.
fn slot_times(d: &Daemon) {
    // slot: unlimited now; set the time left, extend, shorten.
    assert_eq!(d.status()["on_air"]["slot_left_s"], Value::Null);
    admin_err(d, "/api/slot/extend", r#"{"seconds":30}"#, 400);
    admin(d, "/api/slot/extend", r#"{"left":100}"#);
    let left = |d: &Daemon| d.status()["on_air"]["slot_left_s"].as_u64().unwrap_or(0);
    assert!((98..=100).contains(&left(d)), "{}", d.status());
    admin(d, "/api/slot/extend", r#"{"seconds":-50}"#);
    assert!((48..=50).contains(&left(d)), "{}", d.status());
    admin(d, "/api/slot/extend", r#"{"seconds":20}"#);
    assert!((68..=70).contains(&left(d)), "{}", d.status());

    // default slot and rejoin block
    admin(d, "/api/slot/default", r#"{"seconds":300}"#);
    assert_eq!(d.status()["slot_seconds"], 300);
    admin(d, "/api/slot/default", r#"{"seconds":null}"#);
    assert_eq!(d.status()["slot_seconds"], 0);
    admin(d, "/api/rejoin-block", r#"{"enabled":false}"#);
    assert_eq!(d.status()["rejoin_block_seconds"], 0);
    admin(d, "/api/rejoin-block", r#"{"enabled":true}"#);
    assert_eq!(d.status()["rejoin_block_seconds"], 30);
}

#[test]
fn every_moderation_endpoint() {
    let _turn = light_turn();
    let rig = Rig::start(
        "[queue]\nrequire_registered = true\nslot_seconds = 0\nrejoin_block_seconds = 30\n",
    );
    let d = &rig.daemon;
    let keys = registry(d);

    let mut a = rig.join_as(&keys[0], "alice", SIZE_A);
    let mut b = rig.join_as(&keys[1], "bob", SIZE_B);
    let mut c = rig.join_as(&keys[2], "carol", SIZE_C);
    assert_eq!(d.queue(), ["alice", "bob", "carol"]);
    rig.assert_on_air(SIZE_A, ON_AIR);

    // move
    let v = admin(d, "/api/move", r#"{"name":"carol","position":1}"#);
    assert_eq!(names(&v["queue"]), ["alice", "carol", "bob"]);
    admin_err(d, "/api/move", r#"{"name":"carol","position":9}"#, 400);
    admin_err(d, "/api/move", r#"{"name":"zed","position":0}"#, 404);

    slot_times(d);

    // skip: alice off the air and disconnected (no block); carol on air.
    let v = admin(d, "/api/skip", "");
    assert_eq!(names(&v["queue"]), ["carol", "bob"]);
    assert!(
        a.wait_exit(QUICK).is_some(),
        "skipped publisher still connected"
    );
    rig.assert_on_air(SIZE_C, ON_AIR);
    assert!(d.status()["blocked"]
        .as_array()
        .is_some_and(|b| b.is_empty()));

    // kick a waiting streamer: disconnected and blocked for the rejoin time.
    let v = admin(d, "/api/kick", r#"{"name":"bob"}"#);
    assert_eq!(names(&v["queue"]), ["carol"]);
    assert!(
        b.wait_exit(QUICK).is_some(),
        "kicked publisher still connected"
    );
    let st = d.status();
    assert_eq!(st["blocked"][0]["name"], "bob", "{st}");
    assert!(
        st["blocked"][0]["left_s"].as_u64().unwrap_or(0) > 20,
        "{st}"
    );
    assert_refused(&rig, &keys[1]);

    // unblock: bob may come back at once.
    admin(d, "/api/unblock", r#"{"name":"bob"}"#);
    admin_err(d, "/api/unblock", r#"{"name":"bob"}"#, 400);
    let mut b = rig.join_as(&keys[1], "bob", SIZE_B);

    // block for N seconds: off the queue, disconnected, refused.
    let v = admin(d, "/api/block", r#"{"name":"bob","seconds":60}"#);
    assert_eq!(names(&v["queue"]), ["carol"]);
    assert!(b.wait_exit(QUICK).is_some());
    assert_refused(&rig, &keys[1]);
    admin_err(d, "/api/block", r#"{"name":"bob","seconds":0}"#, 400);
    admin_err(d, "/api/block", r#"{"name":"nobody","seconds":5}"#, 404);

    // kick the on-air streamer (no name): off, disconnected, blocked.
    let v = admin(d, "/api/kick", "{}");
    assert_eq!(names(&v["queue"]), Vec::<String>::new());
    assert!(c.wait_exit(QUICK).is_some());
    admin_err(d, "/api/skip", "", 400);

    // rotate-key: the old key stops working, the new one streams.
    admin(d, "/api/unblock", r#"{"name":"carol"}"#);
    let v = admin(d, "/api/streamers/rotate-key", r#"{"name":"carol"}"#);
    let new_key = v["key"].as_str().expect("new key").to_string();
    assert_ne!(new_key, keys[2]);
    assert_refused(&rig, &keys[2]);
    let _c2 = rig.join_as(&new_key, "carol", SIZE_C);
    admin(
        d,
        "/api/streamers/slot",
        r#"{"name":"carol","slot_seconds":120}"#,
    );
    let left = d.status()["on_air"]["slot_left_s"].as_u64().unwrap_or(0);
    assert!((115..=120).contains(&left), "{}", d.status());

    // Bad input: clear 400s, 404s, 405s, and nothing changes.
    let before = d.queue();
    admin_err(d, "/api/kick", "{nope", 400);
    admin_err(d, "/api/kick", r#"{"nmae":"bob"}"#, 400);
    admin_err(d, "/api/kick", r#"{"name":"zed"}"#, 404);
    admin_err(d, "/api/slot/extend", "{}", 400);
    admin_err(d, "/api/slot/default", r#"{"seconds":-1}"#, 400);
    admin_err(d, "/api/rejoin-block", r#"{"enabled":"yes"}"#, 400);
    admin_err(d, "/api/streamers", r#"{"name":"guest-x"}"#, 400);
    admin_err(d, "/api/streamers/rotate-key", r#"{"name":"zed"}"#, 404);
    let r = d.get("/api/kick");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("Allow"), Some("POST"));
    assert_eq!(d.queue(), before);
    assert_no_key(d, &[&keys[0], &keys[1], &keys[2], &new_key]);
}

#[test]
fn moderation_needs_the_admin_token() {
    let _turn = light_turn();
    let dir = TempDir::new("modtoken");
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "tok-42-long-enough-to-be-accepted\n").expect("token file");
    let rig = Rig::start(&format!(
        "[relay]\nmax_failures = 1000\n[http]\nadmin_token_file = \"{}\"\n",
        token_file.display()
    ));
    let d = &rig.daemon;
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    for (path, body) in [
        ("/api/skip", ""),
        ("/api/kick", ""),
        ("/api/block", r#"{"name":"alice","seconds":5}"#),
        ("/api/move", r#"{"name":"alice","position":0}"#),
        ("/api/slot/default", r#"{"seconds":5}"#),
        ("/api/streamers", r#"{"name":"x"}"#),
    ] {
        let r = d.request("POST", path, &[("Content-Type", "application/json")], body);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    assert_eq!(d.get("/api/streamers").status, 401);
    assert_eq!(d.queue(), ["alice"]);
    let r = d.admin("/api/skip", "", Some("tok-42-long-enough-to-be-accepted"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), Vec::<String>::new());
}

#[test]
fn restart_drops_entries_whose_publisher_left_while_down() {
    let _turn = light_turn();
    let mut rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    let mut b = rig.join("bob", SIZE_B);
    let _c = rig.join("carol", SIZE_C);
    rig.assert_on_air(SIZE_A, ON_AIR);

    rig.daemon.kill9();
    // bob leaves while the daemon is down: his publish_done goes nowhere.
    b.stop();
    assert!(
        wait_for(QUICK, Duration::from_millis(50), || {
            (!rig.nginx.published("live").contains(&"bob".to_string())).then_some(())
        })
        .is_some(),
        "nginx still lists bob"
    );
    rig.daemon.restart();
    assert_eq!(rig.daemon.queue(), ["alice", "carol"]);
    assert!(
        rig.daemon.log().contains(&format!(
            "dropping 1 queued streamers whose publishers left while motherstream was down: {}",
            rig.daemon.guest("bob")
        )),
        "{}",
        rig.daemon.log()
    );
    rig.assert_on_air(SIZE_A, ON_AIR);

    // nginx's stat page unreachable: the queue is kept as saved.
    rig.daemon.kill9();
    let cfg = std::fs::read_to_string(rig.daemon.config_path()).expect("config");
    let dead = free_port();
    let cfg = cfg.replace(
        &format!("127.0.0.1:{}/stat", rig.nginx.http_port),
        &format!("127.0.0.1:{dead}/stat"),
    );
    std::fs::write(rig.daemon.config_path(), cfg).expect("config");
    rig.daemon.restart();
    assert_eq!(rig.daemon.queue(), ["alice", "carol"]);
    assert!(
        rig.daemon.log().contains("cannot read nginx's stat page"),
        "{}",
        rig.daemon.log()
    );
}

#[test]
fn control_module_unreachable_still_switches() {
    let _turn = light_turn();
    // control_url points at a dead port: the slot end still switches.
    let dead = free_port();
    let rig = Rig::start(&format!(
        "[rtmp]\ncontrol_url = \"http://127.0.0.1:{dead}/control\"\n[queue]\nslot_seconds = 3\n"
    ));
    let d = &rig.daemon;
    let _a = rig.join("alice", SIZE_A);
    let _b = rig.join("bob", SIZE_B);
    d.wait_queue(&["bob"], Duration::from_secs(12));
    // Keep bob on (his own 3 s slot would end him too).
    admin(d, "/api/slot/extend", r#"{"left":600}"#);
    rig.assert_on_air(SIZE_B, ON_AIR);
    let log = public_log(d);
    assert_eq!(
        log.matches(&format!(
            "cannot disconnect {} through the nginx control module",
            d.guest("alice")
        ))
        .count(),
        1,
        "{log}"
    );
    assert!(log.contains("Connection refused"), "{log}");
    assert!(
        !log.contains("name=alice"),
        "the drop URL (with the key) is logged: {log}"
    );
}

#[test]
fn registry_edits_are_picked_up_from_file_events_and_on_sighup() {
    let _turn = light_turn();
    let rig = Rig::start("[relay]\nmax_failures = 1000\n");
    let d = &rig.daemon;
    let key = add(d, "Alice", &[]);
    assert_eq!(d.raw_publish(&key, 1).status, 200);
    assert_eq!(d.queue(), ["Alice"]);
    // Edit the file in place keeping inode, length and mtime: no check of
    // the file's metadata can see this, only its change event (inotify).
    let path = d.state_dir().join("streamers.json");
    let edit_in_place = |from: &str, to: &str| {
        use std::io::{Seek, Write};
        let meta = std::fs::metadata(&path).expect("streamers.json");
        let text = std::fs::read_to_string(&path).expect("read");
        let edited = text.replace(from, to);
        assert_eq!(edited.len(), text.len());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.write_all(edited.as_bytes()).expect("write");
        f.set_modified(meta.modified().expect("mtime"))
            .expect("set mtime");
    };
    let t0 = std::time::Instant::now();
    edit_in_place("\"Alice\"", "\"Alicf\"");
    d.wait_queue(&["Alicf"], Duration::from_secs(1));
    eprintln!("registry edit seen after {:?}", t0.elapsed());
    // SIGHUP re-reads it as well (and keeps what it read).
    assert!(signal(d.pid(), libc::SIGHUP));
    std::thread::sleep(Duration::from_millis(300));
    d.wait_queue(&["Alicf"], Duration::from_secs(3));
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
}
