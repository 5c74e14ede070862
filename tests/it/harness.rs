//! Checks of the test harness itself against real nginx-rtmp and ffmpeg,
//! without the daemon: the raw HTTP client sends byte for byte what nginx
//! sends, the private nginx works, a relay ffmpeg can copy a publisher to
//! the output and ffprobe reads the publisher's size there.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A minimal hook receiver: answers every request 200 and hands the raw
/// request bytes to the test.
fn hook_receiver() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // read the head, then Content-Length bytes of body
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ =
                s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send(buf).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

fn body_of(req: &[u8]) -> String {
    let t = String::from_utf8_lossy(req).to_string();
    t.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn raw_client_matches_nginx_and_relay_reaches_output() {
    let _turn = light_turn();
    let (hook_port, rx) = hook_receiver();
    let nginx = Nginx::start(hook_port);

    // /stat and /control answer on the HTTP port.
    let stat = nginx.http_get("/stat");
    assert_eq!(stat.status, 200, "{stat:?}");
    assert!(stat.body.contains("<rtmp>"), "{}", stat.body);

    let mut publisher = Publisher::start(nginx.rtmp_port, "harnesskey", SIZE_A);
    let mut seen = Vec::new();
    let publish = wait_for(Duration::from_secs(10), Duration::from_millis(1), || {
        let req = rx.recv_timeout(Duration::from_millis(100)).ok()?;
        seen.push(String::from_utf8_lossy(&req).to_string());
        req.starts_with(format!("POST /hook/{}/on_publish ", nginx.hook_secret).as_bytes())
            .then_some(req)
    })
    .unwrap_or_else(|| panic!("no on_publish from nginx; got {seen:#?}"));

    // Byte for byte: what our client sends for the same body is what nginx sent.
    let body = body_of(&publish);
    assert!(
        body.contains("call=publish&name=harnesskey&type=live"),
        "{body}"
    );
    let ours = request_bytes(
        "POST",
        &format!("/hook/{}/on_publish", nginx.hook_secret),
        &[],
        body.as_bytes(),
    );
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&publish)
    );
    // Our canned body has the captured shape (same fields in the same order).
    let canned = publish_body("live", "harnesskey", 1, "");
    let keys = |s: &str| {
        s.split('&')
            .map(|p| p.split('=').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&canned), keys(&body));

    // The publisher shows up in /stat.
    let published = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        nginx
            .published("live")
            .contains(&"harnesskey".to_string())
            .then_some(())
    });
    assert!(published.is_some(), "{}", nginx.http_get("/stat").body);

    // A relay like the daemon's copies it to the output; the probe sees its size.
    let mut relay = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-fpsprobesize",
            "0",
            "-i",
        ])
        .arg(nginx.rtmp_url("live", "harnesskey"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(nginx.rtmp_url("motherstream", "live"))
        .stdin(std::process::Stdio::null())
        // "Input/output error" when its source leaves is expected here.
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = nginx.rtmp_url("motherstream", "live");
    let r = wait_size(&out, SIZE_A, Duration::from_secs(15));
    assert_eq!(r, Ok(()), "output size");

    // Publisher leaves → with idle_streams off the relay ends by itself.
    assert!(publisher.is_running());
    let st = publisher.stop();
    assert!(st.is_some());
    let relay_exit = wait_child(&mut relay, Duration::from_secs(5));
    if relay_exit.is_none() {
        let _ = relay.kill();
        let _ = relay.wait();
    }
    assert!(
        relay_exit.is_some(),
        "relay did not exit after its source left"
    );

    // Nobody on air → the probe gives up within its timeout.
    let t = std::time::Instant::now();
    assert_eq!(probe_size(&out, Duration::from_secs(2)), None);
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn parse_resp_and_merge_toml() {
    let _turn = light_turn();
    let r = parse_resp(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
    assert_eq!((r.status, r.body.as_str()), (413, "hello"));
    assert_eq!(parse_resp(b"garbage").status, 0);

    let mut base: toml::Table = "[http]\nlisten = \"a\"\nworkers = 4\n".parse().unwrap();
    merge_toml(
        &mut base,
        "[http]\nworkers = 8\n[queue]\nslot_seconds = 3\n"
            .parse()
            .unwrap(),
    );
    assert_eq!(base["http"]["listen"].as_str(), Some("a"));
    assert_eq!(base["http"]["workers"].as_integer(), Some(8));
    assert_eq!(base["queue"]["slot_seconds"].as_integer(), Some(3));
}
