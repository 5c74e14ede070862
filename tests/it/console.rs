//! The moderator console and a streamer's own page in a real browser:
//! headless chromium against the real daemon, nginx-rtmp and an ffmpeg
//! publisher. The console is loaded once and follows the queue by itself;
//! every action is done through the page (real mouse and keyboard events)
//! and checked both on the page and at the daemon. Screenshots at phone and
//! desktop width land in `target/tmp/` (printed).
//!
//! chromium, nginx and ffmpeg are declared test dependencies: when one is
//! missing this test fails; it is never skipped.

use crate::common::chromium::Browser;
use crate::common::*;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn cli(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .args(args)
        .output()
        .expect("motherstream streamer …");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const QUEUE: &str = "[...document.querySelectorAll('#queue li')].map(li => li.dataset.name)";
const RESULT: &str = "document.getElementById('result').textContent";

fn names(v: &[&str]) -> Value {
    serde_json::json!(v)
}

/// Wait until the page's result line says `want` (the server's answer).
fn wait_result(b: &mut Browser, want: &str) -> String {
    let v = b.wait_eval(RESULT, WAIT, |v| {
        v.as_str().is_some_and(|t| t.contains(want))
    });
    v.as_str().unwrap_or_default().to_string()
}

fn queue_is(d: &Daemon, want: &[&str]) -> bool {
    d.queue() == want.iter().map(|s| s.to_string()).collect::<Vec<_>>()
}

/// The console test's parts: the rig, its browser, the streamers' keys and
/// the session the console logged in with.
struct Console {
    rig: Rig,
    b: Browser,
    base: String,
    alice: String,
    bob: String,
    carol: String,
    carol_link: String,
    /// `ms_session=…`, as the browser sends it.
    cookie: String,
    csrf: String,
}

impl Console {
    /// Three streamers, the console open in chromium, a wrong token
    /// refused, then logged in from the keyboard: the session cookie is
    /// HttpOnly and SameSite=Strict, the CSRF token is in the page.
    fn log_in() -> Console {
        let rig = Rig::start("[relay]\nmax_failures = 1000\n[queue]\nslot_seconds = 120\n");
        let d = &rig.daemon;
        let alice = cli(d, &["streamer", "add", "Alice"]);
        let bob = cli(d, &["streamer", "add", "Bob"]);
        let carol = cli(d, &["streamer", "add", "Carol"]);
        let carol_link = cli(d, &["streamer", "link", "Carol"]);
        let base = format!("http://127.0.0.1:{}", d.port);
        assert!(
            carol_link.starts_with(&format!("{base}/me/")),
            "streamer link prints the page: {carol_link}"
        );

        let mut b = Browser::start();
        b.viewport(1280, 900, false);
        b.navigate(&format!("{base}/admin"));
        b.wait_eval("!document.getElementById('login').hidden", WAIT, |v| {
            *v == true
        });

        // A wrong token is refused with the server's words.
        b.type_into("#token", "not-the-token");
        b.key("Enter", 13);
        b.wait_eval(
            "document.getElementById('login-error').textContent",
            WAIT,
            |v| v.as_str().is_some_and(|t| t.contains("wrong admin token")),
        );
        // Log in from the keyboard.
        b.type_into("#token", &d.admin_token);
        b.key("Enter", 13);
        b.wait_eval("!document.getElementById('app').hidden", WAIT, |v| {
            *v == true
        });
        let cookies = b.call("Network.getCookies", serde_json::json!({ "urls": [&base] }));
        let session = cookies["cookies"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "ms_session"))
            .cloned()
            .unwrap_or_else(|| panic!("no session cookie: {cookies}"));
        assert_eq!(session["httpOnly"], true, "{session}");
        assert_eq!(session["sameSite"], "Strict", "{session}");
        assert_eq!(session["path"], "/", "{session}");
        assert_eq!(
            b.eval("document.cookie.includes('ms_session')"),
            false,
            "page scripts must not see the session cookie"
        );
        let sid = session["value"].as_str().unwrap_or_default().to_string();
        let csrf = b.eval("csrf").as_str().unwrap_or_default().to_string();
        assert_eq!(csrf.len(), 64, "CSRF token in the page: {csrf:?}");
        assert_eq!(
            b.eval("sessionStorage.getItem('motherstream-csrf')"),
            csrf.as_str(),
            "the tab keeps the token from the login answer"
        );

        Console {
            rig,
            b,
            base,
            alice,
            bob,
            carol,
            carol_link,
            cookie: format!("ms_session={sid}"),
            csrf,
        }
    }
}

