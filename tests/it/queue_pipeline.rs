//! The queue end to end: real nginx-rtmp, real ffmpeg publishers of
//! different sizes, the real daemon and its relay; a probe of
//! `motherstream/live` tells who is on air.

use crate::common::*;
use std::time::Duration;

const ON_AIR: Duration = Duration::from_secs(20);
const QUICK: Duration = Duration::from_secs(10);

#[test]
fn join_order_then_switch_on_leave() {
    let _turn = light_turn();
    // The restart relay: a new relay per streamer (the splice relay keeps
    // one output: tests/it/splice.rs).
    let rig = Rig::start("[relay]\nmode = \"restart\"\n");
    let mut a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let _b = rig.join("bob", SIZE_B);
    let _c = rig.join("carol", SIZE_C);
    assert_eq!(rig.daemon.queue(), ["alice", "bob", "carol"]);

    let st = rig.daemon.status();
    assert_eq!(st["on_air"]["name"], "alice", "{st}");
    assert!(
        st["on_air"]["since"].as_u64().is_some(),
        "on_air.since: {st}"
    );
    let names: Vec<&str> = st["queue"]
        .as_array()
        .unwrap_or_else(|| panic!("queue array: {st}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap_or(""))
        .collect();
    assert!(
        names == ["alice", "bob", "carol"] || names == ["bob", "carol"],
        "status queue {names:?}"
    );
    // Still alice on the output while the others wait.
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));

    // alice leaves: bob goes on air.
    let old_relay = rig.daemon.wait_relay(QUICK);
    a.stop();
    rig.daemon.wait_queue(&["bob", "carol"], QUICK);
    rig.assert_on_air(SIZE_B, ON_AIR);
    assert_eq!(rig.daemon.status()["on_air"]["name"], "bob");
    let new_relay = rig.daemon.wait_relay(QUICK);
    assert_ne!(old_relay, new_relay);
    assert!(
        wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
            (!pid_alive(old_relay)).then_some(())
        })
        .is_some(),
        "the old relay {old_relay} is still alive"
    );
}

#[test]
fn leave_of_a_waiting_streamer() {
    let _turn = light_turn();
    let rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let mut b = rig.join("bob", SIZE_B);
    let _c = rig.join("carol", SIZE_C);
    let relay = rig.daemon.wait_relay(QUICK);

    b.stop();
    rig.daemon.wait_queue(&["alice", "carol"], QUICK);
    // The on-air relay was not touched.
    assert_eq!(rig.daemon.relay_pid(), Some(relay));
    assert!(pid_alive(relay));
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));
}

#[test]
fn player_done_hooks_do_not_dequeue() {
    let _turn = light_turn();
    let rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    let _b = rig.join("bob", SIZE_B);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let relay = rig.daemon.wait_relay(QUICK);

    // Real players come and go (each probe is on_connect, on_play,
    // on_play_done, on_done for name=live in app motherstream).
    for _ in 0..3 {
        assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));
    }
    // A real player of the ingest stream itself (name=alice in app live).
    assert_eq!(
        probe_size(&rig.nginx.rtmp_url("live", "alice"), QUICK),
        Some(SIZE_A)
    );
    // And nginx-shaped player hooks naming the queued streamers.
    for (name, cid) in [("alice", 9001), ("bob", 9002)] {
        let r = rig.daemon.hook("on_play", &play_body("live", name, cid));
        assert_eq!(r.status, 200, "{r:?}");
        let r = rig
            .daemon
            .hook("on_play_done", &play_done_body("live", name, cid));
        assert_eq!(r.status, 200, "{r:?}");
        let r = rig
            .daemon
            .hook("on_done", &player_done_body("live", name, cid));
        assert_eq!(r.status, 200, "{r:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rig.daemon.queue(), ["alice", "bob"]);
    assert_eq!(
        rig.daemon.relay_pid(),
        Some(relay),
        "the relay was restarted"
    );
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));
}

#[test]
fn duplicate_publisher_is_refused_and_the_first_stays() {
    let _turn = light_turn();
    let rig = Rig::start("");
    let mut a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let relay = rig.daemon.wait_relay(QUICK);

    // A second ffmpeg on the same key: nginx refuses it ("Already
    // publishing") and then sends publish_done/done for name=alice with the
    // duplicate's clientid, while the first is still live.
    let mut dup = rig.publish("alice", SIZE_B);
    let st = dup.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(st, Some(s) if !s.success()),
        "duplicate publisher should fail, got {st:?}"
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        a.is_running(),
        "the first publisher was dropped: {}",
        a.stderr()
    );
    assert_eq!(rig.daemon.queue(), ["alice"]);
    assert_eq!(rig.daemon.relay_pid(), Some(relay));
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));
    assert!(
        rig.nginx.published("live").contains(&"alice".to_string()),
        "alice no longer publishing in nginx"
    );
}

#[test]
fn hijack_of_the_output_and_other_apps_refused() {
    let _turn = light_turn();
    let rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);

    // Raw hooks: output app without the relay secret, another app.
    let r = rig.daemon.hook(
        "on_publish",
        &publish_body("motherstream", "live", 7001, ""),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = rig.daemon.hook(
        "on_publish",
        &publish_body("motherstream", "live", 7002, "relay=guess"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = rig
        .daemon
        .hook("on_publish", &publish_body("other", "mallory", 7003, ""));
    assert_eq!(r.status, 403, "{r:?}");

    // Real ffmpeg publishing into motherstream/live: refused, output unchanged.
    let mut hijack = Publisher::start_url(&rig.output_url(), SIZE_C);
    let st = hijack.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(st, Some(s) if !s.success()),
        "hijack publisher: {st:?}"
    );
    // Real ffmpeg publishing to another app: refused, queue unchanged.
    let mut other = Publisher::start_url(&rig.nginx.rtmp_url("other", "mallory"), SIZE_C);
    let st = other.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(st, Some(s) if !s.success()),
        "other-app publisher: {st:?}"
    );

    assert_eq!(rig.daemon.queue(), ["alice"]);
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));
}
