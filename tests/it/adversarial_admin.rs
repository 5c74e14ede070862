//! Attacks on the admin endpoints and hooks, as a local process or a page
//! in a browser on this host would try them, against the real binary (and
//! a real nginx-rtmp where a publisher is involved). Each test failed on
//! the code before the access checks: loopback counted as admin, any Host
//! was served, bare hook paths took forged publishes, the queue had no cap
//! and `addr` went verbatim into the log and queue.json.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const NO_SKIP: &str = "[relay]\nmax_failures = 1000\n";

/// A daemon without nginx: hooks and admin calls are raw HTTP.
fn daemon(extra: &str) -> Daemon {
    let closed = free_port();
    Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{}", free_port()),
        rtmp_port: closed,
        nginx_http_port: closed,
        extra_toml: format!("{NO_SKIP}[rtmp]\nstat_url = \"\"\ncontrol_url = \"\"\n{extra}"),
        bin: daemon_bin(),
        hook_secret: None,
    })
}

/// One HTTP/1.1 request with exactly these headers (Host included, or not).
fn raw(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let bytes = send_raw(d.port, r.as_bytes(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_resp(&bytes)
}

fn bearer(d: &Daemon) -> String {
    format!("Bearer {}", d.admin_token)
}

fn streamer_names(d: &Daemon) -> Vec<String> {
    let r = d.admin_get("/api/streamers");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let list = v["streamers"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn csrf_form_posts_are_refused() {
    let _turn = light_turn();
    let d = daemon("");
    let host = format!("127.0.0.1:{}", d.port);
    let auth = bearer(&d);
    // What a hidden <form enctype="text/plain"> on a foreign page sends: no
    // token (a page cannot add one without a preflight we never allow).
    let r = raw(
        &d,
        "POST",
        "/api/streamers",
        &[
            ("Host", &host),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        r#"{"name":"mallory"}"#,
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(error_of(&r).contains("cross-site"), "{r:?}");
    // Even a request that somehow carries the token is refused cross-site.
    for (origin, path, body) in [
        (
            "http://evil.example",
            "/api/streamers",
            r#"{"name":"mallory"}"#,
        ),
        ("null", "/kill_ffmpeg", ""),
        ("http://127.0.0.1:1", "/clear-queue", ""),
    ] {
        let r = raw(
            &d,
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", origin),
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        assert_eq!(r.status, 403, "{origin} {path}: {r:?}");
    }
    // Same origin but a form body: a page on this very origin could only
    // send it with a token it cannot read, yet the body type is refused too.
    let r = raw(
        &d,
        "POST",
        "/api/streamers",
        &[
            ("Host", &host),
            ("Authorization", &auth),
            ("Content-Type", "text/plain"),
        ],
        r#"{"name":"mallory"}"#,
    );
    assert_eq!(r.status, 415, "{r:?}");
    let r = raw(
        &d,
        "POST",
        "/api/streamers",
        &[("Host", &host), ("Authorization", &auth)],
        r#"{"name":"mallory"}"#,
    );
    assert_eq!(r.status, 415, "no Content-Type: {r:?}");
    assert!(
        streamer_names(&d).is_empty(),
        "a refused call added someone"
    );
    // The same call done right works (same origin, token, JSON).
    let origin = format!("http://{host}");
    let r = raw(
        &d,
        "POST",
        "/api/streamers",
        &[
            ("Host", &host),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
            ("Authorization", &auth),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        r#"{"name":"carol"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(streamer_names(&d), ["carol"]);
    assert!(d
        .log()
        .contains("a cross-site request (Origin: http://evil.example)"));
}

#[test]
fn sec_fetch_site_cross_site_is_refused() {
    let _turn = light_turn();
    let d = daemon("");
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    let host = format!("127.0.0.1:{}", d.port);
    let auth = bearer(&d);
    for site in ["cross-site", "same-site"] {
        let r = raw(
            &d,
            "POST",
            "/api/skip",
            &[
                ("Host", &host),
                ("Sec-Fetch-Site", site),
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            "{}",
        );
        assert_eq!(r.status, 403, "{site}: {r:?}");
        // Reading keys cross-site is refused as well.
        let r = raw(
            &d,
            "GET",
            "/api/streamers?show_keys=1",
            &[
                ("Host", &host),
                ("Sec-Fetch-Site", site),
                ("Authorization", &auth),
            ],
            "",
        );
        assert_eq!(r.status, 403, "{site} GET: {r:?}");
    }
    assert_eq!(d.queue(), ["alice"], "a cross-site skip went through");
    // Public reads stay open to pages elsewhere (the OBS overlay).
    let r = raw(
        &d,
        "GET",
        "/queue-json",
        &[("Host", &host), ("Sec-Fetch-Site", "cross-site")],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = raw(
        &d,
        "POST",
        "/api/skip",
        &[
            ("Host", &host),
            ("Sec-Fetch-Site", "same-origin"),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(d.queue().is_empty());
}

#[test]
fn dns_rebinding_host_is_refused_everywhere() {
    let _turn = light_turn();
    let d = daemon("[http]\nallowed_hosts = [\"stream.example.org\"]\n");
    let auth = format!("Bearer {}", d.admin_token);
    let key = d.admin("/api/streamers", r#"{"name":"dana"}"#, None).json()["key"]
        .as_str()
        .expect("key")
        .to_string();
    let hook = d.hook_path("on_publish");
    let body = publish_body("live", "rebound", 7, "");
    // A page of rebind.evil.example, whose name now resolves to 127.0.0.1,
    // is same-origin to the browser: only Host gives it away.
    for host in [
        "rebind.evil.example",
        "rebind.evil.example:8483",
        "evil.localhost",
    ] {
        for (method, path, body, headers) in [
            (
                "GET",
                "/api/streamers?show_keys=1",
                "",
                vec![("Authorization", auth.as_str())],
            ),
            ("GET", "/api/streamers?show_keys=1", "", vec![]),
            ("GET", "/queue-json", "", vec![]),
            ("GET", "/api/status", "", vec![]),
            ("GET", "/healthz", "", vec![]),
            ("GET", "/queue-list", "", vec![]),
            ("GET", "/timer", "", vec![]),
            ("POST", hook.as_str(), body.as_str(), vec![]),
        ] {
            let mut h = vec![("Host", host)];
            h.extend(headers);
            let r = raw(&d, method, path, &h, body);
            assert_eq!(r.status, 403, "Host {host}: {method} {path}: {r:?}");
            assert!(!r.body.contains(&key), "the key leaked: {r:?}");
        }
    }
    // No Host at all (HTTP/1.0 allows it; a browser never does it).
    let r = parse_resp(
        &send_raw(
            d.port,
            b"GET /api/status HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )
        .expect("no-Host request"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(d.queue().is_empty(), "a rebound hook queued someone");
    // Loopback names, IP literals and the configured name are served.
    let port = d.port.to_string();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_string(),
        "stream.example.org".to_string(),
    ] {
        let r = raw(
            &d,
            "GET",
            "/api/streamers?show_keys=1",
            &[("Host", &host), ("Authorization", &auth)],
            "",
        );
        assert_eq!(r.status, 200, "Host {host}: {r:?}");
        assert!(r.body.contains(&key), "{r:?}");
    }
    assert!(
        d.log()
            .contains("Host \"rebind.evil.example\" is not a name of this server"),
        "no log line for the refusal"
    );
}

#[test]
fn admin_endpoints_need_the_token_even_from_loopback() {
    let _turn = light_turn();
    let d = daemon("");
    assert_eq!(d.raw_publish("alice", 1).status, 200);
    let json = [("Content-Type", "application/json")];
    for (path, body) in [
        ("/clear-queue", ""),
        ("/kill_ffmpeg", ""),
        ("/override-queue", r#"["alice"]"#),
        ("/api/skip", "{}"),
        ("/api/streamers", r#"{"name":"eve"}"#),
    ] {
        let r = d.request("POST", path, &json, body);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"), "{path}");
    }
    let r = d.get("/api/streamers?show_keys=1");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(d.queue(), ["alice"]);
    assert!(streamer_names(&d).is_empty());
    // Public reads need no token.
    for path in [
        "/queue-json",
        "/queue-list",
        "/timer",
        "/api/status",
        "/healthz",
    ] {
        assert_eq!(d.get(path).status, 200, "{path}");
    }
}

#[test]
fn token_and_hook_secret_are_created_0600_and_the_cli_finds_the_token() {
    let _turn = light_turn();
    let mut d = daemon("");
    for name in ["admin.token", "hook.secret"] {
        let p = d.state_dir().join(name);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        let text = std::fs::read_to_string(&p).expect("read secret");
        let line = text.trim();
        assert_eq!(line.len(), 64, "{name}: {line:?}");
        assert!(line.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        assert!(!d.log().contains(line), "{name} is in the log");
    }
    assert_ne!(d.admin_token, d.hook_secret);
    let token = d.admin_token.clone();
    // The CLI reads the token from the daemon's state directory by itself.
    let cli = |args: &[&str]| {
        let out = Command::new(daemon_bin())
            .arg("--config")
            .arg(d.config_path())
            .arg("api")
            .args(args)
            .env_remove("STATE_DIRECTORY")
            .output()
            .expect("run the CLI");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["POST", "/api/streamers", r#"{"name":"cli-made"}"#]);
    assert_eq!(code, Some(0), "{out} {err}");
    let key = serde_json::from_str::<Value>(&out).expect("JSON")["key"]
        .as_str()
        .expect("key")
        .to_string();
    let (code, out, _) = cli(&["GET", "/api/streamers?show_keys=1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("cli-made") && out.contains(&key), "{out}");
    let (code, out, err) = cli(&["POST", "/api/block", r#"{"name":"nobody","seconds":5}"#]);
    assert_eq!(code, Some(1), "an error answer exits 1: {out} {err}");
    assert!(err.contains("HTTP 404"), "{err}");
    // A restart keeps the token: nothing to redistribute.
    d.restart();
    assert_eq!(d.admin_token, token);
    assert_eq!(streamer_names(&d), ["cli-made"]);
}

#[test]
fn forged_hooks_without_the_secret_are_refused_and_nginx_with_it_is_served() {
    let _turn = light_turn();
    let rig = Rig::start(NO_SKIP);
    let d = &rig.daemon;
    let body = publish_body("live", "forged", 666, "");
    // The old bare path, a wrong secret, a secret prefix, a GET hook.
    let wrong = format!("/hook/{}/on_publish", "0".repeat(d.hook_secret.len()));
    let short = format!("/hook/{}/on_publish", &d.hook_secret[..8]);
    for path in ["/on_publish", wrong.as_str(), short.as_str()] {
        let r = d.post(path, &body);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        let r = d.get(&format!("{path}?{body}"));
        assert_eq!(r.status, 403, "GET {path}: {r:?}");
    }
    assert!(error_of(&d.post("/on_publish", &body)).contains("/hook/<secret>/on_publish"));
    assert!(d.queue().is_empty(), "a forged publish was queued");
    // A forged publish_done cannot take someone off either.
    assert_eq!(
        d.hook("on_publish", &publish_body("live", "alice", 5, ""))
            .status,
        200
    );
    let r = d.post("/on_publish_done", &publish_done_body("live", "alice", 5));
    assert_eq!(r.status, 403);
    assert_eq!(d.queue(), ["alice"]);
    assert!(d.log().contains("wrong hook secret"), "no log line");
    assert!(
        !d.log().contains(&d.hook_secret),
        "the secret is in the log"
    );
    // nginx, configured with the secret URL, gets its publisher in.
    assert_eq!(
        d.hook("on_publish_done", &publish_done_body("live", "alice", 5))
            .status,
        200
    );
    let _p = rig.join("realkey", SIZE_A);
    assert_eq!(d.queue(), ["realkey"]);
}

#[test]
fn a_full_queue_refuses_publishers_with_a_clear_error() {
    let _turn = light_turn();
    let rig = Rig::start(&format!("{NO_SKIP}[queue]\nmax_length = 3\n"));
    let d = &rig.daemon;
    for (i, k) in ["a1", "a2", "a3"].iter().enumerate() {
        assert_eq!(d.raw_publish(k, i as u64 + 1).status, 200, "{k}");
    }
    let r = d.raw_publish("a4", 4);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        error_of(&r).contains("the queue is full (3 streamers)"),
        "{r:?}"
    );
    // Someone already queued may publish again (an encoder reconnecting).
    assert_eq!(d.raw_publish("a2", 22).status, 200);
    assert_eq!(d.queue(), ["a1", "a2", "a3"]);
    // A real publisher is refused by nginx at once.
    let mut p = rig.publish("overflow", SIZE_B);
    let st = p.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| !s.success()),
        "the 4th publisher was not refused: {st:?}"
    );
    assert_eq!(d.queue(), ["a1", "a2", "a3"]);
    assert!(d
        .log()
        .contains("the queue is full (3 streamers, [queue] max_length)"));
    // Room again once someone leaves.
    assert_eq!(
        d.hook("on_publish_done", &publish_done_body("live", "a3", 3))
            .status,
        200
    );
    assert_eq!(d.raw_publish("a4", 4).status, 200);
}

#[test]
fn addr_junk_is_neither_logged_verbatim_nor_stored() {
    let _turn = light_turn();
    let d = daemon("");
    let forged_line = "2026-01-01T00:00:00.000Z ERROR FAKE-INJECTED-LINE";
    let addr = format!("1.2.3.4%0A{}", forged_line.replace(' ', "%20"));
    let body =
        publish_body("live", "alice", 1, "").replace("addr=127.0.0.1", &format!("addr={addr}"));
    assert!(body.contains("FAKE-INJECTED"), "{body}");
    assert_eq!(d.hook("on_publish", &body).status, 200);
    // A 60 KB addr (500 of these once made a 27 MB queue.json).
    let huge = "9".repeat(60_000);
    let body =
        publish_body("live", "bob", 2, "").replace("addr=127.0.0.1", &format!("addr={huge}"));
    assert_eq!(d.hook("on_publish", &body).status, 200);
    assert_eq!(d.queue(), ["alice", "bob"]);
    let log = d.log();
    assert!(
        log.contains(&format!("{} joined the queue", d.guest("alice"))),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000Z"),
            "injected line: {line:?}"
        );
        assert!(
            !line.contains("FAKE-INJECTED"),
            "junk addr logged: {line:?}"
        );
        assert!(!line.contains(&huge[..1000]), "huge addr logged");
    }
    let stored: u64 = ["queue.json", "queue.journal"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.state_dir().join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(stored < 8 * 1024, "{stored} bytes of state for two entries");
    let all = ["queue.json", "queue.journal"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(d.state_dir().join(f)).ok())
        .collect::<String>();
    assert!(!all.contains("FAKE") && !all.contains("1.2.3.4"), "{all}");
}

/// One HTTP/1.1 request to the daemon from the loopback address
/// 127.0.0.`host` (bound before connecting), the answer and its time.
fn from_host(d: &Daemon, host: u8, request: &[u8]) -> (Resp, Duration) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let start = std::time::Instant::now();
    // SAFETY: a new socket, bound and connected with sockaddr_in values
    // that live across the calls; its descriptor is handed to a TcpStream,
    // which owns (and closes) it from then on.
    let mut s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let local = sockaddr([127, 0, 0, host], 0);
        let bound = libc::bind(fd, std::ptr::addr_of!(local).cast(), len);
        assert_eq!(
            bound,
            0,
            "bind 127.0.0.{host}: {}",
            std::io::Error::last_os_error()
        );
        let peer = sockaddr([127, 0, 0, 1], d.port);
        let c = libc::connect(fd, std::ptr::addr_of!(peer).cast(), len);
        assert_eq!(c, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read the answer");
    (parse_resp(&buf), start.elapsed())
}

fn login_request(token: &str) -> Vec<u8> {
    let body = serde_json::json!({ "token": token }).to_string();
    format!(
        "POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The value of a counter series in `/metrics` (0 when absent).
fn metric(d: &Daemon, series: &str) -> u64 {
    let text = d.get("/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A wrong admin token, numbered.
fn wrong(i: usize) -> String {
    format!("not-the-admin-token-{i:04}-padding-padding")
}

/// A flood of other refused requests (a foreign Host): the wrong logins
/// after it are logged all the same (they have their own log budget).
fn refused_flood(d: &Daemon) {
    for _ in 0..20 {
        let r = raw(
            d,
            "GET",
            "/queue-json",
            &[("Host", "rebind.evil.example")],
            "",
        );
        assert_eq!(r.status, 403);
    }
}

/// Many addresses together meet the global budget (100, then 10 a second)
/// although each is within its own: how many were checked and refused.
fn many_addresses_meet_the_global_budget(d: &Daemon) -> (u64, u64) {
    let (mut g401, mut g429) = (0u64, 0u64);
    let t0 = std::time::Instant::now();
    for host in 3..=20u8 {
        for i in 0..10 {
            match from_host(d, host, &login_request(&wrong(i))).0.status {
                401 => g401 += 1,
                429 => g429 += 1,
                s => panic!("127.0.0.{host}: {s}"),
            }
        }
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "18 addresses × 10 wrong logins in {:.0} ms: {g401} checked, {g429} refused",
        elapsed.as_secs_f64() * 1000.0
    );
    assert!(g401 <= 100 + 10 * elapsed.as_secs() + 10, "{g401} checked");
    assert!(g429 > 0, "the global budget never ran out");
    (g401, g429)
}

#[test]
fn wrong_logins_are_slowed_per_address_and_overall_counted_and_logged_apart() {
    let _turn = light_turn();
    let d = daemon("");
    refused_flood(&d);
    let (mut n401, mut n429) = (0u64, 0u64);
    let mut first_429: Option<Resp> = None;
    let mut slowest_429 = Duration::ZERO;
    let t0 = std::time::Instant::now();
    for i in 0..60 {
        let (r, took) = from_host(&d, 1, &login_request(&wrong(i)));
        match r.status {
            401 => n401 += 1,
            429 => {
                n429 += 1;
                slowest_429 = slowest_429.max(took);
                first_429.get_or_insert(r);
            }
            s => panic!("wrong login {i}: {s} {r:?}"),
        }
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "one address, 60 wrong logins in {:.0} ms: {n401} checked (401), {n429} refused unchecked (429); slowest 429 {:.1} ms",
        elapsed.as_secs_f64() * 1000.0,
        slowest_429.as_secs_f64() * 1000.0
    );
    // A burst of 10, then one every 2 s.
    let allowed = 10 + elapsed.as_secs() / 2 + 1;
    assert!(
        n401 <= allowed,
        "{n401} wrong tokens checked in {elapsed:?}"
    );
    assert!(n429 >= 60 - allowed, "{n429} refused");
    // Refused at once (no worker sleeps on it), with when to come back.
    assert!(slowest_429 < Duration::from_millis(500), "{slowest_429:?}");
    let r = first_429.expect("a 429");
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {r:?}"));
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        error_of(&r).contains("too many wrong admin tokens"),
        "{r:?}"
    );
    // Over budget even the right token is not checked (a 200 would tell a
    // guesser it had found it) ...
    let (r, _) = from_host(&d, 1, &login_request(&d.admin_token));
    assert_eq!(r.status, 429, "{r:?}");
    n429 += 1;
    // ... but another address is not locked out by this one,
    let (r, _) = from_host(&d, 2, &login_request(&d.admin_token));
    assert_eq!(r.status, 200, "another address: {r:?}");
    // and the operator is back in once Retry-After has passed.
    std::thread::sleep(Duration::from_millis(retry * 1000 + 100));
    let (r, _) = from_host(&d, 1, &login_request(&d.admin_token));
    assert_eq!(r.status, 200, "after Retry-After: {r:?}");
    // A wrong Bearer token is a try too.
    let r = d.admin("/api/skip", "{}", Some(&wrong(999)));
    assert_eq!(r.status, 401, "{r:?}");

    let (g401, g429) = many_addresses_meet_the_global_budget(&d);
    n401 += g401;
    n429 += g429;

    // Counted in /metrics, exactly.
    assert_eq!(
        metric(
            &d,
            "motherstream_admin_auth_failures_total{via=\"console_login\"}"
        ),
        n401
    );
    assert_eq!(
        metric(
            &d,
            "motherstream_admin_auth_throttled_total{via=\"console_login\"}"
        ),
        n429
    );
    assert_eq!(
        metric(&d, "motherstream_admin_auth_failures_total{via=\"bearer\"}"),
        1
    );
    // Logged, after the flood of other refusals too.
    let log = d.log();
    assert!(
        log.contains("refused a console login from 127.0.0.1:")
            && log.contains("wrong admin token"),
        "{log}"
    );
    assert!(log.contains("too many wrong admin tokens"), "{log}");
    assert!(!log.contains(&wrong(0)), "the tried token is not logged");
}

#[test]
fn an_admin_token_shorter_than_32_characters_is_refused() {
    let _turn = light_turn();
    let dir = TempDir::new("shorttoken");
    let token = dir.join("admin.token");
    let config = dir.join("motherstream.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\nadmin_token_file = \"{}\"\n",
            dir.join("state").display(),
            free_port(),
            token.display()
        ),
    )
    .expect("config");
    let set = |t: &str| {
        std::fs::write(&token, format!("{t}\n")).expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    for short in ["a", &"x".repeat(31)] {
        set(short);
        let r = run_cli(&config, &["check-config"]);
        assert_eq!(r.code, 1, "check-config with {} chars: {r:?}", short.len());
        assert!(
            r.stderr.contains("at least 32") && r.stderr.contains("admin.token"),
            "{r:?}"
        );
        // The daemon refuses to start with it.
        let mut child = Command::new(daemon_bin())
            .args(["--config"])
            .arg(&config)
            .args(["--log-target", "stderr", "run"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let status = wait_child(&mut child, Duration::from_secs(10));
        if status.is_none() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
        assert!(err.contains("at least 32"), "{err}");
    }
    set(&"x".repeat(32));
    let r = run_cli(&config, &["check-config"]);
    assert_eq!(r.code, 0, "32 characters are enough: {r:?}");
}
