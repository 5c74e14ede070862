//! Files that hold keys and secrets (the queue, the registry, the relay log,
//! the tag secret): created 0600 in directories created 0700, opened without
//! following symbolic links, and — when root writes them (the CLI) — handed
//! to the owner of their directory through the open descriptor.
//!
//! Why no symlinks: the state directory belongs to the service user, and an
//! administrator runs `motherstream streamer …` as root in it. A link the
//! service user planted there (`streamers.lock` → `/etc/shadow`) must not
//! make root open, write or chown the file it points to.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file motherstream creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every directory motherstream creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// `OpenOptions` for a private file: mode 0600 when created, and a
/// symbolic link at `path` is an error instead of being followed.
pub(crate) fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    o
}

/// Open with `opts` (from [`options`]); a symbolic link gets an error that
/// says so.
pub(crate) fn open(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    opts.open(path).map_err(|e| explain_symlink(path, e))
}

/// The whole file, refusing a symbolic link.
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open(path, options().read(true))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// O_NOFOLLOW on a link fails with ELOOP, whose text ("Too many levels of
/// symbolic links") hides what happened.
fn explain_symlink(path: &Path, e: io::Error) -> io::Error {
    let is_link = e.raw_os_error() == Some(libc::ELOOP)
        && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        io::Error::other(
            "it is a symbolic link; motherstream refuses to follow symbolic links in its \
             state directory (remove it)",
        )
    } else {
        e
    }
}

/// Create `dir` and any missing parents with mode 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Make an existing file 0600 (files created by older versions, or under
/// a looser umask, were 0644). Best effort: the file works either way.
pub(crate) fn tighten(f: &File, path: &Path) {
    if let Ok(m) = f.metadata() {
        if m.permissions().mode() & 0o077 != 0 {
            if let Err(e) = f.set_permissions(fs::Permissions::from_mode(FILE_MODE)) {
                log::warn!("cannot make {} private (mode 0600): {e}", path.display());
            }
        }
    }
}

/// When running as root, give the open file `f` (at `path`) to the owner of
/// `dir`, through its descriptor (a path could be swapped for a link in
/// between). Best effort: a failure leaves root's file, which root can fix.
pub(crate) fn give_to_dir_owner(f: &File, path: &Path, dir: &Path) {
    if !crate::sys::is_root() {
        return;
    }
    if let Ok(m) = fs::metadata(dir) {
        if m.uid() != 0 {
            if let Err(e) = std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid())) {
                log::warn!("cannot give {} to uid {}: {e}", path.display(), m.uid());
            }
        }
    }
}

/// The owner of `dir` when it is not root and we are: whom root's CLI
/// should act as there. None when no switch is needed or possible.
pub fn foreign_owner(dir: &Path) -> Option<(u32, u32)> {
    if !crate::sys::is_root() {
        return None;
    }
    let m = fs::metadata(dir).ok()?;
    (m.uid() != 0).then(|| (m.uid(), m.gid()))
}

/// Warn when a secret file can be read by others than its owner.
pub(crate) fn readable_by_others(path: &Path) -> Option<String> {
    let m = fs::metadata(path).ok()?;
    let mode = m.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a secret but is readable by {} (mode {mode:04o}); chmod 600 it",
            path.display(),
            if mode & 0o007 != 0 {
                "every user"
            } else {
                "its group"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;
    use std::io::Write;

    #[test]
    fn files_and_dirs_are_private_whatever_the_umask() {
        let d = ScratchDir::new("private-modes");
        let sub = d.0.join("a/b");
        create_dir(&sub).unwrap();
        for p in [d.0.join("a"), sub.clone()] {
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let p = sub.join("f");
        let mut f = open(&p, options().write(true).create(true)).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn an_old_wide_file_is_tightened() {
        let d = ScratchDir::new("private-tighten");
        let p = d.0.join("old");
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let f = open(&p, options().append(true)).unwrap();
        tighten(&f, &p);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(readable_by_others(&p).is_none());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(readable_by_others(&p).unwrap().contains("its group"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&p).unwrap().contains("every user"));
    }

    #[test]
    fn symlinks_are_refused_with_a_clear_error() {
        let d = ScratchDir::new("private-link");
        let target = d.0.join("target");
        fs::write(&target, b"precious").unwrap();
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open(&link, options().write(true).create(true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        // A missing file is still "not found", not a link.
        let e = read(&d.0.join("nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
