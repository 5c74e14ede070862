//! Engine behaviour, driven through its channels in memory (see
//! `memory.rs`): the real engine, store and queue rules; a manual clock,
//! a relay that cuts when told, recorders for nginx drops and OBS.

use std::time::Duration;

use super::memory::Harness;
use super::{Answer, StreamerRequest, Why};
use crate::key::k;
use crate::moderation::Request;

fn ok(r: &Answer) {
    assert!(r.is_ok(), "{r:?}");
}

/// The public names of unregistered keys: guest tags, never the keys.
fn g(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| g1(key)).collect()
}

fn g1(key: &str) -> String {
    format!("guest-{}", k(key).tag())
}

/// What kind of refusal an answer is (None: not refused).
fn why(r: &Answer) -> Option<Why> {
    r.as_ref().err().map(|e| e.why)
}

#[test]
fn joins_go_on_air_in_order_and_the_relay_is_told_who_is_next() {
    let mut h = Harness::start("eng-join", "[obs]\nenabled = true\n");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    assert_eq!(h.queue(), g(&["alice", "bob"]));
    let w = h
        .relay
        .lock()
        .map(|l| l.wants.last().cloned())
        .ok()
        .flatten();
    let w = w.expect("the relay was told");
    assert_eq!(w.on_air.map(|s| s.key), Some(k("alice")));
    assert_eq!(w.next.map(|s| s.key), Some(k("bob")));
    let shown = h.obs.lock().map(|o| o.last().cloned()).ok().flatten();
    assert_eq!(
        shown.and_then(|s| s.on_air).as_deref(),
        Some(g1("alice").as_str())
    );
    assert_eq!(h.status()["on_air"]["name"], g1("alice"));
}

#[test]
fn the_on_air_publisher_leaving_is_a_forced_switch() {
    let mut h = Harness::start("eng-left", "");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    ok(&h.publish_done("alice"));
    assert_eq!(h.queue(), g(&["bob"]));
    let wants = h.relay.lock().map(|l| l.wants.clone()).unwrap_or_default();
    let left = wants
        .iter()
        .find(|w| w.left.is_some())
        .expect("a forced switch");
    assert_eq!(left.left, Some(k("alice")));
    assert_eq!(left.on_air.as_ref().map(|s| &s.key), Some(&k("bob")));
    assert!(h.drops().is_empty(), "a publisher that left is not dropped");
}

#[test]
fn slot_end_switches_and_drops_the_old_publisher_after_the_cut() {
    let mut h = Harness::start(
        "eng-slot",
        "[queue]\nslot_seconds = 60\nrejoin_block_seconds = 0\n",
    );
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    // The next streamer's keyframe has not come yet: alice keeps playing.
    h.set_cut(false);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.queue(), g(&["alice", "bob"]));
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.queue(),
        g(&["alice", "bob"]),
        "alice on screen until the cut"
    );
    assert_eq!(h.status()["on_air"]["name"], g1("alice"));
    assert!(
        h.drops().is_empty(),
        "not dropped before the cut: {:?}",
        h.drops()
    );
    // The cut: bob on screen, alice disconnected.
    h.set_cut(true);
    h.wake();
    assert_eq!(h.queue(), g(&["bob"]));
    assert_eq!(h.status()["on_air"]["name"], g1("bob"));
    assert_eq!(h.drops(), ["alice"]);
}

#[test]
fn a_cut_that_never_comes_still_drops_the_old_publisher_in_time() {
    let mut h = Harness::start("eng-slot-late", "[queue]\nslot_seconds = 30\n");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    h.set_cut(false);
    h.advance(Duration::from_secs(31));
    assert!(h.drops().is_empty());
    h.advance(Duration::from_secs(11));
    assert_eq!(h.drops(), ["alice"]);
}

#[test]
fn a_kick_blocks_rejoins_until_the_block_ends() {
    let mut h = Harness::start("eng-kick", "");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    ok(&h.moderate(Request::Kick {
        name: Some("alice".into()),
        seconds: Some(30),
    }));
    assert_eq!(h.queue(), g(&["bob"]));
    assert_eq!(h.drops(), ["alice"]);
    assert_eq!(why(&h.publish("alice")), Some(Why::Forbidden));
    h.advance(Duration::from_secs(31));
    ok(&h.publish("alice"));
    assert_eq!(h.queue(), g(&["bob", "alice"]));
}

#[test]
fn a_relay_given_up_on_skips_the_streamer_durably() {
    let mut h = Harness::start("eng-giveup", "");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    if let Ok(mut l) = h.relay.lock() {
        l.give_up = Some(k("alice"));
    }
    h.wake();
    assert_eq!(h.queue(), g(&["bob"]));
    let dir = h.shutdown();
    let h = Harness::start_in(dir, "");
    assert_eq!(h.queue(), g(&["bob"]), "the skip was saved");
}

#[test]
fn a_disk_that_cannot_be_written_answers_503_and_loses_nothing_said_ok() {
    let mut h = Harness::start("eng-disk", "");
    ok(&h.publish("alice"));
    // The snapshot can no longer be written: a directory with something in
    // it stands where its temp file goes (as root, modes stop nothing).
    let snap = h.dir.0.join("queue.tmp");
    std::fs::create_dir_all(snap.join("x")).expect("block the snapshot");
    let r = h.publish("bob");
    assert_eq!(why(&r), Some(Why::Unavailable), "{r:?}");
    assert!(
        r.as_ref()
            .is_err_and(|e| e.message.contains("cannot persist")),
        "{r:?}"
    );
    assert_eq!(why(&h.health()), Some(Why::Unavailable));
    assert_eq!(h.queue(), g(&["alice"]), "what was not saved is not shown");
    std::fs::remove_dir_all(&snap).expect("unblock");
    ok(&h.publish("bob"));
    ok(&h.health());
    assert_eq!(h.queue(), g(&["alice", "bob"]));
}

