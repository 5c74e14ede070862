//! Durable queue state: a snapshot `queue.json` (versioned JSON, atomic:
//! temp file, fsync, rename, fsync dir) plus an append-only journal
//! `queue.journal` of the ops since that snapshot (one JSON line each,
//! fdatasync per batch).
//!
//! Why a journal: a durable enqueue must cost the same at 10,000 entries as
//! at 1, so a batch appends its ops instead of rewriting the whole queue.
//! The snapshot is rewritten only when the journal outgrows it.
//!
//! Every journal line carries a sequence number and the snapshot records the
//! last one it includes, so a crash between writing the snapshot and
//! truncating the journal never applies an op twice.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::key::StreamKey;
use crate::private_fs;
pub use crate::queue::State;
use crate::queue::{Entry, Op};

pub(crate) const SNAPSHOT: &str = "queue.json";
pub(crate) const JOURNAL: &str = "queue.journal";
/// The seed's format: a JSON array of stream keys.
pub(crate) const SEED_QUEUE: &str = "QUEUE.json";
const VERSION: u32 = 1;
/// While the snapshot is at most this big, a batch rewrites it whole (so
/// `queue.json` always holds the full queue an operator expects to read);
/// past it, batches go to the journal, which is compacted once it outgrows
/// both this and the snapshot.
const INLINE_SNAPSHOT_MAX: u64 = 16 * 1024;

#[derive(Debug)]
pub struct StoreError {
    pub(crate) path: PathBuf,
    pub(crate) action: &'static str,
    pub(crate) source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for StoreError {}

fn err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError {
        path: path.to_path_buf(),
        action,
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Last journal sequence number included.
    seq: u64,
    #[serde(flatten)]
    state: State,
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    seq: u64,
    #[serde(flatten)]
    state: &'a State,
}

#[derive(Serialize, Deserialize)]
struct JournalLine {
    seq: u64,
    #[serde(flatten)]
    op: Op,
}

pub struct Store {
    dir: PathBuf,
    journal: File,
    journal_bytes: u64,
    snapshot_bytes: u64,
    seq: u64,
    /// Largest snapshot rewritten whole per batch.
    inline_max: u64,
    /// The journal is compacted once larger than this and the snapshot.
    compact_min: u64,
}

/// What `open` found, for the log.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub restored_entries: usize,
    pub(crate) replayed_ops: usize,
    pub migrated_seed: bool,
    /// Problems that were handled (file kept aside, torn line dropped...).
    pub warnings: Vec<String>,
}

impl Store {
    /// Open the state directory: load the snapshot, replay the journal,
    /// migrate the seed's `QUEUE.json`, then write a fresh snapshot so the
    /// daemon starts from one clean file. A corrupt file is renamed aside
    /// and reported, never a reason to refuse to start.
    pub fn open(dir: &Path, now_ms: u64) -> Result<(Store, State, LoadReport), StoreError> {
        Store::open_with(dir, now_ms, true)
    }

    /// Open what the previous binary of this process saved a moment ago
    /// (a hand-over: every change was saved before it was acknowledged, and
    /// none was under way): no snapshot is written now, whose fsyncs took
    /// up to 0.2 s of the frozen picture on a busy disk; the first save
    /// writes one (it always does after an open), folding the journal in.
    /// A seed migrated or a damaged file set aside is saved at once.
    pub fn open_handed_over(
        dir: &Path,
        now_ms: u64,
    ) -> Result<(Store, State, LoadReport), StoreError> {
        Store::open_with(dir, now_ms, false)
    }

