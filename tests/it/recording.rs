//! `[recording]` against real nginx-rtmp and ffmpeg: each streamer's time
//! on air becomes one file named after them, playable, as long as they
//! were on screen; a free-space floor keeps recording off; old recordings
//! are pruned; a forged on_record_done moves nothing; a recording running
//! across `motherstream upgrade` is filed whole by the new binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// The finished-recordings directory and nginx's record_path, in a temp
/// dir nginx's worker (nobody, under a root master) can reach.
struct Dirs {
    _base: TempDir,
    rec: PathBuf,
    incoming: PathBuf,
}

fn dirs() -> Dirs {
    let base = TempDir::new("recording");
    let rec = base.join("rec");
    let incoming = base.join("incoming");
    fs::create_dir(&rec).expect("mkdir rec");
    fs::create_dir(&incoming).expect("mkdir incoming");
    let mode = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    mode(base.path(), 0o755);
    mode(&incoming, 0o777);
    Dirs {
        _base: base,
        rec,
        incoming,
    }
}

fn rig(d: &Dirs, min_free_mb: u64, extra: &str) -> Rig {
    Rig::start_with(
        &format!(
            "[recording]\nenabled = true\ndir = \"{}\"\nincoming_dir = \"{}\"\nmin_free_mb = {min_free_mb}\nkeep_days = 30\n{extra}",
            d.rec.display(),
            d.incoming.display()
        ),
        &NginxOpts {
            record_dir: Some(d.incoming.clone()),
            ..NginxOpts::default()
        },
    )
}

fn flv_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".flv"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// ffprobe's duration of a file, seconds (None: not playable).
fn probe_duration(path: &Path) -> Option<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// (when, who the output showed from then on), at each cut.
type Changes = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Polls `/api/status` every 25 ms and keeps (time, on-air name) at each
/// cut (a new `relay.last_cut`): when each streamer was on screen, seen
/// from outside. (Before the first cut the status already names the head of
/// the queue; the cut is when the output shows them.)
struct OnAirLog {
    stop: Arc<AtomicBool>,
    changes: Changes,
    join: Option<std::thread::JoinHandle<()>>,
}

