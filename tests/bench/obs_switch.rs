//! Bench: the splice relay and the restart relay side by side, in one run,
//! as a real OBS shows them.
//!
//! `bench::obs_switch`; env `MS_BENCH_SWITCHES` (per mode,
//! default 10), `MS_BENCH_ROUNDS` (blocks per mode, alternating splice and
//! restart so that a change of machine load hits both, default 2),
//! `MS_BENCH_SLATE` (an operator slate for splice mode), `MS_BENCH_VERBOSE`.
//!
//! Real everything: one private nginx-rtmp and one headless OBS 29 (320x180
//! at 30 fps, its media source unmuted so its meters hear the stream)
//! playing `motherstream/live` throughout; for each block a new motherstream
//! daemon on the same hook port, `[relay] mode = "splice"` or `"restart"`.
//! Two ffmpeg publishers, red 320x180 48 kHz stereo and blue 640x360
//! 44.1 kHz mono, 30 fps, keyframe every 2 s, a moving pattern and a
//! wall-clock time code in the picture (see `tests/common/obs_cut.rs`).
//! Each switch is planned: `POST /api/move` puts the second streamer first
//! (nobody is disconnected). From the move until the new streamer has been
//! on screen for a second: a scene screenshot every 100 ms (who is on
//! screen, whether the picture moved, its age from the time code, the name
//! text), every `InputVolumeMeters` event (silence = peak < 1e-3), OBS's
//! media and scene item events, and a plain ffmpeg player of the output as
//! the floor OBS cannot beat. CPU of the relay processes is the daemon's
//! (all its threads, the in-process source readers included) plus its
//! ffmpeg children's, from /proc, over the switches of the block.

use crate::common::obs;
use std::time::{Duration, Instant};

use crate::common::obs::{Obs, ObsClient, Seen};
use crate::common::obs_cut::{
    planned_switch, slope, stats, switch_obs, switch_publisher, switch_watch, wait_seen, wall_us,
    Cut, TcPlayer,
};
use crate::common::{daemon_bin, free_port, Daemon, DaemonOpts, Nginx, TempDir};

fn env_num(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Splice,
    Restart,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Splice => "splice",
            Mode::Restart => "restart",
        }
    }
}

/// Clock ticks of a process and the children it reaped, from /proc.
fn proc_ticks(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 4 (ppid) and 14-17 (utime, stime, cutime, cstime), counted
    // from 1 with field 3 (state) first after the ")".
    let ppid = f.get(1)?.parse().ok()?;
    let t: u64 = f
        .get(11..15)?
        .iter()
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    Some((ppid, t))
}

/// CPU ticks so far of the daemon and its children (alive or reaped).
fn relay_ticks(daemon: u32) -> u64 {
    let mut total = proc_ticks(daemon).map_or(0, |(_, t)| t);
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, t)) = proc_ticks(pid) {
                if ppid == daemon {
                    total += t;
                }
            }
        }
    }
    total
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[derive(Default)]
struct Block {
    cuts: Vec<Cut>,
    /// Move → new streamer at the plain player.
    floors: Vec<Option<Duration>>,
    /// CPU seconds of the relay processes, and the wall time they cover.
    cpu_s: f64,
    wall_s: f64,
    /// OBS events across the switches: media restarts, playback
    /// ended/started, loading item shown/hidden.
    obs_events: usize,
    lagging: usize,
    max_buffering: usize,
    added_buffering: usize,
}

impl Block {
    /// OBS's audio complaints in its log since `log_before` bytes.
    fn count_obs_log(&mut self, log: &str, log_before: usize) {
        let new = log.get(log_before..).unwrap_or("");
        self.lagging = new.matches("audio is lagging").count();
        self.max_buffering = new.matches("Max audio buffering").count();
        self.added_buffering = new.matches("audio buffering").count() - self.max_buffering;
    }
}

struct Env<'a> {
    nginx: &'a Nginx,
    obs: &'a Obs,
    hook_port: u16,
    base: u64,
    dir: &'a TempDir,
    verbose: bool,
}

/// The daemon for one block, in `mode`, connected to OBS.
fn start_daemon(e: &Env, mode: Mode) -> Daemon {
    let mut relay = format!("[relay]\nmode = \"{}\"\n", mode.name());
    if mode == Mode::Splice {
        if let Ok(p) = std::env::var("MS_BENCH_SLATE") {
            relay.push_str(&format!("slate = \"{p}\"\n"));
        }
    }
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{}", e.hook_port),
        rtmp_port: e.nginx.rtmp_port,
        nginx_http_port: e.nginx.http_port,
        extra_toml: format!(
            "[log]\nlevel = \"info\"\n[queue]\nslot_seconds = 0\n{relay}{}",
            e.obs.daemon_toml(e.dir.path(), false)
        ),
        bin: daemon_bin(),
        hook_secret: Some(e.nginx.hook_secret.clone()),
    });
    let connected =
        crate::common::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
            daemon.status()["obs"]["connected"].as_bool()?.then_some(())
        });
    assert!(
        connected.is_some(),
        "{}: daemon never connected to OBS",
        mode.name()
    );
    daemon
}