    fn open_with(
        dir: &Path,
        now_ms: u64,
        compact: bool,
    ) -> Result<(Store, State, LoadReport), StoreError> {
        private_fs::create_dir(dir).map_err(err(dir, "create state directory"))?;
        let mut report = LoadReport::default();
        let (state, seq) = read_state(dir, now_ms, &mut report)?;
        let journal_path = dir.join(JOURNAL);
        let seed_path = dir.join(SEED_QUEUE);
        let journal = private_fs::open(
            &journal_path,
            private_fs::options().create(true).append(true),
        )
        .map_err(err(&journal_path, "open"))?;
        private_fs::tighten(&journal, &journal_path);
        let mut store = Store {
            dir: dir.to_path_buf(),
            journal,
            journal_bytes: 0,
            snapshot_bytes: 0,
            seq,
            inline_max: INLINE_SNAPSHOT_MAX,
            compact_min: INLINE_SNAPSHOT_MAX,
        };
        if compact || report.migrated_seed || !report.warnings.is_empty() {
            store.compact(&state)?;
        }
        if report.migrated_seed {
            let done = dir.join(format!("{SEED_QUEUE}.migrated"));
            if let Err(e) = fs::rename(&seed_path, &done) {
                report.warnings.push(format!(
                    "migrated {} but cannot rename it: {e}",
                    seed_path.display()
                ));
            }
        }
        report.restored_entries = state.len();
        Ok((store, state, report))
    }

