//! Bench: reading a streamer's `live/<key>` as FLV tags, the two ways the
//! relay could: the native RTMP client (`relay::source`, what the daemon
//! uses) and an `ffmpeg -c copy -f flv pipe:1` child. Same nginx, same
//! publisher, same run, alternating: time from start to the first tag and
//! to the first keyframe, and CPU per second of stream.
//!
//! `bench::source_reader` (env `MS_BENCH_RUNS`, default 5;
//! `MS_BENCH_SECONDS` of reading per run, default 10).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use motherstream::relay::flv::Demuxer;
use motherstream::relay::source::{Source, SourceSpec};
use motherstream::relay::RelayEvent;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process or thread stat file, in seconds.
fn cpu_of(stat_path: &str) -> f64 {
    let s = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / USER_HZ
}

/// /proc reports CPU time in USER_HZ ticks: 100 on Linux x86_64 and arm64.
const USER_HZ: f64 = 100.0;

struct Run {
    first_tag: Duration,
    first_key: Duration,
    cpu_per_s: f64,
}

fn native(rig: &Rig, key: &str, secs: u64) -> Option<Run> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t0 = Instant::now();
    let cpu0 = cpu_of("/proc/self/stat");
    let src = Source::spawn(
        1,
        SourceSpec {
            host: "127.0.0.1".into(),
            port: rig.nginx.rtmp_port,
            app: "live".into(),
            stream: motherstream::key::StreamKey::parse(key).ok()?,
            stall: Duration::from_secs(5),
        },
        tx,
    )
    .ok()?;
    let (mut first_tag, mut first_key) = (None, None);
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(RelayEvent::Tag { tag, arrival, .. }) => {
                first_tag.get_or_insert(arrival - t0);
                if tag.is_keyframe() {
                    first_key.get_or_insert(arrival - t0);
                }
            }
            Ok(RelayEvent::SourceEnded { reason, .. }) => {
                eprintln!("native source ended: {reason}");
                return None;
            }
            _ => {}
        }
    }
    // The bench process does nothing else meanwhile: its CPU is the reader's.
    let cpu = cpu_of("/proc/self/stat") - cpu0;
    src.stop();
    Some(Run {
        first_tag: first_tag?,
        first_key: first_key?,
        cpu_per_s: cpu / secs as f64,
    })
}

fn ffmpeg(rig: &Rig, key: &str, secs: u64) -> Option<Run> {
    let t0 = Instant::now();
    let mut child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-fpsprobesize",
            "0",
        ])
        .args(["-i", &rig.nginx.rtmp_url("live", key)])
        .args(["-c", "copy", "-flush_packets", "1", "-f", "flv", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = child.id();
    let mut out = child.stdout.take()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let mut d = Demuxer::new(true);
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            d.push(&buf[..n]);
            while let Ok(Some(t)) = d.next_tag() {
                if tx.send((Instant::now(), t.is_keyframe())).is_err() {
                    return;
                }
            }
        }
    });
    let (mut first_tag, mut first_key) = (None, None);
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Ok((at, key)) = rx.recv_timeout(Duration::from_millis(100)) {
            first_tag.get_or_insert(at - t0);
            if key {
                first_key.get_or_insert(at - t0);
            }
        }
    }
    let cpu = cpu_of(&format!("/proc/{pid}/stat"));
    signal(pid, libc::SIGKILL);
    let _ = child.wait();
    Some(Run {
        first_tag: first_tag?,
        first_key: first_key?,
        cpu_per_s: cpu / secs as f64,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn main() {
    let runs = env("MS_BENCH_RUNS", 5);
    let secs = env("MS_BENCH_SECONDS", 10);
    let rig = Rig::start("[relay]\nmode = \"restart\"\n");
    // 640x360 at 30 fps, keyframe every 2 s: a typical small stream.
    let _p = Publisher::start_full(
        &rig.nginx.rtmp_url("live", "alice"),
        (640, 360),
        30,
        60,
        44_100,
        2,
    );
    rig.daemon.wait_queue(&["alice"], Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    let (mut n, mut f) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if let Some(r) = native(&rig, "alice", secs) {
            n.push(r);
        }
        if let Some(r) = ffmpeg(&rig, "alice", secs) {
            f.push(r);
        }
        eprintln!("run {} of {runs} done", i + 1);
    }
    println!("source reader, {runs} runs of {secs} s each, alternating, same publisher (640x360 30 fps, GOP 2 s):");
    println!(
        "{:<28} {:>14} {:>18} {:>14}",
        "", "first tag (ms)", "first keyframe (ms)", "CPU (% core)"
    );
    for (name, v) in [
        ("native RTMP (rml_rtmp)", &n),
        ("ffmpeg -c copy pipe:1", &f),
    ] {
        println!(
            "{:<28} {:>14.1} {:>18.1} {:>14.2}",
            name,
            median(
                v.iter()
                    .map(|r| r.first_tag.as_secs_f64() * 1000.0)
                    .collect()
            ),
            median(
                v.iter()
                    .map(|r| r.first_key.as_secs_f64() * 1000.0)
                    .collect()
            ),
            median(v.iter().map(|r| r.cpu_per_s * 100.0).collect()),
        );
    }
}
