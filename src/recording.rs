//! `[recording]`: every streamer's time on air, recorded by nginx-rtmp.
//!
//! The engine says who is on screen at each cut ([`Recorder::on_screen`]);
//! this module's thread starts and stops nginx-rtmp's manual recorder
//! through the control module (`/control/record/start|stop`), takes each
//! finished file that nginx reports in `on_record_done`, moves it from
//! nginx's `record_path` (`incoming_dir`) to `<dir>/<display name>-<UTC
//! start>.flv`, keeps recording off below a free-space floor and removes
//! recordings older than `keep_days`. Nothing here runs on the engine
//! thread: a slow nginx or disk never delays a switch.
//!
//! The decisions (file names, what to prune, when to start and stop) are
//! pure functions at the top; the thread below them does the I/O.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::clock::unix_ms;
use crate::config::RecordingConfig;
use crate::key::StreamKey;
use crate::view::{Published, Recent, RecordingStatus};

/// Longest file-name stem taken from a display name, in bytes (the whole
/// name stays well below the 255 bytes of common file systems).
pub const MAX_NAME_BYTES: usize = 100;
/// Finished recordings listed in `/api/status`.
pub const RECENT: usize = 20;
/// Free space is checked this often while a recording runs.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(10);
/// Old recordings are looked for this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A failed start is tried again after this long (while they are on screen).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// At shutdown, wait this long for nginx to report the last file.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Stopped recordings whose file nginx has not reported yet, at most.
const MAX_FINISHING: usize = 32;
const MS_PER_DAY: u64 = 86_400_000;

// ------------------------------------------------------------ pure decisions

