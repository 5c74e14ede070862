//! Descriptors and processes across `execve` (socket activation and the
//! hand-over to a new binary): the system calls std has no wrapper for.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Whether `fd` is an open socket in the listening state.
pub fn socket_listening(fd: RawFd) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v != 0)
}

/// Set or clear FD_CLOEXEC: a descriptor without it survives `execve`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; no memory involved.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if new != flags {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    }
    Ok(())
}

/// Take ownership of a descriptor inherited across `execve` (checked open
/// with F_GETFD first). The caller must know nothing else owns it.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only tells whether the number is open.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: open (checked) and, by the caller's contract, owned by no one
    // else in this process: it came from systemd or from our own exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Descriptors of this process that survive `execve` (FD_CLOEXEC clear):
/// at start, the ones inherited from the previous image.
pub fn without_cloexec() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        // SAFETY: F_GETFD only reads the descriptor's flags; a number that
        // is not open (the directory's own, closed since) gives -1.
        .filter(|&fd| matches!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, f if f >= 0 && f & libc::FD_CLOEXEC == 0))
        .collect()
}

/// Close an inherited descriptor nothing in this process owns.
pub fn close_inherited(fd: RawFd) {
    drop(adopt_fd(fd));
}

/// An anonymous memory file (memfd) that survives `execve`.
pub fn memfd(name: &str) -> io::Result<std::fs::File> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
    let fd = check(unsafe { libc::memfd_create(c.as_ptr(), 0) })?;
    // SAFETY: the descriptor was just created and is owned here only.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The calling thread's id (the parent a child's PR_SET_PDEATHSIG watches).
pub fn gettid() -> u32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Non-blocking or blocking wait for a child that std's `Child` does not
/// know (adopted across `execve`). `Ok(None)`: still running.
pub fn waitpid(pid: u32, block: bool) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one int into `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            return Ok(Some(std::process::ExitStatus::from_raw(status)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Replace this process with `path` (same PID, descriptors without
/// FD_CLOEXEC kept). Returns only on failure.
pub fn execve(path: &std::path::Path, args: &[String], env: &[(String, String)]) -> io::Error {
    use std::os::unix::ffi::OsStrExt;
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let cstrings = |v: Vec<Vec<u8>>| -> Option<Vec<CString>> {
        v.into_iter().map(|s| CString::new(s).ok()).collect()
    };
    let Some(argv) = cstrings(args.iter().map(|a| a.as_bytes().to_vec()).collect()) else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let Some(envp) = cstrings(
        env.iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect(),
    ) else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive
    // the call; execve returns only on failure.
    unsafe {
        libc::execve(p.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
    }
    io::Error::last_os_error()
}

/// The children of every thread of this process (/proc/self/task/*/children).
pub fn own_children() -> Vec<u32> {
    let mut v = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return v;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            v.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    v
}

/// CLOCK_MONOTONIC in ms: the clock `Instant` reads, the same in the
/// process image after `execve`.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

/// SIGKILL one child and reap it (a child adopted across `execve` that is
/// not used: the wait cannot block, SIGKILL cannot be caught).
pub fn kill_and_reap(pid: u32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return;
    };
    if p <= 1 {
        return;
    }
    // SAFETY: plain syscall on a pid that is our child; ESRCH is harmless.
    if unsafe { libc::kill(p, libc::SIGKILL) } == 0 {
        let _ = waitpid(pid, true);
    }
}
