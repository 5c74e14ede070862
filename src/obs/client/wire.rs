//! The bytes between OBS and the websocket: the reader thread that takes
//! them off the socket, and the [`Inbox`] tungstenite reads them from.
//!
//! Both are built so that a hand-over can take the connection over at a
//! moment where nothing of it lives in this process but in plain bytes:
//! * the reader thread waits in `poll` on the socket and a wake-up
//!   eventfd, so it can be stopped and joined without a read in progress
//!   (a blocking `read` cannot be interrupted without shutting the socket
//!   down); whatever it read, it forwarded before it ends;
//! * the inbox hands tungstenite whole messages only (every frame of a
//!   fragmented one), so once `read` says `WouldBlock` tungstenite holds no
//!   partial frame or message: what is left is in `Inbox::rest`;
//! * during the handshake the inbox reads the socket up to the end of the
//!   HTTP answer and no further (it peeks first), so tungstenite keeps
//!   nothing past it either.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

/// Bytes read from OBS, or the end of the stream.
pub(super) enum Chunk {
    Bytes(Vec<u8>),
    /// EOF (None) or a read error.
    End(Option<io::Error>),
}

/// The websocket's stream: reads come from the reader thread's chunks,
/// writes go to the socket. During the handshake (`direct`) reads go to
/// the socket, up to the end of the HTTP answer.
pub(super) struct Inbox {
    pub(super) stream: TcpStream,
    pub(super) direct: bool,
    /// The last bytes of the HTTP answer read so far (up to 3: its end,
    /// `\r\n\r\n`, may come in two reads).
    head_tail: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    /// `buf[pos..whole]`: whole messages not yet read by tungstenite.
    whole: usize,
    pub(super) end: Option<Option<io::Error>>,
}

impl Inbox {
    /// `pending`: bytes received before (a hand-over's).
    pub(super) fn new(stream: TcpStream, direct: bool, pending: Vec<u8>) -> Inbox {
        let whole = whole_messages_len(&pending);
        Inbox {
            stream,
            direct,
            head_tail: Vec::new(),
            buf: pending,
            pos: 0,
            whole,
            end: None,
        }
    }

    pub(super) fn push(&mut self, chunk: Chunk) {
        match chunk {
            Chunk::Bytes(b) => {
                self.buf.drain(..self.pos);
                self.whole -= self.pos;
                self.pos = 0;
                self.buf.extend_from_slice(&b);
                self.whole += whole_messages_len(&self.buf[self.whole..]);
            }
            Chunk::End(e) => self.end = Some(e),
        }
    }

    /// A read of the HTTP answer that stops at its end (the websocket's
    /// first frames stay in the socket for the reader thread).
    fn read_head(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut peek = vec![0u8; out.len().min(4096)];
        let n = self.stream.peek(&mut peek)?;
        let mut seen = self.head_tail.clone();
        seen.extend_from_slice(&peek[..n]);
        let take = seen
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(n, |i| i + 4 - self.head_tail.len());
        let got = (&self.stream).read(&mut out[..take])?;
        self.head_tail.extend_from_slice(&out[..got]);
        let keep = self.head_tail.len().saturating_sub(3);
        self.head_tail.drain(..keep);
        Ok(got)
    }

    /// Bytes received that tungstenite has not read: the start of a
    /// message still incomplete (after `read` said `WouldBlock`).
    pub(super) fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

impl Read for Inbox {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.direct {
            return self.read_head(out);
        }
        if self.pos < self.whole {
            let n = out.len().min(self.whole - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        match &self.end {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(None) => Ok(0),
            Some(Some(e)) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl Write for Inbox {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        (&self.stream).write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&self.stream).flush()
    }
}

/// How many bytes at the start of `b` (frames from a server: unmasked, but
/// a mask is allowed for) make whole messages: every data frame up to one
/// with FIN, control frames between messages (a control frame inside a
/// fragmented message waits with it).
pub(super) fn whole_messages_len(b: &[u8]) -> usize {
    let (mut at, mut whole, mut in_message) = (0usize, 0usize, false);
    while let Some(len) = frame_len(&b[at..]) {
        let (fin, opcode) = (b[at] & 0x80 != 0, b[at] & 0x0f);
        at += len;
        if opcode & 0x08 != 0 {
            if !in_message {
                whole = at;
            }
        } else {
            in_message = !fin;
            if fin {
                whole = at;
            }
        }
    }
    whole
}

/// The length of the frame at the start of `b`, if it is all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    let b1 = *b.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (payload, head) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    let total = usize::try_from(payload)
        .ok()?
        .checked_add(head + if masked { 4 } else { 0 })?;
    (b.len() >= total).then_some(total)
}

/// The reader thread of one connection.
pub(super) struct Reader {
    wake: OwnedFd,
    join: Option<JoinHandle<()>>,
}

impl Reader {
    /// A thread forwarding what `stream` (a clone of the websocket's
    /// socket) receives.
    pub(super) fn spawn(stream: TcpStream) -> io::Result<(Reader, Receiver<Chunk>)> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC)?;
        let theirs = wake.try_clone()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let join = std::thread::Builder::new()
            .name("obs-reader".into())
            .spawn(move || read_socket(stream, &theirs, &tx))?;
        Ok((
            Reader {
                wake,
                join: Some(join),
            },
            rx,
        ))
    }

