//! Attacks on motherstream's files and logs, against the real binary: a
//! service user planting symbolic links for root's CLI, files others can
//! read, keys and secrets in the logs (after a real publish through nginx
//! and ffmpeg), and display names that disguise themselves.
//!
//! The tests run as root (as an administrator's CLI would); the "service
//! user" is uid/gid 65534, which owns the state directory in those tests.

use crate::common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const SERVICE_UID: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A state directory owned by the service user, a config naming it, and a
/// root-owned file elsewhere that the user would love to own.
struct Planted {
    dir: TempDir,
}

impl Planted {
    fn new(tag: &str) -> Planted {
        let dir = TempDir::new(tag);
        let state = dir.join("state");
        fs::create_dir(&state).expect("mkdir state");
        std::os::unix::fs::chown(&state, Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown");
        fs::write(
            dir.join("motherstream.toml"),
            format!("[state]\ndir = \"{}\"\n", state.display()),
        )
        .expect("config");
        let precious = dir.join("precious");
        fs::write(&precious, "{\"version\":1,\"streamers\":[]}\n").expect("precious");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).expect("chmod");
        Planted { dir }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.join("state")
    }

    fn precious(&self) -> std::path::PathBuf {
        self.dir.join("precious")
    }

    /// A link in the state directory, made (and owned) by the service user.
    fn plant(&self, name: &str) {
        let link = self.state().join(name);
        std::os::unix::fs::symlink(self.precious(), &link).expect("symlink");
        std::os::unix::fs::lchown(&link, Some(SERVICE_UID), Some(SERVICE_UID)).expect("lchown");
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        run_cli(&self.dir.join("motherstream.toml"), args)
    }

    fn assert_precious_untouched(&self) {
        let p = self.precious();
        let m = fs::metadata(&p).expect("stat precious");
        assert_eq!(
            (m.uid(), m.gid()),
            (0, 0),
            "root's file was given away: {}",
            p.display()
        );
        assert_eq!(mode_of(&p), 0o600, "root's file changed mode");
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "{\"version\":1,\"streamers\":[]}\n",
            "root's file was written"
        );
    }
}

#[test]
fn a_planted_lock_symlink_is_refused_and_root_acts_as_the_directory_owner() {
    let _turn = light_turn();
    assert!(is_root(), "this test plays root's CLI: run it as root");
    let p = Planted::new("symlock");
    p.plant("streamers.lock");
    let r = p.cli(&["streamer", "add", "DJ Alice"]);
    assert_eq!(r.code, 1, "must refuse: {r:?}");
    assert!(
        r.stderr.contains("symbolic link") && r.stderr.contains("streamers.lock"),
        "the error says what is wrong: {r:?}"
    );
    assert!(r.stdout.is_empty(), "no key printed: {r:?}");
    p.assert_precious_untouched();
    assert!(!p.state().join("streamers.json").exists());

    // With the link gone (and one planted at the temp file's name instead),
    // root's CLI works, and what it made belongs to the directory's owner.
    fs::remove_file(p.state().join("streamers.lock")).unwrap();
    p.plant("streamers.tmp");
    let r = p.cli(&["streamer", "add", "DJ Alice"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim().len(), 32, "a key: {r:?}");
    p.assert_precious_untouched();
    for f in ["streamers.json", "streamers.lock"] {
        let path = p.state().join(f);
        let m = fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_file(), "{f} is a plain file");
        assert_eq!(
            (m.uid(), m.gid()),
            (SERVICE_UID, SERVICE_UID),
            "{f} belongs to the state directory's owner"
        );
        assert_eq!(mode_of(&path), 0o600, "{f}");
    }
    assert!(!p.state().join("streamers.tmp").exists());
}

#[test]
fn a_planted_registry_symlink_is_refused() {
    let _turn = light_turn();
    assert!(is_root(), "this test plays root's CLI: run it as root");
    let p = Planted::new("symjson");
    p.plant("streamers.json");
    for args in [
        &["streamer", "add", "DJ Alice"][..],
        &["streamer", "list", "--show-keys"],
    ] {
        let r = p.cli(args);
        assert_eq!(r.code, 1, "{args:?} must refuse: {r:?}");
        assert!(
            r.stderr.contains("symbolic link") && r.stderr.contains("streamers.json"),
            "{args:?}: {r:?}"
        );
    }
    p.assert_precious_untouched();
    let link = fs::symlink_metadata(p.state().join("streamers.json")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the link was left for root to see"
    );
}