/// Every block starts from a fresh media source (a settings change
/// makes OBS reopen it): what an earlier block did to OBS's timeline
/// must not carry over.
fn reopen_media_source(c: &mut ObsClient, mode: Mode) {
    static REOPENS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = REOPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let opts = format!("fpsprobesize=0{}", " ".repeat(n % 2 + 1));
    if let Err(err) = c.request(
        "SetInputSettings",
        serde_json::json!({"inputName": obs::MEDIA, "inputSettings": {"ffmpeg_options": opts}, "overlay": true}),
    ) {
        println!("{}: could not reopen OBS's media source: {err}", mode.name());
    }
}

fn run_block(e: &Env, mode: Mode, switches: usize, first_index: usize) -> Block {
    let daemon = start_daemon(e, mode);
    let watch = switch_watch(e.obs);
    let mut c = e.obs.client();
    let url = |k: &str| e.nginx.rtmp_url("live", k);
    let wait_queue = |want: &[&str]| {
        crate::common::wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            (daemon.queue() == want).then_some(())
        })
        .is_some()
    };
    let red = switch_publisher(Seen::Red, &url("red"), "red", e.base, e.dir.path());
    assert!(wait_queue(&["red"]), "red did not join");
    std::thread::sleep(Duration::from_millis(1500));
    reopen_media_source(&mut c, mode);
    if wait_seen(&mut c, Seen::Red, Duration::from_secs(30)).is_none() {
        println!("{}: OBS did not show red within 30 s", mode.name());
    }
    let blue = switch_publisher(Seen::Blue, &url("blue"), "blue", e.base, e.dir.path());
    assert!(wait_queue(&["red", "blue"]), "blue did not join");
    std::thread::sleep(Duration::from_millis(2500));
    let player = TcPlayer::start(&e.nginx.rtmp_url("motherstream", "live"), e.dir.path());
    std::thread::sleep(Duration::from_millis(1000));
    let log_before = e.obs.log_all().len();
    let ticks0 = relay_ticks(daemon.pid());
    let t_block = Instant::now();
    let mut b = Block::default();
    for i in 0..switches {
        let n = first_index + i;
        let (key, seen) = if i % 2 == 0 {
            ("blue", Seen::Blue)
        } else {
            ("red", Seen::Red)
        };
        let (t0, cut) = planned_switch(
            &daemon,
            &mut c,
            &watch,
            n,
            key,
            seen,
            e.base,
            Duration::from_millis(1000),
        );
        let floor = player.first_after(t0, seen);
        println!(
            "{:>7} switch {:>2}: → {key:<4} OBS {} (player {}), name {}, frozen {} ms, silent {} ms, delay {}: {}",
            mode.name(),
            i + 1,
            secs(cut.on_screen),
            secs(floor),
            secs(cut.name_at),
            cut.frozen * 100,
            cut.silent * 50,
            cut.delay().map_or("-".into(), |d| format!("{d:.2} s")),
            cut.timeline
        );
        b.cuts.push(cut);
        b.floors.push(floor);
    }
    b.wall_s = t_block.elapsed().as_secs_f64();
    b.cpu_s = relay_ticks(daemon.pid()).saturating_sub(ticks0) as f64 / clock_ticks();
    b.obs_events = watch.all_events(t_block, Instant::now()).len();
    b.count_obs_log(&e.obs.log_all(), log_before);
    if e.verbose {
        println!("{}", crate::common::tail(&daemon.log_path(), 60));
    }
    drop((player, watch, c, red, blue));
    drop(daemon);
    b
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "never".into())
}

fn med_range(v: Vec<f64>, unit: &str, digits: usize) -> String {
    match stats(v) {
        Some((m, lo, hi)) => format!("{m:.digits$} {unit} ({lo:.digits$}–{hi:.digits$})"),
        None => "-".into(),
    }
}

struct Summary {
    on_screen: String,
    floor: String,
    frozen: String,
    silence: String,
    off: String,
    delay: String,
    drift: String,
    name: String,
    cpu: String,
    obs: String,
}