    /// Stop the thread and wait for it: what it read is in the channel,
    /// the rest still in the socket.
    pub(super) fn stop(mut self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Reader {
    /// A connection dropped without `stop` still ends its reader (which
    /// holds a clone of the socket).
    fn drop(&mut self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// Bytes from the socket into the channel, until EOF, an error, nobody
/// listens any more, or the wake-up.
fn read_socket(mut stream: TcpStream, wake: &OwnedFd, tx: &Sender<Chunk>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (readable, woken) = {
            let mut fds = [
                PollFd::new(&stream, PollFlags::IN),
                PollFd::new(wake, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => (!fds[0].revents().is_empty(), !fds[1].revents().is_empty()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    let _ = tx.send(Chunk::End(Some(e.into())));
                    return;
                }
            }
        };
        if woken {
            return;
        }
        if !readable {
            continue;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Chunk::End(None));
                return;
            }
            Ok(n) => {
                if tx.send(Chunk::Bytes(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Chunk::End(Some(e)));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload {
            0..=125 => f.push(payload as u8),
            126..=65535 => {
                f.push(126);
                f.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                f.push(127);
                f.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        f.extend(std::iter::repeat_n(b'x', payload));
        f
    }

    /// Only whole messages go to tungstenite: a frame cut anywhere, or a
    /// fragmented message without its last frame, waits.
    #[test]
    fn whole_messages_only() {
        let text = frame(true, 1, 10);
        let big = frame(true, 1, 300);
        let huge = frame(true, 1, 70_000);
        let ping = frame(true, 9, 4);
        let mut all = Vec::new();
        for f in [&text, &big, &huge, &ping] {
            all.extend_from_slice(f);
        }
        assert_eq!(whole_messages_len(&all), all.len());
        for cut in 0..text.len() + big.len() + 12 {
            let want = if cut >= text.len() + big.len() {
                text.len() + big.len()
            } else if cut >= text.len() {
                text.len()
            } else {
                0
            };
            assert_eq!(whole_messages_len(&all[..cut]), want, "cut at {cut}");
        }
        // A fragmented message with a ping inside: nothing until its end.
        let mut frag = frame(false, 1, 5);
        frag.extend(frame(true, 9, 1));
        frag.extend(frame(false, 0, 5));
        assert_eq!(whole_messages_len(&frag), 0);
        frag.extend(frame(true, 0, 5));
        assert_eq!(whole_messages_len(&frag), frag.len());
        // A masked frame (not from a server, still framed right).
        let masked = [0x81, 0x82, 1, 2, 3, 4, b'h', b'i'];
        assert_eq!(whole_messages_len(&masked), 8);
        assert_eq!(whole_messages_len(&masked[..7]), 0);
    }

    /// The inbox gives whole messages and keeps the start of the next.
    #[test]
    fn the_inbox_keeps_the_rest() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let a = frame(true, 1, 3);
        let b = frame(true, 1, 200);
        let mut inbox = Inbox::new(s, false, b[..5].to_vec());
        let mut out = [0u8; 4096];
        assert!(inbox.read(&mut out).is_err(), "nothing whole yet");
        let mut more = b[5..].to_vec();
        more.extend_from_slice(&a[..2]);
        inbox.push(Chunk::Bytes(more));
        let n = inbox.read(&mut out).unwrap();
        assert_eq!(&out[..n], &b[..]);
        assert_eq!(inbox.rest(), &a[..2]);
        assert!(inbox.read(&mut out).is_err());
    }

    /// The handshake's reads end with the HTTP answer, even when the
    /// first frame came in the same segment and the end of the answer is
    /// split across reads.
    #[test]
    fn the_handshake_reads_nothing_past_the_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let hello = frame(true, 1, 20);
        let mut inbox = Inbox::new(s.try_clone().unwrap(), true, Vec::new());
        let split = head.len() - 2;
        peer.write_all(&head[..split]).unwrap();
        let mut got = Vec::new();
        let mut out = [0u8; 4096];
        while got.len() < split {
            let n = inbox.read(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
        }
        let mut rest = head[split..].to_vec();
        rest.extend_from_slice(&hello);
        peer.write_all(&rest).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = inbox.read(&mut out).unwrap();
        got.extend_from_slice(&out[..n]);
        assert_eq!(got, head, "the whole answer and nothing more");
        let mut after = vec![0u8; hello.len()];
        (&s).read_exact(&mut after).unwrap();
        assert_eq!(after, hello, "the frame stayed in the socket");
    }

    /// A stopped reader forwarded what it read; the rest waits in the
    /// socket for whoever reads next.
    #[test]
    fn a_stopped_reader_loses_nothing() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let (reader, rx) = Reader::spawn(s.try_clone().unwrap()).unwrap();
        peer.write_all(b"first").unwrap();
        let got = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(matches!(got, Chunk::Bytes(b) if b == b"first"));
        reader.stop();
        peer.write_all(b"second").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "the stopped reader took nothing");
        let mut buf = [0u8; 16];
        let n = (&s).read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second");
    }
}