/// A daemon outside systemd (a umask of 022, no StateDirectory=) and root's
/// CLI beside it: every file they make is 0600, every directory 0700, and a
/// token file others can read is used with a warning.
#[test]
fn files_the_daemon_and_cli_create_are_private() {
    let _turn = light_turn();
    // What a login shell has; the daemon must not depend on it.
    // SAFETY: umask cannot fail; 022 is the usual default anyway.
    unsafe {
        libc::umask(0o022);
    }
    let t = TempDir::new("modes");
    let state = t.join("fresh/state");
    let token = t.join("token");
    fs::write(&token, "s3cr3t-admin-token-at-least-32-chars\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let d = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{}", free_port()),
        rtmp_port: free_port(),
        nginx_http_port: free_port(),
        extra_toml: format!(
            "[state]\ndir = \"{}\"\n[http]\nadmin_token_file = \"{}\"\n",
            state.display(),
            token.display()
        ),
        bin: daemon_bin(),
        hook_secret: None,
    });
    assert!(
        d.log().contains("readable by every user"),
        "a warning about the token file: {}",
        d.log()
    );
    // A queued streamer: the queue is written and a relay starts (and
    // fails: nothing listens on its RTMP port), writing ffmpeg.log.
    let r = d.raw_publish("alice", 1);
    assert_eq!(r.status, 200, "{r:?}");
    let log = d.relay_log_path();
    wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        log.exists().then_some(())
    })
    .expect("ffmpeg.log appears");
    let cli = run_cli(&d.config_path(), &["streamer", "add", "DJ Alice"]);
    assert_eq!(cli.code, 0, "{cli:?}");

    assert_eq!(mode_of(&t.join("fresh")), 0o700, "created parent dir");
    assert_eq!(mode_of(&state), 0o700, "created state dir");
    for f in [
        "queue.json",
        "queue.journal",
        "streamers.json",
        "streamers.lock",
        "tag.secret",
    ] {
        assert_eq!(mode_of(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode_of(&log), 0o600, "ffmpeg.log");
}

fn ms_secret(cmdline: &str) -> Option<String> {
    let i = cmdline.find("ms_secret=")? + "ms_secret=".len();
    Some(
        cmdline[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect(),
    )
}

fn proc_strings(pid: u32, what: &str) -> Vec<String> {
    fs::read(format!("/proc/{pid}/{what}"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A registered streamer publishes through real nginx; ffmpeg logs at info
/// (so it prints its input and output URLs); the relay is killed once so
/// its last lines go to the daemon's log. Neither log holds the key or an
/// output secret, each relay run has its own secret, and ffmpeg gets no
/// environment beyond what it needs.
#[test]
fn no_key_or_secret_in_any_log_after_a_real_publish() {
    let _turn = light_turn();
    let rig = Rig::start(
        r#"
[relay]
mode = "restart"
args = ["-hide_banner", "-loglevel", "info", "-fpsprobesize", "0", "-analyzeduration", "1000000",
        "-i", "{input}", "-c", "copy", "-f", "flv", "{output}"]
"#,
    );
    let add = run_cli(&rig.daemon.config_path(), &["streamer", "add", "DJ Alice"]);
    assert_eq!(add.code, 0, "{add:?}");
    let key = add.stdout.trim().to_string();
    assert_eq!(key.len(), 32, "{add:?}");

    let mut publisher = rig.join_as(&key, "DJ Alice", SIZE_A);
    rig.assert_on_air(SIZE_A, Duration::from_secs(20));
    let first = rig.daemon.wait_relay(Duration::from_secs(10));
    let argv = proc_strings(first, "cmdline").join(" ");
    let secret1 = ms_secret(&argv).unwrap_or_else(|| panic!("relay argv {argv}"));
    assert!(!argv.contains("ms_relay"), "unused secret in argv: {argv}");
    let allowed = ["PATH", "LANG", "LC_ALL", "TZ"];
    let env = proc_strings(first, "environ");
    let extra: Vec<&String> = env
        .iter()
        .filter(|kv| !allowed.iter().any(|a| kv.starts_with(&format!("{a}="))))
        .collect();
    assert!(extra.is_empty(), "ffmpeg inherited {extra:?}");

    // A relay that dies while its streamer is on air: its last lines go to
    // the daemon's log, and the next run gets a new secret.
    assert!(signal(first, libc::SIGKILL));
    let mut second = 0;
    wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        let pid = rig.daemon.relay_pid()?;
        (pid != first && pid_alive(pid)).then(|| second = pid)
    })
    .expect("the relay is restarted");
    let argv2 = proc_strings(second, "cmdline").join(" ");
    let secret2 = ms_secret(&argv2).unwrap_or_else(|| panic!("relay argv {argv2}"));
    assert_ne!(secret1, secret2, "the output secret is new for every run");
    rig.assert_on_air(SIZE_A, Duration::from_secs(20));
    publisher.stop();
    rig.daemon.wait_queue(&[], Duration::from_secs(10));

    let daemon_log = rig.daemon.log();
    let relay_log = fs::read_to_string(rig.daemon.relay_log_path()).unwrap_or_default();
    // The logs do hold what ffmpeg and the daemon said about this streamer
    // (so the checks below look at something)...
    assert!(
        daemon_log.contains("exited unexpectedly"),
        "the failed relay's tail was logged: {daemon_log}"
    );
    assert!(
        relay_log.contains("/live/DJ Alice") && relay_log.contains("?<redacted>"),
        "ffmpeg's URLs are in ffmpeg.log, redacted: {relay_log}"
    );
    // ...but neither the key nor any secret.
    for (name, text) in [("daemon log", &daemon_log), ("ffmpeg.log", &relay_log)] {
        for (what, secret) in [("key", &key), ("secret", &secret1), ("secret", &secret2)] {
            assert!(
                !text.contains(secret.as_str()),
                "the {what} {secret} is in the {name}:\n{text}"
            );
        }
        assert!(!text.contains("ms_secret="), "{name}:\n{text}");
    }
}

#[test]
fn bidi_and_invisible_names_are_refused_by_the_cli_and_the_admin_api() {
    let _turn = light_turn();
    let d = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{}", free_port()),
        rtmp_port: free_port(),
        nginx_http_port: free_port(),
        extra_toml: String::new(),
        bin: daemon_bin(),
        hook_secret: None,
    });
    // "DJ \u{202E}evil" shows as "DJ live" reversed; the others hide.
    for name in [
        "DJ \u{202E}evil",
        "a\u{2066}b\u{2069}",
        "zero\u{200B}width",
        "\u{FEFF}bom",
    ] {
        let r = run_cli(&d.config_path(), &["streamer", "add", name]);
        assert_eq!(r.code, 1, "{name:?}: {r:?}");
        assert!(r.stderr.contains("invisible formatting"), "{name:?}: {r:?}");
        let body = serde_json::json!({ "name": name }).to_string();
        let r = d.admin("/api/streamers", &body, None);
        assert_eq!(r.status, 400, "{name:?}: {r:?}");
        assert!(r.body.contains("invisible formatting"), "{name:?}: {r:?}");
    }
    let list = run_cli(&d.config_path(), &["streamer", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout.lines().count(), 1, "only the header: {list:?}");
}

/// The secrets root's `api` and `nginx-hooks` read in the service user's
/// directory, planted as links to a file only root may read: both refuse
/// (the postinst runs `nginx-hooks` as root and writes what it prints into
/// /etc/motherstream; `api` sends what it read as a Bearer token to a port
/// the service user may have bound). They act as the directory's owner.
#[test]
fn root_api_and_nginx_hooks_refuse_planted_secret_links() {
    let _turn = light_turn();
    assert!(is_root(), "this test plays root's CLI: run it as root");
    let p = Planted::new("symsecret");
    // What a service user listening on the daemon's port would receive.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = p.dir.join("motherstream.toml");
    let mut text = fs::read_to_string(&config).expect("config");
    text.push_str(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    fs::write(&config, text).expect("config");
    listener.set_nonblocking(true).expect("nonblocking");
    let heard = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(8);
        let mut got = String::new();
        while std::time::Instant::now() < until {
            match listener.accept() {
                Ok((mut s, _)) => {
                    use std::io::{Read, Write};
                    s.set_nonblocking(false).ok();
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).unwrap_or(0);
                    got.push_str(&String::from_utf8_lossy(&buf[..n]));
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        got
    });
    let secret_line = "{\"version\":1,\"streamers\":[]}";
    p.plant("hook.secret");
    p.plant("admin.token");

    let r = p.cli(&["nginx-hooks"]);
    assert_eq!(r.code, 1, "must refuse: {r:?}");
    assert!(
        r.stderr.contains("symbolic link") && r.stderr.contains("hook.secret"),
        "the error says what is wrong: {r:?}"
    );
    assert!(
        !r.stdout.contains(secret_line),
        "root's file printed: {r:?}"
    );

    let r = p.cli(&["api", "GET", "/api/streamers?show_keys=1"]);
    assert_eq!(r.code, 1, "must refuse: {r:?}");
    assert!(
        r.stderr.contains("symbolic link") && r.stderr.contains("admin.token"),
        "the error says what is wrong: {r:?}"
    );
    let got = heard.join().expect("listener");
    assert!(
        !got.contains(secret_line) && !got.contains("Authorization"),
        "root's file was sent to the port: {got:?}"
    );
    p.assert_precious_untouched();

    // Real files in their place, owned by the service user and private to
    // it: root's CLI reads them as that user and works.
    for (name, value) in [
        ("hook.secret", "h".repeat(64)),
        ("admin.token", "a".repeat(64)),
    ] {
        let path = p.state().join(name);
        fs::remove_file(&path).expect("unlink");
        fs::write(&path, format!("{value}\n")).expect("write");
        std::os::unix::fs::chown(&path, Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let r = p.cli(&["nginx-hooks"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("/hook/{}/on_publish;", "h".repeat(64))),
        "{r:?}"
    );
    // A root-only secret in the service user's directory is out of reach
    // too: root's CLI can read no more there than its owner.
    let path = p.state().join("hook.secret");
    std::os::unix::fs::chown(&path, Some(0), Some(0)).expect("chown");
    let r = p.cli(&["nginx-hooks"]);
    assert_eq!(r.code, 1, "read as root: {r:?}");
    assert!(r.stderr.contains("hook.secret"), "{r:?}");
}
