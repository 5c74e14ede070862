//! A source: one streamer's `live/<key>` read from nginx-rtmp as FLV tags.
//!
//! A native RTMP client (the `rml_rtmp` session, which is I/O-free) on a
//! thread of its own, over a blocking `TcpStream` with deadlines. Chosen
//! over an `ffmpeg -c copy -f flv pipe:1` child because it needs no process
//! start and no stream probe (first tag in a few ms instead of ffmpeg's
//! start-up), costs a fraction of the CPU, and keeps the stream key out of
//! every process's argv (`ps` shows nothing). RTMP audio/video message
//! bodies are FLV tag bodies and their timestamps are FLV timestamps, so
//! the splicer sees the same tags either way.
//!
//! The reader never decides anything: it reports tags with their arrival
//! time and, once, why it ended (`SourceEnded`). Stalls are read deadlines.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent, ClientSessionResult,
};

use super::flv::{Tag, TAG_AUDIO, TAG_VIDEO};
use super::splice::SourceId;
use super::RelayEvent;
use crate::key::StreamKey;

/// Where to read from. `stream` is the stream key: it goes on the wire to
/// nginx and nowhere else.
#[derive(Clone)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub stream: StreamKey,
    /// No media for this long counts as a stall.
    pub stall: Duration,
}

pub struct Source {
    pub id: SourceId,
    pub started: Instant,
    shared: Arc<Shared>,
}

/// Between the owner and the reader thread: the socket once connected (so
/// `stop` can shut it down) and whether the owner asked to stop.
#[derive(Default)]
struct Shared {
    stream: Mutex<Option<TcpStream>>,
    stop: AtomicBool,
}

impl Source {
    /// Start reading on a new thread. Connection failures are reported as
    /// `Ended` like any other end, so the caller has one path for all.
    pub fn spawn(
        id: SourceId,
        spec: SourceSpec,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Source> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name(format!("source-{id}"))
            .spawn(move || {
                let reason = match connect(&spec) {
                    Ok(s) => {
                        if let Ok(c) = s.try_clone() {
                            *lock(&theirs.stream) = Some(c);
                        }
                        if theirs.stop.load(Ordering::SeqCst) {
                            "stopped".to_string()
                        } else {
                            match read_loop(id, s, &spec, &events) {
                                Ok(()) => "the server ended the stream".to_string(),
                                Err(e) => e,
                            }
                        }
                    }
                    Err(e) => e,
                };
                let reason = if theirs.stop.load(Ordering::SeqCst) {
                    "stopped".to_string()
                } else {
                    reason
                };
                let _ = events.send(RelayEvent::SourceEnded { source: id, reason });
            })?;
        Ok(Source {
            id,
            started: Instant::now(),
            shared,
        })
    }

