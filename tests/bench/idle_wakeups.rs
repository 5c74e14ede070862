//! Bench: how often the idle daemon wakes up with OBS connected.
//!
//! `bench::idle_wakeups` (env `MS_BENCH_SECS`, default 60).
//!
//! Real everything: a private nginx-rtmp, a headless OBS 29 playing
//! `motherstream/live`, and the motherstream daemon with `[obs] enabled =
//! true` (all five sources configured), nobody publishing. Once the daemon
//! reports OBS connected and has settled, the bench sums the voluntary and
//! non-voluntary context switches of every thread of the daemon
//! (`/proc/PID/task/*/status`) at the start and the end of the window, and
//! prints the total per second and the share of each thread (by name).
//! Child processes (ffmpeg) are other PIDs and not counted.
//!
//! A figure, not a test: it depends on the machine, so it asserts nothing
//! except that OBS stayed connected; the target is ≤ 1 wakeup/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::obs::{until, Obs, ObsOpts};
use crate::common::{daemon_bin, free_port, Daemon, DaemonOpts, Nginx, TempDir};

/// Context switches (voluntary + non-voluntary) per thread, keyed by
/// "name/tid" so threads that come and go are still told apart.
fn switches(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let mut name = String::new();
        let mut n = 0u64;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("Name:") {
                name = v.trim().to_string();
            } else if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
        out.insert(format!("{name}/{}", t.file_name().to_string_lossy()), n);
    }
    out
}

fn obs_connected(d: &Daemon) -> bool {
    d.status()["obs"]["connected"].as_bool().unwrap_or(false)
}

pub fn main() {
    let secs: u64 = std::env::var("MS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        width: 320,
        height: 180,
        fps: 10,
        ..ObsOpts::default()
    });
    let dir = TempDir::new("idle-bench");
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port: nginx.rtmp_port,
        nginx_http_port: nginx.http_port,
        extra_toml: format!(
            "[log]\nlevel = \"info\"\n{}",
            obs.daemon_toml(dir.path(), true)
        ),
        bin: daemon_bin(),
        hook_secret: Some(nginx.hook_secret.clone()),
    });
    until(
        Duration::from_secs(20),
        "daemon reports OBS connected",
        || obs_connected(&daemon).then_some(()),
    );
    // Let the connect-time work (resolve, settings, first state) finish.
    std::thread::sleep(Duration::from_secs(3));

    let pid = daemon.pid();
    let before = switches(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let after = switches(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let still_connected = obs_connected(&daemon);

    // name → (threads, context switches in the window)
    let mut per_name: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let mut total = 0u64;
    for (k, n) in &after {
        let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
        total += d;
        let name = k.rsplit_once('/').map_or(k.as_str(), |(n, _)| n);
        let e = per_name.entry(name.to_string()).or_default();
        e.0 += 1;
        e.1 += d;
    }
    println!(
        "idle_wakeups: {total} context switches in {elapsed:.1} s = {:.2}/s \
         (daemon pid {pid}, {} threads, OBS connected, nobody on air)",
        total as f64 / elapsed,
        after.len()
    );
    for (name, (threads, d)) in &per_name {
        println!(
            "  {name:<16} x{threads:<3} {d:>6}  {:.2}/s",
            *d as f64 / elapsed
        );
    }
    assert!(still_connected, "OBS disconnected during the measurement");
}
