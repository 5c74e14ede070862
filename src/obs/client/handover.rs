//! The OBS thread's side of `motherstream upgrade`: the identified
//! websocket goes to the new image of this process, which goes on with it
//! as after Identified (no new connection, Hello or Identify).
//!
//! Why that is sound with tungstenite: the connection is taken only when
//! the session is quiet (set up, no request in flight or queued) and at a
//! message boundary. The reader thread is stopped and joined first (it
//! forwarded everything it read; the rest is still in the kernel), the
//! inbox is drained through tungstenite until `WouldBlock`; as the inbox
//! hands it whole messages only, tungstenite then holds nothing (no partial
//! frame or fragmented message; its pong replies are flushed before each
//! read, and every send is flushed by a blocking write). What is left is the
//! start of the next message in `Inbox::rest`, carried as bytes. The new
//! image builds a fresh `WebSocket::from_raw_socket` over the same socket
//! with those bytes in front, the same state tungstenite had.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use super::wire::{Inbox, Reader};
use super::{read_frames, BroadcastState, Conn, Input, Msg, Shell};
use crate::handover::obs::ObsCarry;

/// A hand-over waiting for the connection to be quiet.
pub(super) struct Freezing {
    reply: Sender<ObsCarry>,
    pub(super) until: Instant,
}

impl Freezing {
    pub(super) fn new(reply: Sender<ObsCarry>, wait: Duration) -> Freezing {
        Freezing {
            reply,
            until: Instant::now() + wait,
        }
    }
}

impl Shell {
    /// Hand the connection over if it is quiet now (then wait, frozen, for
    /// the exec or a thaw). False: shut down.
    pub(super) fn try_freeze(&mut self, rx: &Receiver<Msg>) -> bool {
        loop {
            let Some(f) = &self.freezing else {
                return true;
            };
            if Instant::now() >= f.until {
                log::warn!("OBS: the session was not quiet in time for the hand-over; the new binary connects again");
                self.freezing = None;
                return true;
            }
            let (Some(connection), Some(conn)) = (self.session.quiet(), self.conn.as_mut()) else {
                return true;
            };
            if let Some(r) = conn.reader.take() {
                r.stop();
            }
            for c in conn.chunks.try_iter() {
                conn.ws.get_mut().push(c);
            }
            let inputs = read_frames(&mut conn.ws);
            if inputs.is_empty() && conn.ws.get_ref().end.is_none() {
                return self.freeze(connection, rx);
            }
            // Frames came meanwhile: take them, read on, and try again.
            self.feed(inputs);
            self.restart_reader();
        }
    }

    /// A new reader thread for the open connection (after a stop).
    fn restart_reader(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.reader.is_some() || conn.ws.get_ref().end.is_some() {
            return;
        }
        match conn.ws.get_ref().stream.try_clone().and_then(Reader::spawn) {
            Ok((reader, chunks)) => {
                conn.reader = Some(reader);
                conn.chunks = chunks;
            }
            Err(e) => self.feed(vec![Input::TransportError(format!(
                "cannot read from OBS again: {e}"
            ))]),
        }
    }

    /// The quiet connection, stopped reader and all, to the engine.
    fn freeze(&mut self, connection: u64, rx: &Receiver<Msg>) -> bool {
        let (Some(f), Some(conn)) = (self.freezing.take(), self.conn.as_ref()) else {
            return true;
        };
        let fd = conn.ws.get_ref().stream.as_raw_fd();
        if let Err(e) = crate::sys::fds::set_cloexec(fd, false) {
            log::warn!(
                "OBS: cannot keep the connection across exec ({e}); the new binary connects again"
            );
            self.restart_reader();
            return true;
        }
        let cfg = self.session.config();
        let carry = ObsCarry {
            fd,
            host: cfg.host.clone(),
            port: cfg.port,
            connections: connection,
            pending: conn.ws.get_ref().rest().to_vec(),
            on_air: self.desired.on_air.clone(),
            next_up: self.desired.next_up.clone(),
            switch_seq: self.desired.switch_seq,
            slot_ends_at_ms: self.desired.slot_ends_at.and_then(|t| {
                t.duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64)
            }),
        };
        // The engine takes it (rendezvous) or gave up waiting.
        if f.reply.send(carry).is_err() {
            let _ = crate::sys::fds::set_cloexec(fd, true);
            self.restart_reader();
            return true;
        }
        self.frozen(fd, rx)
    }

    /// Handed over: nothing is done until the exec, or a thaw (then what
    /// the engine said meanwhile is taken in order). False: shut down.
    fn frozen(&mut self, fd: i32, rx: &Receiver<Msg>) -> bool {
        let mut held = Vec::new();
        loop {
            match rx.recv() {
                Ok(Msg::Thaw) => break,
                Ok(Msg::Shutdown) | Err(_) => return false,
                Ok(m) => held.push(m),
            }
        }
        log::info!("OBS: the hand-over did not happen; the session goes on here");
        let _ = crate::sys::fds::set_cloexec(fd, true);
        self.restart_reader();
        let none = crossbeam_channel::never();
        held.into_iter().all(|m| self.on_engine(m, &none))
    }

    /// At start: the connection a previous binary of this process handed
    /// over, if it is to the OBS of this configuration. The first input of
    /// the session ([`Input::Start`] when there is none).
    pub(super) fn adopt_carried(&mut self) -> Input {
        let Some(c) = crate::handover::take_obs() else {
            return Input::Start;
        };
        let fd = match crate::sys::fds::adopt_fd(c.fd) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!(
                    "OBS: the carried connection (descriptor {}) is unusable ({e}); connecting anew",
                    c.fd
                );
                return Input::Start;
            }
        };
        let _ = crate::sys::fds::set_cloexec(c.fd, true);
        let cfg = self.session.config().clone();
        if !cfg.enabled || cfg.host != c.host || cfg.port != c.port {
            log::info!(
                "OBS: the session carried over is to {}:{}, this configuration says otherwise: closed",
                c.host,
                c.port
            );
            return Input::Start;
        }
        let stream = TcpStream::from(fd);
        let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
        let set_up = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(timeout)));
        let ws =
            WebSocket::from_raw_socket(Inbox::new(stream, false, c.pending), Role::Client, None);
        match set_up.and_then(|()| Conn::start(ws)) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.desired = BroadcastState {
                    on_air: c.on_air,
                    next_up: c.next_up,
                    switch_seq: c.switch_seq,
                    slot_ends_at: c
                        .slot_ends_at_ms
                        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                };
                log::info!(
                    "OBS: the websocket session to {}:{} carried over from the previous binary; going on without a new Identify",
                    c.host,
                    c.port
                );
                Input::Carried {
                    connection: c.connections,
                }
            }
            Err(e) => {
                log::warn!("OBS: cannot go on with the carried connection ({e}); connecting anew");
                Input::Start
            }
        }
    }
}
