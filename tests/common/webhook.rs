//! A webhook receiver for the notification tests: a plain TCP server on a
//! free loopback port that records every request body (JSON) with its
//! arrival time, and answers as told (200, 500s then 200, 400, or never).
//!
//! Its URL carries a random path token, so a test can check that the URL
//! never reaches the daemon's log (`Receiver::token`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{random_hex, wait_for, Rig};

#[derive(Clone, Copy)]
pub enum Mode {
    /// 200 to everything.
    Ok,
    /// This many 500s, then 200s.
    FailFirst(usize),
    /// 400 to everything.
    BadRequest,
    /// Read the request, never answer.
    Hang,
}

/// A webhook receiver on a free loopback port; records request bodies.
pub struct Receiver {
    pub port: u16,
    token: String,
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
    /// Set by [`Receiver::known_names`]: bodies read with guest names
    /// given back as the keys the test published.
    names: Mutex<Option<super::GuestNames>>,
}

impl Receiver {
    pub fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let got: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let rec = got.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { break };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(body) = read_request(&s) else {
                    continue;
                };
                let n = {
                    let mut g = rec.lock().unwrap_or_else(|p| p.into_inner());
                    g.push((
                        Instant::now(),
                        serde_json::from_str(&body).unwrap_or(Value::Null),
                    ));
                    g.len()
                };
                let status = match mode {
                    Mode::Ok => "200 OK",
                    Mode::FailFirst(k) if n <= k => "500 Internal Server Error",
                    Mode::FailFirst(_) => "200 OK",
                    Mode::BadRequest => "400 Bad Request",
                    Mode::Hang => {
                        held.push(s);
                        continue;
                    }
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            port,
            names: Mutex::new(None),
            token: format!("hook-{}", random_hex(12)),
            got,
        }
    }

    /// The URL to put in `[[notify]] url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhook/{}", self.port, self.token)
    }

    /// The secret part of the URL (the part a log must never show).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Panics if the URL, its token or its address is in `log`.
    pub fn assert_not_in(&self, log: &str) {
        let addr = format!("127.0.0.1:{}", self.port);
        for secret in [self.url().as_str(), self.token(), addr.as_str()] {
            assert!(
                !log.contains(secret),
                "the webhook URL ({secret}) reached the daemon's log"
            );
        }
    }

    /// From now on, read bodies as the test knows the names (see
    /// [`super::GuestNames`]); [`Receiver::raw_bodies`] stays as sent.
    pub fn known_names(&self, names: super::GuestNames) {
        *self.names.lock().unwrap_or_else(|p| p.into_inner()) = Some(names);
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.timed().into_iter().map(|(_, v)| v).collect()
    }

    /// The bodies exactly as the daemon sent them.
    pub fn raw_bodies(&self) -> Vec<Value> {
        let g = self.got.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Bodies with their arrival times.
    pub fn timed(&self) -> Vec<(Instant, Value)> {
        let got = self.got.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match names {
            Some(n) => got
                .into_iter()
                .map(|(t, v)| (t, n.json_within(v)))
                .collect(),
            None => got,
        }
    }

    /// Wait (≤ `timeout`) until `n` bodies arrived; what arrived by then.
    pub fn wait_count(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(timeout, |b| b.len() >= n)
    }

    /// Wait (≤ `timeout`) until `done` holds for the bodies so far; what
    /// arrived by then (the caller asserts on it).
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_for(timeout, Duration::from_millis(20), || {
            let b = self.bodies();
            done(&b).then_some(b)
        })
        .unwrap_or_else(|| self.bodies())
    }

    /// Wait (≤ `timeout`) for a body with `"event": kind` for which `also`
    /// holds; that body.
    pub fn wait_event(
        &self,
        kind: &str,
        timeout: Duration,
        mut also: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        wait_for(timeout, Duration::from_millis(20), || {
            self.bodies()
                .into_iter()
                .find(|b| b["event"] == kind && also(b))
        })
    }
}

fn read_request(s: &TcpStream) -> Option<String> {
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len.min(1 << 20)];
    r.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A rig whose daemon tells webhook receivers what happens: the config is
/// `toml` and then, for each of `entries` (a name, and the entry's other
/// lines such as `format = ...` and `events = [...]`), a `[[notify]]` entry
/// whose url is a receiver's. Every receiver answers 200 and reads guest
/// names as the keys the test publishes.
pub fn rig_with_webhooks<const N: usize>(
    toml: &str,
    entries: [(&str, &[&str]); N],
) -> ([Receiver; N], Rig) {
    let hooks: [Receiver; N] = std::array::from_fn(|_| Receiver::start(Mode::Ok));
    let mut config = toml.to_string();
    for ((name, lines), hook) in entries.iter().zip(&hooks) {
        config.push_str(&format!(
            "\n[[notify]]\nname = \"{name}\"\nurl = \"{}\"\n",
            hook.url()
        ));
        for line in *lines {
            config.push_str(line);
            config.push('\n');
        }
    }
    let rig = Rig::start(&config);
    for hook in &hooks {
        hook.known_names(rig.daemon.guest_names());
    }
    (hooks, rig)
}
