//! File change events (inotify) for the state directory, so the engine
//! re-reads `streamers.json` the moment the CLI or an editor changes it,
//! instead of checking it on a timer.

use std::io;
use std::path::Path;

use crossbeam_channel::Sender;

use crate::engine::Command;

/// inotify events that can mean a file's content changed: written and
/// closed, renamed into place (atomic writes), created or deleted.
pub(crate) const MASK: u32 =
    libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_CREATE | libc::IN_DELETE;

/// Names in a buffer of `struct inotify_event` records (16-byte header:
/// wd, mask, cookie, len; then `len` bytes of NUL-padded name).
pub(crate) fn event_names(buf: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at + 12], buf[at + 13], buf[at + 14], buf[at + 15]]);
        let end = at + 16 + len as usize;
        let Some(raw) = buf.get(at + 16..end) else {
            break;
        };
        let name = raw.split(|b| *b == 0).next().unwrap_or_default();
        names.push(String::from_utf8_lossy(name).into_owned());
        at = end;
    }
    names
}

/// Start a thread that sends `Command::RegistryChanged` whenever `file` in
/// `dir` changes. The thread ends when the engine is gone; it is not
/// joined (it holds nothing that needs saving). Errors setting up the watch
/// are returned, so the caller can fall back to checking on a timer.
pub fn spawn_registry_watch(dir: &Path, file: &'static str, tx: Sender<Command>) -> io::Result<()> {
    let fd = crate::sys::inotify_watch(dir, MASK)?;
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = match crate::sys::read_fd(&fd, &mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::error!("watching the state directory failed: {e}; SIGHUP still reloads the registry");
                        return;
                    }
                };
                if event_names(&buf[..n]).iter().any(|f| f == file)
                    && tx.send(Command::RegistryChanged).is_err()
                {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u32, name: &str, padded: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&1i32.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(padded as u32).to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.resize(padded, 0);
        v.extend_from_slice(&n);
        v
    }

    #[test]
    fn parses_records_and_stops_at_a_truncated_one() {
        let mut buf = record(libc::IN_MOVED_TO, "streamers.json", 16);
        buf.extend(record(libc::IN_CREATE, "queue.tmp", 16));
        buf.extend(record(libc::IN_DELETE, "", 0));
        assert_eq!(event_names(&buf), ["streamers.json", "queue.tmp", ""]);
        let mut cut = record(libc::IN_CLOSE_WRITE, "streamers.json", 16);
        cut.truncate(20);
        assert!(event_names(&cut).is_empty());
        assert!(event_names(&[]).is_empty());
    }

    #[test]
    fn a_real_rename_into_the_directory_is_seen() {
        let d = crate::scratch::ScratchDir::new("watch");
        let (tx, rx) = crossbeam_channel::unbounded();
        spawn_registry_watch(&d.0, "streamers.json", tx).unwrap();
        std::fs::write(d.0.join("other.json"), b"{}").unwrap();
        std::fs::write(d.0.join("streamers.tmp"), b"{}").unwrap();
        std::fs::rename(d.0.join("streamers.tmp"), d.0.join("streamers.json")).unwrap();
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert!(matches!(got, Ok(Command::RegistryChanged)));
    }
}
