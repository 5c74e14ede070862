//! Attacks on the admin endpoints and hooks, as a local process or a page
//! in a browser on this host would try them, against the real binary (and
//! a real nginx-rtmp where a publisher is involved). Each test failed on
//! the code before the access checks: loopback counted as admin, any Host
//! was served, bare hook paths took forged publishes, the queue had no cap
//! and `addr` went verbatim into the log and queue.json.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

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
    assert!(log.contains("alice joined the queue"), "{log}");
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
