//! Where the HTTP listening socket comes from, in this order:
//!
//! 1. a hand-over from the previous binary of this same process
//!    (`motherstream upgrade`: the descriptor survived `execve`, named by
//!    [`HANDOVER_LISTEN_FD`]);
//! 2. systemd's socket activation (`motherstream.socket`: `LISTEN_PID` /
//!    `LISTEN_FDS`, the first descriptor), so the kernel queues hooks while
//!    the daemon is down or starting and none is refused;
//! 3. `[http] listen`, bound here (running outside systemd).
//!
//! Whichever it is, the log says so, and a socket whose address differs
//! from `[http] listen` is warned about (clients and `motherstream api`
//! use that address).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::RawFd;

/// Environment variable naming the listening descriptor carried across
/// `execve` by a hand-over. Independent of the state format, so even a
/// binary that cannot read the rest of the hand-over keeps the socket.
pub(crate) const HANDOVER_LISTEN_FD: &str = "MOTHERSTREAM_LISTEN_FD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Handover,
    Systemd,
    Bound,
}

pub struct Listening {
    pub listener: TcpListener,
    pub origin: Origin,
    pub addr: Option<SocketAddr>,
}

/// Parse a descriptor number from the environment: a plain decimal ≥ 3
/// (0–2 are the standard streams, never a socket we were handed).
pub(crate) fn parse_fd(s: &str) -> Option<RawFd> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<RawFd>().ok().filter(|&fd| fd >= 3)
}

/// Whether `fd` is an open listening TCP socket (SO_ACCEPTCONN), checked
/// before it is trusted as one.
fn is_listening_tcp(fd: RawFd) -> Result<(), String> {
    match crate::sys::fds::socket_listening(fd) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("descriptor {fd} is not a listening socket")),
        Err(e) => Err(format!("descriptor {fd}: {e}")),
    }
}

fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    is_listening_tcp(fd)?;
    crate::sys::fds::set_cloexec(fd, true).map_err(|e| format!("descriptor {fd}: {e}"))?;
    // A listening socket nothing else in this process owns: it came from
    // systemd or from our own exec.
    let owned = crate::sys::fds::adopt_fd(fd).map_err(|e| format!("descriptor {fd}: {e}"))?;
    Ok(TcpListener::from(owned))
}

/// The listening socket, and where it came from (logged).
pub fn acquire(listen: &str) -> Result<Listening, String> {
    let configured: Option<SocketAddr> = listen.parse().ok();
    let (listener, origin) = if let Some(fd) = std::env::var(HANDOVER_LISTEN_FD)
        .ok()
        .as_deref()
        .and_then(parse_fd)
    {
        (
            adopt(fd).map_err(|e| format!("the handed-over HTTP socket: {e}"))?,
            Origin::Handover,
        )
    } else if let Some(fd) = sd_notify::listen_fds()
        .map_err(|e| format!("cannot read systemd's LISTEN_FDS: {e}"))?
        .next()
    {
        (
            adopt(fd).map_err(|e| format!("the socket from systemd (motherstream.socket): {e}"))?,
            Origin::Systemd,
        )
    } else {
        let l = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        (l, Origin::Bound)
    };
    let addr = listener.local_addr().ok();
    let shown = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
    match origin {
        Origin::Handover => log::info!("HTTP: serving on {shown}, the socket handed over by the previous binary (no connection was refused)"),
        Origin::Systemd => log::info!("HTTP: serving on {shown}, the socket from systemd (motherstream.socket); [http] listen = {listen} is not bound"),
        Origin::Bound => log::info!("HTTP: serving on {shown} ([http] listen; no socket from systemd)"),
    }
    if origin != Origin::Bound {
        if let (Some(a), Some(c)) = (addr, configured) {
            if a != c {
                log::warn!(
                    "HTTP: the socket in use ({a}) differs from [http] listen = {listen}: `motherstream api`, `nginx-hooks` and clients use [http] listen; make motherstream.socket's ListenStream= and [http] listen agree"
                );
            }
        }
    }
    Ok(Listening {
        listener,
        origin,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_numbers() {
        assert_eq!(parse_fd("3"), Some(3));
        assert_eq!(parse_fd(" 17\n"), Some(17));
        assert_eq!(parse_fd("2"), None);
        assert_eq!(parse_fd("-4"), None);
        assert_eq!(parse_fd("4x"), None);
        assert_eq!(parse_fd(""), None);
        assert_eq!(parse_fd("99999999999999"), None);
    }

    #[test]
    fn a_plain_file_is_not_adopted() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(adopt(f.as_raw_fd()).is_err());
    }
}
