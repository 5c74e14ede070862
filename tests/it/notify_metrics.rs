//! Webhook notifications and `/metrics` against real parts: the daemon,
//! nginx-rtmp, ffmpeg publishers taking turns, and webhook receivers that
//! are plain TCP servers (`tests/common/webhook.rs`: answering, failing,
//! hanging). The other event kinds are in `tests/it/notify_events.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::webhook::{Mode, Receiver};
use crate::common::*;
use serde_json::Value;

/// A sample's value from the metrics text (`name{labels} value`).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn promtool_check(text: &str) {
    let dir = TempDir::new("promtool");
    let path = dir.join("metrics.txt");
    std::fs::write(&path, text).expect("write metrics");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Alice on air, Bob next; Alice stops publishing: how long until the
/// output shows Bob. Returns the time, a `/metrics` scraped mid-switch and
/// Bob's publisher (he stays on air while it lives).
fn switch_on_leave(rig: &Rig) -> (Duration, String, Publisher) {
    let mut alice = rig.join("alice", SIZE_A);
    let on = wait_for(Duration::from_secs(15), Duration::from_millis(20), || {
        (rig.daemon.on_screen().as_deref() == Some("alice")).then_some(())
    });
    assert!(on.is_some(), "alice never on air: {}", rig.daemon.status());
    let bob = rig.join("bob", SIZE_B);
    // Bob's stream is being read before the switch (he is next).
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    alice.stop();
    let mid = rig.daemon.get("/metrics");
    assert_eq!(mid.status, 200);
    let done = wait_for(Duration::from_secs(15), Duration::from_millis(10), || {
        (rig.daemon.on_screen().as_deref() == Some("bob")).then_some(t0.elapsed())
    });
    let took = done.unwrap_or_else(|| panic!("bob never on air: {}", rig.daemon.status()));
    (took, mid.body, bob)
}