#[test]
fn shutdown_stops_the_relay_and_a_restart_keeps_the_queue() {
    let mut h = Harness::start("eng-stop", "");
    ok(&h.publish("alice"));
    ok(&h.publish("bob"));
    let relay = h.relay.clone();
    let dir = h.shutdown();
    assert!(
        relay.lock().map(|l| l.stopped).unwrap_or(false),
        "relay told to stop"
    );
    let h = Harness::start_in(dir, "");
    assert_eq!(h.queue(), g(&["alice", "bob"]));
}

#[test]
fn reload_applies_queue_settings_at_once() {
    let h = Harness::start("eng-reload", "");
    assert_eq!(h.status()["slot_seconds"], 0);
    let cfg = format!(
        "[state]\ndir = \"{}\"\n[queue]\nslot_seconds = 90\n",
        h.dir.0.display()
    );
    let path = h.dir.0.join("motherstream.toml");
    std::fs::write(&path, cfg).expect("write config");
    crate::config::Config::load(&path, false, &crate::config::ProcessEnv).expect("valid config");
    h.tx.send(super::Command::Reload).expect("engine alive");
    h.wake();
    assert_eq!(h.status()["slot_seconds"], 90);
}

#[test]
fn publishers_gone_while_down_are_dropped_durably_at_start() {
    let mut h = Harness::start("eng-gone", "");
    for k in ["alice", "bob", "carol"] {
        ok(&h.publish(k));
    }
    let dir = h.shutdown();
    // nginx unreadable: the queue stays as saved.
    let h = Harness::restart_in(dir, "", None);
    assert_eq!(h.queue(), g(&["alice", "bob", "carol"]));
    // Only bob still publishes: alice and carol left while we were down.
    let h = Harness::restart_in(h.shutdown(), "", Some(vec![k("bob")]));
    assert_eq!(h.queue(), g(&["bob"]));
    assert_eq!(h.status()["on_air"]["name"], g1("bob"));
    // That was saved: a start without nginx keeps it.
    let h = Harness::restart_in(h.shutdown(), "", None);
    assert_eq!(h.queue(), g(&["bob"]));
}

/// Moved from tests/streamers.rs (which keeps the nginx half: the slot end
/// disconnects the publisher, their encoder's reconnect is refused): the
/// timing of a per-streamer slot and of the rejoin block, on a manual clock.
#[test]
fn a_short_slot_ends_blocks_the_rejoin_and_the_block_ends() {
    let mut h = Harness::start(
        "eng-short-slot",
        "[queue]\nrequire_registered = true\nrejoin_block_seconds = 6\n",
    );
    let key = |r: Answer| {
        r.ok()
            .and_then(|v| v["key"].as_str().map(str::to_string))
            .expect("a new key")
    };
    let alice = key(h.streamers(StreamerRequest::Add {
        name: "alice".into(),
        slot_seconds: Some(4),
    }));
    let bob = key(h.streamers(StreamerRequest::Add {
        name: "bob".into(),
        slot_seconds: None,
    }));
    ok(&h.publish(&alice));
    ok(&h.publish(&bob));
    let st = h.status();
    assert_eq!(st["on_air"]["slot_left_s"], 4, "{st}");
    assert!(st["on_air"]["slot_ends_at"].as_u64().is_some(), "{st}");
    assert_eq!(st["next_up"], "bob");
    h.advance(Duration::from_millis(3900));
    assert_eq!(h.queue(), ["alice", "bob"], "not before 4 s");
    h.advance(Duration::from_millis(200));
    assert_eq!(h.queue(), ["bob"]);
    assert_eq!(
        h.drops(),
        std::slice::from_ref(&alice),
        "alice disconnected"
    );
    let st = h.status();
    assert_eq!(st["on_air"]["name"], "bob");
    assert_eq!(st["on_air"]["slot_left_s"], serde_json::Value::Null, "{st}");
    assert_eq!(st["blocked"][0]["name"], "alice", "{st}");
    // Her encoder reconnects at once: refused while blocked...
    let r = h.publish(&alice);
    assert_eq!(why(&r), Some(Why::Forbidden), "{r:?}");
    assert!(
        r.as_ref()
            .is_err_and(|e| e.message.contains("blocked from rejoining for another 6 s")),
        "{r:?}"
    );
    h.advance(Duration::from_millis(5900));
    assert_eq!(why(&h.publish(&alice)), Some(Why::Forbidden));
    // ...and accepted once the block is over, 6 s after the kick.
    h.advance(Duration::from_millis(200));
    ok(&h.publish(&alice));
    assert_eq!(h.queue(), ["bob", "alice"]);
}

#[test]
fn an_upgrade_that_cannot_happen_is_refused_and_changes_nothing() {
    let mut h = Harness::start("eng-upgrade", "");
    ok(&h.publish("alice"));
    // No HTTP stage to hand over (and a relay that cannot): refused with
    // the reason, the daemon goes on as before.
    let r = h.upgrade();
    assert_eq!(why(&r), Some(Why::Unavailable), "{r:?}");
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.message.contains("cannot hand over")),
        "{r:?}"
    );
    assert_eq!(h.queue(), g(&["alice"]));
    ok(&h.health());
    assert_eq!(
        h.health().ok().map(|v| v["handovers"].clone()),
        Some(0.into())
    );
}
