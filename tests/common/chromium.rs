//! A headless chromium of our own, driven over the DevTools protocol (a
//! websocket, spoken with the crate's own tungstenite): Debian's chromium on
//! loopback, own process group, own profile directory. Used by the overlay
//! and console tests.

use super::*;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tungstenite::{Message, WebSocket};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless chromium of our own (own process group, own profile dir),
/// killed by its process group on Drop.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    _proc: Proc,
    next_id: u64,
    _profile: TempDir,
}

impl Browser {
    pub fn start() -> Browser {
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
    pub fn call(&mut self, method: &str, params: Value) -> Value {
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

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// Evaluate a JS expression in the page; its JSON value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Evaluate an expression that yields a promise; the JSON value it
    /// resolves to.
    pub fn eval_async(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Wait until `expr` evaluates to something `ok` accepts; its value.
    pub fn wait_eval(
        &mut self,
        expr: &str,
        timeout: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
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
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
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

impl Browser {
    /// Emulate a screen `width` x `height` CSS pixels (`mobile`: a phone's
    /// viewport rules and touch).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// A PNG of the whole page (beyond the viewport), saved as `name` in
    /// `target/tmp/`.
    pub fn screenshot_full(&mut self, name: &str) -> PathBuf {
        let m = self.call("Page.getLayoutMetrics", serde_json::json!({}));
        let size = &m["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(800.0),
            size["height"].as_f64().unwrap_or(600.0).min(6000.0),
        );
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png", "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// A real mouse event at page coordinates (`mousePressed`,
    /// `mouseMoved`, `mouseReleased`), left button.
    pub fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        let buttons = if kind == "mouseReleased" { 0 } else { 1 };
        self.call(
            "Input.dispatchMouseEvent",
            serde_json::json!({"type": kind, "x": x, "y": y, "button": "left",
                "buttons": buttons, "clickCount": 1}),
        );
    }

    /// The centre of the first element matching `selector`.
    pub fn center(&mut self, selector: &str) -> (f64, f64) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let v = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        match (v[0].as_f64(), v[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => panic!("no element {selector} on the page"),
        }
    }

    /// Click the first element matching `selector` with real mouse events.
    pub fn click(&mut self, selector: &str) {
        let (x, y) = self.center(selector);
        self.mouse("mouseMoved", x, y);
        self.mouse("mousePressed", x, y);
        self.mouse("mouseReleased", x, y);
    }

    /// Focus `selector` and type `text` as keyboard input.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.select && e.select(); }})()"
        ));
        self.call("Input.insertText", serde_json::json!({ "text": text }));
    }

    /// Press a key (e.g. "Enter") in the focused element.
    pub fn key(&mut self, key: &str, code: u32) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                serde_json::json!({"type": kind, "key": key, "code": key,
                    "windowsVirtualKeyCode": code, "text": if kind == "keyDown" && key == "Enter" { "\r" } else { "" }}),
            );
        }
    }
}

/// The chromium process; its whole process group is killed on Drop.
pub struct Proc(Child);

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
