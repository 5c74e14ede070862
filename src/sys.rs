//! The few system calls std does not wrap, through `rustix` where it has
//! them. All of the crate's `unsafe` lives here and in [`fds`]: what is
//! left is std's `pre_exec` itself, glibc's allocator tuning (not system
//! calls) and the process-wide id switch of [`become_user`] (rustix only
//! changes the calling thread's ids).
#![allow(unsafe_code)]

pub mod fds;

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{self, Pid, Signal};

/// Make the child get SIGKILL when the daemon dies, even by `kill -9`.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked exits; relays are
/// spawned by the engine thread, which lives as long as the daemon.
pub(crate) fn kill_with_parent(cmd: &mut Command) {
    let parent = Pid::from_raw(std::process::id() as i32);
    // SAFETY: between fork and exec the closure makes only raw system calls
    // (prctl, getppid) and allocates nothing (an error from a raw errno).
    // An error makes std's child `_exit(1)` before exec.
    unsafe {
        cmd.pre_exec(move || {
            process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before prctl took effect.
            if process::getppid() != parent {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// Send `sig` to the process group led by `pid` (relays run in their own).
pub(crate) fn signal_group(pid: u32, sig: libc::c_int) {
    let Some(pid) = i32::try_from(pid).ok().filter(|p| *p > 1) else {
        return;
    };
    if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
        // An ESRCH for an already gone group is harmless.
        let _ = process::kill_process_group(pid, sig);
    }
}

/// Whether the effective user is root.
pub(crate) fn is_root() -> bool {
    process::geteuid().is_root()
}

/// Block until we hold an exclusive advisory lock on `f` (released when the
/// file is closed).
pub(crate) fn lock_exclusive(f: &std::fs::File) -> std::io::Result<()> {
    loop {
        match rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Cap glibc's malloc arenas. tiny_http runs every connection on a pool
/// thread and each new thread would get an arena of its own; a daemon that
/// mostly waits does not need more than two, and RSS stays small.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator tuning; called at start-up.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Give freed heap memory back to the kernel (after a large queue shrank or
/// a big snapshot buffer was freed).
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An inotify descriptor watching `dir` for `mask` events.
pub(crate) fn inotify_watch(
    dir: &std::path::Path,
    mask: u32,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
    inotify::add_watch(&fd, dir, inotify::WatchFlags::from_bits_retain(mask))?;
    Ok(fd)
}

/// Blocking read from a descriptor std has no type for (inotify).
pub(crate) fn read_fd(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// Set the process umask (files and directories nobody else may read,
/// whoever starts the daemon and however their shell is set up).
pub fn set_umask(mask: u32) {
    process::umask(rustix::fs::Mode::from_raw_mode(mask));
}

/// Become `uid`:`gid` for good (real, effective and saved ids, and no
/// supplementary groups): root's CLI then touches the daemon's state
/// directory with exactly its owner's rights, so nothing planted there can
/// make it write or chown a file the owner could not.
pub fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let groups = [gid as libc::gid_t];
    // SAFETY: plain syscalls; `groups` outlives the setgroups call. The CLI
    // is single-threaded when it calls this, and glibc applies the ids to
    // every thread anyway.
    unsafe {
        check(libc::setgroups(1, groups.as_ptr()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
    }
    let (now_uid, now_gid) = (process::geteuid().as_raw(), process::getegid().as_raw());
    if now_uid != uid || now_gid != gid {
        return Err(std::io::Error::other(format!(
            "still uid {now_uid} gid {now_gid} after switching to {uid}:{gid}"
        )));
    }
    Ok(())
}

/// The soft limit on open file descriptors (RLIMIT_NOFILE), if known.
pub fn open_files_limit() -> Option<u64> {
    // None: unlimited.
    process::getrlimit(process::Resource::Nofile).current
}

/// shutdown(2) on a listening socket: a thread blocked in accept() on it
/// gets EINVAL, as if the socket had failed (used by a test hook).
#[cfg(feature = "test-hooks")]
pub(crate) fn shutdown_listener(l: &std::net::TcpListener) -> std::io::Result<()> {
    Ok(rustix::net::shutdown(l, rustix::net::Shutdown::Both)?)
}

/// Bytes an unprivileged user may still write on the file system holding
/// `path` (statvfs: f_bavail × f_frsize).
pub(crate) fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Clock ticks per second (the unit of CPU times in `/proc/PID/stat`).
pub(crate) fn clock_ticks_per_second() -> u64 {
    // The kernel's AT_CLKTCK, what sysconf(_SC_CLK_TCK) reads too.
    rustix::param::clock_ticks_per_second().max(1)
}