    /// Durably record a batch of ops: a new snapshot while the queue is
    /// small, else one journal write and one fdatasync, compacting into a
    /// new snapshot when the journal has grown large.
    pub(crate) fn append(&mut self, ops: &[Op], state: &State) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "test-hooks")]
        self.test_slow_disk();
        if self.journal_bytes == 0 && self.snapshot_bytes <= self.inline_max {
            self.seq += ops.len() as u64;
            return self.compact(state);
        }
        let path = self.dir.join(JOURNAL);
        let mut buf = Vec::with_capacity(ops.len() * 96);
        let mut seq = self.seq;
        for op in ops {
            seq += 1;
            let line = JournalLine {
                seq,
                op: op.clone(),
            };
            serde_json::to_writer(&mut buf, &line)
                .map_err(|e| err(&path, "encode journal for")(io::Error::other(e)))?;
            buf.push(b'\n');
        }
        self.journal
            .write_all(&buf)
            .map_err(err(&path, "append to"))?;
        self.journal.sync_data().map_err(err(&path, "fsync"))?;
        self.seq = seq;
        self.journal_bytes += buf.len() as u64;
        if self.journal_bytes > self.compact_min.max(self.snapshot_bytes) {
            self.compact(state)?;
        }
        Ok(())
    }

    /// Test hook, a slow disk: a file `test-save-delay-ms` in the state
    /// directory holds every save that many milliseconds.
    #[cfg(feature = "test-hooks")]
    fn test_slow_disk(&self) {
        let ms = fs::read_to_string(self.dir.join("test-save-delay-ms"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(ms) = ms {
            log::warn!("test hook: holding this save {ms} ms (a slow disk)");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    /// Write the whole state as a new snapshot, then empty the journal.
    pub(crate) fn compact(&mut self, state: &State) -> Result<(), StoreError> {
        // Serialized from a borrow straight into the file: no copy of the
        // state and no whole-file buffer, however long the queue.
        let snap = SnapshotRef {
            version: VERSION,
            seq: self.seq,
            state,
        };
        self.snapshot_bytes = write_atomic_with(&self.dir.join(SNAPSHOT), |w| {
            serde_json::to_writer(w, &snap).map_err(io::Error::other)
        })?;
        let jpath = self.dir.join(JOURNAL);
        self.journal.set_len(0).map_err(err(&jpath, "truncate"))?;
        self.journal.sync_all().map_err(err(&jpath, "fsync"))?;
        self.journal_bytes = 0;
        Ok(())
    }

    /// Re-read the last durable state (after a failed append, the in-memory
    /// state is ahead of the disk).
    /// The state as it is on disk, after a write failed. Reads only: the
    /// disk that refused the write may refuse a new snapshot too, and the
    /// engine must not go on showing what was never saved.
    pub(crate) fn reload(&mut self, now_ms: u64) -> Result<State, StoreError> {
        let (state, seq) = read_state(&self.dir, now_ms, &mut LoadReport::default())?;
        self.seq = seq;
        Ok(state)
    }
}

/// What is on disk: the snapshot, the journal replayed over it, or the
/// seed's queue file. Reads only (a damaged file is set aside).
fn read_state(
    dir: &Path,
    now_ms: u64,
    report: &mut LoadReport,
) -> Result<(State, u64), StoreError> {
    let snap_path = dir.join(SNAPSHOT);
    let (mut state, mut seq) = match private_fs::read(&snap_path) {
        Ok(bytes) => match parse_snapshot(&bytes) {
            Ok((s, seq, dropped)) => {
                if dropped > 0 {
                    report.warnings.push(format!(
                        "{}: dropped {dropped} invalid or repeated queue entries",
                        snap_path.display(),
                    ));
                }
                (s, seq)
            }
            Err(why) => {
                let aside = keep_aside(&snap_path, now_ms);
                report.warnings.push(format!(
                    "{} is unreadable ({why}); kept it as {} and started with an empty queue",
                    snap_path.display(),
                    aside.display()
                ));
                (State::new(), 0)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (State::new(), 0),
        Err(e) => return Err(err(&snap_path, "read")(e)),
    };

    let journal_path = dir.join(JOURNAL);
    match File::open(&journal_path) {
        Ok(f) => {
            let (ops, problem) = read_journal(f);
            let mut skipped = 0usize;
            for (line_seq, op) in ops {
                if line_seq <= seq {
                    continue;
                }
                seq = line_seq;
                match op {
                    Some(op) => {
                        state.apply(&op);
                        report.replayed_ops += 1;
                    }
                    // What the hook parser would have refused live (a
                    // hand-edited or damaged line) must not come back
                    // through the journal; the other ops still count.
                    None => skipped += 1,
                }
            }
            if skipped > 0 {
                report.warnings.push(format!(
                    "{}: skipped {skipped} ops naming an invalid stream key \
                         (not [A-Za-z0-9_-]{{1,64}}); replayed the rest",
                    journal_path.display()
                ));
            }
            if let Some(p) = problem {
                let aside = keep_aside(&journal_path, now_ms);
                report.warnings.push(format!(
                    "{}: {p}; replayed what came before and kept the file as {}",
                    journal_path.display(),
                    aside.display()
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(&journal_path, "read")(e)),
    }

    let seed_path = dir.join(SEED_QUEUE);
    if state.is_empty() && !snap_path.exists() && seed_path.exists() {
        match fs::read(&seed_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).map_err(|e| e.to_string()))
        {
            Ok(keys) => {
                let total = keys.len();
                let entries: Vec<Entry> = keys
                    .iter()
                    .filter_map(|k| StreamKey::parse(k).ok())
                    .map(|key| Entry {
                        key,
                        sessions: Default::default(),
                        joined_at: now_ms,
                        addr: String::new(),
                    })
                    .collect();
                let invalid = total - entries.len();
                let (s, repeated) = State::from_parts(entries, Some(now_ms), 1);
                if invalid > 0 || !repeated.is_empty() {
                    // Fingerprints, never the keys: this goes to the log.
                    let tags: Vec<String> = repeated.iter().map(StreamKey::fingerprint).collect();
                    report.warnings.push(format!(
                        "{}: dropped {invalid} invalid keys and {} repeated ones {tags:?}",
                        seed_path.display(),
                        repeated.len()
                    ));
                }
                state = s;
                report.migrated_seed = true;
            }
            Err(why) => report.warnings.push(format!(
                "{} is not a JSON array of keys ({why}); ignored",
                seed_path.display()
            )),
        }
    }

    Ok((state, seq))
}

/// The snapshot's state, and how many entries were dropped: repeated keys,
/// and entries (or blocks) whose key is not a valid stream key (a damaged
/// or hand-edited file), which are taken out before the state is read so
/// they cost only themselves, not the whole queue.
fn parse_snapshot(bytes: &[u8]) -> Result<(State, u64, usize), String> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(1) => {}
        Some(n) => return Err(format!("unsupported version {n}")),
        None => return Err("no version field".into()),
    }
    let mut invalid = 0;
    if let Some(entries) = v.get_mut("entries").and_then(|e| e.as_array_mut()) {
        let before = entries.len();
        entries.retain(|e| !e.get("key").is_some_and(names_invalid_key));
        invalid += before - entries.len();
    }
    if let Some(blocks) = v.get_mut("blocks").and_then(|b| b.as_object_mut()) {
        let before = blocks.len();
        blocks.retain(|k, _| StreamKey::parse(k).is_ok());
        invalid += before - blocks.len();
    }
    let snap: Snapshot = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let (state, repeated) = snap.state.reindex();
    Ok((state, snap.seq, invalid + repeated.len()))
}

/// A JSON string that is not a valid stream key (a non-string is some
/// other damage, reported as such).
fn names_invalid_key(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| StreamKey::parse(s).is_err())
}

/// The sequence number of a journal line that failed to parse because it
/// names an invalid stream key (`key`, or one of `keys`): an op the hook
/// parser would have refused live, skipped rather than a reason to stop.
fn invalid_key_line(line: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let one = v.get("key").is_some_and(names_invalid_key);
    let many = v
        .get("keys")
        .and_then(|k| k.as_array())
        .is_some_and(|ks| ks.iter().any(names_invalid_key));
    (one || many).then_some(seq)
}

/// Read journal lines in order: (seq, the op), or (seq, None) for a line
/// naming an invalid stream key. A torn last line (crash mid-write) is
/// dropped silently; any other bad line stops the replay and is reported.
fn read_journal(f: File) -> (Vec<(u64, Option<Op>)>, Option<String>) {
    let mut ops = Vec::new();
    let mut lines = BufReader::new(f).split(b'\n').peekable();
    let mut n = 0;
    while let Some(line) = lines.next() {
        n += 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => return (ops, Some(format!("read error at line {n}: {e}"))),
        };
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<JournalLine>(&line) {
            Ok(j) => ops.push((j.seq, Some(j.op))),
            Err(e) => match invalid_key_line(&line) {
                Some(seq) => ops.push((seq, None)),
                None if lines.peek().is_none() => break,
                None => return (ops, Some(format!("bad line {n}: {e}"))),
            },
        }
    }
    (ops, None)
}

fn keep_aside(path: &Path, now_ms: u64) -> PathBuf {
    let aside = path.with_extension(format!("corrupt-{now_ms}"));
    // If even the rename fails the file is left where it is; the fresh
    // snapshot written next replaces it, which is all that can be done.
    let _ = fs::rename(path, &aside);
    aside
}

/// Write a file atomically and durably (temp file in the same directory,
/// fsync, rename over the target, fsync the directory) with the content
/// produced by `fill`; returns the size.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> Result<u64, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let f = create_temp(&tmp)?;
    let mut w = io::BufWriter::with_capacity(64 * 1024, f);
    fill(&mut w).map_err(err(&tmp, "write"))?;
    let f = w
        .into_inner()
        .map_err(|e| err(&tmp, "write")(e.into_error()))?;
    f.sync_all().map_err(err(&tmp, "fsync"))?;
    let size = f.metadata().map_err(err(&tmp, "stat"))?.len();
    drop(f);
    fs::rename(&tmp, path).map_err(err(path, "replace"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir, "fsync directory"))?;
    Ok(size)
}

/// Like [`write_atomic_with`], for files written by root's CLI too: the file is
/// given to the owner of its directory (through its descriptor) when we run
/// as root. Every file here is created 0600 whatever the umask.
pub(crate) fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = create_temp(&tmp)?;
        f.write_all(bytes).map_err(err(&tmp, "write"))?;
        f.sync_all().map_err(err(&tmp, "fsync"))?;
        private_fs::give_to_dir_owner(&f, &tmp, dir);
    }
    fs::rename(&tmp, path).map_err(err(path, "replace"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir, "fsync directory"))?;
    Ok(())
}