    /// Stop reading: shutting the socket down ends the thread's blocking
    /// read at once; the thread then reports `Ended` with "stopped".
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.shared.stream).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The RTMP handshake and the connect/play commands must be done by then.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(spec: &SourceSpec) -> Result<TcpStream, String> {
    let addrs = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", spec.host))?;
    let mut last = format!("no address for {}", spec.host);
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

fn session_err(e: ClientSessionError) -> String {
    format!("RTMP session error: {e:?}")
}

/// Handshake, `connect` to the app, `play` the stream, then forward media
/// until the stream ends, the socket is shut down, or nothing arrives for
/// `spec.stall`.
fn read_loop(
    id: SourceId,
    mut sock: TcpStream,
    spec: &SourceSpec,
    events: &Sender<RelayEvent>,
) -> Result<(), String> {
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    sock.set_write_timeout(Some(SETUP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut input = handshake(&mut sock, &mut buf, setup_deadline)?;
    let (mut session, mut pending) = rtmp_session(spec)?;
    let mut play = Play {
        id,
        spec,
        events,
        playing: false,
        last_media: Instant::now(),
    };
    loop {
        if !input.is_empty() {
            let results = session.handle_input(&input).map_err(session_err)?;
            input.clear();
            pending.extend(results);
        }
        let mut out = Vec::new();
        for r in pending.drain(..) {
            match r {
                ClientSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(ev) => {
                    if !play.on_event(ev, &mut session, &sock, &mut out)? {
                        return Ok(());
                    }
                }
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        if !out.is_empty() {
            write_all(&mut sock, &out)?;
        }
        let (deadline, what) = if play.playing {
            (play.last_media + spec.stall, "media")
        } else {
            (setup_deadline, "RTMP connect/play")
        };
        let n = read_some(&mut sock, &mut buf, deadline, what)?;
        input.extend_from_slice(&buf[..n]);
    }
}

/// The RTMP handshake as a client; the bytes read past its end.
fn handshake(sock: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<Vec<u8>, String> {
    let mut hs = Handshake::new(PeerType::Client);
    let p0p1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("RTMP handshake: {e:?}"))?;
    write_all(sock, &p0p1)?;
    loop {
        let n = read_some(sock, buf, deadline, "RTMP handshake")?;
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("RTMP handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                write_all(sock, &response_bytes)?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                write_all(sock, &response_bytes)?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// A client session for `spec`'s app, its `connect` request the first
/// thing to send.
fn rtmp_session(spec: &SourceSpec) -> Result<(ClientSession, Vec<ClientSessionResult>), String> {
    let mut cfg = ClientSessionConfig::new();
    let host = if spec.host.contains(':') {
        format!("[{}]", spec.host)
    } else {
        spec.host.clone()
    };
    cfg.tc_url = Some(format!("rtmp://{host}:{}/{}", spec.port, spec.app));
    // nginx-rtmp sends media as soon as play starts; a short client buffer
    // keeps it from holding anything back.
    cfg.playback_buffer_length_ms = 100;
    let (mut session, initial) = ClientSession::new(cfg).map_err(session_err)?;
    let mut pending: Vec<ClientSessionResult> = initial;
    pending.push(
        session
            .request_connection(spec.app.clone())
            .map_err(session_err)?,
    );
    Ok((session, pending))
}

/// One stream being played: where its media goes, and since when it has
/// been quiet.
struct Play<'a> {
    id: SourceId,
    spec: &'a SourceSpec,
    events: &'a Sender<RelayEvent>,
    /// nginx accepted the `play`: media is due.
    playing: bool,
    last_media: Instant,
}

impl Play<'_> {
    /// Act on one session event (what to send back goes to `out`); false
    /// when the stream ended or nobody listens any more.
    fn on_event(
        &mut self,
        ev: ClientSessionEvent,
        session: &mut ClientSession,
        sock: &TcpStream,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        let id = self.id;
        match ev {
            ClientSessionEvent::ConnectionRequestAccepted => {
                if let ClientSessionResult::OutboundResponse(p) = session
                    // RTMP `play` names the stream by its key.
                    .request_playback(self.spec.stream.expose().to_string())
                    .map_err(session_err)?
                {
                    out.extend_from_slice(&p.bytes)
                }
            }
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                return Err(format!("nginx refused the connect: {description}"));
            }
            ClientSessionEvent::PlaybackRequestAccepted => {
                self.playing = true;
                sock.set_write_timeout(Some(self.spec.stall))
                    .map_err(|e| e.to_string())?;
            }
            ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                self.last_media = Instant::now();
                return Ok(forward(
                    self.events,
                    id,
                    TAG_VIDEO,
                    timestamp.value,
                    data,
                    self.last_media,
                ));
            }
            ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                self.last_media = Instant::now();
                return Ok(forward(
                    self.events,
                    id,
                    TAG_AUDIO,
                    timestamp.value,
                    data,
                    self.last_media,
                ));
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                // NetStream.Play.UnpublishNotify: the publisher left.
                if code.contains("Unpublish") || code.contains("Play.Stop") {
                    return Ok(false);
                }
                log::debug!("source {id}: RTMP status {code}");
            }
            _ => {}
        }
        Ok(true)
    }
}

/// Hand one media message to the owner as a tag; false once nobody listens.
fn forward(
    events: &Sender<RelayEvent>,
    source: SourceId,
    kind: u8,
    ts: u32,
    data: bytes::Bytes,
    arrival: Instant,
) -> bool {
    let tag = Tag { kind, ts, data };
    events
        .send(RelayEvent::Tag {
            source,
            tag,
            arrival,
        })
        .is_ok()
}

fn write_all(sock: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    sock.write_all(bytes)
        .map_err(|e| format!("cannot write to nginx: {e}"))
}

/// One read, bounded by `deadline`; EOF is an error ("closed").
fn read_some(
    sock: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<usize, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("stalled: no {what} in time"));
    }
    sock.set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    match sock.read(buf) {
        Ok(0) => Err("nginx closed the connection".into()),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "stalled: no {what} for {:.1} s",
                left.as_secs_f64()
            ))
        }
        Err(e) => Err(format!("read error: {e}")),
    }
}
