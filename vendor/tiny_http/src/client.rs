use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use crate::common::{HTTPVersion, Header, Method};
use crate::limits::{Limits, Tracked};
use crate::util::{Answer, AnswerWriter, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // motherstream patch: the limits, the connection's deadline and entry in
    // the connection table, the bytes of the current head so far, and
    // whether bytes a client sent are still unread when the connection ends.
    limits: Arc<Limits>,
    tracked: Option<Arc<Tracked>>,
    head_bytes: usize,
    linger_on_close: bool,

    // motherstream patch: the request handed out and not answered yet
    // (plain HTTP only): the socket's writer for its answer, and where the
    // handler's answer arrives.
    in_flight: Option<InFlight>,
}

// motherstream patch: see `ClientConnection::serve`.
struct InFlight {
    writer: Box<dyn Write + Send + 'static>,
    answer: Receiver<Answer>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    // motherstream patch: head limits.
    /// the request line is longer than `Limits::max_line_bytes` (414)
    RequestLineTooLong,
    /// a header line, the head or the number of headers is over its limit (431)
    HeadTooLarge(HTTPVersion, &'static str),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
        tracked: Option<Arc<Tracked>>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            tracked,
            head_bytes: 0,
            linger_on_close: false,
            in_flight: None,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// motherstream patch: `Ok(None)` when the line, or the head so far, is
    /// over its limit (the rest of the line is left unread).
    fn read_next_line(&mut self) -> IoResult<Option<AsciiString>> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            if buf.len() >= self.limits.max_line_bytes
                || self.head_bytes >= self.limits.max_head_bytes
            {
                return Ok(None);
            }
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };
            self.head_bytes += 1;

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map(Some)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // motherstream patch: one deadline for the wait, the head and the body.
        self.head_bytes = 0;
        if let Some(t) = &self.tracked {
            t.start_reading(self.limits.request_timeout);
        }
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line()
                    .map_err(ReadError::ReadIoError)?
                    .ok_or(ReadError::RequestLineTooLong)?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self
                        .read_next_line()
                        .map_err(ReadError::ReadIoError)?
                        .ok_or_else(|| {
                            ReadError::HeadTooLarge(version.clone(), "request head too large")
                        })?;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= self.limits.max_headers {
                        return Err(ReadError::HeadTooLarge(version, "too many header lines"));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let mut request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            Some(self.limits.max_body),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // motherstream patch: over plain HTTP, the handler prints its answer
        // into memory and this connection's thread writes it (`serve`).
        if !self.secure {
            let (answer, arrives) = AnswerWriter::new(self.limits.max_answer_bytes);
            if let Some(writer) = request.answer_through(answer) {
                self.in_flight = Some(InFlight {
                    writer,
                    answer: arrives,
                });
            }
        }
        if let Some(t) = &self.tracked {
            t.handed_out();
        }
        if request.unread_body {
            self.no_more_requests = true;
            self.linger_on_close = true;
        }

        // return the request
        Ok(request)
    }

    // motherstream patch: refuse a request with a short JSON answer and end
    // the connection. When the client may still be sending, keep reading
    // for a while first, so that our close does not turn into a reset that
    // destroys the answer before the client reads it.
    fn refuse(&mut self, status: u16, version: HTTPVersion, why: &str, linger: bool) {
        let mut writer = self.sink.next().unwrap();
        if writer.write_all(&error_answer(status, version, why)).is_ok() {
            let _ = writer.flush();
        }
        drop(writer);
        if linger {
            self.linger();
        }
    }

    /// motherstream patch: serve a plain-HTTP connection with at most one
    /// request in flight. Each request is handed out, its answer awaited
    /// (at most `Limits::answer_timeout`, else 503 and close) and written
    /// here within `request_timeout`; only then is the next request read.
    /// A pipelining client therefore waits in its own socket buffers: it
    /// holds one request and one answer in memory, never a handler, and no
    /// answer ever waits for another answer written by some other thread.
    pub(crate) fn serve(mut self, mut hand_out: impl FnMut(Request)) {
        while let Some(rq) = self.next() {
            let Some(InFlight { mut writer, answer }) = self.in_flight.take() else {
                hand_out(rq);
                continue;
            };
            hand_out(rq);
            let bytes = match answer.recv_timeout(self.limits.answer_timeout) {
                Ok(Answer::Bytes(b)) => b,
                Ok(Answer::TooLarge) => {
                    self.no_more_requests = true;
                    error_answer(500, HTTPVersion(1, 1), "the answer is too large")
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.no_more_requests = true;
                    error_answer(503, HTTPVersion(1, 1), "no answer in time; try again")
                }
            };
            if let Some(t) = &self.tracked {
                t.write_for(self.limits.request_timeout);
            }
            let written = writer.write_all(&bytes).and_then(|()| writer.flush());
            drop(writer);
            if written.is_err() {
                return; // the client does not read: close
            }
        }
    }