/// A new temp file, 0600, never an existing file or a link someone left
/// at its name (it is removed first; O_EXCL then refuses anything that
/// reappears there).
fn create_temp(tmp: &Path) -> Result<File, StoreError> {
    let _ = fs::remove_file(tmp);
    private_fs::open(tmp, private_fs::options().write(true).create_new(true))
        .map_err(err(tmp, "create"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::k;
    use std::fs::OpenOptions;

    use crate::scratch::ScratchDir as TempDir;

    /// Open with the journal used for every batch, whatever the size.
    fn open_journaled(dir: &Path, now: u64) -> (Store, State, LoadReport) {
        let (mut s, st, r) = Store::open(dir, now).unwrap();
        s.inline_max = 0;
        (s, st, r)
    }

    fn publish(key: &str, cid: u64) -> Op {
        Op::Publish {
            key: k(key),
            client_id: Some(cid),
            addr: "127.0.0.1".into(),
            at: cid,
        }
    }

    fn keys(s: &State) -> Vec<String> {
        s.entries()
            .iter()
            .map(|e| e.key.expose().to_string())
            .collect()
    }

    #[test]
    fn batches_survive_reopen() {
        let d = TempDir::new("reopen");
        let (mut store, mut state, rep) = open_journaled(&d.0, 0);
        assert_eq!(rep.restored_entries, 0);
        let ops = [publish("a", 1), publish("b", 2), publish("c", 3)];
        for op in &ops {
            state.apply(op);
        }
        store.append(&ops, &state).unwrap();
        let done = [Op::Skip { at: 9 }];
        state.apply(&done[0]);
        store.append(&done, &state).unwrap();
        drop(store);
        let (_s, back, rep) = Store::open(&d.0, 10).unwrap();
        assert_eq!(rep.replayed_ops, 4);
        assert_eq!(keys(&back), ["b", "c"]);
        assert_eq!(back, state);
    }

    #[test]
    fn moderation_state_survives_journal_and_snapshot() {
        let d = TempDir::new("moderation");
        let (mut store, mut state, _) = open_journaled(&d.0, 0);
        let ops = [
            publish("a", 1),
            publish("b", 2),
            publish("c", 3),
            Op::SetSlotEnd {
                key: k("a"),
                ends_at: Some(50_000),
                at: 10,
            },
            Op::Kick {
                key: k("b"),
                until: Some(90_000),
                at: 11,
            },
            Op::SetDefaultSlot {
                seconds: Some(300),
                at: 12,
            },
            Op::SetRejoinBlock {
                seconds: Some(0),
                at: 13,
            },
            Op::Move {
                key: k("c"),
                position: 1,
                at: 14,
            },
        ];
        for op in &ops {
            state.apply(op);
        }
        store.append(&ops, &state).unwrap();
        drop(store);
        // Replayed from the journal...
        let (mut store, back, rep) = Store::open(&d.0, 20).unwrap();
        assert_eq!(rep.replayed_ops, ops.len());
        assert_eq!(back, state);
        assert_eq!(back.blocked_until(&k("b"), 20), Some(90_000));
        assert_eq!(back.slot_ends_at(0), Some(50_000));
        assert_eq!(back.overrides().slot_seconds, Some(300));
        // ...and from the snapshot.
        store.compact(&back).unwrap();
        drop(store);
        let (_s, again, rep) = Store::open(&d.0, 30).unwrap();
        assert_eq!(rep.replayed_ops, 0);
        assert_eq!(again, state);
    }

    #[test]
    fn snapshot_and_journal_never_double_apply() {
        let d = TempDir::new("double");
        let (mut store, mut state, _) = open_journaled(&d.0, 0);
        let ops = [publish("a", 1), publish("b", 2)];
        for op in &ops {
            state.apply(op);
        }
        store.append(&ops, &state).unwrap();
        let skip = [Op::Skip { at: 5 }];
        state.apply(&skip[0]);
        store.append(&skip, &state).unwrap();
        // Simulate a crash after the snapshot was written but before the
        // journal was truncated: keep a copy of the journal and put it back.
        let journal = fs::read(d.0.join(JOURNAL)).unwrap();
        store.compact(&state).unwrap();
        fs::write(d.0.join(JOURNAL), journal).unwrap();
        drop(store);
        let (_s, back, rep) = Store::open(&d.0, 10).unwrap();
        assert_eq!(rep.replayed_ops, 0);
        assert_eq!(keys(&back), ["b"], "skip must not be applied twice");
    }

    #[test]
    fn small_queue_lives_whole_in_queue_json() {
        let d = TempDir::new("inline");
        let (mut store, mut state, _) = Store::open(&d.0, 0).unwrap();
        let ops = [publish("a", 1), publish("b", 2)];
        for op in &ops {
            state.apply(op);
        }
        store.append(&ops, &state).unwrap();
        let text = fs::read_to_string(d.0.join(SNAPSHOT)).unwrap();
        assert!(text.contains("\"a\"") && text.contains("\"b\""), "{text}");
        assert_eq!(fs::metadata(d.0.join(JOURNAL)).unwrap().len(), 0);
        drop(store);
        let (_s, back, _) = Store::open(&d.0, 1).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn torn_last_line_is_dropped_quietly() {
        let d = TempDir::new("torn");
        let (mut store, mut state, _) = open_journaled(&d.0, 0);
        let op = [publish("a", 1)];
        state.apply(&op[0]);
        store.append(&op, &state).unwrap();
        drop(store);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.0.join(JOURNAL))
            .unwrap();
        f.write_all(b"{\"seq\":2,\"op\":\"publ").unwrap();
        drop(f);
        let (_s, back, rep) = Store::open(&d.0, 1).unwrap();
        assert_eq!(keys(&back), ["a"]);
        assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    }

    #[test]
    fn corrupt_snapshot_is_kept_aside_and_reported() {
        let d = TempDir::new("corrupt");
        fs::write(d.0.join(SNAPSHOT), b"{not json").unwrap();
        let (_s, state, rep) = Store::open(&d.0, 77).unwrap();
        assert!(state.is_empty());
        assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
        assert!(rep.warnings[0].contains("unreadable"));
        assert!(d.0.join("queue.corrupt-77").exists());
        // And a fresh, valid snapshot replaced it.
        let (_s2, _st2, rep2) = Store::open(&d.0, 78).unwrap();
        assert!(rep2.warnings.is_empty());
    }

    #[test]
    fn future_version_is_not_silently_misread() {
        let d = TempDir::new("version");
        fs::write(d.0.join(SNAPSHOT), br#"{"version":9,"seq":0,"entries":[]}"#).unwrap();
        let (_s, _state, rep) = Store::open(&d.0, 1).unwrap();
        assert!(rep.warnings[0].contains("unsupported version 9"));
    }

    #[test]
    fn bad_middle_journal_line_stops_replay_and_is_reported() {
        let d = TempDir::new("midbad");
        let (store, _state, _) = Store::open(&d.0, 0).unwrap();
        drop(store);
        let good = |seq: u64, k: &str| {
            serde_json::to_string(&JournalLine {
                seq,
                op: publish(k, seq),
            })
            .unwrap()
        };
        let text = format!("{}\ngarbage\n{}\n", good(1, "a"), good(3, "c"));
        fs::write(d.0.join(JOURNAL), text).unwrap();
        let (_s, state, rep) = Store::open(&d.0, 5).unwrap();
        assert_eq!(keys(&state), ["a"]);
        assert!(rep.warnings[0].contains("bad line 2"), "{:?}", rep.warnings);
    }

    #[test]
    fn journal_ops_with_invalid_keys_are_skipped_and_the_rest_kept() {
        let d = TempDir::new("badkey");
        let (store, _state, _) = Store::open(&d.0, 0).unwrap();
        drop(store);
        let line = |seq: u64, op: Op| serde_json::to_string(&JournalLine { seq, op }).unwrap();
        // Lines no StreamKey can be made from: written by hand, as a
        // damaged or forged file would hold them.
        let text = [
            line(1, publish("a", 1)),
            r#"{"seq":2,"op":"publish","key":"bad key\u202e","client_id":2,"addr":"127.0.0.1","at":2}"#
                .to_string(),
            r#"{"seq":3,"op":"override","keys":["a","x/../y"],"at":3}"#.to_string(),
            line(4, publish("c", 4)),
        ]
        .join("\n");
        fs::write(d.0.join(JOURNAL), text + "\n").unwrap();
        let (_s, state, rep) = Store::open(&d.0, 5).unwrap();
        assert_eq!(keys(&state), ["a", "c"]);
        assert_eq!(rep.replayed_ops, 2);
        assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
        assert!(
            rep.warnings[0].contains("skipped 2 ops"),
            "{:?}",
            rep.warnings
        );
    }

    #[test]
    fn snapshot_entries_and_blocks_with_invalid_keys_are_dropped_alone() {
        let d = TempDir::new("badsnapkey");
        fs::write(
            d.0.join(SNAPSHOT),
            r#"{"version":1,"seq":0,"entries":[{"key":"a","sessions":[1],"joined_at":1,"addr":""},{"key":"x/../y","sessions":[2],"joined_at":2,"addr":""},{"key":"b","sessions":[3],"joined_at":3,"addr":""},{"key":"a","sessions":[4],"joined_at":4,"addr":""}],"on_air_since":1,"switch_seq":1,"blocks":{"bad key":9999,"c":9999}}"#,
        )
        .unwrap();
        let (_s, state, rep) = Store::open(&d.0, 5).unwrap();
        assert_eq!(keys(&state), ["a", "b"]);
        assert_eq!(state.blocks(5), [(&k("c"), 9999)]);
        assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
        assert!(
            rep.warnings[0].contains("dropped 3 invalid or repeated"),
            "{:?}",
            rep.warnings
        );
        assert!(!rep.warnings[0].contains("x/../y"), "{:?}", rep.warnings);
    }

    #[test]
    fn files_keep_the_format_keys_had_as_strings() {
        // A snapshot as every version since 1 wrote it: read, then written
        // again (compaction), it comes back byte for byte.
        let d = TempDir::new("format");
        let text = r#"{"version":1,"seq":7,"entries":[{"key":"dj-1","sessions":[3],"joined_at":10,"addr":"127.0.0.1"},{"key":"B_2","sessions":[],"joined_at":11,"addr":""}],"on_air_since":10,"switch_seq":2,"blocks":{"a":99999,"z":99998},"slot_ends_at":50000}"#;
        fs::write(d.0.join(SNAPSHOT), text).unwrap();
        let (_s, state, rep) = Store::open(&d.0, 12).unwrap();
        assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
        assert_eq!(keys(&state), ["dj-1", "B_2"]);
        assert_eq!(fs::read_to_string(d.0.join(SNAPSHOT)).unwrap(), text);
        // Journal lines: ops name keys as plain strings.
        let line = serde_json::to_string(&JournalLine {
            seq: 8,
            op: Op::Override {
                keys: vec![k("B_2"), k("dj-1")],
                at: 13,
            },
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"seq":8,"op":"override","keys":["B_2","dj-1"],"at":13}"#
        );
        let line = serde_json::to_string(&JournalLine {
            seq: 9,
            op: publish("dj-1", 4),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"seq":9,"op":"publish","key":"dj-1","client_id":4,"addr":"127.0.0.1","at":4}"#
        );
    }

    #[test]
    fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = TempDir::new("modes");
        let dir = d.0.join("fresh");
        // A journal left 0644 by an older version is tightened too.
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(JOURNAL), b"").unwrap();
        fs::set_permissions(dir.join(JOURNAL), fs::Permissions::from_mode(0o644)).unwrap();
        let (mut store, mut state, _) = Store::open(&dir, 0).unwrap();
        let op = [publish("a", 1)];
        state.apply(&op[0]);
        store.append(&op, &state).unwrap();
        let sub = d.0.join("new/state");
        let (_s2, _, _) = Store::open(&sub, 0).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(SNAPSHOT)), 0o600);
        assert_eq!(mode(&dir.join(JOURNAL)), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join(SNAPSHOT)), 0o600);
    }

    #[test]
    fn seed_queue_json_is_migrated_once() {
        let d = TempDir::new("seed");
        fs::write(d.0.join(SEED_QUEUE), br#"["dj1","dj2","bad key","dj1"]"#).unwrap();
        let (_s, state, rep) = Store::open(&d.0, 1000).unwrap();
        assert!(rep.migrated_seed);
        assert_eq!(keys(&state), ["dj1", "dj2"]);
        assert_eq!(state.on_air_since(), Some(1000));
        let w = rep.warnings.join("; ");
        assert!(
            w.contains("dropped 1 invalid keys and 1 repeated ones"),
            "{w}"
        );
        assert!(
            !w.contains("dj1") && !w.contains("bad key"),
            "keys in the log: {w}"
        );
        assert!(!d.0.join(SEED_QUEUE).exists());
        assert!(d.0.join("QUEUE.json.migrated").exists());
        let (_s, again, rep) = Store::open(&d.0, 2000).unwrap();
        assert!(!rep.migrated_seed);
        assert_eq!(keys(&again), ["dj1", "dj2"]);
    }

    #[test]
    fn a_handed_over_open_writes_nothing_until_the_first_save() {
        let d = TempDir::new("handed-over");
        let (mut store, mut state, _) = open_journaled(&d.0, 0);
        let op = publish("a", 1);
        state.apply(&op);
        store.append(&[op], &state).unwrap();
        drop(store);
        let journal = || fs::metadata(d.0.join(JOURNAL)).unwrap().len();
        let snapshot = || fs::read(d.0.join(SNAPSHOT)).unwrap();
        let (j0, s0) = (journal(), snapshot());
        assert!(j0 > 0);
        let (mut store, mut state, _) = Store::open_handed_over(&d.0, 1).unwrap();
        assert_eq!(keys(&state), ["a"]);
        assert_eq!((journal(), snapshot()), (j0, s0), "nothing written at open");
        let op = publish("b", 2);
        state.apply(&op);
        store.append(&[op], &state).unwrap();
        assert_eq!(journal(), 0, "the first save folds the journal in");
        let (_, back, _) = Store::open(&d.0, 2).unwrap();
        assert_eq!(keys(&back), ["a", "b"]);
    }

    #[test]
    fn compaction_keeps_everything() {
        let d = TempDir::new("compact");
        let (mut store, mut state, _) = open_journaled(&d.0, 0);
        // Enough ops to pass the inline limit and compact several times.
        for batch in 0..200u64 {
            let ops: Vec<Op> = (0..64u64)
                .map(|i| publish(&format!("k{batch}-{i}"), batch * 64 + i))
                .collect();
            for op in &ops {
                state.apply(op);
            }
            store.append(&ops, &state).unwrap();
        }
        assert!(store.snapshot_bytes > INLINE_SNAPSHOT_MAX);
        assert!(store.journal_bytes <= 2 * store.snapshot_bytes);
        drop(store);
        let (_s, back, _) = Store::open(&d.0, 1).unwrap();
        assert_eq!(back.len(), 200 * 64);
        assert_eq!(back, state);
    }
}