impl OnAirLog {
    fn start(port: u16) -> OnAirLog {
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (stop.clone(), changes.clone());
        let join = std::thread::spawn(move || {
            let mut last_cut: Option<String> = None;
            while !s.load(Ordering::Relaxed) {
                let r = get(port, "/api/status");
                if r.status == 200 {
                    let st = r.json();
                    let cut = st["relay"]["last_cut"].as_str().map(str::to_string);
                    if cut.is_some() && cut != last_cut {
                        let name = st["on_air"]["name"].as_str().map(str::to_string);
                        c.lock().unwrap().push((Instant::now(), name));
                        last_cut = cut;
                    }
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        OnAirLog {
            stop,
            changes,
            join: Some(join),
        }
    }

    /// Seconds `name` was on air (one stretch), ending at the next change.
    fn on_air_s(&self, name: &str) -> Option<f64> {
        let c = self.changes.lock().unwrap();
        let i = c.iter().position(|(_, n)| n.as_deref() == Some(name))?;
        // A cut to the same streamer again (their stream restarted) does
        // not end their time on air; the next cut to someone else does.
        let end = c[i + 1..]
            .iter()
            .find(|(_, n)| n.as_deref() != Some(name))?
            .0;
        Some(end.duration_since(c[i].0).as_secs_f64())
    }

    fn dump(&self) -> String {
        let c = self.changes.lock().unwrap();
        let t0 = c.first().map(|x| x.0);
        c.iter()
            .map(|(t, n)| {
                format!(
                    "{:.2}s {:?}",
                    t0.map_or(0.0, |t0| t.duration_since(t0).as_secs_f64()),
                    n
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for OnAirLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn wait_on_air(rig: &Rig, name: &str) {
    let ok = wait_for(Duration::from_secs(20), Duration::from_millis(25), || {
        (rig.daemon.status()["on_air"]["name"].as_str() == Some(name)).then_some(())
    });
    assert!(
        ok.is_some(),
        "{name} never on air: {}\n{}",
        rig.daemon.status(),
        tail(&rig.daemon.log_path(), 30)
    );
}

fn register(rig: &Rig, name: &str) -> String {
    let r = rig.daemon.admin(
        "/api/streamers",
        &serde_json::json!({ "name": name }).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "register {name}: {r:?}");
    r.json()["key"].as_str().expect("key").to_string()
}

#[test]
fn two_streamers_taking_turns_are_two_files_named_by_streamer() {
    let _turn = light_turn();
    let d = dirs();
    let rig = rig(&d, 0, "");
    let dj = "DJ Ünï/cødé";
    let key_a = register(&rig, dj);
    let key_b = register(&rig, "bob");
    let log = OnAirLog::start(rig.daemon.port);

    let mut a = rig.join_as(&key_a, dj, SIZE_A);
    wait_on_air(&rig, dj);
    let mut b = rig.join_as(&key_b, "bob", SIZE_B);
    std::thread::sleep(Duration::from_secs(6));
    // A planned switch: bob goes on air at his keyframe, the DJ keeps
    // publishing (and is no longer recorded).
    let r = rig
        .daemon
        .admin("/api/move", r#"{"name":"bob","position":0}"#, None);
    assert_eq!(r.status, 200, "{r:?}");
    wait_on_air(&rig, "bob");
    std::thread::sleep(Duration::from_secs(2));
    // The DJ (waiting, not on screen) leaves: nothing to record.
    a.stop();
    std::thread::sleep(Duration::from_secs(3));
    // bob leaves while on air: his recording ends with him.
    b.stop();

    wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        let f = flv_files(&d.rec);
        (f.len() >= 2).then_some(f)
    })
    .unwrap_or_else(|| {
        panic!(
            "expected two recordings in {}, got {:?}; incoming {:?}; on air: {}\n{}",
            d.rec.display(),
            flv_files(&d.rec),
            flv_files(&d.incoming),
            log.dump(),
            tail(&rig.daemon.log_path(), 40)
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let files = flv_files(&d.rec);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        flv_files(&d.incoming).is_empty(),
        "nginx's files were all moved: {:?}",
        flv_files(&d.incoming)
    );
    // Named by streamer (the slash made safe) and UTC start.
    let named = |prefix: &str| {
        files
            .iter()
            .find(|f| f.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}… in {files:?}"))
            .clone()
    };
    let (dj_file, bob_file) = (named("DJ Ünï_cødé-20"), named("bob-20"));
    for (f, who) in [(&dj_file, "DJ Ünï_cødé"), (&bob_file, "bob")] {
        let (streamer, start) = motherstream::recording::parse_file_name(f)
            .unwrap_or_else(|| panic!("{f}: not <name>-<UTC start>.flv"));
        assert_eq!(streamer, who);
        assert!(
            start + 120 > unix_now() && start <= unix_now(),
            "{f}: start {start} is not this test's"
        );
    }
    // No file name holds a stream key.
    for k in [&key_a, &key_b] {
        assert!(!files.iter().any(|f| f.contains(k.as_str())), "{files:?}");
    }

    // Each is playable and as long as its streamer's (first) time on air.
    for (file, name) in [(&dj_file, dj), (&bob_file, "bob")] {
        let on_air = log.on_air_s(name).expect("on-air interval");
        let dur = probe_duration(&d.rec.join(file))
            .unwrap_or_else(|| panic!("ffprobe cannot read {file}"));
        eprintln!("{name}: on air {on_air:.2} s, recording {dur:.2} s");
        assert!(
            (dur - on_air).abs() <= 2.0,
            "{file}: {dur:.2} s recorded, {on_air:.2} s on air ({})",
            log.dump()
        );
    }

    // /api/status lists them, newest first, with streamer and duration.
    let st = rig.daemon.status();
    let recent = st["recordings"]["recent"]
        .as_array()
        .expect("recent")
        .clone();
    assert_eq!(recent.len(), 2, "{st}");
    assert!(recent.iter().any(|r| r["streamer"] == "bob"
        && r["duration_s"]
            .as_u64()
            .is_some_and(|s| (4..=8).contains(&s))
        && r["size_bytes"].as_u64().is_some_and(|n| n > 10_000)));
    assert!(recent
        .iter()
        .all(|r| files.contains(&r["file"].as_str().unwrap_or("").to_string())));
    assert!(st["recordings"]["recording"].is_null(), "{st}");
}

#[test]
fn free_space_floor_pruning_and_forged_hooks() {
    let _turn = light_turn();
    let d = dirs();
    let day = 86_400;
    // Left from earlier runs: two recordings and a stray spool file past
    // keep_days, one recent recording, an old file that is not ours.
    let old = ["old-2020-01-01T000000Z.flv", "older.flv"];
    for f in old
        .iter()
        .chain(["fresh-2026-01-01T000000Z.flv", "notes.txt"].iter())
    {
        fs::write(d.rec.join(f), b"FLV").expect("write");
    }
    fs::write(d.incoming.join("key-1.flv"), b"FLV").expect("write");
    let touch = |p: PathBuf, days_ago: u64| {
        let st = std::process::Command::new("touch")
            .arg("-d")
            .arg(format!("@{}", unix_now() - days_ago * day))
            .arg(&p)
            .status()
            .expect("touch");
        assert!(st.success());
    };
    for f in old {
        touch(d.rec.join(f), 31);
    }
    touch(d.rec.join("notes.txt"), 90);
    touch(d.rec.join("fresh-2026-01-01T000000Z.flv"), 29);
    touch(d.incoming.join("key-1.flv"), 40);
    let outside = d.rec.parent().expect("base").join("victim.flv");
    fs::write(&outside, b"mine").expect("write");

    // A floor far above any disk's free space.
    let rig = rig(&d, 1 << 40, "");
    let pruned = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (!d.rec.join(old[0]).exists()
            && !d.rec.join(old[1]).exists()
            && !d.incoming.join("key-1.flv").exists())
        .then_some(())
    });
    assert!(pruned.is_some(), "not pruned: {}", rig.daemon.log());
    assert!(d.rec.join("fresh-2026-01-01T000000Z.flv").exists());
    assert!(
        d.rec.join("notes.txt").exists(),
        "only recordings are pruned"
    );
    assert!(rig
        .daemon
        .log()
        .contains("removed 3 recording(s) older than 30 days"));

    let _a = rig.join("alice", SIZE_A);
    wait_on_air(&rig, "alice");
    let warned = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        rig.daemon
            .log()
            .contains("recording stopped: only")
            .then_some(())
    });
    assert!(warned.is_some(), "no warning: {}", rig.daemon.log());
    std::thread::sleep(Duration::from_secs(3));
    let st = rig.daemon.status();
    assert!(st["recordings"]["recording"].is_null(), "{st}");
    assert!(
        st["recordings"]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("min_free_mb")),
        "{st}"
    );
    assert!(flv_files(&d.incoming).is_empty(), "nginx never recorded");
    // The recordings from before are listed.
    assert_eq!(st["recordings"]["recent"][0]["streamer"], "fresh", "{st}");

    // A forged on_record_done (right hook secret) for a file outside the
    // spool, or for a recording nobody started, moves nothing.
    for path in [outside.display().to_string(), "/etc/passwd".into()] {
        let body = format!(
            "app=live&flashver=x&swfurl=&tcurl=rtmp://127.0.0.1/live&pageurl=&addr=127.0.0.1&clientid=3&call=record_done&recorder=motherstream&name=alice&path={path}"
        );
        assert_eq!(rig.daemon.hook("on_record_done", &body).status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fs::read(&outside).expect("still there"), b"mine");
    assert_eq!(flv_files(&d.rec), ["fresh-2026-01-01T000000Z.flv"]);
    assert!(
        rig.daemon.log().contains("did not start"),
        "{}",
        rig.daemon.log()
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `motherstream upgrade` of the running daemon (the same binary: the
/// recording must survive the exec, whichever version comes next).
pub(crate) fn upgrade(rig: &Rig) {
    let out = std::process::Command::new(daemon_bin())
        .arg("--config")
        .arg(rig.daemon.config_path())
        .arg("upgrade")
        .output()
        .expect("run motherstream upgrade");
    assert!(
        out.status.success(),
        "upgrade failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&rig.daemon.log_path(), 30)
    );
}

/// The longest step between the video packets of `path` (seconds): a
/// recording with a hole in it shows one.
fn longest_packet_step(path: &Path) -> Option<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .ok()?;
    let t: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    t.windows(2).map(|w| w[1] - w[0]).reduce(f64::max)
}

/// The recorder's state goes across `motherstream upgrade`: a recording
/// running at a hand-over (nginx writes it; motherstream knows its file,
/// who it is and since when) is stopped at the next cut and filed by the
/// new binary as if no hand-over had happened: one whole file per
/// streamer, as long as their time on air, nothing left in nginx's spool.
#[test]
fn recordings_run_on_across_hand_overs_and_are_filed() {
    let _turn = heavy_turn();
    let d = dirs();
    let rig = rig(&d, 0, "[queue]\nslot_seconds = 600\n");
    let key_a = register(&rig, "alice");
    let key_b = register(&rig, "bob");
    let log = OnAirLog::start(rig.daemon.port);
    let mut a = rig.join_as(&key_a, "alice", SIZE_A);
    wait_on_air(&rig, "alice");
    let recording = |rig: &Rig| rig.daemon.status()["recordings"]["recording"].clone();
    // Recorded from the decision; on screen at the cut.
    let since = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let r = recording(&rig);
        r.get("since").and_then(serde_json::Value::as_u64)
    });
    assert!(
        since.is_some(),
        "alice is not recorded: {}",
        rig.daemon.status()
    );
    std::thread::sleep(Duration::from_secs(2));

    // Hand-over 1: alice on screen and recorded.
    upgrade(&rig);
    let after_first = recording(&rig);
    let mut b = rig.join_as(&key_b, "bob", SIZE_B);
    std::thread::sleep(Duration::from_secs(1));
    // A planned switch: alice's recording (begun by the first binary)
    // ends at the cut, bob's begins.
    let r = rig
        .daemon
        .admin("/api/move", r#"{"name":"bob","position":0}"#, None);
    assert_eq!(r.status, 200, "{r:?}");
    wait_on_air(&rig, "bob");
    std::thread::sleep(Duration::from_secs(1));
    // alice leaves (not on screen: nothing of hers is recorded any more).
    a.stop();
    std::thread::sleep(Duration::from_millis(500));
    // Hand-over 2: bob on screen and recorded; then he leaves while on
    // air, and nginx ends his recording itself.
    upgrade(&rig);
    std::thread::sleep(Duration::from_secs(1));
    b.stop();

    let files = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        let f = flv_files(&d.rec);
        (f.len() >= 2).then_some(f)
    });
    let daemon_log = rig.daemon.log();
    for l in daemon_log
        .lines()
        .filter(|l| l.contains("record") || l.contains("taking over"))
    {
        eprintln!("  log: {l}");
    }
    assert_eq!(
        daemon_log.matches("taking over from").count(),
        2,
        "two hand-overs"
    );
    let files = files.unwrap_or_else(|| {
        panic!(
            "expected alice's and bob's recordings in {}, got {:?}; nginx's spool {:?}; on air: {}",
            d.rec.display(),
            flv_files(&d.rec),
            flv_files(&d.incoming),
            log.dump()
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(flv_files(&d.rec), files, "one file each");
    assert!(
        flv_files(&d.incoming).is_empty(),
        "nothing left in nginx's spool: {:?}",
        flv_files(&d.incoming)
    );
    assert_eq!(
        after_first.get("since").and_then(serde_json::Value::as_u64),
        since,
        "the new binary reports the same recording: {after_first}"
    );
    for who in ["alice", "bob"] {
        one_whole_recording(&d.rec, &files, who, &log);
    }
    let st = rig.daemon.status();
    let recent = st["recordings"]["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        ["alice", "bob"].iter().all(|w| recent
            .iter()
            .any(|r| r["streamer"] == *w && r["duration_s"].as_u64().is_some())),
        "/api/status lists both with their durations: {st}"
    );
}

/// `who`'s recording among `files` in `dir`: as long as their time on air
/// and without a hole.
fn one_whole_recording(dir: &Path, files: &[String], who: &str, log: &OnAirLog) {
    let file = files
        .iter()
        .find(|f| f.starts_with(&format!("{who}-20")))
        .unwrap_or_else(|| panic!("no recording of {who}: {files:?}"));
    let on_air = log.on_air_s(who).expect("on-air interval");
    let path = dir.join(file);
    let dur = probe_duration(&path).unwrap_or_else(|| panic!("ffprobe cannot read {file}"));
    let step = longest_packet_step(&path).unwrap_or(f64::MAX);
    eprintln!(
        "{who}: on air {on_air:.2} s, recording {dur:.2} s, longest step between its frames {step:.3} s"
    );
    assert!(
        (dur - on_air).abs() <= 2.0,
        "{file}: {dur:.2} s recorded, {on_air:.2} s on air ({})",
        log.dump()
    );
    assert!(step <= 0.25, "{file}: a hole of {step:.3} s");
}
