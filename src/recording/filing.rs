//! Finished recordings: nginx's file moved from `incoming_dir` to `dir`
//! under the streamer's name, old recordings removed, the newest of earlier
//! runs listed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use super::shell::{unix_ms, Finishing, Shell};
use super::{file_name, parse_file_name, to_prune, Recent, RECENT, RETRY_AFTER};
use crate::key::StreamKey;

impl Shell {
    /// nginx closed a recording: file it under the streamer's name.
    pub(super) fn on_done(&mut self, key: &StreamKey, recorder: &str, path: &str) {
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
    pub(super) fn prune(&mut self) {
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
    pub(super) fn load_recent(&mut self) {
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
}

fn mtime_ms(m: &std::fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
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
