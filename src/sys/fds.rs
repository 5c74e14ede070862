//! Descriptors and processes across `execve` (socket activation and the
//! hand-over to a new binary): the system calls std has no wrapper for,
//! through `rustix`. What stays `unsafe`: treating a number inherited
//! across `execve` as a descriptor ([`inherited`], [`adopt_fd`]) and
//! `execve` itself (raw argument arrays; rustix's is `unsafe` too).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::{Errno, FdFlags};
use rustix::process::{Pid, WaitOptions};

/// A descriptor number this process inherited (systemd's socket, our own
/// exec's) or holds, borrowed for one call.
fn inherited<'a>(fd: RawFd) -> io::Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(Errno::BADF.into());
    }
    // SAFETY: the callers pass numbers open in this process for the call
    // (a closed one only makes the system call fail with EBADF).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Whether `fd` is an open socket in the listening state.
pub(crate) fn socket_listening(fd: RawFd) -> io::Result<bool> {
    Ok(rustix::net::sockopt::socket_acceptconn(inherited(fd)?)?)
}

/// Set or clear FD_CLOEXEC: a descriptor without it survives `execve`.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let fd = inherited(fd)?;
    let flags = rustix::io::fcntl_getfd(fd)?;
    let new = if on {
        flags | FdFlags::CLOEXEC
    } else {
        flags - FdFlags::CLOEXEC
    };
    if new != flags {
        rustix::io::fcntl_setfd(fd, new)?;
    }
    Ok(())
}

/// Take ownership of a descriptor inherited across `execve` (checked open
/// with F_GETFD first). The caller must know nothing else owns it.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // F_GETFD only tells whether the number is open.
    rustix::io::fcntl_getfd(inherited(fd)?)?;
    // SAFETY: open (checked) and, by the caller's contract, owned by no one
    // else in this process: it came from systemd or from our own exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Descriptors of this process that survive `execve` (FD_CLOEXEC clear):
/// at start, the ones inherited from the previous image.
pub(crate) fn without_cloexec() -> Vec<RawFd> {
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
pub(crate) fn close_inherited(fd: RawFd) {
    drop(adopt_fd(fd));
}

/// An anonymous memory file (memfd) that survives `execve`.
pub(crate) fn memfd(name: &str) -> io::Result<std::fs::File> {
    // No MFD_CLOEXEC: the new image reads it.
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::empty())?;
    Ok(std::fs::File::from(fd))
}

/// The calling thread's id (the parent a child's PR_SET_PDEATHSIG watches).
pub fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Non-blocking or blocking wait for a child that std's `Child` does not
/// know (adopted across `execve`). `Ok(None)`: still running.
pub(crate) fn waitpid(pid: u32, block: bool) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let opts = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    loop {
        match rustix::process::waitpid(Some(pid), opts) {
            Ok(r) => return Ok(r.map(|(_, st)| std::process::ExitStatus::from_raw(st.as_raw()))),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Replace this process with `path` (same PID, descriptors without
/// FD_CLOEXEC kept). Returns only on failure.
pub(crate) fn execve(
    path: &std::path::Path,
    args: &[String],
    env: &[(String, String)],
) -> io::Error {
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
pub(crate) fn own_children() -> Vec<u32> {
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
pub(crate) fn monotonic_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

/// SIGKILL one child and reap it (a child adopted across `execve` that is
/// not used: the wait cannot block, SIGKILL cannot be caught).
pub(crate) fn kill_and_reap(pid: u32) {
    let Some(p) = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // ESRCH (already gone) is harmless.
    if rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok() {
        let _ = waitpid(pid, true);
    }
}
