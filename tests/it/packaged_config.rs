//! The default config shipped in the .deb (packaging/motherstream.toml)
//! documents every key with its built-in default: uncommenting every
//! `#key = value` line must give exactly `Config::default()`, and every key
//! of the config must appear.

use crate::common::*;
use motherstream::config::Config;
use std::process::{Command, Stdio};
use std::time::Duration;

const SHIPPED: &str = include_str!("../../packaging/motherstream.toml");

fn uncommented() -> String {
    SHIPPED
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_config_as_is_gives_the_defaults() {
    let _turn = light_turn();
    assert_eq!(Config::parse(SHIPPED).unwrap(), Config::default());
}

#[test]
fn uncommented_defaults_are_the_built_in_defaults() {
    let _turn = light_turn();
    let cfg = Config::parse(&uncommented()).unwrap();
    assert_eq!(cfg, Config::default());
    cfg.validate().unwrap();
}

#[test]
fn every_key_is_documented() {
    let _turn = light_turn();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let documented = toml::from_str::<toml::Value>(&uncommented()).unwrap();
    let mut missing = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            if documented.get(section).and_then(|s| s.get(key)).is_none() {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

/// `[[notify]]` (an array of tables, empty by default, so not in the
/// loop above): every key is shown, commented, in the shipped file and
/// named in the man page.
#[test]
fn every_notify_key_is_documented() {
    let _turn = light_turn();
    const MAN: &str = include_str!("../../packaging/motherstream.8");
    let keys = toml::Value::try_from(motherstream::config::NotifyConfig::default()).unwrap();
    let shipped = &SHIPPED[SHIPPED.find("# [[notify]]").expect("a [[notify]] example")..];
    let man = &MAN[MAN.find(".SS [[notify]]\n").expect("a [[notify]] section")..];
    let man = &man[..man[1..].find("\n.S").map_or(man.len(), |e| e + 1)];
    let mut missing = Vec::new();
    for key in keys.as_table().unwrap().keys() {
        if !shipped.contains(&format!("\n# {key} = ")) {
            missing.push(format!("motherstream.toml: notify.{key}"));
        }
        let named = man
            .lines()
            .filter(|l| l.starts_with(".BR "))
            .any(|l| l.split([' ', ',', '"']).any(|w| w == key));
        if !named {
            missing.push(format!("motherstream(8): notify.{key}"));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
    // The example, uncommented, is a valid entry but for its URL.
    let example: String = shipped
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#'))
        .map(|l| l.split(" #").next().unwrap_or(""))
        .filter(|l| l.contains('=') || l.contains("[[notify]]"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("url = \"\"", "url = \"http://127.0.0.1:9/hook\"");
    let cfg = Config::parse(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    cfg.validate().unwrap();
    assert_eq!(cfg.notify.len(), 1);
}

/// The man page's CONFIGURATION section names every key under its
/// `.SS [section]` heading.
#[test]
fn every_key_is_in_the_man_page() {
    let _turn = light_turn();
    const MAN: &str = include_str!("../../packaging/motherstream.8");
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut missing = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        let heading = format!(".SS [{section}]\n");
        let start = MAN.find(&heading).map(|i| i + heading.len());
        let body = start.map(|s| {
            let end = MAN[s..].find("\n.S").map_or(MAN.len(), |e| s + e);
            &MAN[s..end]
        });
        for key in table.as_table().unwrap().keys() {
            let named = body.is_some_and(|b| {
                b.lines()
                    .filter(|l| l.starts_with(".BR "))
                    .any(|l| l.split([' ', ',', '"']).any(|w| w == key))
            });
            if !named {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from motherstream(8): {missing:?}"
    );
}

// ------------------------------------------------ the shipped nginx example

const NGINX_EXAMPLE: &str = include_str!("../../packaging/nginx-rtmp.conf");
const TMPFILES: &str = include_str!("../../packaging/motherstream.tmpfiles");

/// Replace `from` (which must occur exactly once, so this test follows the
/// shipped file) by `to`.
fn swap(text: &mut String, from: &str, to: &str) {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the shipped nginx-rtmp.conf should contain {from:?} once"
    );
    *text = text.replacen(from, to, 1);
}

#[test]
fn shipped_nginx_example_keeps_stat_and_control_off_tcp() {
    let _turn = light_turn();
    let http = &NGINX_EXAMPLE[NGINX_EXAMPLE.find("\nhttp {").expect("http block")..];
    let http = &http[..http.find("\nrtmp {").unwrap_or(http.len())];
    let listens: Vec<&str> = http
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("listen "))
        .collect();
    assert_eq!(
        listens,
        ["listen unix:/run/motherstream-nginx/control.sock;"]
    );
    // No hook URL (they carry the secret) in the world-readable example.
    assert!(
        !NGINX_EXAMPLE.contains("on_publish http"),
        "hook URL in the example"
    );
    // The socket's directory: root and the motherstream group only.
    let line = TMPFILES
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("tmpfiles line");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &f[..5],
        [
            "d",
            "/run/motherstream-nginx",
            "0750",
            "root",
            "motherstream"
        ]
    );
}

/// The shipped example, moved into a private prefix (ports, paths, the
/// module), passes `nginx -t`; nginx then calls the hooks through the
/// include file `motherstream nginx-hooks` wrote, and the daemon reads
/// /stat and drops publishers through /control over the unix socket.
#[test]
fn shipped_nginx_example_runs_and_the_daemon_uses_its_unix_socket() {
    let _turn = light_turn();
    let dir = TempDir::new("shipped-nginx");
    let p = dir.path().display().to_string();
    std::fs::create_dir_all(dir.join("sock")).expect("socket dir");
    let sock = format!("{p}/sock/control.sock");
    let hook_port = free_port();
    let rtmp_port = free_port();
    let control = format!("http://unix:{sock}:/control");
    let stat = format!("http://unix:{sock}:/stat");
    let mut d = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port,
        nginx_http_port: free_port(),
        extra_toml: format!(
            "[rtmp]\ncontrol_url = \"{control}\"\nstat_url = \"{stat}\"\n[relay]\nmax_failures = 1000\n"
        ),
        bin: daemon_bin(),
        hook_secret: None,
    });
    let hooks = Command::new(daemon_bin())
        .arg("--config")
        .arg(d.config_path())
        .arg("nginx-hooks")
        .output()
        .expect("motherstream nginx-hooks");
    assert!(hooks.status.success(), "{hooks:?}");
    let hooks_text = String::from_utf8_lossy(&hooks.stdout).into_owned();
    assert!(
        hooks_text.contains(&format!(
            "on_publish http://127.0.0.1:{hook_port}/hook/{}/on_publish;",
            d.hook_secret
        )),
        "{hooks_text}"
    );
    std::fs::write(dir.join("nginx-hooks.conf"), &hooks_text).expect("hooks include");

    let mut conf = NGINX_EXAMPLE.to_string();
    swap(&mut conf, "user www-data;\n", "daemon off;\n");
    swap(
        &mut conf,
        "pid /run/nginx.pid;",
        &format!("pid {p}/nginx.pid;"),
    );
    swap(
        &mut conf,
        "error_log /var/log/nginx/error.log;",
        &format!("error_log {p}/error.log info;"),
    );
    swap(
        &mut conf,
        "include /etc/nginx/modules-enabled/*.conf;",
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;",
    );
    swap(
        &mut conf,
        "access_log /var/log/nginx/access.log;",
        &format!(
            "access_log off;\n\tclient_body_temp_path {p}/tmp/body;\n\tproxy_temp_path {p}/tmp/proxy;\n\t\
             fastcgi_temp_path {p}/tmp/fastcgi;\n\tuwsgi_temp_path {p}/tmp/uwsgi;\n\tscgi_temp_path {p}/tmp/scgi;"
        ),
    );
    swap(&mut conf, "\tinclude /etc/nginx/conf.d/*.conf;\n", "");
    swap(&mut conf, "\tinclude /etc/nginx/sites-enabled/*;\n", "");
    swap(
        &mut conf,
        "listen unix:/run/motherstream-nginx/control.sock;",
        &format!("listen unix:{sock};"),
    );
    swap(
        &mut conf,
        "listen 1935;",
        &format!("listen 127.0.0.1:{rtmp_port};"),
    );
    let include = "include /etc/motherstream/nginx-hooks.conf;";
    assert_eq!(
        conf.matches(include).count(),
        2,
        "both applications include the hooks"
    );
    conf = conf.replace(include, &format!("include {p}/nginx-hooks.conf;"));
    std::fs::write(dir.join("nginx.conf"), &conf).expect("nginx.conf");
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");

    let nginx_cmd = |test: bool| {
        let mut c = Command::new("nginx");
        if test {
            c.arg("-t");
        }
        c.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null());
        c
    };
    let t = nginx_cmd(true).output().expect("nginx -t");
    assert!(
        t.status.success(),
        "nginx -t on the shipped example: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let child = {
        use std::os::unix::process::CommandExt;
        let mut c = nginx_cmd(false);
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c.spawn().expect("start nginx")
    };
    let _nginx = KillGroup(child);
    let up = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        std::os::unix::net::UnixStream::connect(&sock).ok()
    });
    assert!(
        up.is_some(),
        "nginx did not open {sock}: {}",
        tail(&dir.join("error.log"), 20)
    );

    // A real publisher gets in through the included hook URLs; a ghost
    // (queued by a hook, no stream) does not survive a restart: the daemon
    // reads /stat over the socket.
    let mut alice = Publisher::start(rtmp_port, "alice", SIZE_A);
    let joined = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        d.queue().contains(&"alice".to_string()).then_some(())
    });
    assert!(joined.is_some(), "alice did not join: {}", alice.stderr());
    assert_eq!(d.raw_publish("ghost", 9999).status, 200);
    assert_eq!(d.queue(), ["alice", "ghost"]);
    d.restart();
    assert_eq!(d.queue(), ["alice"], "{}", tail(&d.log_path(), 20));
    assert!(d.log().contains(&format!(
        "whose publishers left while motherstream was down: {}",
        d.guest("ghost")
    )));
    // A kick drops alice's publisher through /control over the socket.
    let r = d.admin("/api/kick", "{}", None);
    assert_eq!(r.status, 200, "{r:?}");
    let gone = alice.wait_exit(Duration::from_secs(10));
    assert!(
        gone.is_some(),
        "alice's publisher was not dropped: {}",
        d.log()
    );
    let dropped = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        d.log()
            .contains(&format!("disconnected {} through nginx", d.guest("alice")))
            .then_some(())
    });
    assert!(dropped.is_some(), "{}", tail(&d.log_path(), 20));
}

/// Stops a process group we started (nginx master and worker).
struct KillGroup(std::process::Child);

impl Drop for KillGroup {
    fn drop(&mut self) {
        signal(self.0.id(), libc::SIGTERM);
        if wait_child(&mut self.0, Duration::from_secs(5)).is_none() {
            signal_group(self.0.id(), libc::SIGKILL);
            let _ = wait_child(&mut self.0, Duration::from_secs(5));
        }
        signal_group(self.0.id(), libc::SIGKILL);
    }
}