    // motherstream patch: read and drop what the client still sends, for at
    // most `Limits::linger`, in a fixed buffer.
    fn linger(&mut self) {
        let until = Instant::now() + self.limits.linger;
        if let Some(t) = &self.tracked {
            t.read_for(self.limits.linger);
        }
        let mut scratch = [0u8; 16 * 1024];
        while Instant::now() < until {
            match self.next_header_source.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            // motherstream patch: the last request's body is still arriving.
            if std::mem::take(&mut self.linger_on_close) {
                self.linger();
            }
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    // we don't know where the next request would start, so we have to close
                    self.refuse(400, HTTPVersion(1, 1), "malformed request line", true);
                    return None;
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver, "malformed header line", true);
                    return None;
                }

                // motherstream patch: head limits.
                Err(ReadError::RequestLineTooLong) => {
                    self.refuse(414, HTTPVersion(1, 1), "request line too long", true);
                    return None;
                }

                Err(ReadError::HeadTooLarge(ver, why)) => {
                    self.refuse(431, ver, why, true);
                    return None;
                }

                // motherstream patch: a client that sent nothing of a request
                // in time (an idle keep-alive connection) is closed without an
                // answer; one that stalled in its head or body gets 408.
                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    if self.head_bytes > 0 {
                        self.refuse(
                            408,
                            HTTPVersion(1, 1),
                            "request not received in time",
                            false,
                        );
                    }
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, ver, "unsupported Expect header", true);
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                // motherstream patch: the request in flight is this one.
                match self.in_flight.take() {
                    Some(mut f) => {
                        if let Some(t) = &self.tracked {
                            t.write_for(self.limits.request_timeout);
                        }
                        let _ = response.raw_print(&mut f.writer, HTTPVersion(1, 1), &[], false, None);
                        let _ = f.writer.flush();
                    }
                    None => {
                        let writer = self.sink.next().unwrap();
                        response
                            .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                            .ok();
                    }
                }
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// motherstream patch: a short JSON error answer that ends the connection.
fn error_answer(status: u16, version: HTTPVersion, why: &str) -> Vec<u8> {
    use crate::{Response, StatusCode};
    let body = format!("{{\"error\":\"{}\"}}", why);
    let mut response = Response::from_string(body).with_status_code(StatusCode(status));
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        response.add_header(h);
    }
    if let Ok(h) = Header::from_bytes(&b"Connection"[..], &b"close"[..]) {
        response.add_header(h);
    }
    let mut out = Vec::new();
    // Printing into memory cannot fail.
    let _ = response.raw_print(&mut out, version, &[], false, None);
    out
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }

    // motherstream patch: one request in flight, answers written by the
    // connection's thread.
    use crate::{Limits, Response, Server};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn server(limits: Limits) -> (Server, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = Server::from_listener_with_limits(l, None, limits).unwrap();
        (server, TcpStream::connect(addr).unwrap())
    }

    fn read_until(c: &mut TcpStream, want: &str) -> String {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains(want) {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn a_pipelined_request_is_read_only_after_the_last_answer_was_written() {
        let (server, mut c) = server(Limits::default());
        c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = server.recv().unwrap();
        assert_eq!(first.url(), "/1");
        let early = server.recv_timeout(Duration::from_millis(200)).unwrap();
        assert!(early.is_none(), "the second request was handed out first");
        first.respond(Response::from_string("one")).unwrap();
        let second = server.recv_timeout(Duration::from_secs(5)).unwrap();
        let second = second.expect("the second request, once the first is answered");
        assert_eq!(second.url(), "/2");
        second.respond(Response::from_string("two")).unwrap();
        let got = read_until(&mut c, "two");
        let (one, two) = (got.find("one").unwrap(), got.find("two").unwrap());
        assert!(one < two, "{got}");
    }

    #[test]
    fn answering_never_waits_for_a_client_that_does_not_read() {
        let (server, mut c) = server(Limits::default());
        for _ in 0..2 {
            c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        let rq = server.recv().unwrap();
        let t = Instant::now();
        rq.respond(Response::from_data(vec![b'a'; 4 << 20])).unwrap();
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    }

    #[test]
    fn no_answer_in_time_gets_503_and_the_connection_closes() {
        let limits = Limits {
            answer_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let (server, mut c) = server(limits);
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let held = server.recv().unwrap();
        let got = read_until(&mut c, "no answer in time");
        assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap_or(0), 0, "closed after the 503");
        // A late answer goes nowhere, quietly.
        held.respond(Response::from_string("late")).unwrap();
    }
}
