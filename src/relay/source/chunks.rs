//! The incoming side of an RTMP session, as a state that can be written
//! down: the chunk-stream parser (RTMP 1.0 §5.3) of the source readers.
//!
//! Why our own and not `rml_rtmp`'s `ChunkDeserializer`: a hand-over to a
//! new binary carries each reader's live session across `execve` (the
//! socket stays open), and the new image must go on parsing mid-stream:
//! the negotiated chunk size, each chunk stream's previous header and the
//! part of a message received so far. rml keeps those private. Here they
//! are plain data ([`ChunkState`]), serialized into the hand-over state.
//! Every byte after the handshake goes through this parser (rml only sees
//! whole messages, re-chunked, while the session is set up), so the state
//! is always ours: there is no switch of parser at the hand-over.
//!
//! Timestamps follow `rml_rtmp` (and ffmpeg): a type-3 chunk that starts a
//! new message adds the previous header's timestamp field again.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The chunk size before the peer sets one.
pub(crate) const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size accepted (nginx-rtmp's max is 10 MB by default; the
/// spec allows 2^31 - 1). Bounds what one chunk can make us buffer.
pub(crate) const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Largest message (RTMP's length field is 24 bits).
const MAX_MESSAGE: u32 = (1 << 24) - 1;
/// At most this many chunk streams at once (nginx uses a handful).
const MAX_CHUNK_STREAMS: usize = 64;
const EXTENDED: u32 = 0x00ff_ffff;

pub(crate) const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub(crate) const TYPE_ABORT: u8 = 2;
pub(crate) const TYPE_ACK: u8 = 3;
pub(crate) const TYPE_USER_CONTROL: u8 = 4;
pub(crate) const TYPE_WINDOW_ACK_SIZE: u8 = 5;

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) type_id: u8,
    pub(crate) stream_id: u32,
    pub(crate) timestamp: u32,
    pub(crate) data: Bytes,
}

/// The previous header of one chunk stream, and the message it is in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamState {
    pub(crate) timestamp: u32,
    /// The last header's timestamp field (absolute for type 0, a delta
    /// otherwise; the extended value when it was 0xffffff).
    pub(crate) field: u32,
    pub(crate) extended: bool,
    pub(crate) length: u32,
    pub(crate) type_id: u8,
    pub(crate) stream_id: u32,
    /// Bytes of the current message received so far (empty: between
    /// messages).
    #[serde(with = "b64")]
    pub(crate) partial: Vec<u8>,
}

/// Everything needed to go on parsing a peer's chunks mid-stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkState {
    pub(crate) chunk_size: u32,
    pub(crate) streams: BTreeMap<u32, StreamState>,
    /// Bytes read from the socket and not yet parsed (an incomplete chunk)
    /// from `start` on.
    #[serde(with = "b64")]
    pub(crate) unparsed: Vec<u8>,
    /// Parsed bytes at the head of `unparsed`, dropped once no whole
    /// message is left (one move per read, not one per message). Always 0
    /// after `next_message` returned None, which is when the state is
    /// written down.
    #[serde(skip)]
    start: usize,
    /// Bytes received so far (the handshake included), for acknowledgements.
    pub(crate) received: u64,
    /// The peer's acknowledgement window (0: none asked for).
    pub(crate) window: u32,
    /// `received` when the last acknowledgement was sent.
    pub(crate) acked: u64,
}

impl Default for ChunkState {
    fn default() -> ChunkState {
        ChunkState {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: BTreeMap::new(),
            unparsed: Vec::new(),
            start: 0,
            received: 0,
            window: 0,
            acked: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// A type 1-3 chunk on a chunk stream that has no previous header.
    NoPreviousHeader {
        csid: u32,
    },
    BadChunkSize(u32),
    TooManyStreams,
    /// A type-0/1 header changed the length in the middle of a message.
    LengthChanged {
        csid: u32,
    },
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::NoPreviousHeader { csid } => {
                write!(f, "chunk on stream {csid} with no previous header")
            }
            ChunkError::BadChunkSize(n) => write!(f, "unusable chunk size {n}"),
            ChunkError::TooManyStreams => {
                write!(f, "more than {MAX_CHUNK_STREAMS} chunk streams")
            }
            ChunkError::LengthChanged { csid } => {
                write!(
                    f,
                    "message length changed mid-message on chunk stream {csid}"
                )
            }
        }
    }
}

