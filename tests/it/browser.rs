//! The overlays in a real browser: Debian's chromium, headless, on
//! loopback, driven over the DevTools protocol (a websocket, spoken with the
//! crate's own tungstenite). The pages are loaded once; the test changes the
//! queue through the daemon and waits for the page to follow by itself.
//! Screenshots land in `target/tmp/` (CARGO_TARGET_TMPDIR).
//!
//! chromium is a declared test dependency (tests/stages/streamers.deps):
//! when it is missing this test fails; it is never skipped.

use crate::common::chromium::Browser;
use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn add(d: &Daemon, name: &str) -> String {
    let out = Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .args(["streamer", "add", name])
        .output()
        .expect("motherstream streamer add");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn overlays_update_themselves_in_a_real_browser() {
    let _turn = heavy_turn();
    // Raw hooks are enough here: the overlays read /api/status. Relay
    // failures (there is no stream behind the hooks) must not skip anyone.
    let rig = Rig::start("[relay]\nmax_failures = 1000\n[queue]\nslot_seconds = 120\n");
    let d = &rig.daemon;
    let alice = add(d, "DJ Alice");
    let bob = add(d, "Bob");
    let carol = add(d, "Carol ☺");
    assert_eq!(d.raw_publish(&alice, 1).status, 200);
    assert_eq!(d.raw_publish(&bob, 2).status, 200);

    let mut b = Browser::start();
    let base = format!("http://127.0.0.1:{}", d.port);
    let now_next = "[document.getElementById('now').textContent, \
                    [...document.querySelectorAll('#next li')].map(li => li.textContent)]";

    // /queue-list
    b.navigate(&format!("{base}/queue-list"));
    b.wait_eval(now_next, Duration::from_secs(15), |v| {
        *v == serde_json::json!(["DJ Alice", ["Bob"]])
    });
    assert_eq!(
        b.eval("getComputedStyle(document.body).backgroundColor"),
        "rgba(0, 0, 0, 0)",
        "the overlay must be transparent"
    );
    assert_eq!(
        b.eval("document.documentElement.outerHTML.includes('DJ Alice')"),
        true
    );
    // The queue changes; the page follows without being reloaded.
    assert_eq!(
        b.eval("window.__marker = 42; window.__marker"),
        42,
        "marker set"
    );
    assert_eq!(d.raw_publish(&carol, 3).status, 200);
    b.wait_eval(now_next, Duration::from_secs(10), |v| {
        *v == serde_json::json!(["DJ Alice", ["Bob", "Carol ☺"]])
    });
    let r = d.hook("on_publish_done", &publish_done_body("live", &alice, 1));
    assert_eq!(r.status, 200);
    b.wait_eval(now_next, Duration::from_secs(10), |v| {
        *v == serde_json::json!(["Bob", ["Carol ☺"]])
    });
    assert_eq!(b.eval("window.__marker"), 42, "the page was reloaded");
    let html = b.eval("document.documentElement.outerHTML");
    for k in [&alice, &bob, &carol] {
        assert!(
            !html.to_string().contains(k.as_str()),
            "a key in the page: {html}"
        );
    }
    b.screenshot("queue-list.png");

    // /timer: Bob's 120 s slot counts down.
    b.navigate(&format!("{base}/timer"));
    let left = "Number(document.getElementById('left').dataset.left || -1)";
    let first = b.wait_eval(left, Duration::from_secs(15), |v| {
        v.as_f64().is_some_and(|s| (100.0..=120.0).contains(&s))
    });
    let text = b.eval("document.getElementById('left').textContent");
    assert!(
        text.as_str()
            .is_some_and(|t| t.starts_with("1:") || t.starts_with("2:0")),
        "m:ss expected, got {text}"
    );
    assert_eq!(b.eval("document.getElementById('who').textContent"), "Bob");
    assert_eq!(
        b.eval("getComputedStyle(document.body).backgroundColor"),
        "rgba(0, 0, 0, 0)"
    );
    let f = first.as_f64().unwrap_or(0.0);
    b.wait_eval(left, Duration::from_secs(10), |v| {
        v.as_f64().is_some_and(|s| s > 0.0 && s <= f - 2.0)
    });
    b.call(
        "Runtime.evaluate",
        serde_json::json!({"expression": "window.__marker = 7"}),
    );
    // A moderator extends the slot: the timer jumps without a reload.
    let r = d.admin("/api/slot/extend", r#"{"seconds":600}"#, None);
    assert_eq!(r.status, 200, "{r:?}");
    b.wait_eval(left, Duration::from_secs(10), |v| {
        v.as_f64().is_some_and(|s| s > 600.0)
    });
    let text = b.eval("document.getElementById('left').textContent");
    assert!(
        text.as_str()
            .is_some_and(|t| t.starts_with("11:") || t.starts_with("12:")),
        "{text}"
    );
    b.screenshot("timer.png");
    // Nobody on air: the timer hides itself.
    assert_eq!(d.admin("/clear-queue", "", None).status, 200);
    b.wait_eval(
        "document.body.classList.contains('idle')",
        Duration::from_secs(10),
        |v| *v == true,
    );
    assert_eq!(b.eval("window.__marker"), 7, "the page was reloaded");
}
