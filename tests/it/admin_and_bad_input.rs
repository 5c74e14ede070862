//! Admin endpoints, read endpoints, authorization and bad input, against
//! the real binary (and real nginx + ffmpeg where the output matters).

use crate::common::*;
use std::time::Duration;

const ON_AIR: Duration = Duration::from_secs(20);
const QUICK: Duration = Duration::from_secs(10);

/// Queue entries enqueued by raw hooks have no stream behind them: keep the
/// daemon from skipping the head for failing relays during these tests.
const NO_SKIP: &str = "[relay]\nmax_failures = 1000\n";

fn assert_json_error(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {r:?}"));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no \"error\" string: {r:?}"));
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
}

fn assert_ok(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.json()["ok"], true, "{what}: {r:?}");
}

#[test]
fn admin_endpoints_move_the_output() {
    let _turn = light_turn();
    // The restart relay: clear-queue stops it and the output goes away
    // (the splice relay keeps its output on the slate; tests/it/splice.rs).
    let rig = Rig::start("[relay]\nmode = \"restart\"\n");
    let _a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let _b = rig.join("bob", SIZE_B);
    let _c = rig.join("carol", SIZE_C);
    let d = &rig.daemon;

    // override-queue: reorder the waiting ones, head unchanged.
    assert_ok(
        &d.admin("/override-queue", r#"["alice","carol","bob"]"#, None),
        "override reorder",
    );
    assert_eq!(d.queue(), ["alice", "carol", "bob"]);
    assert_eq!(probe_size(&rig.output_url(), QUICK), Some(SIZE_A));

    // Unknown name → 400, malformed JSON / not an array → 400; queue intact.
    assert_json_error(
        &d.admin("/override-queue", r#"["alice","nobody"]"#, None),
        400,
        "unknown name",
    );
    assert_json_error(
        &d.admin("/override-queue", r#"["alice","#, None),
        400,
        "malformed JSON",
    );
    assert_json_error(
        &d.admin("/override-queue", r#"{"a":1}"#, None),
        400,
        "not an array",
    );
    assert_eq!(d.queue(), ["alice", "carol", "bob"]);

    // A new head goes on air; entries left out are removed.
    assert_ok(
        &d.admin("/override-queue", r#"["carol","alice"]"#, None),
        "override new head",
    );
    assert_eq!(d.queue(), ["carol", "alice"]);
    rig.assert_on_air(SIZE_C, ON_AIR);

    // kill_ffmpeg: carol off air, alice next.
    assert_ok(&d.admin("/kill_ffmpeg", "", None), "kill_ffmpeg");
    d.wait_queue(&["alice"], QUICK);
    rig.assert_on_air(SIZE_A, ON_AIR);

    // clear-queue: nobody left, relay stopped.
    let relay = d.wait_relay(QUICK);
    assert_ok(&d.admin("/clear-queue", "", None), "clear-queue");
    assert_eq!(d.queue(), Vec::<String>::new());
    assert!(d.status()["on_air"].is_null(), "{}", d.status());
    let gone = wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
        (!pid_alive(relay)).then_some(())
    });
    assert!(
        gone.is_some(),
        "relay {relay} still running after clear-queue"
    );
    assert_eq!(probe_size(&rig.output_url(), Duration::from_secs(3)), None);
}

#[test]
fn admin_token_is_required_when_configured() {
    let _turn = light_turn();
    let dir = TempDir::new("token");
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "s3cret-token-of-at-least-32-chars\n").unwrap();
    let rig = Rig::start(&format!(
        "{NO_SKIP}[http]\nadmin_token_file = \"{}\"\n",
        token_file.display()
    ));
    let d = &rig.daemon;
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    assert_eq!(d.raw_publish("bob", 2).status, 200);
    assert_eq!(d.queue(), ["alice", "bob"]);

    for path in ["/kill_ffmpeg", "/clear-queue", "/override-queue"] {
        let body = if path == "/override-queue" {
            r#"["bob"]"#
        } else {
            ""
        };
        assert_json_error(
            &d.request("POST", path, &[("Content-Type", "application/json")], body),
            401,
            &format!("{path} without token"),
        );
        let r = d.admin(path, body, Some("wrong"));
        assert!(
            r.status == 401 || r.status == 403,
            "{path} wrong token: {r:?}"
        );
        assert_eq!(
            d.queue(),
            ["alice", "bob"],
            "{path} changed the queue without a token"
        );
    }
    // Reads and hooks need no token.
    assert_eq!(d.get("/queue-json").status, 200);
    assert_eq!(d.get("/api/status").status, 200);

    assert_ok(
        &d.admin(
            "/override-queue",
            r#"["bob","alice"]"#,
            Some("s3cret-token-of-at-least-32-chars"),
        ),
        "override with token",
    );
    assert_eq!(d.queue(), ["bob", "alice"]);
    assert_ok(
        &d.admin(
            "/kill_ffmpeg",
            "",
            Some("s3cret-token-of-at-least-32-chars"),
        ),
        "kill with token",
    );
    d.wait_queue(&["alice"], QUICK);
    assert_ok(
        &d.admin(
            "/clear-queue",
            "",
            Some("s3cret-token-of-at-least-32-chars"),
        ),
        "clear with token",
    );
    assert_eq!(d.queue(), Vec::<String>::new());
    // The token never shows up in public output.
    assert!(!d
        .get("/api/status")
        .body
        .contains("s3cret-token-of-at-least-32-chars"));
}

#[test]
fn read_endpoints() {
    let _turn = light_turn();
    let rig = Rig::start(NO_SKIP);
    let d = &rig.daemon;

    let h = d.get("/healthz");
    assert_eq!(h.status, 200, "{h:?}");

    let q = d.get("/queue-json");
    assert_eq!(q.status, 200);
    assert!(
        q.header("content-type").unwrap_or("").contains("json"),
        "{q:?}"
    );
    assert_eq!(q.json(), serde_json::json!([]));

    assert_eq!(d.raw_publish("alice", 1).status, 200);
    assert_eq!(d.raw_publish("bob", 2).status, 200);
    // Idempotent: the same key again does not enqueue twice.
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    // The seed's shape, with guest names in the keys' places.
    assert_eq!(
        d.get("/queue-json").json(),
        serde_json::json!([d.guest("alice"), d.guest("bob")])
    );

    let s = d.status();
    assert!(s["version"].is_string(), "{s}");
    assert!(s["uptime_s"].is_u64(), "{s}");
    assert_eq!(s["on_air"]["name"], "alice", "{s}");
    assert!(s["on_air"]["since"].is_u64(), "{s}");
    let relay_state = s["on_air"]["relay"]["state"].as_str().unwrap_or("");
    assert!(
        ["running", "starting", "backoff", "stopped"].contains(&relay_state),
        "relay state {relay_state:?}: {s}"
    );
    assert!(s["on_air"]["relay"]["restarts"].is_u64(), "{s}");
    let queue = s["queue"].as_array().unwrap_or_else(|| panic!("{s}"));
    assert!(
        queue
            .iter()
            .any(|e| e["name"] == "bob" && e["position"].is_u64()),
        "{s}"
    );
    assert!(s.get("obs").is_some(), "{s}");

    let l = d.get("/queue-list");
    assert_eq!(l.status, 200);
    assert!(
        l.header("content-type").unwrap_or("").contains("text/html"),
        "{l:?}"
    );
    let html = l.body.to_lowercase();
    assert!(
        html.contains("<html") || html.contains("<!doctype html"),
        "{}",
        l.body
    );
    assert!(
        html.contains("transparent"),
        "overlay background should be transparent"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let _turn = light_turn();
    let rig = Rig::start(NO_SKIP);
    let d = &rig.daemon;
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    assert_eq!(d.raw_publish("bob", 2).status, 200);
    let before = d.queue();
    assert_eq!(before, ["alice", "bob"]);

    // Bad names, malformed forms.
    let long = "x".repeat(65);
    for (what, body) in [
        ("slash in name", publish_body("live", "bad%2Fname", 10, "")),
        ("space in name", publish_body("live", "bad%20name", 11, "")),
        ("dots", publish_body("live", "..", 12, "")),
        ("65 chars", publish_body("live", &long, 13, "")),
        ("empty name", publish_body("live", "", 14, "")),
        (
            "no name",
            "app=live&addr=127.0.0.1&clientid=15&call=publish".to_string(),
        ),
        (
            "no app",
            "addr=127.0.0.1&clientid=16&call=publish&name=zed".to_string(),
        ),
        (
            "bad clientid",
            "app=live&addr=127.0.0.1&clientid=x1&call=publish&name=zed".to_string(),
        ),
        ("not a form", "\u{1}\u{2}%%%&&&==".to_string()),
    ] {
        assert_json_error(&d.hook("on_publish", &body), 400, what);
    }
    assert_json_error(
        &d.hook(
            "on_publish_done",
            &publish_done_body("live", "bad%2Fname", 1),
        ),
        400,
        "done bad name",
    );

    // 404, 405.
    assert_json_error(&d.get("/nope"), 404, "GET unknown path");
    assert_json_error(&d.post("/on_nothing", "app=live"), 404, "POST unknown hook");
    assert_json_error(&d.post("/queue-json", ""), 405, "POST /queue-json");
    assert_json_error(&d.get("/clear-queue"), 405, "GET /clear-queue");
    assert_json_error(&d.get("/kill_ffmpeg"), 405, "GET /kill_ffmpeg");
    let r = d.request("DELETE", &d.hook_path("on_publish"), &[], "");
    assert_json_error(&r, 405, "DELETE /on_publish");

    // 413: a body over 64 KiB.
    let big = format!(
        "{}&pad={}",
        publish_body("live", "huge", 20, ""),
        "a".repeat(70 * 1024)
    );
    assert_json_error(&d.hook("on_publish", &big), 413, "70 KiB body");
    let big_json = format!("[{}\"alice\"]", "\"bob\",".repeat(12_000));
    assert_json_error(
        &d.admin("/override-queue", &big_json, None),
        413,
        "override over 64 KiB",
    );

    // Garbage on the socket: the daemon answers or closes, and stays up.
    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x & 0xff) as u8);
    }
    let _ = send_raw(d.port, &garbage, Duration::from_secs(5));
    let _ = send_raw(d.port, b"GET\r\n\r\n", Duration::from_secs(5));
    let _ = send_raw(d.port, b"\r\n\r\n\r\n", Duration::from_secs(5));
    // A truncated body: Content-Length says more than arrives.
    let _ = send_raw(
        d.port,
        b"POST /on_publish HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\napp=live&name=trunc",
        Duration::from_secs(5),
    );
    // A connection that sends nothing and closes.
    drop(std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap());

    // Still serving; nothing lost, nothing added.
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(d.queue(), before);
    assert!(pid_alive(d.pid()), "the daemon died");
    assert!(
        !d.log().contains("panicked"),
        "a panic was logged:\n{}",
        d.log()
    );
}

#[test]
fn hook_forms_first_value_wins_and_get_query_works() {
    let _turn = light_turn();
    let rig = Rig::start(NO_SKIP);
    let d = &rig.daemon;
    // nginx appends the publisher's raw ?args after its own fields: a key
    // that injects `name` and `call` must not change who is queued.
    let r = d.hook(
        "on_publish",
        &publish_body("live", "alice", 1, "name=evil&call=play_done&app=other"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), ["alice"]);
    // `notify_method get`: the same form as the query string, empty body.
    let q = publish_body("live", "bob", 2, "");
    let r = d.get(&format!("{}?{q}", d.hook_path("on_publish")));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), ["alice", "bob"]);
    let q = publish_done_body("live", "bob", 2);
    let r = d.get(&format!("{}?{q}", d.hook_path("on_publish_done")));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), ["alice"]);
    // publish_done for a session that was never accepted does not dequeue.
    let r = d.hook("on_publish_done", &publish_done_body("live", "alice", 99));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), ["alice"]);
    // The real session leaving does.
    let r = d.hook("on_publish_done", &publish_done_body("live", "alice", 1));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.queue(), Vec::<String>::new());
}