/// The answering webhook got the story in order, by name.
fn assert_story_in_order(ok: &Receiver) {
    let bodies = ok.wait_count(6, Duration::from_secs(10));
    let story: Vec<(String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["event"].as_str().unwrap_or("?").to_string(),
                b["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert!(story.len() >= 6, "{bodies:?}");
    assert_eq!(
        story[..3],
        [
            pair("joined", "alice"),
            pair("on_air", "alice"),
            pair("joined", "bob")
        ],
        "{bodies:?}"
    );
    // Alice's stream may end at the output before nginx's publish_done
    // hook says she left, or after: both orders are the truth.
    let mut middle = story[3..5].to_vec();
    middle.sort();
    assert_eq!(
        middle,
        [pair("left", "alice"), pair("off_air", "alice")],
        "{bodies:?}"
    );
    assert_eq!(story[5], pair("on_air", "bob"), "{bodies:?}");
    let off = bodies[3..5]
        .iter()
        .find(|b| b["event"] == "off_air")
        .cloned()
        .unwrap_or_default();
    assert!(
        off["reason"] == "left" || off["reason"] == "stream_ended",
        "{off}"
    );
    assert_eq!(bodies[1]["next"], Value::Null, "bob had not joined yet");
    assert!(bodies[5]["switch_ms"].as_u64().is_some(), "{}", bodies[5]);
}

/// The counters moved as the switch says.
fn assert_counters_moved(before: &str, after: &str) {
    let series = |t: &str, s: &str| sample(t, s);
    assert_eq!(
        series(before, "motherstream_switches_total{reason=\"left\"}"),
        0.0
    );
    assert_eq!(
        series(after, "motherstream_switches_total{reason=\"left\"}")
            + series(
                after,
                "motherstream_switches_total{reason=\"stream_ended\"}"
            ),
        1.0,
        "{after}"
    );
    assert!(
        series(after, "motherstream_cut_latency_seconds_count")
            > series(before, "motherstream_cut_latency_seconds_count")
    );
    assert!(
        series(
            after,
            "motherstream_hooks_total{endpoint=\"on_publish\",status=\"200\"}"
        ) >= 2.0,
        "{after}"
    );
    assert!(
        series(
            after,
            "motherstream_hooks_total{endpoint=\"on_publish_done\",status=\"200\"}"
        ) >= 1.0,
        "{after}"
    );
    assert_eq!(series(after, "motherstream_queue_length"), 1.0);
    assert_eq!(series(after, "motherstream_on_air"), 1.0);
    assert_eq!(series(after, "motherstream_output_up"), 1.0);
}

#[test]
fn events_in_order_a_hanging_webhook_delays_no_switch_and_metrics_pass_promtool() {
    let _turn = light_turn();
    // Without any webhook.
    let plain = Rig::start("[queue]\nslot_seconds = 0\n");
    let (without, _, _bob) = switch_on_leave(&plain);
    drop(plain);

    let ok = Receiver::start(Mode::Ok);
    let hang = Receiver::start(Mode::Hang);
    let rig = Rig::start(&format!(
        r#"
[queue]
slot_seconds = 0

[[notify]]
name = "community"
url = "{}"
events = ["on_air", "off_air", "joined", "left"]

[[notify]]
name = "stuck"
url = "{}"
timeout_ms = 15000
retries = 0
queue_size = 1
"#,
        ok.url(),
        hang.url()
    ));
    ok.known_names(rig.daemon.guest_names());
    hang.known_names(rig.daemon.guest_names());
    let before = rig.daemon.get("/metrics");
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        before.header("Content-Type")
    );
    promtool_check(&before.body);
    let (with, mid, _bob) = switch_on_leave(&rig);
    promtool_check(&mid);
    eprintln!(
        "switch on leave: {:.3} s without webhooks, {:.3} s with a hanging one",
        without.as_secs_f64(),
        with.as_secs_f64()
    );
    assert!(
        with < without + Duration::from_millis(1500),
        "a hanging webhook slowed the switch: {with:?} vs {without:?}"
    );

    assert_story_in_order(&ok);

    // The stuck webhook holds one request; one more waits; the rest were
    // dropped and counted.
    let after = rig.daemon.get("/metrics").body;
    promtool_check(&after);
    let dropped = sample(
        &after,
        "motherstream_notifications_total{notifier=\"stuck\",outcome=\"dropped\"}",
    );
    assert!(dropped >= 1.0, "nothing dropped:\n{after}");
    assert!(
        sample(
            &after,
            "motherstream_notifications_total{notifier=\"community\",outcome=\"sent\"}"
        ) >= 6.0,
        "{after}"
    );
    assert_eq!(hang.bodies().len(), 1, "the stuck webhook got one request");
    let log = rig.daemon.log();
    assert!(log.contains("notifier stuck: its queue is full"), "{log}");
    ok.assert_not_in(&log);
    hang.assert_not_in(&log);

    assert_counters_moved(&before.body, &after);
}

#[test]
fn failing_webhooks_are_retried_and_bad_requests_are_not() {
    let _turn = light_turn();
    let flaky = Receiver::start(Mode::FailFirst(2));
    let bad = Receiver::start(Mode::BadRequest);
    let rig = Rig::start(&format!(
        r#"
[[notify]]
name = "flaky"
url = "{}"
events = ["joined"]
format = "discord"

[[notify]]
name = "bad"
url = "{}"
events = ["joined"]
"#,
        flaky.url(),
        bad.url()
    ));
    flaky.known_names(rig.daemon.guest_names());
    bad.known_names(rig.daemon.guest_names());
    assert_eq!(rig.daemon.raw_publish("carol", 7).status, 200);
    let got = flaky.wait_count(3, Duration::from_secs(10));
    assert_eq!(got.len(), 3, "two 500s, then delivered: {got:?}");
    assert!(
        got.iter().all(|b| b == &got[0]),
        "the same message each time"
    );
    assert_eq!(
        got[0]["content"], "**carol** joined and goes on air.",
        "{got:?}"
    );
    let m = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        let m = rig.daemon.get("/metrics").body;
        (sample(
            &m,
            "motherstream_notifications_total{notifier=\"bad\",outcome=\"failed\"}",
        ) == 1.0
            && sample(
                &m,
                "motherstream_notifications_total{notifier=\"flaky\",outcome=\"sent\"}",
            ) == 1.0)
            .then_some(m)
    });
    assert!(m.is_some(), "{}", rig.daemon.get("/metrics").body);
    // A 400 is the request's fault: never retried.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bad.bodies().len(), 1);
    let log = rig.daemon.log();
    assert!(
        log.contains("notifier bad: joined not delivered after 1 attempt(s): HTTP 400"),
        "{log}"
    );
    flaky.assert_not_in(&log);
    bad.assert_not_in(&log);
}

/// The shipped example scrape config and alert rules are valid, and the
/// rules use metrics the daemon exports.
#[test]
fn shipped_prometheus_example_is_valid() {
    let _turn = light_turn();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging");
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus-example.yml"])
        .current_dir(dir)
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(format!("{dir}/prometheus-alerts.yml")).unwrap();
    let exported = motherstream::metrics::Metrics::new().render(&Default::default(), 0);
    for name in [
        "motherstream_output_up",
        "motherstream_on_air",
        "motherstream_queue_length",
    ] {
        assert!(rules.contains(name), "{name} not in the rules");
        assert!(
            exported.contains(&format!("\n{name} ")),
            "{name} not exported"
        );
    }
}