/// A display name made safe as a file name: no `/` or `\`, no control
/// characters (they become `_`), no bidirectional overrides (a name that
/// displays as "bob.flv" but is not), no leading dot or dash (hidden files,
/// command-line options), at most [`MAX_NAME_BYTES`]; letters of every
/// script are kept. Never empty.
pub fn safe_name(display: &str) -> String {
    let mut out = String::new();
    for c in display.chars() {
        let c = match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => continue,
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out
        .trim_start_matches(|c: char| c == '.' || c == '-' || c.is_whitespace())
        .trim_end();
    if trimmed.is_empty() {
        "streamer".into()
    } else {
        trimmed.to_string()
    }
}

/// The inverse of [`crate::log::civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds → `2026-12-01T220802Z` (ISO 8601, UTC, no colons: they
/// trouble file systems other than Linux's when recordings are copied).
pub fn utc_stamp(unix_s: u64) -> String {
    let (y, mo, d) = crate::log::civil_from_days((unix_s / 86_400) as i64);
    let s = unix_s % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-01T220802Z` → unix seconds.
fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 18 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[17] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(13..15)?, num(15..17)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
    u64::try_from(secs).ok()
}

/// The file a recording of `display` that started at `start_unix_s` is
/// filed as; `n` > 1 when that name is taken (`…Z-2.flv`).
pub fn file_name(display: &str, start_unix_s: u64, n: u32) -> String {
    let stem = format!("{}-{}", safe_name(display), utc_stamp(start_unix_s));
    if n > 1 {
        format!("{stem}-{n}.flv")
    } else {
        format!("{stem}.flv")
    }
}

/// A name made by [`file_name`] → (streamer, start in unix seconds).
pub fn parse_file_name(file: &str) -> Option<(String, u64)> {
    let stem = file.strip_suffix(".flv")?;
    // An optional "-N" after the stamp.
    let candidates = [
        Some(stem),
        stem.rsplit_once('-')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            .map(|(s, _)| s),
    ];
    candidates.into_iter().flatten().find_map(|s| {
        let cut = s.len().checked_sub(18)?;
        let (head, stamp) = (s.get(..cut)?, s.get(cut..)?);
        let name = head.strip_suffix('-')?;
        Some((name.to_string(), parse_stamp(stamp)?))
    })
}

/// Of `(file name, mtime in unix ms)`, the recordings to remove: `.flv`
/// files last written more than `keep_days` before `now_ms` (0 = keep all).
pub fn to_prune(files: &[(String, u64)], now_ms: u64, keep_days: u64) -> Vec<String> {
    if keep_days == 0 {
        return Vec::new();
    }
    let cutoff = now_ms.saturating_sub(keep_days.saturating_mul(MS_PER_DAY));
    files
        .iter()
        .filter(|(name, mtime)| name.ends_with(".flv") && *mtime < cutoff)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether `free_bytes` is at or above the floor of `min_free_mb` MiB.
pub fn space_ok(free_bytes: u64, min_free_mb: u64) -> bool {
    free_bytes >= min_free_mb.saturating_mul(1 << 20)
}

/// Which recordings to stop and start. `recording`: the stream keys being
/// recorded; `wanted`: who is on screen and who the output is heading to
/// (the head of the queue, before the cut to them). The next streamer is
/// recorded from the switch decision on, not from the cut: nginx starts a
/// recording at the stream's next keyframe, and the splicer cuts on that
/// same keyframe, so starting at the cut would always lose one keyframe
/// interval. Below the free-space floor nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan<K = StreamKey> {
    pub stop: Vec<K>,
    pub start: Vec<K>,
}

pub fn plan<K: PartialEq + ToOwned + ?Sized>(
    recording: &[&K],
    wanted: &[Option<&K>],
    space_ok: bool,
) -> Plan<K::Owned> {
    let mut want: Vec<&K> = Vec::new();
    if space_ok {
        for w in wanted.iter().flatten() {
            if !want.contains(w) {
                want.push(w);
            }
        }
    }
    Plan {
        stop: recording
            .iter()
            .filter(|r| !want.contains(r))
            .map(|r| (*r).to_owned())
            .collect(),
        start: want
            .iter()
            .filter(|w| !recording.contains(w))
            .map(|w| (*w).to_owned())
            .collect(),
    }
}

// ------------------------------------------------------------ the thread

enum Msg {
    /// (stream key, display name) now on screen; None: nobody.
    OnScreen(Option<(StreamKey, String)>),
    /// The head of the queue: who the output shows or is about to cut to.
    Heading(Option<(StreamKey, String)>),
    /// nginx's on_record_done.
    Done {
        key: StreamKey,
        recorder: String,
        path: String,
    },
    Shutdown,
}

/// Where the HTTP side hands `on_record_done` to the recorder thread.
#[derive(Clone)]
pub struct Inbox(Sender<Msg>);

impl Inbox {
    /// Never blocks.
    pub fn record_done(&self, key: &StreamKey, recorder: &str, path: &str) {
        let _ = self.0.send(Msg::Done {
            key: key.clone(),
            recorder: recorder.into(),
            path: path.into(),
        });
    }
}

/// The recorder thread and its handles.
pub struct Recorder {
    tx: Sender<Msg>,
    join: Option<JoinHandle<()>>,
    status: Published<RecordingStatus>,
    /// The last head sent (the engine reports it after every change).
    heading: Option<StreamKey>,
}

impl Recorder {
    /// Start the thread (`[recording] enabled`). `control_url` and `app`
    /// are `[rtmp] control_url` and `ingest_app`.
    pub fn spawn(cfg: RecordingConfig, control_url: String, app: String) -> io::Result<Recorder> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let status = Published::default();
        let mut shell = Shell::new(cfg, control_url, app, status.clone());
        let join = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || shell.run(&rx))?;
        Ok(Recorder {
            tx,
            join: Some(join),
            status,
            heading: None,
        })
    }

    pub fn inbox(&self) -> Inbox {
        Inbox(self.tx.clone())
    }

    pub fn status(&self) -> Published<RecordingStatus> {
        self.status.clone()
    }

    /// The output now shows `who` (stream key, display name). Never blocks.
    pub fn on_screen(&self, who: Option<(StreamKey, String)>) {
        let _ = self.tx.send(Msg::OnScreen(who));
    }

    /// The queue's head is `who` (stream key, display name): on screen, or
    /// next at the coming cut. Sent on change only; never blocks.
    pub fn heading(&mut self, who: Option<(&StreamKey, &str)>) {
        if self.heading.as_ref() != who.map(|w| w.0) {
            self.heading = who.map(|w| w.0.clone());
            let _ = self
                .tx
                .send(Msg::Heading(who.map(|(k, n)| (k.clone(), n.into()))));
        }
    }

    /// Stop the running recording, wait briefly for its file, and join.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

struct Active {
    key: StreamKey,
    name: String,
    /// When the output first showed them (None: not yet, or never: the
    /// recording of a streamer who never reached the screen is dropped).
    shown_ms: Option<u64>,
    /// The file nginx said it writes.
    path: String,
}

struct Finishing {
    key: StreamKey,
    name: String,
    /// When they reached the screen (None: never; the file is dropped).
    shown_ms: Option<u64>,
    stopped_ms: u64,
    path: String,
}

struct Shell {
    cfg: RecordingConfig,
    control_url: String,
    app: String,
    status: Published<RecordingStatus>,
    on_screen: Option<(StreamKey, String)>,
    heading: Option<(StreamKey, String)>,
    active: Vec<Active>,
    finishing: VecDeque<Finishing>,
    /// The last free-space problem (logged once per change).
    space_low: Option<String>,
    /// The last start failed (logged once per change).
    start_failing: bool,
    retry_at: Option<Instant>,
    next_space_check: Instant,
    next_prune: Instant,
    recent: VecDeque<Recent>,
}

fn mtime_ms(m: &std::fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shell {
    fn new(
        cfg: RecordingConfig,
        control_url: String,
        app: String,
        status: Published<RecordingStatus>,
    ) -> Shell {
        let now = Instant::now();
        Shell {
            cfg,
            control_url,
            app,
            status,
            on_screen: None,
            heading: None,
            active: Vec::new(),
            finishing: VecDeque::new(),
            space_low: None,
            start_failing: false,
            retry_at: None,
            next_space_check: now,
            next_prune: now,
            recent: VecDeque::new(),
        }
    }

    fn dir(&self) -> &Path {
        Path::new(&self.cfg.dir)
    }

    fn incoming(&self) -> &Path {
        Path::new(&self.cfg.incoming_dir)
    }

    fn run(&mut self, rx: &Receiver<Msg>) {
        if let Err(e) = std::fs::create_dir_all(self.dir()) {
            log::error!(
                "cannot create the recordings directory {}: {e}",
                self.dir().display()
            );
        }
        if !self.incoming().is_dir() {
            log::warn!(
                "recording: nginx's record_path {} ([recording] incoming_dir) does not exist; nginx cannot record until it does",
                self.incoming().display()
            );
        }
        self.load_recent();
        log::info!(
            "recording every streamer's time on air to {} (nginx recorder \"{}\", writing to {}; kept {}; recording stops below {} MB free)",
            self.dir().display(),
            self.cfg.recorder,
            self.incoming().display(),
            match self.cfg.keep_days {
                0 => "for ever".to_string(),
                d => format!("{d} days"),
            },
            self.cfg.min_free_mb
        );
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(Msg::OnScreen(who)) => {
                    self.on_screen = who;
                    self.retry_at = None;
                    self.reconcile(true);
                }
                Ok(Msg::Heading(who)) => {
                    self.heading = who;
                    self.retry_at = None;
                    self.reconcile(true);
                }
                Ok(Msg::Done {
                    key,
                    recorder,
                    path,
                }) => self.on_done(&key, &recorder, &path),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.on_timers(Instant::now());
        }
        self.on_screen = None;
        self.heading = None;
        self.reconcile(false);
        // nginx reports the file it just closed within milliseconds.
        let until = Instant::now() + SHUTDOWN_WAIT;
        while !self.finishing.is_empty() {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Msg::Done {
                    key,
                    recorder,
                    path,
                }) => self.on_done(&key, &recorder, &path),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !self.finishing.is_empty() {
            log::warn!(
                "recording: {} file(s) not reported by nginx before shutdown stay in {}",
                self.finishing.len(),
                self.incoming().display()
            );
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_prune;
        if self.busy() {
            t = t.min(self.next_space_check);
        }
        if let Some(r) = self.retry_at {
            t = t.min(r);
        }
        t
    }

    fn on_timers(&mut self, now: Instant) {
        if now >= self.next_prune {
            self.prune();
            self.next_prune = now + PRUNE_EVERY;
        }
        let retry = self.retry_at.is_some_and(|r| now >= r);
        if retry {
            self.retry_at = None;
        }
        if retry || (now >= self.next_space_check && self.busy()) {
            self.reconcile(retry);
        }
    }

    /// Free space on both directories against the floor; logs changes.
    fn check_space(&mut self) -> bool {
        self.next_space_check = Instant::now() + SPACE_CHECK_EVERY;
        let mut problem = None;
        for d in [self.incoming(), self.dir()] {
            match crate::sys::free_bytes(d) {
                Ok(free) if !space_ok(free, self.cfg.min_free_mb) => {
                    problem = Some(format!(
                        "only {} MB free on {}, below [recording] min_free_mb {}",
                        free >> 20,
                        d.display(),
                        self.cfg.min_free_mb
                    ));
                    break;
                }
                Ok(_) => {}
                // Unknown free space does not stop recording: nginx's own
                // write errors will show in its log.
                Err(e) => log::debug!("recording: cannot statvfs {}: {e}", d.display()),
            }
        }
        if problem != self.space_low {
            match &problem {
                Some(p) => log::warn!("recording stopped: {p}"),
                None => log::info!("recording: enough free space again"),
            }
            self.space_low = problem;
            self.publish();
        }
        self.space_low.is_none()
    }

    /// Someone is, or is to be, recorded.
    fn busy(&self) -> bool {
        self.on_screen.is_some() || self.heading.is_some() || !self.active.is_empty()
    }

    /// Level-triggered: make nginx record who is on screen and who is
    /// next, if there is space. `may_start`: starts are allowed now.
    fn reconcile(&mut self, may_start: bool) {
        let space = !self.busy() || self.check_space();
        let now = unix_ms();
        if let Some((k, _)) = &self.on_screen {
            for a in self.active.iter_mut().filter(|a| a.key == *k) {
                a.shown_ms.get_or_insert(now);
            }
        }
        let recording: Vec<&StreamKey> = self.active.iter().map(|a| &a.key).collect();
        let p = plan(
            &recording,
            &[
                self.on_screen.as_ref().map(|(k, _)| k),
                self.heading.as_ref().map(|(k, _)| k),
            ],
            space,
        );
        for k in p.stop {
            self.stop(&k);
        }
        if may_start {
            for k in p.start {
                self.start(&k);
            }
        }
        self.publish();
    }

    fn start(&mut self, key: &StreamKey) {
        let Some((key, name)) = [&self.on_screen, &self.heading]
            .into_iter()
            .flatten()
            .find(|(k, _)| k == key)
            .cloned()
        else {
            return;
        };
        match crate::nginx::record(&self.control_url, true, &self.app, &key, &self.cfg.recorder) {
            Ok(None) => {
                // 204: the stream is not published (they just left), or
                // nginx records it already (from before a restart of ours;
                // that file is not claimed). Nothing to wait for.
                if std::mem::take(&mut self.start_failing) {
                    log::info!("recording: nginx's control module answers again");
                }
                log::debug!("recording: nginx has nothing to start for {name}");
            }
            Ok(Some(path)) => {
                if std::mem::take(&mut self.start_failing) {
                    log::info!("recording: nginx's control module answers again");
                }
                log::info!("recording {name}");
                let now = unix_ms();
                let shown = self.on_screen.as_ref().is_some_and(|(k, _)| *k == key);
                self.active.push(Active {
                    key,
                    name,
                    shown_ms: shown.then_some(now),
                    path,
                });
            }
            Err(e) => {
                if !std::mem::replace(&mut self.start_failing, true) {
                    log::warn!(
                        "cannot start recording {name} through nginx's control module: {e}; trying again every {} s",
                        RETRY_AFTER.as_secs()
                    );
                } else {
                    log::debug!("recording of {name} still cannot start: {e}");
                }
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    fn stop(&mut self, key: &StreamKey) {
        let Some(i) = self.active.iter().position(|a| a.key == *key) else {
            return;
        };
        let a = self.active.remove(i);
        let path = match crate::nginx::record(
            &self.control_url,
            false,
            &self.app,
            &a.key,
            &self.cfg.recorder,
        ) {
            // 204: already stopped (the publisher left); its
            // on_record_done may still be on its way.
            Ok(p) => p.unwrap_or(a.path),
            Err(e) => {
                // nginx still closes the file when the publisher leaves.
                log::warn!(
                    "cannot stop recording {} through nginx's control module: {e}",
                    a.name
                );
                a.path
            }
        };
        log::debug!("recording of {} stopped", a.name);
        if self.finishing.len() >= MAX_FINISHING {
            self.finishing.pop_front();
        }
        self.finishing.push_back(Finishing {
            key: a.key,
            name: a.name,
            shown_ms: a.shown_ms,
            stopped_ms: unix_ms(),
            path,
        });
    }

    /// nginx closed a recording: file it under the streamer's name.
    fn on_done(&mut self, key: &StreamKey, recorder: &str, path: &str) {
        if recorder != self.cfg.recorder {
            log::debug!("recording: on_record_done of recorder {recorder:?} is not ours");
            return;
        }
        let by_path = self.finishing.iter().position(|f| f.path == path);
        let found = match by_path.or_else(|| self.finishing.iter().position(|f| f.key == *key)) {
            Some(i) => self.finishing.remove(i),
            // nginx ended it itself: the publisher left while on screen.
            None => match self.active.iter().position(|a| a.path == path) {
                Some(i) => {
                    let a = self.active.remove(i);
                    Some(Finishing {
                        key: a.key,
                        name: a.name,
                        shown_ms: a.shown_ms,
                        stopped_ms: unix_ms(),
                        path: a.path,
                    })
                }
                None => None,
            },
        };
        let Some(f) = found else {
            log::warn!(
                "recording: nginx finished a recording motherstream did not start (stream {}); it stays in {}",
                key.fingerprint(),
                self.incoming().display()
            );
            return;
        };
        let wanted = [&self.on_screen, &self.heading]
            .into_iter()
            .flatten()
            .any(|(k, _)| *k == f.key);
        if wanted {
            // Still wanted but nginx stopped (the publisher left, most
            // likely): try again shortly if they are still there.
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
        if f.shown_ms.is_none() {
            // Recorded ahead of a cut that never came (a moderator changed
            // the order, or they left first): not a set of theirs.
            log::debug!("recording of {} dropped: never on screen", f.name);
            if self.is_in_incoming(&f.path) {
                let _ = std::fs::remove_file(&f.path);
            }
            return;
        }
        // The path nginx's control module gave: the hook's only picked
        // which recording ended.
        match self.file_away(&f) {
            Ok(r) => {
                log::info!(
                    "recorded {}: {} ({} s, {:.1} MB)",
                    f.name,
                    self.dir().join(&r.file).display(),
                    r.duration_s.unwrap_or(0),
                    r.size_bytes as f64 / 1e6
                );
                self.recent.push_front(r);
                self.recent.truncate(RECENT);
                self.publish();
            }
            Err(e) => log::error!("recording of {} not filed: {e}", f.name),
        }
    }

    /// Move nginx's file (which must be a regular file directly in
    /// incoming_dir: the hook's path is not trusted further) into `dir`.
    fn file_away(&self, f: &Finishing) -> Result<Recent, String> {
        let src = Path::new(&f.path);
        if !self.is_in_incoming(&f.path) {
            return Err(format!(
                "nginx reported a file that is not a recording in {}",
                self.incoming().display()
            ));
        }
        let start_ms = f.shown_ms.unwrap_or(f.stopped_ms);
        let start_s = start_ms / 1000;
        let dst = move_into(src, self.dir(), |n| file_name(&f.name, start_s, n))
            .map_err(|e| format!("cannot move it into {}: {e}", self.dir().display()))?;
        let size_bytes = std::fs::metadata(&dst).map_or(0, |m| m.len());
        Ok(Recent {
            file: dst
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            streamer: f.name.clone(),
            start_s,
            duration_s: Some((f.stopped_ms.saturating_sub(start_ms) + 500) / 1000),
            size_bytes,
        })
    }

    /// Whether `path` (from a hook: not trusted) is a regular file directly
    /// in incoming_dir.
    fn is_in_incoming(&self, path: &str) -> bool {
        let src = Path::new(path);
        let Ok(incoming) = self.incoming().canonicalize() else {
            return false;
        };
        let parent_ok = src
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .is_some_and(|p| p == incoming);
        parent_ok && std::fs::symlink_metadata(src).is_ok_and(|m| m.is_file())
    }

    /// Remove recordings (and leftovers in incoming_dir) older than
    /// keep_days.
    fn prune(&mut self) {
        let now = unix_ms();
        let mut removed = 0;
        for d in [self.dir().to_path_buf(), self.incoming().to_path_buf()] {
            let files = list_files(&d);
            for name in to_prune(&files, now, self.cfg.keep_days) {
                let p = d.join(&name);
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        removed += 1;
                        self.recent.retain(|r| r.file != name);
                    }
                    Err(e) => log::warn!("recording: cannot remove {}: {e}", p.display()),
                }
            }
        }
        if removed > 0 {
            log::info!(
                "removed {removed} recording(s) older than {} days",
                self.cfg.keep_days
            );
            self.publish();
        }
    }

    /// The newest recordings already in `dir` (from earlier runs).
    fn load_recent(&mut self) {
        let mut files: Vec<(String, u64)> = list_files(self.dir())
            .into_iter()
            .filter(|(n, _)| n.ends_with(".flv"))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.1));
        self.recent = files
            .into_iter()
            .take(RECENT)
            .map(|(file, mtime)| {
                let (streamer, start_s) =
                    parse_file_name(&file).unwrap_or_else(|| (String::new(), mtime / 1000));
                let size_bytes = std::fs::metadata(self.dir().join(&file)).map_or(0, |m| m.len());
                Recent {
                    file,
                    streamer,
                    start_s,
                    duration_s: None,
                    size_bytes,
                }
            })
            .collect();
        self.publish();
    }

    fn publish(&self) {
        self.status.publish(RecordingStatus {
            recording: self
                .active
                .iter()
                .find_map(|a| a.shown_ms.map(|t| (a.name.clone(), t / 1000))),
            paused: self.space_low.clone().filter(|_| self.busy()),
            recent: self.recent.iter().cloned().collect(),
        });
    }
}

/// Regular files directly in `dir`: (name, mtime in unix ms). Unreadable
/// entries are skipped.
fn list_files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let name = e.file_name().into_string().ok()?;
            m.is_file().then(|| (name, mtime_ms(&m)))
        })
        .collect()
}

/// Move `src` into `dir` under the first free name of `name(1)`,
/// `name(2)`, … (never replacing a file); across file systems by copying.
fn move_into(src: &Path, dir: &Path, name: impl Fn(u32) -> String) -> io::Result<PathBuf> {
    for n in 1..=100 {
        let dst = dir.join(name(n));
        if std::fs::symlink_metadata(&dst).is_ok() {
            continue;
        }
        return match std::fs::rename(src, &dst) {
            Ok(()) => Ok(dst),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let tmp = dir.join(format!(".{}.partial", name(n)));
                let copied = std::fs::copy(src, &tmp)
                    .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()))
                    .and_then(|()| std::fs::rename(&tmp, &dst));
                if let Err(e) = copied {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                std::fs::remove_file(src)?;
                Ok(dst)
            }
            Err(e) => Err(e),
        };
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "100 recordings with that name and start already exist",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_for_a_file_system() {
        assert_eq!(safe_name("DJ Ünïcødé 東京"), "DJ Ünïcødé 東京");
        assert_eq!(safe_name("a/b\\c"), "a_b_c");
        assert_eq!(safe_name("tab\there\nnl\u{7f}"), "tab_here_nl_");
        assert_eq!(safe_name("..hidden"), "hidden");
        assert_eq!(safe_name("-rf"), "rf");
        assert_eq!(safe_name(" . - x "), "x");
        assert_eq!(safe_name(".."), "streamer");
        assert_eq!(safe_name(""), "streamer");
        assert_eq!(safe_name("/"), "_");
        assert_eq!(safe_name("evil\u{202e}vlf.exe"), "evilvlf.exe");
        let long = "é".repeat(200);
        let s = safe_name(&long);
        assert!(
            s.len() <= MAX_NAME_BYTES && s.len() >= MAX_NAME_BYTES - 1,
            "{}",
            s.len()
        );
        assert!(s.chars().all(|c| c == 'é'));
        // Whatever comes in, the result is one path component.
        for bad in ["a\0b", "\u{1}", "x/../../etc", "\u{85}next"] {
            let s = safe_name(bad);
            assert!(!s.contains(['/', '\0']) && !s.starts_with('.'), "{s:?}");
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }

    #[test]
    fn utc_stamps_round_trip() {
        assert_eq!(utc_stamp(0), "1970-01-01T000000Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T000000Z");
        assert_eq!(utc_stamp(1_795_496_924), "2026-11-24T050844Z");
        assert_eq!(utc_stamp(4_102_444_799), "2099-12-31T235959Z");
        for t in [0, 59, 86_399, 951_782_400, 1_795_496_924, 4_102_444_799] {
            assert_eq!(parse_stamp(&utc_stamp(t)), Some(t), "{t}");
        }
        assert_eq!(parse_stamp("2026-13-01T000000Z"), None);
        assert_eq!(parse_stamp("2026-1a-01T000000Z"), None);
        assert_eq!(parse_stamp("2026-01-01T000000"), None);
    }

    #[test]
    fn file_names_and_back() {
        let t = 1_795_496_924;
        assert_eq!(file_name("DJ A", t, 1), "DJ A-2026-11-24T050844Z.flv");
        assert_eq!(file_name("../x", t, 3), "_x-2026-11-24T050844Z-3.flv");
        assert_eq!(
            parse_file_name("DJ A-2026-11-24T050844Z.flv"),
            Some(("DJ A".into(), t))
        );
        assert_eq!(
            parse_file_name("a-b-2026-11-24T050844Z-12.flv"),
            Some(("a-b".into(), t))
        );
        // A name that itself ends in digits.
        assert_eq!(
            parse_file_name(&file_name("dj-2", t, 1)),
            Some(("dj-2".into(), t))
        );
        assert_eq!(
            parse_file_name(&file_name("東京", t, 2)),
            Some(("東京".into(), t))
        );
        assert_eq!(parse_file_name("random.flv"), None);
        assert_eq!(parse_file_name("2026-11-24T050844Z.flv"), None);
        assert_eq!(parse_file_name("x-2026-11-24T050844Z.mp4"), None);
    }

    #[test]
    fn prune_only_old_flv_files() {
        let day = MS_PER_DAY;
        let now = 100 * day;
        let files = vec![
            ("old.flv".to_string(), now - 31 * day),
            ("new.flv".to_string(), now - 29 * day),
            ("notes.txt".to_string(), now - 90 * day),
            ("edge.flv".to_string(), now - 30 * day),
        ];
        assert_eq!(to_prune(&files, now, 30), ["old.flv"]);
        assert!(to_prune(&files, now, 0).is_empty(), "0 keeps everything");
        assert_eq!(to_prune(&files, now, 1).len(), 3);
        assert!(
            to_prune(&files, 0, 1).is_empty(),
            "a clock at 0 removes nothing"
        );
    }

    #[test]
    fn free_space_floor() {
        assert!(space_ok(2048 << 20, 2048));
        assert!(!space_ok((2048 << 20) - 1, 2048));
        assert!(space_ok(0, 0));
        assert!(!space_ok(u64::MAX - 1, u64::MAX), "the floor saturates");
    }

    #[test]
    fn when_to_start_and_stop() {
        let p = |stop: &[&str], start: &[&str]| Plan {
            stop: stop.iter().map(|s| s.to_string()).collect(),
            start: start.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(plan::<str>(&[], &[None, None], true), p(&[], &[]));
        // The first streamer: recorded from the decision (head), on screen.
        assert_eq!(plan::<str>(&[], &[None, Some("a")], true), p(&[], &["a"]));
        assert_eq!(
            plan::<str>(&["a"], &[Some("a"), Some("a")], true),
            p(&[], &[])
        );
        // A planned switch: b is recorded ahead of the cut, a until it.
        assert_eq!(
            plan::<str>(&["a"], &[Some("a"), Some("b")], true),
            p(&[], &["b"])
        );
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("b"), Some("b")], true),
            p(&["a"], &[])
        );
        // The order changed back before the cut: b's recording stops.
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("a"), Some("a")], true),
            p(&["b"], &[])
        );
        // The last one left: the slate, nothing wanted.
        assert_eq!(plan::<str>(&["a"], &[None, None], true), p(&["a"], &[]));
        // Below the floor: stop everything, start nothing.
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("a"), Some("b")], false),
            p(&["a", "b"], &[])
        );
        assert_eq!(plan::<str>(&[], &[Some("a"), None], false), p(&[], &[]));
    }

    #[test]
    fn moves_never_replace_a_file() {
        let d = crate::scratch::ScratchDir::new("recmove");
        let (inc, out) = (d.0.join("in"), d.0.join("out"));
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        for body in ["one", "two"] {
            let src = inc.join("k-1.flv");
            std::fs::write(&src, body).unwrap();
            move_into(&src, &out, |n| file_name("A", 0, n)).unwrap();
            assert!(!src.exists());
        }
        let read = |n| std::fs::read_to_string(out.join(n)).unwrap();
        assert_eq!(read("A-1970-01-01T000000Z.flv"), "one");
        assert_eq!(read("A-1970-01-01T000000Z-2.flv"), "two");
    }
}