fn summarize(blocks: &[Block]) -> Summary {
    let cuts: Vec<&Cut> = blocks.iter().flat_map(|b| &b.cuts).collect();
    let n = cuts.len();
    let reached = cuts.iter().filter(|c| c.on_screen.is_some()).count();
    let on_screen: Vec<f64> = cuts
        .iter()
        .filter_map(|c| c.on_screen.map(|d| d.as_secs_f64()))
        .collect();
    let floors: Vec<f64> = blocks
        .iter()
        .flat_map(|b| &b.floors)
        .filter_map(|d| d.map(|d| d.as_secs_f64()))
        .collect();
    let frozen: Vec<f64> = cuts.iter().map(|c| c.frozen as f64 * 0.1).collect();
    let silence: Vec<f64> = cuts.iter().map(|c| c.silent as f64 * 0.05).collect();
    let frozen_switches = cuts.iter().filter(|c| c.frozen > 0).count();
    let silent_switches = cuts.iter().filter(|c| c.silent > 0).count();
    let off: u32 = cuts.iter().flat_map(|c| c.off.values()).sum();
    let samples: u32 = cuts.iter().map(|c| c.samples).sum();
    let delays: Vec<f64> = cuts.iter().filter_map(|c| c.delay()).collect();
    // Drift: per block (OBS reconnects between blocks), weighted by size.
    let (mut sum, mut w) = (0.0, 0.0);
    let mut first_last = Vec::new();
    for b in blocks {
        let d: Vec<f64> = b.cuts.iter().filter_map(|c| c.delay()).collect();
        if let Some(s) = slope(&d) {
            sum += s * d.len() as f64;
            w += d.len() as f64;
        }
        if let (Some(f), Some(l)) = (d.first(), d.last()) {
            first_last.push(format!("{f:.2}→{l:.2}"));
        }
    }
    let leads: Vec<f64> = cuts
        .iter()
        .filter_map(|c| Some(c.on_screen?.as_secs_f64() - c.name_at?.as_secs_f64()))
        .collect();
    let cpu: f64 = blocks.iter().map(|b| b.cpu_s).sum();
    let wall: f64 = blocks.iter().map(|b| b.wall_s).sum();
    let events: usize = blocks.iter().map(|b| b.obs_events).sum();
    let lag: usize = blocks.iter().map(|b| b.lagging).sum();
    let maxb: usize = blocks.iter().map(|b| b.max_buffering).sum();
    let added: usize = blocks.iter().map(|b| b.added_buffering).sum();
    Summary {
        on_screen: format!("{} ({reached}/{n})", med_range(on_screen, "s", 2)),
        floor: med_range(floors, "s", 2),
        frozen: format!(
            "{} per switch; {frozen_switches}/{n} switches",
            med_range(frozen, "s", 1)
        ),
        silence: format!(
            "{} per switch; {silent_switches}/{n} switches",
            med_range(silence, "s", 2)
        ),
        off: format!("{off} of {samples}"),
        delay: format!("{} [{}]", med_range(delays, "s", 2), first_last.join(", ")),
        drift: if w > 0.0 {
            format!("{:+.1} ms", sum / w * 1000.0)
        } else {
            "-".into()
        },
        name: med_range(leads, "s", 2),
        cpu: format!(
            "{:.1} % ({cpu:.1} s over {wall:.0} s)",
            cpu / wall.max(1e-9) * 100.0
        ),
        obs: format!(
            "{lag}× lagging, {maxb}× max buffering, {added}× buffering added; {events} media/item events"
        ),
    }
}

pub fn main() {
    let switches = env_num("MS_BENCH_SWITCHES", 10).max(1);
    let rounds = env_num("MS_BENCH_ROUNDS", 2).clamp(1, switches);
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = switch_obs(&nginx);
    let dir = TempDir::new("obs-bench");
    let e = Env {
        nginx: &nginx,
        obs: &obs,
        hook_port,
        base: wall_us(),
        dir: &dir,
        verbose: std::env::var_os("MS_BENCH_VERBOSE").is_some(),
    };
    let t = Instant::now();
    let mut splice = Vec::new();
    let mut restart = Vec::new();
    let mut first = 0;
    for r in 0..rounds {
        // Split the switches over the rounds (the first rounds take the rest).
        let k = switches / rounds + usize::from(r < switches % rounds);
        splice.push(run_block(&e, Mode::Splice, k, first));
        restart.push(run_block(&e, Mode::Restart, k, first + 1));
        first += k;
    }
    let s = summarize(&splice);
    let r = summarize(&restart);
    println!();
    println!(
        "obs_switch: {switches} planned switches per mode in {rounds} alternating blocks, {:.0} s",
        t.elapsed().as_secs_f64()
    );
    println!();
    println!("| planned switch (`/api/move`), real OBS 29 | splice | restart |");
    println!("|---|---|---|");
    let rows = [
        (
            "new streamer on screen in OBS after the move, median (min–max)",
            &s.on_screen,
            &r.on_screen,
        ),
        (
            "the same at a plain ffmpeg player of the output",
            &s.floor,
            &r.floor,
        ),
        (
            "frozen picture (100 ms screenshots that did not move)",
            &s.frozen,
            &r.frozen,
        ),
        (
            "silence (50 ms meter windows with peak < 1e-3)",
            &s.silence,
            &r.silence,
        ),
        (
            "screenshots of neither streamer (loading, grey, black)",
            &s.off,
            &r.off,
        ),
        (
            "OBS picture delay after a switch [first→last per block]",
            &s.delay,
            &r.delay,
        ),
        (
            "delay drift per switch (least squares, per block)",
            &s.drift,
            &r.drift,
        ),
        ("name text ahead of OBS's picture", &s.name, &r.name),
        (
            "CPU of the relay processes (daemon + its ffmpeg), of one core",
            &s.cpu,
            &r.cpu,
        ),
        ("OBS log and events during the switches", &s.obs, &r.obs),
    ];
    for (what, a, b) in rows {
        println!("| {what} | {a} | {b} |");
    }
    drop(obs);
    drop(nginx);
}
