//! The OBS thread: the blocking shell around the pure [`Session`]. It owns
//! the socket, feeds the session what happens (engine messages, frames,
//! the passing of its deadline), performs the actions it returns, and
//! otherwise sleeps: no polling.
//!
//! Waiting on two sources at once without polling: a websocket and the
//! engine's crossbeam channel cannot be waited on together, and
//! tungstenite's `WebSocket` needs `&mut` for both reading and writing, so
//! it cannot be shared between a reading and a writing thread. The split
//! chosen here keeps all of the websocket protocol on this thread:
//! * a per-connection reader thread (`obs-reader`) owns a clone of the
//!   `TcpStream` and does plain blocking reads of *bytes*, forwarding each
//!   chunk into a crossbeam channel; it knows nothing of websockets and
//!   ends when the socket is shut down or the channel is dropped;
//! * this thread owns the one `WebSocket`, over an [`Inbox`] stream whose
//!   reads take from the chunks received (and report `WouldBlock` when
//!   there are none, which tungstenite handles as a non-blocking socket)
//!   and whose writes go straight to the `TcpStream` (with a write
//!   timeout). Pongs, close replies and every request are written by this
//!   thread only, so frames never interleave;
//! * the main loop `select!`s on the engine channel, the chunk channel and
//!   a timer channel for the session's deadline (`crossbeam_channel::at`).
//!
//! Idle with OBS connected that is one wake-up per heartbeat (5 s) plus its
//! answer. Connecting (TCP connect, websocket handshake) is done blocking,
//! bounded by the request timeout, as before.
//!
//! `wire` has the inbox and the reader thread, `handover` the taking of an
//! identified connection across `motherstream upgrade`.

use std::io;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::WebSocket;

use super::protocol::{self, Message};
use super::session::{Action, Input, Now, Session};
use super::{BroadcastState, Msg, ObsStatus};
use crate::config::{read_secret_file, ObsConfig};

mod handover;
mod wire;

use wire::{Chunk, Inbox, Reader};

/// One open websocket.
struct Conn {
    ws: WebSocket<Inbox>,
    chunks: Receiver<Chunk>,
    reader: Option<Reader>,
}

impl Conn {
    /// The websocket over `inbox`, with its reader thread.
    fn start(ws: WebSocket<Inbox>) -> io::Result<Conn> {
        let (reader, chunks) = Reader::spawn(ws.get_ref().stream.try_clone()?)?;
        Ok(Conn {
            ws,
            chunks,
            reader: Some(reader),
        })
    }

    fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        let _ = self.ws.get_ref().stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            r.stop();
        }
    }
}

struct Shell {
    session: Session,
    desired: BroadcastState,
    conn: Option<Conn>,
    status_tx: Sender<ObsStatus>,
    /// The last password file problem logged.
    password_error: Option<String>,
    /// A hand-over waits for the connection to be quiet.
    freezing: Option<handover::Freezing>,
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
    }
}

pub(super) fn run(cfg: ObsConfig, rx: Receiver<Msg>, status_tx: Sender<ObsStatus>) {
    let mut shell = Shell {
        session: Session::new(cfg),
        desired: BroadcastState::default(),
        conn: None,
        status_tx,
        password_error: None,
        freezing: None,
    };
    let start = shell.adopt_carried();
    shell.feed(vec![start]);
    loop {
        let deadline = match (shell.session.deadline(), &shell.freezing) {
            (Some(d), Some(f)) => Some(d.min(f.until)),
            (d, f) => d.or(f.as_ref().map(|f| f.until)),
        };
        let wake = match deadline {
            Some(d) => crossbeam_channel::at(d),
            None => crossbeam_channel::never(),
        };
        let chunks = match &shell.conn {
            Some(c) => c.chunks.clone(),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(rx) -> m => {
                let Ok(m) = m else { break };
                if !shell.on_engine(m, &rx) {
                    break;
                }
            }
            recv(chunks) -> c => {
                // A disconnected channel means the reader ended without a
                // word (it always sends End first): treat it as EOF.
                let c = c.unwrap_or(Chunk::End(None));
                shell.on_chunk(c);
            }
            recv(wake) -> _ => shell.feed(vec![Input::Tick]),
        }
        if shell.freezing.is_some() && !shell.try_freeze(&rx) {
            break;
        }
    }
    if let Some(c) = shell.conn.take() {
        c.close();
    }
}

/// The password: `OBS_PASSWORD` (already in `cfg.password`) wins over
/// `password_file`, whose first line is read at every (re)configure and
/// before every connection attempt (so a fixed file is picked up at the
/// next retry, even without a reload).
fn resolve_password(cfg: &ObsConfig) -> Result<Option<String>, String> {
    if let Some(pw) = &cfg.password {
        return Ok(Some(pw.clone()));
    }
    read_secret_file(&cfg.password_file).map_err(|e| e.to_string())
}

impl Shell {
    /// Resolve the password, logging a problem once (not at every retry).
    fn read_password(&mut self, cfg: &ObsConfig) -> Option<String> {
        match resolve_password(cfg) {
            Ok(pw) => {
                self.password_error = None;
                pw
            }
            Err(e) => {
                if self.password_error.as_ref() != Some(&e) {
                    log::error!("OBS password not available: {e}; connecting without a password");
                    self.password_error = Some(e);
                }
                None
            }
        }
    }

