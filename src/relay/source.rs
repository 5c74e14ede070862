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
//!
//! Every byte after the handshake is parsed by our own chunk reader
//! ([`chunks`]): rml's session only sees whole messages while it sets the
//! session up (connect, play), and once playing the reader answers pings
//! and acknowledges windows itself. So the session's state is ours at any
//! moment, and a hand-over to a new binary carries it ([`SessionCarry`]:
//! the socket, kept open across `execve`, and the parser's state): the new
//! image goes on reading mid-stream, with no reconnect and no keyframe to
//! wait for.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent, ClientSessionResult,
};

use super::flv::{Tag, TAG_AUDIO, TAG_VIDEO};
use super::splice::SourceId;
use super::RelayEvent;
use crate::key::StreamKey;

pub(crate) mod chunks;
use chunks::{ChunkState, Message};

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
    pub(crate) started: Instant,
    shared: Arc<Shared>,
    /// The reader's session when it let go for a hand-over.
    detached: Receiver<(OwnedFd, ChunkState)>,
}

/// A playing session as a hand-over carries it: the socket to nginx (its
/// descriptor, kept open across `execve`) and the chunk parser's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionCarry {
    pub(crate) fd: RawFd,
    pub(crate) chunks: ChunkState,
}

/// Between the owner and the reader thread: the socket once connected (so
/// `stop` can shut it down) and whether the owner asked to stop, or to let
/// go of the session for a hand-over.
#[derive(Default)]
struct Shared {
    stream: Mutex<Option<TcpStream>>,
    stop: AtomicBool,
    detach: AtomicBool,
    /// The session is set up and media is read (what `detach` can take).
    playing: AtomicBool,
}

/// How a reader thread ended.
enum Ended {
    Reason(String),
    /// It let go of its session (sent to the owner): nothing to report.
    Detached,
}

