//! The OBS thread (`motherstream::obs::ObsHandle`) against a real headless
//! OBS 29: connect with a password, the name/timer texts and the loading
//! item follow the broadcast state, wrong and missing passwords are reported
//! clearly and retried slowly, kill -9 + restart reconnects and re-applies
//! the current state, missing sources are named in the log, a dead media
//! source is restarted with backoff.
//!
//! OBS tests hold a machine-wide lock (see common/obs.rs), so they run one
//! at a time whatever `--test-threads` says.

use crate::common::{heavy_turn, obs};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use crate::common::obs::{until, Obs, ObsOpts};
use crossbeam_channel::Receiver;
use motherstream::config::{CueMode, ObsConfig};
use motherstream::obs::{BroadcastState, ObsHandle, ObsStatus};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("motherstream")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}: {}", r.level(), r.target(), r.args());
            eprintln!("{line}");
            if let Ok(mut l) = LINES.lock() {
                l.push(line);
            }
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Log lines captured so far that contain `needle`.
fn logged(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .map(|l| l.iter().filter(|s| s.contains(needle)).cloned().collect())
        .unwrap_or_default()
}

fn config(o: &Obs) -> ObsConfig {
    ObsConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port: o.port,
        password: Some(o.password.clone()),
        scene: obs::SCENE.into(),
        media_source: obs::MEDIA.into(),
        loading_source: obs::LOADING.into(),
        name_source: obs::NAME.into(),
        timer_source: obs::TIMER.into(),
        cue: CueMode::None,
        loading_ms: 0,
        request_timeout_ms: 2000,
        ..ObsConfig::default()
    }
}

fn on_air(name: &str, seq: u64, slot: Option<Duration>) -> BroadcastState {
    BroadcastState {
        on_air: Some(name.into()),
        next_up: None,
        switch_seq: seq,
        slot_ends_at: slot.map(|d| SystemTime::now() + d),
    }
}

fn nobody(seq: u64) -> BroadcastState {
    BroadcastState {
        switch_seq: seq,
        ..BroadcastState::default()
    }
}

fn next_status(rx: &Receiver<ObsStatus>, timeout: Duration) -> ObsStatus {
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no ObsStatus within {timeout:?}"))
}

fn expect_connected(rx: &Receiver<ObsStatus>, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match next_status(rx, left) {
            ObsStatus::Connected { obs_version } => {
                assert!(obs_version.starts_with("29.") || obs_version.starts_with("3"));
                return;
            }
            ObsStatus::Disconnected { reason } => eprintln!("(status: {reason})"),
        }
    }
}