impl ChunkState {
    /// Bytes as read from the socket.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.unparsed.extend_from_slice(bytes);
        self.received += bytes.len() as u64;
    }

    /// Whether no message is half received (nothing unparsed, no partial
    /// message): the state is then the chunk size and the headers only.
    #[cfg(test)]
    pub(crate) fn at_boundary(&self) -> bool {
        self.unparsed.len() == self.start && self.streams.values().all(|s| s.partial.is_empty())
    }

    /// The next whole message, if the bytes pushed hold one. Protocol
    /// control messages (chunk size, abort, window) are applied here and
    /// returned too.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        let mut at = 0;
        let mut out = None;
        while out.is_none() {
            match self.chunk(at)? {
                None => break,
                Some((used, msg)) => {
                    at += used;
                    out = msg;
                }
            }
        }
        self.start += at;
        match &out {
            Some(m) => self.control(m)?,
            None => {
                self.unparsed.drain(..self.start);
                self.start = 0;
            }
        }
        Ok(out)
    }

    /// The sequence number to acknowledge, when a window's worth of bytes
    /// came in since the last acknowledgement.
    pub(crate) fn ack_due(&mut self) -> Option<u32> {
        if self.window == 0 || self.received - self.acked < u64::from(self.window) {
            return None;
        }
        self.acked = self.received;
        // The sequence number is the byte count, modulo 2^32.
        Some(self.received as u32)
    }

    fn control(&mut self, m: &Message) -> Result<(), ChunkError> {
        let be32 = |d: &[u8]| {
            d.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match m.type_id {
            TYPE_SET_CHUNK_SIZE => {
                if let Some(n) = be32(&m.data) {
                    let n = n & 0x7fff_ffff;
                    if n == 0 || n > MAX_CHUNK_SIZE {
                        return Err(ChunkError::BadChunkSize(n));
                    }
                    self.chunk_size = n;
                }
            }
            TYPE_ABORT => {
                if let Some(csid) = be32(&m.data) {
                    if let Some(s) = self.streams.get_mut(&csid) {
                        s.partial.clear();
                    }
                }
            }
            TYPE_WINDOW_ACK_SIZE => {
                if let Some(n) = be32(&m.data) {
                    self.window = n;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Parse one chunk at `unparsed[at..]`: None when incomplete, else the
    /// bytes it took and the message it completed, if any. The state only
    /// changes when the whole chunk is there.
    fn chunk(&mut self, at: usize) -> Result<Option<(usize, Option<Message>)>, ChunkError> {
        let b = &self.unparsed[self.start + at..];
        let Some(&b0) = b.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut i) = match b0 & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + 256 * u32::from(y), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = b.get(i..i + header_len) else {
            return Ok(None);
        };
        i += header_len;
        let be24 = |x: &[u8]| u32::from(x[0]) << 16 | u32::from(x[1]) << 8 | u32::from(x[2]);
        if fmt != 0 && !self.streams.contains_key(&csid) {
            return Err(ChunkError::NoPreviousHeader { csid });
        }
        if fmt == 0 && !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS
        {
            return Err(ChunkError::TooManyStreams);
        }
        let (prev_extended, prev_length, partial_len) = self
            .streams
            .get(&csid)
            .map_or((false, 0, 0), |p| (p.extended, p.length, p.partial.len()));
        let new_message = partial_len == 0;
        let field = if fmt < 3 { Some(be24(h)) } else { None };
        let extended = match field {
            Some(f) => f == EXTENDED,
            // A type-3 chunk repeats the extended field when its header had one.
            None => prev_extended,
        };
        let ext = if extended {
            let Some(x) = b.get(i..i + 4) else {
                return Ok(None);
            };
            i += 4;
            Some(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
        } else {
            None
        };
        let length = if fmt <= 1 {
            be24(&h[3..6])
        } else {
            prev_length
        };
        if fmt <= 1 && !new_message && length != prev_length {
            return Err(ChunkError::LengthChanged { csid });
        }
        let want = (length.min(MAX_MESSAGE) as usize).saturating_sub(partial_len);
        let take = want.min(self.chunk_size as usize);
        let Some(body) = b.get(i..i + take) else {
            return Ok(None);
        };
        i += take;
        // The whole chunk is there: apply it.
        let s = self.streams.entry(csid).or_default();
        if fmt <= 1 {
            s.length = length;
            s.type_id = h[6];
        }
        if fmt == 0 {
            s.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        if let Some(f) = field {
            let value = ext.unwrap_or(f);
            s.timestamp = if fmt == 0 {
                value
            } else {
                s.timestamp.wrapping_add(value)
            };
            s.field = value;
            s.extended = extended;
        } else if new_message {
            s.timestamp = s.timestamp.wrapping_add(s.field);
        }
        s.partial.extend_from_slice(body);
        let msg = if take == want {
            Some(Message {
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: s.timestamp,
                data: Bytes::from(std::mem::take(&mut s.partial)),
            })
        } else {
            None
        };
        Ok(Some((i, msg)))
    }
}

/// One message as chunks of `chunk_size` on `csid`, every header type 0
/// (type 3 for continuations): what the reader sends (acknowledgements,
/// pongs) and how whole messages are handed to rml during set-up.
pub(crate) fn encode(csid: u8, m: &Message, chunk_size: u32, out: &mut Vec<u8>) {
    let csid = csid.clamp(2, 63);
    let ext = m.timestamp >= EXTENDED;
    let field = if ext { EXTENDED } else { m.timestamp };
    let len = m.data.len() as u32;
    out.push(csid);
    out.extend_from_slice(&field.to_be_bytes()[1..]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(m.type_id);
    out.extend_from_slice(&m.stream_id.to_le_bytes());
    if ext {
        out.extend_from_slice(&m.timestamp.to_be_bytes());
    }
    let size = chunk_size.max(1) as usize;
    for (n, part) in m.data.chunks(size).enumerate() {
        if n > 0 {
            out.push(0xc0 | csid);
            if ext {
                out.extend_from_slice(&m.timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(part);
    }
}

/// An acknowledgement (protocol control, chunk stream 2).
pub(crate) fn ack(sequence: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let m = Message {
        type_id: TYPE_ACK,
        stream_id: 0,
        timestamp: 0,
        data: Bytes::copy_from_slice(&sequence.to_be_bytes()),
    };
    encode(2, &m, DEFAULT_CHUNK_SIZE, &mut v);
    v
}

/// The answer to a user-control message, if it wants one: a ping request
/// (event 6) gets a ping response (event 7) with the same timestamp.
pub(crate) fn answer_user_control(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 6 || u16::from_be_bytes([data[0], data[1]]) != 6 {
        return None;
    }
    let mut body = vec![0, 7];
    body.extend_from_slice(&data[2..6]);
    let m = Message {
        type_id: TYPE_USER_CONTROL,
        stream_id: 0,
        timestamp: 0,
        data: Bytes::from(body),
    };
    let mut v = Vec::new();
    encode(2, &m, DEFAULT_CHUNK_SIZE, &mut v);
    Some(v)
}

/// Bytes as base64 in the JSON state (a keyframe in flight is ~100 kB).
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
