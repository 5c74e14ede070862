// motherstream patch: this whole file is new (see PATCHES.md).
//
// The answer to a plain-HTTP request is not written by whoever calls
// `Request::respond`: it is serialized into memory and handed back to the
// connection's own thread, which writes it (within the write deadline) and
// only then reads the next request. A handler never blocks on a client that
// does not read, and no answer waits for another one written elsewhere.

use std::io::{Error as IoError, ErrorKind, Result as IoResult, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// What the connection's thread gets back for the request in flight.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The whole answer, head and body, as it goes on the wire.
    Bytes(Vec<u8>),
    /// The handler wrote more than `Limits::max_answer_bytes`.
    TooLarge,
}

/// The writer a request's answer is printed into.
pub(crate) struct AnswerWriter {
    buf: Vec<u8>,
    max: usize,
    too_large: bool,
    to_connection: SyncSender<Answer>,
}

impl AnswerWriter {
    /// A writer for one answer of at most `max` bytes, and where the
    /// connection's thread receives it (once the writer is dropped).
    pub(crate) fn new(max: usize) -> (AnswerWriter, Receiver<Answer>) {
        // One answer per request: the send never blocks.
        let (tx, rx) = sync_channel(1);
        let w = AnswerWriter {
            buf: Vec::new(),
            max,
            too_large: false,
            to_connection: tx,
        };
        (w, rx)
    }
}

impl Write for AnswerWriter {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if self.too_large || self.buf.len() + buf.len() > self.max {
            self.too_large = true;
            self.buf = Vec::new();
            return Err(IoError::new(ErrorKind::Other, "answer over the size limit"));
        }
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Drop for AnswerWriter {
    fn drop(&mut self) {
        let answer = if self.too_large {
            Answer::TooLarge
        } else {
            Answer::Bytes(std::mem::take(&mut self.buf))
        };
        // The connection may be gone (it stopped waiting, or the client
        // left): the answer has nowhere to go.
        let _ = self.to_connection.try_send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reaches_the_connection_when_the_writer_is_dropped() {
        let (mut w, rx) = AnswerWriter::new(16);
        w.write_all(b"HTTP/1.1 200").unwrap();
        assert!(rx.try_recv().is_err(), "nothing before the drop");
        drop(w);
        match rx.try_recv().unwrap() {
            Answer::Bytes(b) => assert_eq!(b, b"HTTP/1.1 200"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn an_answer_over_the_limit_is_refused_and_reported() {
        let (mut w, rx) = AnswerWriter::new(8);
        w.write_all(b"12345").unwrap();
        assert!(w.write_all(b"67890").is_err());
        assert!(w.write_all(b"1").is_err(), "stays refused");
        drop(w);
        assert!(matches!(rx.try_recv().unwrap(), Answer::TooLarge));
    }

    #[test]
    fn a_connection_that_stopped_waiting_does_not_block_the_writer() {
        let (w, rx) = AnswerWriter::new(8);
        drop(rx);
        drop(w);
    }
}
