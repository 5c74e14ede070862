//! The give-up, keep-place and pass-over rules, in memory on a manual
//! clock (the relay's health reports are injected).

use std::time::Duration;

use crate::engine::memory::Harness;
use crate::key::k;
use crate::relay::health::State;

/// The public names of unregistered keys: guest tags, never the keys.
fn g(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| g1(key)).collect()
}

fn g1(key: &str) -> String {
    format!("guest-{}", k(key).tag())
}

const CFG: &str = "[queue]\ngive_up_seconds = 20\nkeep_place_seconds = 60\n";

fn three(tag: &str, cfg: &str) -> Harness {
    let mut h = Harness::start(tag, cfg);
    for n in ["alice", "bob", "carol"] {
        assert!(h.publish(n).is_ok());
    }
    h.report("alice", State::Live);
    h.report("bob", State::Live);
    h
}

fn gave_up(h: &Harness) -> f64 {
    h.metric("motherstream_events_total{kind=\"gave_up\"} ")
}

#[test]
fn an_on_air_stall_gives_up_after_give_up_seconds_and_keeps_the_place() {
    let h = three("hl-giveup", CFG);
    h.report("alice", State::Stalled);
    assert_eq!(
        h.metric("motherstream_events_total{kind=\"unstable\"} "),
        1.0
    );
    h.advance(Duration::from_millis(19_900));
    assert_eq!(h.queue(), g(&["alice", "bob", "carol"]), "not before 20 s");
    h.advance(Duration::from_millis(200));
    assert_eq!(
        h.queue(),
        g(&["bob", "alice", "carol"]),
        "bob on air, alice right after him"
    );
    assert_eq!(
        h.wanted(),
        (Some("bob".to_string()), Some("alice".to_string()))
    );
    assert_eq!(gave_up(&h), 1.0);
    assert!(h.metric("motherstream_stalled_seconds_total ") >= 20.0);
    // Durable like any queue change.
    let st = h.status();
    assert_eq!(st["queue"][1]["name"], g1("alice"));
    assert_eq!(st["queue"][1]["health"]["state"], "stalled", "{st}");
    // She recovers within keep_place_seconds: she keeps her place.
    h.advance(Duration::from_secs(30));
    h.report("alice", State::Live);
    assert_eq!(h.metric("motherstream_events_total{kind=\"back\"} "), 1.0);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.queue(), g(&["bob", "alice", "carol"]));
    assert_eq!(gave_up(&h), 1.0, "given up on once");
}

#[test]
fn a_streamer_given_up_on_who_does_not_recover_goes_to_the_end() {
    let h = three("hl-keep", CFG);
    h.report("alice", State::Starved);
    h.advance(Duration::from_secs(21));
    assert_eq!(h.queue(), g(&["bob", "alice", "carol"]));
    h.advance(Duration::from_secs(59));
    assert_eq!(h.queue(), g(&["bob", "alice", "carol"]), "not before 60 s");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.queue(), g(&["bob", "carol", "alice"]));
}

#[test]
fn a_short_stall_recovered_in_time_changes_nothing() {
    let h = three("hl-short", CFG);
    h.report("alice", State::Stalled);
    h.advance(Duration::from_secs(15));
    h.report("alice", State::Live);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.queue(), g(&["alice", "bob", "carol"]));
    assert_eq!(gave_up(&h), 0.0);
    let s = h.metric("motherstream_stalled_seconds_total ");
    assert!((14.9..=15.1).contains(&s), "{s}");
}

#[test]
fn nobody_healthy_to_go_on_air_keeps_the_stalled_streamer_and_the_card() {
    let mut h = Harness::start("hl-alone", CFG);
    assert!(h.publish("alice").is_ok());
    assert!(h.publish("bob").is_ok());
    h.report("alice", State::Live);
    h.report("bob", State::Stalled);
    h.report("alice", State::Stalled);
    h.advance(Duration::from_secs(25));
    assert_eq!(h.queue(), g(&["alice", "bob"]), "bob is stalled too");
    assert_eq!(gave_up(&h), 0.0);
    // Bob comes back: now someone healthy can go on air.
    h.report("bob", State::Live);
    assert_eq!(h.queue(), g(&["bob", "alice"]));
    assert_eq!(gave_up(&h), 1.0);
}

#[test]
fn a_stalled_next_streamer_is_passed_over_at_the_slot_end_and_stays_queued() {
    let h = three(
        "hl-pass",
        "[queue]\nslot_seconds = 60\nrejoin_block_seconds = 0\n",
    );
    h.report("bob", State::Stalled);
    h.advance(Duration::from_secs(61));
    assert_eq!(
        h.queue(),
        g(&["carol", "bob"]),
        "bob passed over, still queued"
    );
    assert!(
        !h.ever_on_air().contains(&"bob".to_string()),
        "the relay was never told to put bob on air: {:?}",
        h.ever_on_air()
    );
    assert_eq!(
        h.wanted(),
        (Some("carol".to_string()), Some("bob".to_string()))
    );
}

#[test]
fn give_up_seconds_zero_never_gives_up() {
    let h = three("hl-never", "[queue]\ngive_up_seconds = 0\n");
    h.report("alice", State::Stalled);
    h.advance(Duration::from_secs(600));
    assert_eq!(h.queue(), g(&["alice", "bob", "carol"]));
}