    /// Take `first` and everything else already queued by the engine, so
    /// only the newest state is applied. False = shut down.
    fn on_engine(&mut self, first: Msg, rx: &Receiver<Msg>) -> bool {
        let mut changed = false;
        for m in std::iter::once(first).chain(rx.try_iter()) {
            match m {
                Msg::Show(s) => {
                    changed |= s != self.desired;
                    self.desired = s;
                }
                Msg::Reconfigure(cfg) => {
                    if std::mem::take(&mut changed) {
                        self.feed(vec![Input::Desired]);
                    }
                    let password = self.read_password(&cfg);
                    self.feed(vec![Input::Config { cfg, password }]);
                }
                Msg::Freeze { reply, wait } => {
                    self.freezing = Some(handover::Freezing::new(reply, wait))
                }
                // Not frozen: nothing to go on from.
                Msg::Thaw => {}
                Msg::Shutdown => return false,
            }
        }
        if changed {
            self.feed(vec![Input::Desired]);
        }
        true
    }

    fn on_chunk(&mut self, c: Chunk) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        conn.ws.get_mut().push(c);
        let inputs = read_frames(&mut conn.ws);
        self.feed(inputs);
        // The session drops a connection whose stream ended; if it did not
        // (it was not expecting one), drop it anyway: a finished reader
        // would otherwise wake this loop again and again.
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.ws.get_ref().end.is_some())
        {
            if let Some(c) = self.conn.take() {
                c.close();
            }
        }
    }

    /// Step the session with each input, and with whatever performing its
    /// actions produced, until nothing is left.
    fn feed(&mut self, inputs: Vec<Input>) {
        let mut todo: std::collections::VecDeque<Input> = inputs.into();
        while let Some(input) = todo.pop_front() {
            let actions = self.session.step(&self.desired, input, now());
            for a in actions {
                match a {
                    Action::Connect => {
                        if let Some(c) = self.conn.take() {
                            c.close();
                        }
                        let cfg = self.session.config().clone();
                        let password = self.read_password(&cfg);
                        match connect(&cfg) {
                            Ok(mut conn) => {
                                todo.push_back(Input::Connected { password });
                                // Frames tungstenite already read along
                                // with the handshake answer.
                                todo.extend(read_frames(&mut conn.ws));
                                self.conn = Some(conn);
                            }
                            Err(reason) => todo.push_back(Input::ConnectFailed(reason)),
                        }
                    }
                    Action::Send(frame) => {
                        if let Some(conn) = &mut self.conn {
                            if let Err(e) = conn.ws.send(tungstenite::Message::Text(frame.encode()))
                            {
                                todo.push_back(Input::TransportError(io_failure(
                                    "sending to OBS",
                                    e,
                                )));
                            }
                        }
                    }
                    Action::Disconnect => {
                        if let Some(c) = self.conn.take() {
                            c.close();
                        }
                    }
                    Action::Report(s) => {
                        let _ = self.status_tx.send(s);
                    }
                }
            }
        }
    }
}

/// Every complete frame in the inbox, as session inputs.
fn read_frames(ws: &mut WebSocket<Inbox>) -> Vec<Input> {
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(text)) => match Message::decode(&text) {
                Ok(m) => out.push(Input::Frame(m)),
                Err(e) => {
                    log::debug!("ignoring OBS frame: {e}");
                    out.push(Input::Activity);
                }
            },
            Ok(tungstenite::Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.into_owned()))
                    .unwrap_or((1005, String::new()));
                out.push(Input::Closed { code, reason });
                break;
            }
            Ok(_) => out.push(Input::Activity),
            Err(e) if is_would_block(&e) => break,
            Err(e) => {
                out.push(Input::TransportError(io_failure("reading from OBS", e)));
                break;
            }
        }
    }
    out
}

fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

fn io_failure(what: &str, e: tungstenite::Error) -> String {
    use tungstenite::error::ProtocolError as P;
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            format!("{what}: connection closed")
        }
        tungstenite::Error::Protocol(P::ResetWithoutClosingHandshake) => {
            format!("{what}: OBS dropped the connection without a close frame (killed or crashed?)")
        }
        tungstenite::Error::Io(e) => format!("{what}: {e}"),
        e => format!("{what}: {e}"),
    }
}

/// TCP connect (with timeout) and the websocket handshake (subprotocol
/// `obswebsocket.json`), then the reader thread.
fn connect(cfg: &ObsConfig) -> Result<Conn, String> {
    let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
    let target = format!("{}:{}", cfg.host, cfg.port);
    let addr = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", cfg.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", cfg.host))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))
    };
    setup(&stream).map_err(|e| format!("socket setup for {target}: {e}"))?;

    let host = if cfg.host.contains(':') {
        format!("[{}]", cfg.host)
    } else {
        cfg.host.clone()
    };
    let mut req = format!("ws://{host}:{}", cfg.port)
        .into_client_request()
        .map_err(|e| format!("bad OBS address {target}: {e}"))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(protocol::SUBPROTOCOL),
    );
    let inbox = Inbox::new(stream, true, Vec::new());
    let mut ws = match tungstenite::client(req, inbox) {
        Ok((ws, _)) => ws,
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            return Err(format!("websocket handshake with {target} timed out"))
        }
        Err(tungstenite::HandshakeError::Failure(e)) => {
            return Err(format!("websocket handshake with {target} failed: {e}"))
        }
    };
    // From here on only the reader thread reads the socket, and it blocks
    // until bytes come (the read timeout is shared by both handles).
    ws.get_ref()
        .stream
        .set_read_timeout(None)
        .map_err(|e| format!("socket setup for {target}: {e}"))?;
    ws.get_mut().direct = false;
    Conn::start(ws).map_err(|e| format!("cannot start the OBS reader thread: {e}"))
}