/// Reconfigure and wait until the thread has connected with the new config
/// (a reconnect for a new config is not reported as a status change).
fn reconfigure_and_wait(h: &ObsHandle, cfg: ObsConfig) {
    let before = logged("connected to OBS").len();
    h.reconfigure(cfg);
    until(
        Duration::from_secs(10),
        "reconnect after reconfigure",
        || (logged("connected to OBS").len() > before).then_some(()),
    );
    // Let the new session apply the current state first.
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn texts_and_loading_follow_the_broadcast_state() {
    let _turn = heavy_turn();
    init_log();
    let o = Obs::start(ObsOpts::default());
    let mut c = o.client();
    let (tx, rx) = crossbeam_channel::unbounded();
    let h = ObsHandle::spawn(config(&o), tx).expect("spawn");
    expect_connected(&rx, Duration::from_secs(10));

    // Nobody on air: loading shown, texts blank.
    h.show(nobody(0));
    c.request(
        "SetInputSettings",
        serde_json::json!({"inputName": obs::NAME, "inputSettings": {"text": "stale"}}),
    )
    .expect("set stale text");
    c.set_item_enabled(obs::LOADING, false).expect("hide");
    // A reconnect (reconfigure) re-applies the whole state.
    let mut cfg = config(&o);
    cfg.request_timeout_ms = 1500;
    h.reconfigure(cfg);
    until(Duration::from_secs(10), "loading shown, name blank", || {
        (c.item_enabled(obs::LOADING).ok()? && c.text(obs::NAME).ok()?.is_empty()).then_some(())
    });

    // fpsprobesize=0 was added to the media source on connect, and logged.
    let opts = c.input_settings(obs::MEDIA).expect("settings");
    assert_eq!(opts["ffmpeg_options"], "fpsprobesize=0", "{opts}");
    assert!(!logged("set ffmpeg_options to \"fpsprobesize=0\"").is_empty());

    // Someone on air with a slot: name set, loading hidden, countdown runs.
    h.show(on_air("Alice Ünïcode", 1, Some(Duration::from_secs(125))));
    until(Duration::from_secs(5), "name = Alice, loading off", || {
        (c.text(obs::NAME).ok()? == "Alice Ünïcode" && !c.item_enabled(obs::LOADING).ok()?)
            .then_some(())
    });
    let t1 = c.text(obs::TIMER).expect("timer");
    assert!(t1 == "02:05" || t1 == "02:04", "timer {t1:?}");
    until(Duration::from_secs(4), "timer ticks", || {
        let t = c.text(obs::TIMER).ok()?;
        (t != t1 && t.starts_with("02:0")).then_some(())
    });

    // Next streamer without a slot limit: timer blank.
    h.show(on_air("Bob", 2, None));
    until(Duration::from_secs(5), "name = Bob, timer blank", || {
        (c.text(obs::NAME).ok()? == "Bob" && c.text(obs::TIMER).ok()?.is_empty()).then_some(())
    });
    assert!(!c.item_enabled(obs::LOADING).expect("loading"));

    // loading_ms: the loading item covers the first moment of a switch.
    let mut cfg = config(&o);
    cfg.loading_ms = 1500;
    reconfigure_and_wait(&h, cfg);
    // Let Bob's own loading_ms run out first.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!c.item_enabled(obs::LOADING).expect("loading"));
    h.show(on_air("Carol", 3, None));
    until(
        Duration::from_secs(1),
        "loading shown across the switch",
        || (c.text(obs::NAME).ok()? == "Carol" && c.item_enabled(obs::LOADING).ok()?).then_some(()),
    );
    until(
        Duration::from_secs(3),
        "loading hidden after loading_ms",
        || (!c.item_enabled(obs::LOADING).ok()?).then_some(()),
    );

    // Queue empty: loading back, texts blank.
    h.show(nobody(4));
    until(Duration::from_secs(5), "loading back", || {
        (c.item_enabled(obs::LOADING).ok()? && c.text(obs::NAME).ok()?.is_empty()).then_some(())
    });

    let t = Instant::now();
    h.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn wrong_or_missing_password_is_reported_once_and_retried_slowly() {
    let _turn = heavy_turn();
    init_log();
    let o = Obs::start(ObsOpts::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut cfg = config(&o);
    cfg.password = Some("not-the-password".into());
    let h = ObsHandle::spawn(cfg.clone(), tx).expect("spawn");
    let ObsStatus::Disconnected { reason } = next_status(&rx, Duration::from_secs(10)) else {
        panic!("connected with a wrong password?");
    };
    assert!(
        reason.contains("password") && reason.contains("4009"),
        "{reason}"
    );
    // show() never blocks, whatever OBS does.
    let t = Instant::now();
    for i in 0..1000 {
        h.show(on_air("x", i, None));
    }
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    // Slow retry: no new attempt and no new status for several seconds.
    std::thread::sleep(Duration::from_secs(6));
    assert!(rx.try_recv().is_err(), "status repeated while retrying");
    let attempts = obs::read_or_empty(&newest_obs_log(&o))
        .matches("New WebSocket client has connected")
        .count();
    // 1 by the harness's readiness check, 1 by the daemon's thread.
    assert_eq!(attempts, 2, "the thread hammered OBS");
    assert_eq!(logged("OBS rejected the password").len(), 1);

    // No password at all, for an OBS that wants one: said precisely.
    cfg.password = None;
    h.reconfigure(cfg.clone());
    let ObsStatus::Disconnected { reason } = next_status(&rx, Duration::from_secs(10)) else {
        panic!("connected without a password?");
    };
    assert!(reason.contains("requires a password"), "{reason}");

    // A password file (first line) fixes it.
    let pw_file = o.dir().join("obs-password");
    std::fs::write(&pw_file, format!("{}\nsecond line\n", o.password)).expect("write");
    cfg.password_file = pw_file.display().to_string();
    h.reconfigure(cfg);
    expect_connected(&rx, Duration::from_secs(10));
    h.shutdown();
}

fn newest_obs_log(o: &Obs) -> std::path::PathBuf {
    let dir = o.dir().join("config/obs-studio/logs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.pop().unwrap_or(dir)
}

#[test]
fn kill9_and_restart_reconnects_and_reapplies_the_current_state() {
    let _turn = heavy_turn();
    init_log();
    let mut o = Obs::start(ObsOpts::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let h = ObsHandle::spawn(config(&o), tx).expect("spawn");
    expect_connected(&rx, Duration::from_secs(10));
    h.show(on_air("Alice", 1, None));
    let mut c = o.client();
    until(Duration::from_secs(5), "name = Alice", || {
        (c.text(obs::NAME).ok()? == "Alice").then_some(())
    });
    drop(c);

    o.kill9();
    let t = Instant::now();
    let ObsStatus::Disconnected { reason } = next_status(&rx, Duration::from_secs(10)) else {
        panic!("expected Disconnected");
    };
    eprintln!("disconnected after {:?}: {reason}", t.elapsed());
    // The queue keeps moving while OBS is down; show() does not block.
    let t = Instant::now();
    h.show(on_air("Bob", 2, None));
    h.show(nobody(3));
    h.show(on_air("Carol", 4, Some(Duration::from_secs(600))));
    assert!(t.elapsed() < Duration::from_millis(20));
    std::thread::sleep(Duration::from_secs(2));

    // The restarted OBS has the stale collection on disk (text "", loading
    // on): the thread must re-apply the newest state only.
    let t = Instant::now();
    o.restart();
    expect_connected(&rx, Duration::from_secs(40));
    eprintln!("reconnected {:?} after OBS restart", t.elapsed());
    let mut c = o.client();
    until(
        Duration::from_secs(5),
        "Carol on air after reconnect",
        || {
            (c.text(obs::NAME).ok()? == "Carol"
                && !c.item_enabled(obs::LOADING).ok()?
                && c.text(obs::TIMER).ok()?.starts_with("09:5"))
            .then_some(())
        },
    );
    assert_eq!(
        logged(&format!("OBS at 127.0.0.1:{} not connected", o.port)).len(),
        1,
        "one log line for the outage, not one per retry"
    );

    // A clean OBS exit (SIGINT: close 1001) is handled the same way.
    drop(c);
    o.restart();
    let mut saw_disconnect = false;
    let end = Instant::now() + Duration::from_secs(40);
    while let ObsStatus::Disconnected { reason } =
        next_status(&rx, end.saturating_duration_since(Instant::now()))
    {
        eprintln!("after SIGINT: {reason}");
        saw_disconnect = true;
    }
    assert!(saw_disconnect);
    let mut c = o.client();
    until(Duration::from_secs(5), "Carol again", || {
        (c.text(obs::NAME).ok()? == "Carol").then_some(())
    });
    h.shutdown();
}

#[test]
fn missing_sources_are_named_and_the_rest_still_works() {
    let _turn = heavy_turn();
    init_log();
    let o = Obs::start(ObsOpts {
        omit: vec![obs::LOADING, obs::TIMER],
        ..ObsOpts::default()
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut cfg = config(&o);
    cfg.timer_source = "timer-missing".into();
    let h = ObsHandle::spawn(cfg, tx).expect("spawn");
    expect_connected(&rx, Duration::from_secs(10));
    h.show(on_air("Dora", 1, Some(Duration::from_secs(30))));
    let mut c = o.client();
    until(
        Duration::from_secs(5),
        "name set despite missing sources",
        || (c.text(obs::NAME).ok()? == "Dora").then_some(()),
    );
    let lines = logged("OBS is missing input \"timer-missing\"");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(
        l.contains("input \"timer-missing\" (obs.timer_source)")
            && l.contains("item \"loading\" in scene \"MOTHERSTREAM\" (obs.loading_source)")
            && !l.contains("obs.name_source")
            && !l.contains("obs.media_source"),
        "{l}"
    );
    h.shutdown();
}

#[test]
fn a_dead_media_source_is_restarted_with_backoff() {
    let _turn = heavy_turn();
    init_log();
    // The media source points at a port nobody listens on: ENDED for good.
    let o = Obs::start(ObsOpts::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let h = ObsHandle::spawn(config(&o), tx).expect("spawn");
    expect_connected(&rx, Duration::from_secs(10));
    let before = logged("restarting it (attempt").len();
    // Nobody on air: the media source is left alone.
    h.show(nobody(0));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(logged("restarting it (attempt").len(), before);
    h.show(on_air("Eve", 1, None));
    std::thread::sleep(Duration::from_millis(6500));
    let n = logged("restarting it (attempt").len() - before;
    // Attempts at ~1 s, then ≥ 2 s and ≥ 4 s later: 2 or 3 in 6.5 s.
    assert!((2..=3).contains(&n), "{n} restarts in 6.5 s");
    h.shutdown();
}

#[test]
fn cue_modes_restart_and_hide_show_act_on_switches_only() {
    let _turn = heavy_turn();
    init_log();
    let o = Obs::start(ObsOpts::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut cfg = config(&o);
    cfg.cue = CueMode::Restart;
    let h = ObsHandle::spawn(cfg.clone(), tx).expect("spawn");
    // The state found at (re)connect is applied without a cue: OBS may
    // already show that streamer.
    h.show(on_air("A", 1, None));
    expect_connected(&rx, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert!(logged("switch 1:").is_empty());
    h.show(on_air("B", 2, None));
    until(Duration::from_secs(3), "restart cue", || {
        (!logged("switch 2: restarted the media source").is_empty()).then_some(())
    });
    // A refresh of the same switch is no cue.
    h.show(BroadcastState {
        next_up: Some("C".into()),
        ..on_air("B", 2, None)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(logged("switch 2:").len(), 1);

    cfg.cue = CueMode::HideShow;
    reconfigure_and_wait(&h, cfg);
    h.show(on_air("C", 3, None));
    until(Duration::from_secs(3), "hide/show cue", || {
        (!logged("switch 3: hid and showed").is_empty()).then_some(())
    });
    let mut c = o.client();
    assert!(c.item_enabled(obs::MEDIA).expect("media item"));
    h.shutdown();
}

#[test]
fn a_frozen_obs_counts_as_dead_and_is_picked_up_again() {
    let _turn = heavy_turn();
    init_log();
    let o = Obs::start(ObsOpts::default());
    let pid = o.pid().expect("obs pid");
    let (tx, rx) = crossbeam_channel::unbounded();
    let h = ObsHandle::spawn(config(&o), tx).expect("spawn");
    expect_connected(&rx, Duration::from_secs(10));
    h.show(nobody(0));

    // SIGSTOP: the socket stays open but nothing answers.
    // SAFETY: kill(2) on the OBS we started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let t = Instant::now();
    let status = next_status(&rx, Duration::from_secs(15));
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    let ObsStatus::Disconnected { reason } = status else {
        panic!("expected Disconnected, got {status:?}");
    };
    eprintln!("silent OBS detected after {:?}: {reason}", t.elapsed());
    assert!(reason.contains("did not answer"), "{reason}");
    // Heartbeat after 5 s of silence + a 2 s request deadline.
    assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());

    h.show(on_air("Frida", 1, None));
    expect_connected(&rx, Duration::from_secs(30));
    let mut c = o.client();
    until(
        Duration::from_secs(5),
        "state applied after the thaw",
        || (c.text(obs::NAME).ok()? == "Frida").then_some(()),
    );
    h.shutdown();
}
