//! Without a streamer registry, nothing public carries a stream key: the
//! real daemon, nginx-rtmp and an ffmpeg publisher, a JSON and a Discord
//! webhook (the test receiver), the overlay in a real chromium. Anyone
//! watching the channel used to read the keys off `/queue-json`, the
//! overlays and the chat, and could then go on air as that streamer.
//!
//! Every check here reads the raw answers (`queue_raw`, `raw_bodies`, plain
//! GETs), never the harness's guest-name translation.

use crate::common::chromium::Browser;
use crate::common::webhook::{Mode, Receiver};
use crate::common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Whether any of `keys` is in `text`.
fn holds_a_key(text: &str, keys: &[&str]) -> bool {
    keys.iter().any(|k| text.contains(k))
}

/// The overlays, as OBS's browser source would show them: the guests'
/// names, no key.
fn overlays_hold_no_key(d: &Daemon, (guest_a, guest_b): (&str, &str), keys: &[&str]) {
    let mut b = Browser::start();
    b.navigate(&format!("http://127.0.0.1:{}/queue-list", d.port));
    let now_next = "[document.getElementById('now').textContent, \
                    [...document.querySelectorAll('#next li')].map(li => li.textContent)]";
    b.wait_eval(now_next, WAIT, |v| {
        *v == serde_json::json!([guest_a, [guest_b]])
    });
    let html = b.eval("document.documentElement.outerHTML");
    assert!(
        !holds_a_key(html.as_str().unwrap_or_default(), keys),
        "{html}"
    );
    b.navigate(&format!("http://127.0.0.1:{}/timer", d.port));
    b.wait_eval("document.readyState", WAIT, |v| *v == "complete");
    let html = b.eval("document.documentElement.outerHTML");
    assert!(
        !holds_a_key(html.as_str().unwrap_or_default(), keys),
        "{html}"
    );
}

/// The webhooks have told the story by then (on air, and the moves) by
/// the guests' names, without a key.
fn webhooks_hold_no_key(json: &Receiver, discord: &Receiver, guest_a: &str, keys: &[&str]) {
    let on_air = json.wait_event("on_air", WAIT, |b| b["name"] == guest_a);
    assert!(on_air.is_some(), "{:?}", json.raw_bodies());
    // Discord escapes Markdown in names: guest\-1a2b3c4d.
    let in_chat = guest_a.replace('-', "\\-");
    let said = discord.wait_until(WAIT, |b| {
        b.iter()
            .any(|v| v["content"].as_str().is_some_and(|c| c.contains(&in_chat)))
    });
    assert!(
        said.iter()
            .any(|v| v["content"].as_str().is_some_and(|c| c.contains(&in_chat))),
        "the chat names the guest: {said:?}"
    );
    for (what, r) in [("JSON", json), ("Discord", discord)] {
        for body in r.raw_bodies() {
            assert!(
                !holds_a_key(&body.to_string(), keys),
                "a stream key in the {what} webhook: {body}"
            );
        }
    }
}

#[test]
fn no_public_output_carries_a_stream_key_without_a_registry() {
    let _turn = heavy_turn();
    let json = Receiver::start(Mode::Ok);
    let discord = Receiver::start(Mode::Ok);
    let rig = Rig::start(&format!(
        "[relay]\nmax_failures = 1000\n[queue]\nslot_seconds = 600\n\
         [[notify]]\nname = \"mods\"\nurl = \"{}\"\n\
         [[notify]]\nname = \"chat\"\nurl = \"{}\"\nformat = \"discord\"\n",
        json.url(),
        discord.url()
    ));
    let d = &rig.daemon;
    assert!(
        !d.state_dir().join("streamers.json").exists(),
        "this test is about an install without a registry"
    );
    let key_a = format!("alicekey{}", random_hex(8));
    let key_b = format!("bobkey{}", random_hex(8));
    let keys = [key_a.as_str(), key_b.as_str()];
    let (guest_a, guest_b) = (d.guest(&key_a), d.guest(&key_b));
    assert_ne!(guest_a, guest_b);

    // A real stream on air, a second streamer waiting.
    let _a = rig.publish(&key_a, SIZE_A);
    let on_screen = wait_for(WAIT, Duration::from_millis(50), || {
        let st = d.get("/api/status").json();
        (st["on_air"]["name"] == guest_a.as_str() && st["on_air"]["relay"]["state"] == "running")
            .then_some(())
    });
    assert!(on_screen.is_some(), "{}", d.get("/api/status").body);
    assert_eq!(d.raw_publish(&key_b, 77).status, 200);

    // /queue-json keeps the seed's shape (an array of strings), with
    // guest names in the keys' places.
    let r = d.get("/queue-json");
    assert_eq!(r.status, 200);
    let names: Vec<String> = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not an array of strings ({e}): {}", r.body));
    assert_eq!(names, [guest_a.clone(), guest_b.clone()]);

    // Moderators name guests by their public name.
    let r = d.admin(
        "/api/move",
        &format!(r#"{{"name":"{guest_b}","position":0}}"#),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.admin(
        "/api/move",
        &format!(r#"{{"name":"{guest_a}","position":0}}"#),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!holds_a_key(&r.body, &keys), "the admin answer: {r:?}");

    overlays_hold_no_key(d, (&guest_a, &guest_b), &keys);

    webhooks_hold_no_key(&json, &discord, &guest_a, &keys);

    // Every public read, raw.
    for path in [
        "/queue-json",
        "/queue-list",
        "/timer",
        "/api/status",
        "/metrics",
        "/healthz",
    ] {
        let r = d.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!holds_a_key(&r.body, &keys), "{path}: {}", r.body);
    }
    assert_eq!(d.queue_raw(), [guest_a, guest_b]);
    assert!(
        d.log().contains("open to any stream key"),
        "a warning at start says the queue takes any key:\n{}",
        d.log()
    );
}
