//! The overlays in a real browser: Debian's chromium, headless, on
//! loopback, driven over the DevTools protocol (a websocket, spoken with the
//! crate's own tungstenite). The pages are loaded once; the test changes the
//! queue through the daemon and waits for the page to follow by itself.
//! Screenshots land in `target/tmp/` (CARGO_TARGET_TMPDIR).
//!
//! chromium is a declared test dependency (tests/stages/streamers.deps):
//! when it is missing this test fails; it is never skipped.

mod common;

use common::*;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tungstenite::{Message, WebSocket};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless chromium of our own (own process group, own profile dir),
/// killed by its process group on Drop.
struct Browser {
    ws: WebSocket<TcpStream>,
    _proc: Proc,
    next_id: u64,
    _profile: TempDir,
}

impl Browser {
    fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium (tests/stages/streamers.deps declares it)"
        );
        let profile = TempDir::new("chromium");
        let log = std::fs::File::create(profile.join("stderr.log")).expect("chromium log");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-crash-reporter",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=640,360",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        // From here on a panic still kills it.
        let proc = Proc(child);
        // chromium writes the port it picked to <profile>/DevToolsActivePort.
        let port: u16 = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
            std::fs::read_to_string(profile.join("DevToolsActivePort"))
                .ok()?
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium did not open its DevTools port within 30 s:\n{}",
                tail(&profile.join("stderr.log"), 30)
            )
        });
        let list = get11(port, "/json/list");
        let targets: Value = serde_json::from_str(&list)
            .unwrap_or_else(|e| panic!("/json/list is not JSON ({e}): {list:?}"));
        let ws_url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let (ws, _) = tungstenite::client(ws_url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools websocket handshake: {e}"));
        Browser {
            _proc: proc,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    /// One DevTools call; its `result`. Events in between are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::Text(msg.to_string()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        for _ in 0..10_000 {
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("{method}: no answer: {e}"));
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            if v["id"] == id {
                if !v["error"].is_null() {
                    panic!("{method} failed: {}", v["error"]);
                }
                return v["result"].clone();
            }
        }
        panic!("{method}: no answer among 10000 messages");
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// Evaluate a JS expression in the page; its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Wait until `expr` evaluates to something `ok` accepts; its value.
    fn wait_eval(&mut self, expr: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = wait_for(timeout, Duration::from_millis(100), || {
            last = self.eval(expr);
            ok(&last).then(|| last.clone())
        });
        found
            .unwrap_or_else(|| panic!("page: {expr} never matched within {timeout:?}; last {last}"))
    }

    /// A PNG of the page over a dark backdrop (the page itself is
    /// transparent, as OBS wants), saved as `name`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        self.call(
            "Emulation.setDefaultBackgroundColorOverride",
            serde_json::json!({"color": {"r": 24, "g": 26, "b": 38, "a": 1}}),
        );
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        self.call(
            "Emulation.setDefaultBackgroundColorOverride",
            serde_json::json!({}),
        );
        path
    }
}

/// The chromium process; its whole process group is killed on Drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        signal_group(self.0.id(), libc::SIGKILL);
        let _ = wait_child(&mut self.0, Duration::from_secs(5));
    }
}

/// GET over HTTP/1.1 (chromium's DevTools server does not answer 1.0);
/// the body, read until the server closes.
fn get11(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect DevTools HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => text,
    }
}

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
