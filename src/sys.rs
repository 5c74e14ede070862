//! The few system calls std does not wrap. All of the crate's `unsafe`
//! lives here.
#![allow(unsafe_code)]

pub mod fds;

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the child get SIGKILL when the daemon dies, even by `kill -9`.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked exits; relays are
/// spawned by the engine thread, which lives as long as the daemon.
pub fn kill_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe
    // functions (prctl, getppid, _exit) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Send `sig` to the process group led by `pid` (relays run in their own).
pub fn signal_group(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: plain syscall on a pid we spawned; an ESRCH for an already
    // gone group is harmless.
    unsafe {
        libc::killpg(pid, sig);
    }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Block until we hold an exclusive advisory lock on `f` (released when the
/// file is closed).
pub fn lock_exclusive(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own for the duration of the call.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
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
pub fn trim_heap() {
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An inotify descriptor watching `dir` for `mask` events.
pub fn inotify_watch(dir: &std::path::Path, mask: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: inotify_init1 returns a new descriptor or -1; on success it is
    // owned by the OwnedFd, which closes it.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Blocking read from a descriptor std has no type for (inotify).
pub fn read_fd(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for `buf.len()` bytes for the whole call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Set the process umask (files and directories nobody else may read,
/// whoever starts the daemon and however their shell is set up).
pub fn set_umask(mask: u32) {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
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
    // SAFETY: getters cannot fail and touch no memory.
    let (now_uid, now_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if now_uid != uid || now_gid != gid {
        return Err(std::io::Error::other(format!(
            "still uid {now_uid} gid {now_gid} after switching to {uid}:{gid}"
        )));
    }
    Ok(())
}

/// The soft limit on open file descriptors (RLIMIT_NOFILE), if known.
pub fn open_files_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    (r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// shutdown(2) on a listening socket: a thread blocked in accept() on it
/// gets EINVAL, as if the socket had failed (used by a test hook).
#[cfg(feature = "test-hooks")]
pub fn shutdown_listener(l: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown on a descriptor the listener owns; no memory involved.
    if unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes an unprivileged user may still write on the file system holding
/// `path` (statvfs: f_bavail × f_frsize).
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: zeroed is a valid statvfs (plain integers); statvfs fills it
    // from a NUL-terminated path that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Clock ticks per second (the unit of CPU times in `/proc/PID/stat`).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(100).max(1)
}