#[test]
fn console_and_streamer_page_in_a_real_browser() {
    let _turn = heavy_turn();
    let mut c = Console::log_in();
    let _alice_pub = follows_the_queue_and_extends_the_slot(&mut c);
    reorders_by_mouse_button_and_keyboard(&mut c);
    refuses_requests_without_csrf_or_from_elsewhere(&mut c);
    streamer_page_follows_its_place(&mut c);
    a_page_of_another_origin_cannot_act(&mut c);
    skips_kicks_and_unblocks(&mut c);
    adds_a_streamer(&mut c);
    clears_logs_out_and_needs_the_token(&mut c);
}

/// A real publisher appears without a reload; the slot is extended.
fn follows_the_queue_and_extends_the_slot(c: &mut Console) -> Publisher {
    let Console {
        rig,
        b,
        alice,
        bob,
        carol,
        ..
    } = c;
    let d = &rig.daemon;
    // A real publisher appears without a reload.
    assert_eq!(b.eval("window.__marker = 42"), 42);
    let alice_pub = rig.publish(alice, SIZE_A);
    b.wait_eval(QUEUE, Duration::from_secs(20), |v| *v == names(&["Alice"]));
    b.wait_eval(
        "document.getElementById('onair-name').textContent",
        WAIT,
        |v| *v == "Alice",
    );
    assert_eq!(d.raw_publish(bob, 101).status, 200);
    assert_eq!(d.raw_publish(carol, 102).status, 200);
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Alice", "Bob", "Carol"]));
    // The relay reports on the page.
    b.wait_eval("document.getElementById('relay').textContent", WAIT, |v| {
        v.as_str().is_some_and(|t| t.contains("splice"))
    });

    // Extend the slot by 5 minutes.
    b.click("[data-extend='300']");
    wait_result(b, "Extend by 5:00: done");
    let left = d.status()["on_air"]["slot_left_s"].as_u64().unwrap_or(0);
    assert!(left > 300, "slot extended at the daemon: {left} s left");
    b.wait_eval(
        "Number(document.getElementById('onair-left').dataset.left || 0)",
        WAIT,
        |v| v.as_f64().is_some_and(|s| s > 300.0),
    );
    alice_pub
}

/// Reorder with the mouse, the up button and the keyboard; screenshots.
fn reorders_by_mouse_button_and_keyboard(c: &mut Console) {
    let Console { rig, b, .. } = c;
    let d = &rig.daemon;
    // Reorder by dragging Carol's grip above Bob, with the mouse.
    let (x, y) = b.center("#queue li[data-name='Carol'] .grip");
    let (_, y_bob) = b.center("#queue li[data-name='Bob'] .grip");
    b.mouse("mouseMoved", x, y);
    b.mouse("mousePressed", x, y);
    let target = y_bob - 12.0;
    for i in 1..=8 {
        b.mouse("mouseMoved", x, y + (target - y) * f64::from(i) / 8.0);
    }
    b.mouse("mouseReleased", x, target);
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Alice", "Carol", "Bob"]));
    assert!(queue_is(d, &["Alice", "Carol", "Bob"]), "{:?}", d.queue());
    wait_result(b, "Move Carol to 1: done");
    // The phone way: the up button; and the keyboard: Enter on a button.
    b.click("#queue li[data-name='Bob'] button[aria-label='Move Bob up']");
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Alice", "Bob", "Carol"]));
    b.eval("document.querySelector(\"#queue li[data-name='Carol'] button[aria-label='Move Carol up']\").focus()");
    b.key("Enter", 13);
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Alice", "Carol", "Bob"]));
    assert_eq!(b.eval("window.__marker"), 42, "the console was reloaded");

    // Screenshots with a full queue: desktop, then phone width.
    b.screenshot_full("console-desktop.png");
    b.viewport(375, 812, true);
    b.wait_eval("document.documentElement.clientWidth", WAIT, |v| *v == 375);
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= 375"),
        true,
        "nothing sticks out sideways at 375 px"
    );
    b.screenshot_full("console-phone.png");
    b.viewport(1280, 900, false);
}

