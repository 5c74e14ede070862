//! Bench: how long from a switch (the on-air publisher stops) until OBS's
//! program shows the next streamer, and what OBS shows meanwhile.
//!
//! `cargo bench --bench obs_switch` (env `MS_BENCH_SWITCHES`, default 5).
//!
//! Real everything: a private nginx-rtmp, the motherstream daemon with
//! `[obs] enabled = true` (default cue: leave the media source alone), a
//! headless OBS 29 playing `motherstream/live`, and two ffmpeg publishers of
//! solid red and solid blue (a moving test pattern on top so frames change;
//! 320x180, 15 fps, keyframe every 1 s). Every 100 ms the bench takes a
//! `GetSourceScreenshot` of the scene and classifies a strip below the
//! moving pattern as red / blue / green (the loading item) / black / grey.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/obs.rs"]
mod obs;

use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{daemon_bin, free_port, Daemon, DaemonOpts, Nginx, TempDir};
use obs::{classify, Obs, ObsClient, ObsOpts, Seen};

/// Publisher frame rate (keyframe every second); `MS_BENCH_FPS` overrides.
fn fps() -> u32 {
    std::env::var("MS_BENCH_FPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

struct ColourPublisher {
    key: &'static str,
    colour: &'static str,
    child: Child,
}

impl ColourPublisher {
    fn start(rtmp_port: u16, key: &'static str, colour: &'static str, dir: &TempDir) -> Self {
        let graph = format!(
            "color=c={colour}:s=320x180:r={fps}[bg];testsrc2=s=48x48:r={fps}[fg];\
             [bg][fg]overlay=x='mod(t*120,272)':y=40[out0]",
            fps = fps()
        );
        let log = File::create(dir.join(&format!("{key}.log"))).expect("log");
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", &graph])
            // Audio too, like every real streamer: from a video-only FLV the
            // relay's probe waits out analyzeduration (5-6 s measured).
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-pix_fmt",
                "yuv420p",
                "-g",
                &fps().to_string(),
                "-c:a",
                "aac",
                "-b:a",
                "32k",
                "-f",
                "flv",
            ])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ffmpeg");
        ColourPublisher { key, colour, child }
    }

    /// SIGINT, like a streamer ending the stream; SIGKILL if it lingers.
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        if common::wait_child(&mut self.child, Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ColourPublisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "not within 15 s".into())
}

fn median(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some((*v.get(v.len() / 2)?, *v.first()?, *v.last()?))
}

fn seen_of(colour: &str) -> Seen {
    if colour == "red" {
        Seen::Red
    } else {
        Seen::Blue
    }
}

/// What the program shows now: the strip under the moving pattern.
fn look(c: &mut ObsClient) -> Option<Seen> {
    let img = c.screenshot(obs::SCENE, 64).ok()?;
    Some(classify(img.mean(0.1, 0.72, 0.9, 0.95)))
}

fn wait_seen(c: &mut ObsClient, want: Seen, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if look(c) == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_queue(d: &Daemon, want: &[&str], timeout: Duration) -> bool {
    common::wait_for(timeout, Duration::from_millis(50), || {
        (d.queue() == want).then_some(())
    })
    .is_some()
}

/// A plain ffmpeg player of the output (the floor OBS cannot beat): it
/// decodes to 8x8 RGB and records when each colour is first seen.
struct Player {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Seen)>>>,
}