impl Source {
    /// Start reading on a new thread. Connection failures are reported as
    /// `Ended` like any other end, so the caller has one path for all.
    pub fn spawn(
        id: SourceId,
        spec: SourceSpec,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Source> {
        Source::start(id, spec, events, None)
    }

    /// Go on reading a session carried over from the previous binary of
    /// this process (or let go of and taken back by this one).
    pub(crate) fn adopt(
        id: SourceId,
        spec: SourceSpec,
        carry: SessionCarry,
        events: Sender<RelayEvent>,
    ) -> std::io::Result<Source> {
        Source::start(id, spec, events, Some(carry))
    }

    fn start(
        id: SourceId,
        spec: SourceSpec,
        events: Sender<RelayEvent>,
        carry: Option<SessionCarry>,
    ) -> std::io::Result<Source> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let (tx, detached) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name(format!("source-{id}"))
            .spawn(move || {
                let ended = match carry {
                    Some(c) => resume(id, c, &spec, &events, &theirs, &tx),
                    None => match connect(&spec) {
                        Ok(s) => {
                            if let Ok(c) = s.try_clone() {
                                *lock(&theirs.stream) = Some(c);
                            }
                            if theirs.stop.load(Ordering::SeqCst) {
                                Ended::Reason("stopped".to_string())
                            } else {
                                read_loop(id, s, &spec, &events, &theirs, &tx)
                            }
                        }
                        Err(e) => Ended::Reason(e),
                    },
                };
                let reason = match ended {
                    Ended::Detached => return,
                    Ended::Reason(_) if theirs.stop.load(Ordering::SeqCst) => "stopped".into(),
                    Ended::Reason(r) => r,
                };
                let _ = events.send(RelayEvent::SourceEnded { source: id, reason });
            })?;
        Ok(Source {
            started: Instant::now(),
            shared,
            detached,
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

    /// Let go of a playing session for a hand-over: the reader stops after
    /// the whole messages it holds (their tags sent), keeps the socket open
    /// and hands over its state. None (the reader goes on) when it is not
    /// playing yet or did not answer within `wait`.
    pub(crate) fn detach(&self, wait: Duration) -> Option<SessionCarry> {
        if !self.ask_to_detach() {
            return None;
        }
        let (fd, chunks) = match self.detached.recv_timeout(wait) {
            Ok(d) => d,
            Err(_) => {
                self.shared.detach.store(false, Ordering::SeqCst);
                // It may have let go just now.
                self.detached.try_recv().ok()?
            }
        };
        Some(SessionCarry {
            fd: fd.into_raw_fd(),
            chunks,
        })
    }
}

impl Source {
    /// The first half of [`Source::detach`], so that several readers let
    /// go at once (each looks every 20 ms): false when not playing.
    pub(crate) fn ask_to_detach(&self) -> bool {
        if !self.shared.playing.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.detach.store(true, Ordering::SeqCst);
        true
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

/// Whole messages handed to rml during set-up are re-chunked this large
/// (announced first): one chunk each.
const FEED_CHUNK_SIZE: u32 = 1 << 24;
/// How often a reader waiting for bytes looks whether it should let go.
const DETACH_POLL: Duration = Duration::from_millis(20);
/// Asked to let go, a reader first waits for the next picture (at most
/// this long): the last frame the old binary shows is then a fresh one, and
/// the next follows it by what the hand-over takes, not by up to one more
/// frame interval (33 ms at 30 fps) on top.
const DETACH_AFTER_PICTURE_MAX: Duration = Duration::from_millis(50);

/// Handshake, `connect` to the app, `play` the stream, then forward media
/// until the stream ends, the socket is shut down, or nothing arrives for
/// `spec.stall`.
fn read_loop(
    id: SourceId,
    sock: TcpStream,
    spec: &SourceSpec,
    events: &Sender<RelayEvent>,
    shared: &Shared,
    detached: &Sender<(OwnedFd, ChunkState)>,
) -> Ended {
    match set_up(id, sock, spec, events) {
        Ok(Some((sock, chunks))) => play(id, sock, chunks, spec, events, shared, detached),
        Ok(None) => Ended::Reason("the server ended the stream".into()),
        Err(e) => Ended::Reason(e),
    }
}

/// Go on with a carried session.
fn resume(
    id: SourceId,
    carry: SessionCarry,
    spec: &SourceSpec,
    events: &Sender<RelayEvent>,
    shared: &Shared,
    detached: &Sender<(OwnedFd, ChunkState)>,
) -> Ended {
    let fd = match crate::sys::fds::adopt_fd(carry.fd) {
        Ok(fd) => fd,
        Err(e) => {
            return Ended::Reason(format!(
                "cannot take over the carried session (descriptor {}): {e}",
                carry.fd
            ))
        }
    };
    let _ = crate::sys::fds::set_cloexec(fd.as_raw_fd(), true);
    crate::handover_timing::mark("a reader resumed");
    let sock = TcpStream::from(fd);
    if let Ok(c) = sock.try_clone() {
        *lock(&shared.stream) = Some(c);
    }
    if shared.stop.load(Ordering::SeqCst) {
        return Ended::Reason("stopped".into());
    }
    play(id, sock, carry.chunks, spec, events, shared, detached)
}

/// The RTMP handshake as a client; a parser holding the bytes read past
/// its end.
fn handshake(
    sock: &mut TcpStream,
    buf: &mut [u8],
    setup_deadline: Instant,
) -> Result<ChunkState, String> {
    let mut hs = Handshake::new(PeerType::Client);
    let p0p1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("RTMP handshake: {e:?}"))?;
    write_all(sock, &p0p1)?;
    let mut chunks = ChunkState::default();
    loop {
        let n = read_some(sock, buf, setup_deadline, "RTMP handshake")?;
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
                chunks.push(&remaining_bytes);
                return Ok(chunks);
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

/// The handshake and rml's connect/play, fed whole messages by our chunk
/// parser. Returns the socket and the parser once playing (None: the
/// stream ended during set-up).
fn set_up(
    id: SourceId,
    mut sock: TcpStream,
    spec: &SourceSpec,
    events: &Sender<RelayEvent>,
) -> Result<Option<(TcpStream, ChunkState)>, String> {
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    sock.set_write_timeout(Some(SETUP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];

    let mut chunks = handshake(&mut sock, &mut buf, setup_deadline)?;
    let (mut session, mut pending) = rtmp_session(spec)?;
    // rml parses what we hand it with this chunk size (nginx's own
    // set-chunk-size is applied by our parser, not passed on).
    let mut feed = Vec::new();
    chunks::encode(
        2,
        &Message {
            type_id: chunks::TYPE_SET_CHUNK_SIZE,
            stream_id: 0,
            timestamp: 0,
            data: bytes::Bytes::copy_from_slice(&FEED_CHUNK_SIZE.to_be_bytes()),
        },
        chunks::DEFAULT_CHUNK_SIZE,
        &mut feed,
    );
    pending.extend(session.handle_input(&feed).map_err(session_err)?);
    loop {
        let mut out = Vec::new();
        let mut playing = false;
        for r in pending.drain(..) {
            match r {
                ClientSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(ev) => match ev {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        if let ClientSessionResult::OutboundResponse(p) = session
                            // RTMP `play` names the stream by its key.
                            .request_playback(spec.stream.expose().to_string())
                            .map_err(session_err)?
                        {
                            out.extend_from_slice(&p.bytes)
                        }
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(format!("nginx refused the connect: {description}"));
                    }
                    ClientSessionEvent::PlaybackRequestAccepted => playing = true,
                    ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                        let sent =
                            forward(events, id, TAG_VIDEO, timestamp.value, data, Instant::now());
                        if !sent {
                            return Ok(None);
                        }
                    }
                    ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                        let sent =
                            forward(events, id, TAG_AUDIO, timestamp.value, data, Instant::now());
                        if !sent {
                            return Ok(None);
                        }
                    }
                    ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                        if ends_stream(&code) {
                            return Ok(None);
                        }
                        log::debug!("source {id}: RTMP status {code}");
                    }
                    _ => {}
                },
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        if !out.is_empty() {
            write_all(&mut sock, &out)?;
        }
        if playing {
            sock.set_write_timeout(Some(spec.stall))
                .map_err(|e| e.to_string())?;
            // From here on the parser's own acknowledgements count.
            chunks.acked = chunks.received;
            return Ok(Some((sock, chunks)));
        }
        match chunks.next_message().map_err(|e| format!("RTMP: {e}"))? {
            Some(m) if m.type_id == chunks::TYPE_SET_CHUNK_SIZE => {}
            Some(m) => {
                let mut feed = Vec::new();
                chunks::encode(3, &m, FEED_CHUNK_SIZE, &mut feed);
                pending.extend(session.handle_input(&feed).map_err(session_err)?);
            }
            None => {
                let n = read_some(&mut sock, &mut buf, setup_deadline, "RTMP connect/play")?;
                chunks.push(&buf[..n]);
            }
        }
    }
}

/// NetStream.Play.UnpublishNotify or Play.Stop: the publisher left.
fn ends_stream(code: &str) -> bool {
    code.contains("Unpublish") || code.contains("Play.Stop")
}

/// The status code of an `onStatus` command or data message, if it is one.
fn status_code(m: &Message) -> Option<String> {
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::rml_amf0::Amf0Value;
    let payload = MessagePayload {
        timestamp: rml_rtmp::time::RtmpTimestamp::new(m.timestamp),
        type_id: m.type_id,
        message_stream_id: m.stream_id,
        data: m.data.clone(),
    };
    let values = match payload.to_rtmp_message().ok()? {
        RtmpMessage::Amf0Command {
            command_name,
            additional_arguments,
            ..
        } if command_name == "onStatus" => additional_arguments,
        RtmpMessage::Amf0Data { values } => values,
        _ => return None,
    };
    values.into_iter().find_map(|v| match v {
        Amf0Value::Object(mut o) => match o.remove("code") {
            Some(Amf0Value::Utf8String(c)) => Some(c),
            _ => None,
        },
        _ => None,
    })
}

/// Playing: media to tags, pings answered, windows acknowledged, until
/// the stream ends, a stall, a stop, or a hand-over takes the session.
fn play(
    id: SourceId,
    mut sock: TcpStream,
    mut chunks: ChunkState,
    spec: &SourceSpec,
    events: &Sender<RelayEvent>,
    shared: &Shared,
    detached: &Sender<(OwnedFd, ChunkState)>,
) -> Ended {
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_media = Instant::now();
    let mut detach_asked: Option<Instant> = None;
    shared.playing.store(true, Ordering::SeqCst);
    loop {
        let mut picture_sent = false;
        loop {
            let m = match chunks.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Ended::Reason(format!("RTMP: {e}")),
            };
            let kind = match m.type_id {
                8 => TAG_AUDIO,
                9 => TAG_VIDEO,
                chunks::TYPE_USER_CONTROL => {
                    if let Some(pong) = chunks::answer_user_control(&m.data) {
                        if let Err(e) = write_all(&mut sock, &pong) {
                            return Ended::Reason(e);
                        }
                    }
                    continue;
                }
                18 | 20 => {
                    match status_code(&m) {
                        Some(code) if ends_stream(&code) => {
                            return Ended::Reason("the server ended the stream".into())
                        }
                        Some(code) => log::debug!("source {id}: RTMP status {code}"),
                        None => {}
                    }
                    continue;
                }
                _ => continue,
            };
            last_media = Instant::now();
            picture_sent |= kind == TAG_VIDEO;
            if !forward(events, id, kind, m.timestamp, m.data, last_media) {
                return Ended::Reason("the server ended the stream".into());
            }
        }
        if let Some(seq) = chunks.ack_due() {
            if let Err(e) = write_all(&mut sock, &chunks::ack(seq)) {
                return Ended::Reason(e);
            }
        }
        let let_go = if shared.detach.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst)
        {
            let asked = *detach_asked.get_or_insert_with(Instant::now);
            picture_sent || asked.elapsed() >= DETACH_AFTER_PICTURE_MAX
        } else {
            detach_asked = None;
            false
        };
        if let_go {
            // Whole messages are all sent on: what is left is a part of one.
            drop(lock(&shared.stream).take());
            return match detached.try_send((std::os::fd::OwnedFd::from(sock), chunks)) {
                Ok(()) => Ended::Detached,
                // The owner gave up waiting: the socket is closed (dropped).
                Err(_) => Ended::Reason("stopped".into()),
            };
        }
        let deadline = last_media + spec.stall;
        let poll = (Instant::now() + DETACH_POLL)
            .min(deadline)
            .min(detach_asked.map_or(deadline, |t| t + DETACH_AFTER_PICTURE_MAX));
        match read_some(&mut sock, &mut buf, poll, "media") {
            Ok(n) => chunks.push(&buf[..n]),
            Err(e) if e.starts_with("stalled") && Instant::now() < deadline => {}
            Err(e) if e.starts_with("stalled") => {
                return Ended::Reason(format!(
                    "stalled: no media for {:.1} s",
                    spec.stall.as_secs_f64()
                ))
            }
            Err(e) => return Ended::Reason(e),
        }
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