/// Requests without the CSRF token, from another origin or with the cookie alone fail.
fn refuses_requests_without_csrf_or_from_elsewhere(c: &mut Console) {
    let Console {
        rig,
        b,
        alice,
        bob,
        carol,
        cookie,
        csrf,
        ..
    } = c;
    let d = &rig.daemon;
    // Requests without the CSRF token, or from another origin, fail.
    let r = b.eval_async(
        "fetch('/api/skip', {method: 'POST', credentials: 'same-origin', \
         headers: {'Content-Type': 'application/json'}, body: '{}'}) \
         .then(async r => [r.status, (await r.json()).error])",
    );
    assert_eq!(r[0], 403, "no CSRF token: {r}");
    assert!(r[1].as_str().is_some_and(|e| e.contains("CSRF")), "{r}");
    let with = |extra: &[(&str, &str)]| {
        let mut h = vec![
            ("Cookie", cookie.as_str()),
            ("X-CSRF-Token", csrf.as_str()),
            ("Content-Type", "application/json"),
        ];
        h.extend_from_slice(extra);
        d.request("POST", "/api/slot/extend", &h, r#"{"seconds":1}"#)
    };
    assert_eq!(with(&[]).status, 200, "cookie + CSRF token is enough");
    let r = with(&[("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403, "another origin: {r:?}");
    let r = with(&[("Sec-Fetch-Site", "cross-site")]);
    assert_eq!(r.status, 403, "a cross-site request: {r:?}");
    let r = d.request(
        "POST",
        "/api/skip",
        &[
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(r.status, 403, "cookie without the CSRF token: {r:?}");
    let r = d.request(
        "POST",
        "/api/skip",
        &[
            ("Cookie", cookie.as_str()),
            ("X-CSRF-Token", &"0".repeat(64)),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(r.status, 403, "a wrong CSRF token: {r:?}");
    let r = d.request(
        "POST",
        "/api/skip",
        &[
            ("X-CSRF-Token", csrf.as_str()),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(r.status, 401, "a CSRF token without the session: {r:?}");
    assert!(queue_is(d, &["Alice", "Carol", "Bob"]), "{:?}", d.queue());

    // The cookie alone (what a browser sends to any server on this host,
    // whatever its port) yields neither the CSRF token nor a key.
    let only_cookie = [("Cookie", cookie.as_str())];
    let r = d.request("GET", "/admin/session", &only_cookie, "");
    assert_eq!(r.status, 401, "the cookie alone: {r:?}");
    assert!(
        !r.body.contains(csrf.as_str()),
        "the CSRF token handed out: {r:?}"
    );
    let r = d.request("GET", "/api/streamers?show_keys=1", &only_cookie, "");
    assert_eq!(r.status, 403, "keys for the cookie alone: {r:?}");
    for key in [&alice, &bob, &carol] {
        assert!(!r.body.contains(key.as_str()), "a key leaked: {r:?}");
    }
    // The page that logged in has the token and gets both.
    let both = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let r = d.request("GET", "/admin/session", &both, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !r.body.contains(csrf.as_str()),
        "never handed out again: {r:?}"
    );
    let r = d.request("GET", "/api/streamers?show_keys=1", &both, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains(alice.as_str()),
        "keys with the token: {r:?}"
    );
}

/// The streamer's page follows Carol's place without a reload.
fn streamer_page_follows_its_place(c: &mut Console) {
    let Console {
        rig,
        b,
        base,
        carol,
        carol_link,
        ..
    } = c;
    let d = &rig.daemon;
    // The streamer's page: Carol is next, then moves back when Bob is put
    // ahead of her, without a reload.
    b.navigate(carol_link);
    let pos = "document.getElementById('me-pos').dataset.position";
    b.wait_eval(pos, WAIT, |v| *v == "1");
    b.wait_eval(
        "document.getElementById('me-status').textContent",
        WAIT,
        |v| *v == "You are next",
    );
    let wait1 = b.eval("document.getElementById('me-time').textContent");
    assert!(
        wait1.as_str().is_some_and(|t| t.starts_with("~")),
        "an estimated wait: {wait1}"
    );
    let server = b.eval("document.getElementById('me-server').value");
    assert_eq!(
        server,
        format!("rtmp://127.0.0.1:{}/live", rig.nginx.rtmp_port).as_str(),
        "the ingest URL"
    );
    assert_eq!(
        b.eval(&format!(
            "document.documentElement.outerHTML.includes('{carol}')"
        )),
        false,
        "the page never shows the stream key"
    );
    b.eval("window.__marker = 7");
    assert_eq!(
        d.admin("/api/move", r#"{"name":"Bob","position":1}"#, None)
            .status,
        200
    );
    b.wait_eval(pos, WAIT, |v| *v == "2");
    b.wait_eval(
        "document.getElementById('me-status').textContent",
        WAIT,
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("1 streamer before you"))
        },
    );
    let me = d.get(&format!(
        "{}/status",
        carol_link.trim_start_matches(base.as_str())
    ));
    assert_eq!(me.status, 200);
    let me = me.json();
    let wait = me["wait_s"].as_u64().unwrap_or(0);
    let alice_left = d.status()["on_air"]["slot_left_s"].as_u64().unwrap_or(0);
    assert!(
        wait >= alice_left + 115 && wait <= alice_left + 125,
        "wait = Alice's time left + Bob's 120 s slot: {me} (Alice has {alice_left} s)"
    );
    assert_eq!(
        b.eval("window.__marker"),
        7,
        "the streamer page was reloaded"
    );
    b.screenshot_full("me-desktop.png");
    b.viewport(375, 740, true);
    b.wait_eval("document.documentElement.clientWidth", WAIT, |v| *v == 375);
    assert_eq!(b.eval("document.documentElement.scrollWidth <= 375"), true);
    b.screenshot_full("me-phone.png");
    b.viewport(1280, 900, false);
    // A wrong link shows a clear message, not someone else's page.
    let r = d.get("/me/0123456789abcdef0123456789abcdef");
    assert_eq!(r.status, 404);
    let r = d.get("/me/0123456789abcdef0123456789abcdef/status");
    assert_eq!(r.status, 404);
}

/// A page of another origin cannot act on the console's behalf.
fn a_page_of_another_origin_cannot_act(c: &mut Console) {
    let Console { rig, b, base, .. } = c;
    let d = &rig.daemon;
    // A page of another origin (localhost is not 127.0.0.1) cannot act on
    // the console's behalf: no cookie goes with it, and it is refused.
    b.navigate(&format!("http://localhost:{}/queue-list", d.port));
    b.wait_eval("document.readyState", WAIT, |v| *v == "complete");
    b.eval_async(&format!(
        "fetch('{base}/api/skip', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'text/plain'}}, body: '{{}}'}}).then(() => 1, () => 0)"
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        queue_is(d, &["Alice", "Bob", "Carol"]),
        "a cross-site request changed the queue: {:?}",
        d.queue()
    );
}

/// Back to the console: skip, kick for 5 minutes, unblock.
fn skips_kicks_and_unblocks(c: &mut Console) {
    let Console {
        rig,
        b,
        base,
        carol,
        ..
    } = c;
    let d = &rig.daemon;
    // Back to the console: the session survives the reload.
    b.navigate(&format!("{base}/admin"));
    b.wait_eval("!document.getElementById('app').hidden", WAIT, |v| {
        *v == true
    });
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Alice", "Bob", "Carol"]));

    // Skip Alice (her encoder is disconnected).
    b.click("#skip");
    wait_result(b, "Skip: done");
    b.wait_eval(QUEUE, WAIT, |v| {
        v.as_array()
            .is_some_and(|a| a.first() == Some(&Value::from("Bob")) && !a.contains(&"Alice".into()))
    });

    // Kick Carol for 5 minutes: she is blocked until then; unblock her.
    b.type_into("#kick-min", "5");
    b.click("#queue li[data-name='Carol'] button.danger");
    wait_result(b, "Kick Carol (5:00): done");
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Bob"]));
    b.wait_eval(
        "[...document.querySelectorAll('#blocked li')].map(li => li.dataset.name)",
        WAIT,
        |v| *v == names(&["Carol"]),
    );
    let blocked = d.status()["blocked"].clone();
    let left = blocked[0]["left_s"].as_u64().unwrap_or(0);
    assert!((290..=300).contains(&left), "blocked for 5 min: {blocked}");
    assert_eq!(d.raw_publish(carol, 103).status, 403, "Carol is blocked");
    b.click("#blocked li[data-name='Carol'] button");
    wait_result(b, "Unblock Carol: done");
    b.wait_eval(
        "document.querySelectorAll('#blocked li').length",
        WAIT,
        |v| *v == 0,
    );
}

/// A refused name shows the server's words; a new streamer's key is shown once.
fn adds_a_streamer(c: &mut Console) {
    let Console { rig, b, base, .. } = c;
    let d = &rig.daemon;
    // The server's error text reaches the page.
    b.type_into("#add-name", "guest-x");
    b.key("Enter", 13);
    let t = wait_result(b, "failed (400)");
    assert!(t.contains("reserved"), "{t}");

    // Add a streamer: the key is shown once, with the full ingest URL.
    b.type_into("#add-name", "Dana");
    b.key("Enter", 13);
    wait_result(b, "Add Dana: done");
    b.wait_eval("!document.getElementById('secret').hidden", WAIT, |v| {
        *v == true
    });
    let key = b.eval("document.getElementById('secret-key').value");
    let key = key.as_str().unwrap_or_default().to_string();
    assert_eq!(key.len(), 32, "{key:?}");
    assert_eq!(
        b.eval("document.getElementById('secret-url').value"),
        format!("rtmp://127.0.0.1:{}/live/{key}", rig.nginx.rtmp_port).as_str()
    );
    let listed = d.admin_get("/api/streamers?show_keys=1").json();
    let dana = listed["streamers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "Dana"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        dana["key"],
        key.as_str(),
        "the key shown is Dana's: {listed}"
    );
    let link = b.eval("document.getElementById('secret-link').value");
    let link = link.as_str().unwrap_or_default().to_string();
    assert!(link.starts_with(&format!("{base}/me/")), "{link}");
    assert_eq!(d.get(link.trim_start_matches(base.as_str())).status, 200);
    b.click("#secret-done");
    b.wait_eval(
        &format!("document.documentElement.outerHTML.includes('{key}')"),
        WAIT,
        |v| *v == false,
    );
    b.wait_eval(
        "[...document.querySelectorAll('#streamers li')].map(li => li.dataset.name)",
        WAIT,
        |v| v.as_array().is_some_and(|a| a.contains(&"Dana".into())),
    );
    let plain = d.admin_get("/api/streamers").body;
    assert!(!plain.contains(&key), "the list without show_keys: {plain}");
    assert_eq!(d.raw_publish(&key, 104).status, 200, "Dana's key works");
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&["Bob", "Dana"]));
}

/// Clear asks first; log out ends the session; a tab without its token logs in again.
fn clears_logs_out_and_needs_the_token(c: &mut Console) {
    let Console {
        rig,
        b,
        base,
        cookie,
        csrf,
        ..
    } = c;
    let d = &rig.daemon;
    // Clear asks first.
    b.click("#clear");
    b.wait_eval(
        "document.getElementById('clear').classList.contains('armed')",
        WAIT,
        |v| *v == true,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(queue_is(d, &["Bob", "Dana"]), "one press only asks");
    b.click("#clear");
    wait_result(b, "Clear the queue: done");
    b.wait_eval(QUEUE, WAIT, |v| *v == names(&[]));

    // Log out: the session is gone at the server too.
    b.click("#logout");
    b.wait_eval("!document.getElementById('login').hidden", WAIT, |v| {
        *v == true
    });
    let r = d.request(
        "POST",
        "/api/slot/extend",
        &[
            ("Cookie", cookie.as_str()),
            ("X-CSRF-Token", csrf.as_str()),
            ("Content-Type", "application/json"),
        ],
        r#"{"seconds":1}"#,
    );
    assert_eq!(r.status, 401, "a logged-out session: {r:?}");

    // A tab without the token its login answered (a new tab, or one whose
    // storage is gone) is asked to log in, though its cookie is good.
    b.type_into("#token", &d.admin_token);
    b.key("Enter", 13);
    b.wait_eval("!document.getElementById('app').hidden", WAIT, |v| {
        *v == true
    });
    b.eval("sessionStorage.removeItem('motherstream-csrf')");
    b.navigate(&format!("{base}/admin"));
    b.wait_eval("!document.getElementById('login').hidden", WAIT, |v| {
        *v == true
    });
    assert_eq!(b.eval("document.getElementById('app').hidden"), true);
}