impl Player {
    fn start(url: &str, dir: &TempDir) -> Player {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-fpsprobesize", "0", "-i", url, "-an", "-vf", "scale=8:8"])
            .args([
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("player.log")).expect("log"))
            .spawn()
            .expect("spawn ffmpeg player");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take();
        let s2 = seen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let Some(mut out) = out else { return };
            let mut frame = [0u8; 8 * 8 * 3];
            let mut last = None;
            while out.read_exact(&mut frame).is_ok() {
                // Bottom two rows: below the moving pattern.
                let mut sum = [0u32; 3];
                for px in frame[6 * 8 * 3..].chunks(3) {
                    for c in 0..3 {
                        sum[c] += px[c] as u32;
                    }
                }
                let mean = [
                    (sum[0] / 16) as u8,
                    (sum[1] / 16) as u8,
                    (sum[2] / 16) as u8,
                ];
                let k = classify(mean);
                if last != Some(k) {
                    last = Some(k);
                    if let Ok(mut v) = s2.lock() {
                        v.push((Instant::now(), k));
                    }
                }
            }
        });
        Player { child, seen }
    }

    /// When `want` was first seen after `t0`.
    fn first_after(&self, t0: Instant, want: Seen) -> Option<Duration> {
        let v = self.seen.lock().ok()?;
        v.iter()
            .find(|(t, k)| *t >= t0 && *k == want)
            .map(|(t, _)| *t - t0)
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Switch {
    from: &'static str,
    to: &'static str,
    took: Option<Duration>,
    floor: Option<Duration>,
    meanwhile: BTreeMap<Seen, u32>,
    timeline: String,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("obs_switch: run with `cargo bench --bench obs_switch`");
        return;
    }
    let switches: usize = std::env::var("MS_BENCH_SWITCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let verbose = std::env::var_os("MS_BENCH_VERBOSE").is_some();
    let hook_port = free_port();
    let nginx = Nginx::start(hook_port);
    let obs = Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        // What the operator had before motherstream added fpsprobesize=0.
        ffmpeg_options: std::env::var("MS_BENCH_FFMPEG_OPTIONS").unwrap_or_default(),
        width: 320,
        height: 180,
        fps: std::env::var("MS_BENCH_OBS_FPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
        ..ObsOpts::default()
    });
    let dir = TempDir::new("obs-bench");
    let pw_file = dir.join("obs-password");
    std::fs::write(&pw_file, format!("{}\n", obs.password)).expect("password file");
    let daemon = Daemon::start(DaemonOpts {
        listen: format!("127.0.0.1:{hook_port}"),
        rtmp_port: nginx.rtmp_port,
        nginx_http_port: nginx.http_port,
        extra_toml: format!(
            "[log]\nlevel = \"info\"\n[obs]\nenabled = true\nport = {}\npassword_file = \"{}\"\n\
             scene = \"{}\"\nmedia_source = \"{}\"\nloading_source = \"{}\"\nname_source = \"{}\"\n",
            obs.port,
            pw_file.display(),
            obs::SCENE,
            obs::MEDIA,
            obs::LOADING,
            obs::NAME
        ),
        bin: daemon_bin(),
        hook_secret: Some(nginx.hook_secret.clone()),
    });
    let mut c = obs.client();
    let player = Player::start(&nginx.rtmp_url("motherstream", "live"), &dir);

    let mut on_air = ColourPublisher::start(nginx.rtmp_port, "red", "red", &dir);
    assert!(
        wait_queue(&daemon, &["red"], Duration::from_secs(15)),
        "red did not join"
    );
    assert!(
        wait_seen(&mut c, Seen::Red, Duration::from_secs(30)),
        "OBS never showed red; last {:?}\n{}",
        look(&mut c),
        obs.log_tail()
    );
    let mut waiting = ColourPublisher::start(nginx.rtmp_port, "blue", "blue", &dir);
    assert!(wait_queue(
        &daemon,
        &["red", "blue"],
        Duration::from_secs(15)
    ));

    let mut results: Vec<Switch> = Vec::new();
    for i in 0..switches {
        // Steady state, and a random keyframe phase for the next switch.
        std::thread::sleep(Duration::from_millis(2500 + (i as u64 * 370) % 1000));
        let new = seen_of(waiting.colour);
        let t0 = Instant::now();
        on_air.stop();
        let mut meanwhile = BTreeMap::new();
        let mut timeline = String::new();
        let mut took = None;
        let mut diag: Vec<String> = Vec::new();
        let mut next = t0;
        while t0.elapsed() < Duration::from_secs(15) {
            next += Duration::from_millis(100);
            let s = look(&mut c);
            let at = t0.elapsed();
            let code = match s {
                Some(Seen::Red) => 'R',
                Some(Seen::Blue) => 'B',
                Some(Seen::Green) => 'L',
                Some(Seen::Black) => 'K',
                Some(Seen::Grey) => 'g',
                Some(Seen::Other) => '?',
                None => '!',
            };
            timeline.push(code);
            if verbose {
                let st = c.media_state(obs::MEDIA).unwrap_or_default();
                let q = daemon.queue();
                diag.push(format!(
                    "{:.1}:{}:{}",
                    at.as_secs_f64(),
                    st.trim_start_matches("OBS_MEDIA_STATE_"),
                    q.join("+")
                ));
            }
            if s == Some(new) {
                took = Some(at);
                break;
            }
            if let Some(s) = s {
                *meanwhile.entry(s).or_insert(0) += 1;
            }
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        // Give the player a moment in case it is slower than OBS.
        std::thread::sleep(Duration::from_millis(300));
        let sw = Switch {
            from: on_air.key,
            to: waiting.key,
            took,
            floor: player.first_after(t0, new),
            meanwhile,
            timeline,
        };
        println!(
            "switch {}: {} → {}: OBS {} (a plain ffmpeg player of the output: {}); OBS every 100 ms: {}",
            i + 1,
            sw.from,
            sw.to,
            secs(sw.took),
            secs(sw.floor),
            sw.timeline
        );
        if verbose {
            println!("  {}", diag.join(" "));
        }
        results.push(sw);
        // The one who left comes back and waits behind the new head.
        let back = ColourPublisher::start(nginx.rtmp_port, on_air.key, on_air.colour, &dir);
        let (head, rejoin) = (waiting.key, on_air.key);
        let new_head = std::mem::replace(&mut waiting, back);
        drop(std::mem::replace(&mut on_air, new_head));
        assert!(
            wait_queue(&daemon, &[head, rejoin], Duration::from_secs(15)),
            "queue after switch {}: {:?}",
            i + 1,
            daemon.queue()
        );
    }

    let times: Vec<f64> = results
        .iter()
        .filter_map(|s| s.took.map(|d| d.as_secs_f64()))
        .collect();
    let floors: Vec<f64> = results
        .iter()
        .filter_map(|s| s.floor.map(|d| d.as_secs_f64()))
        .collect();
    let mut totals: BTreeMap<Seen, u32> = BTreeMap::new();
    for s in &results {
        for (k, v) in &s.meanwhile {
            *totals.entry(*k).or_insert(0) += v;
        }
    }
    let old_frames: u32 = totals.get(&Seen::Red).copied().unwrap_or(0)
        + totals.get(&Seen::Blue).copied().unwrap_or(0);
    println!();
    println!(
        "obs_switch: {} switches, {} reached the new streamer",
        results.len(),
        times.len()
    );
    let extra: Vec<f64> = results
        .iter()
        .filter_map(|s| Some(s.took?.as_secs_f64() - s.floor?.as_secs_f64()))
        .collect();
    let n = times.len();
    if let Some((med, min, max)) = median(times) {
        println!(
            "  publisher stop → new streamer in OBS's program: median {med:.2} s, min {min:.2} s, max {max:.2} s over {n} (target ≤ 1.3 s median)"
        );
    }
    if let Some((med, min, max)) = median(floors) {
        println!(
            "  the same for a plain ffmpeg player of the output (-fpsprobesize 0): median {med:.2} s, min {min:.2} s, max {max:.2} s"
        );
    }
    if let Some((med, min, max)) = median(extra) {
        println!(
            "  OBS's own share (OBS − player, same switch): median {med:.2} s, min {min:.2} s, max {max:.2} s"
        );
    }
    println!(
        "  meanwhile (100 ms samples): old streamer {old_frames}, grey {}, black {}, loading {}, other {}",
        totals.get(&Seen::Grey).copied().unwrap_or(0),
        totals.get(&Seen::Black).copied().unwrap_or(0),
        totals.get(&Seen::Green).copied().unwrap_or(0),
        totals.get(&Seen::Other).copied().unwrap_or(0)
    );
    if verbose {
        println!("{}", common::tail(&daemon.log_path(), 80));
    }
    drop(c);
    drop(player);
    drop(waiting);
    drop(on_air);
    drop(daemon);
    drop(obs);
    drop(nginx);
}
