// motherstream patch: this whole file is new (see PATCHES.md).
//
// Limits for a server whose clients may be hostile, and the table of open
// connections that enforces the connection cap. Every accepted socket is
// wrapped in a `Tracked`: one file descriptor shared by the read and write
// halves, a deadline that bounds every read, and an entry in the table that
// says whether the connection is still reading a request (and since when),
// so that at the cap the longest-reading one can be evicted.

use std::collections::HashMap;
use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// What one client may cost the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most. At the cap, a new connection evicts the
    /// connection that has been reading its request for the longest time;
    /// when every connection is waiting for its answer, the new one is closed.
    pub max_connections: usize,
    /// One deadline for the wait for a request, its head and its body, and
    /// another for writing its whole answer.
    pub request_timeout: Duration,
    /// How long a connection waits for the handler's answer to its request
    /// before it answers 503 itself and closes (plain HTTP: one request is
    /// in flight per connection, and the next is read only once the answer
    /// to the last one has been written).
    pub answer_timeout: Duration,
    /// Largest answer a handler may give (head and body); a larger one is
    /// replaced by a 500 and the connection closes. Answers are held in
    /// memory until the connection's thread has written them.
    pub max_answer_bytes: usize,
    /// Request line plus header lines, in bytes (431 beyond).
    pub max_head_bytes: usize,
    /// One line of the head (request line: 414, header line: 431).
    pub max_line_bytes: usize,
    /// Header lines at most (431 beyond).
    pub max_headers: usize,
    /// Bodies up to this size are read by the connection's own thread
    /// before the request is handed out, so a handler never blocks on a
    /// client's socket. A longer body is not read at all: the request has an
    /// empty body reader, `body_length()` tells its size, and the connection
    /// is closed after the answer.
    pub max_body: usize,
    /// After refusing a request whose bytes were not all read, keep reading
    /// (and discarding) for this long before closing, so the client sees the
    /// answer instead of a reset.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            request_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(10),
            max_answer_bytes: 8 * 1024 * 1024,
            max_head_bytes: 16 * 1024,
            max_line_bytes: 8 * 1024,
            max_headers: 100,
            max_body: 64 * 1024,
            linger: Duration::from_secs(2),
        }
    }
}

/// Counters the owner of a `Server` reads to tell whether it is alive.
#[derive(Debug, Default)]
pub struct Health {
    pub(crate) listener_alive: AtomicBool,
    pub(crate) accepted: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// motherstream patch: `Server::pause_accepting` asked the accept loop
    /// to stop taking connections (they wait in the kernel's queue), and
    /// the loop says it has.
    pub(crate) pause: AtomicBool,
    pub(crate) paused: AtomicBool,
}

/// A snapshot of the server's connection counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    pub open: usize,
    pub accepted: u64,
    pub evicted: u64,
    pub refused: u64,
}

struct Entry {
    conn: Weak<Tracked>,
    /// Since when the connection has been reading a request (None: its
    /// request has been handed out and it is not reading another yet).
    reading_since: Option<Instant>,
    // motherstream patch: since when it has been writing an answer (a
    // client that does not read keeps it there until the write deadline).
    writing_since: Option<Instant>,
    evicted: bool,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    live: HashMap<u64, Entry>,
}

/// The open connections of one server.
pub(crate) struct Connections {
    table: Mutex<Table>,
    max: usize,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            table: Mutex::new(Table::default()),
            max: max.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent (every
        // change is a single insert, remove or field store).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn open(&self) -> usize {
        self.lock().live.len()
    }

    /// Track a new connection. At the cap, evict the connection that has
    /// been reading its request, or writing its answer, the longest; `Err`
    /// (and the socket closes) when every open connection is waiting for a
    /// handler's answer.
    pub(crate) fn admit(
        self: &Arc<Self>,
        conn: Connection,
        health: &Health,
    ) -> Result<Arc<Tracked>, Connection> {
        let mut victim = None;
        let tracked = {
            let mut t = self.lock();
            let busy = t.live.values().filter(|e| !e.evicted).count();
            if busy >= self.max {
                let oldest = t
                    .live
                    .iter()
                    .filter(|(_, e)| !e.evicted)
                    .filter_map(|(id, e)| {
                        let reading = e.reading_since.map(|s| (s, *id, false));
                        reading.or(e.writing_since.map(|s| (s, *id, true)))
                    })
                    .min();
                match oldest {
                    Some((_, id, writing)) => {
                        if let Some(e) = t.live.get_mut(&id) {
                            e.evicted = true;
                            // Upgraded under the lock, dropped after it: the
                            // last strong reference removes its own entry.
                            victim = e.conn.upgrade().map(|c| (c, writing));
                        }
                    }
                    None => {
                        health.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(conn);
                    }
                }
            }
            let id = t.next_id;
            t.next_id += 1;
            let tracked = Arc::new(Tracked {
                conn,
                id,
                owner: self.clone(),
                deadline: Mutex::new(None),
                write_deadline: Mutex::new(None),
            });
            t.live.insert(
                id,
                Entry {
                    conn: Arc::downgrade(&tracked),
                    reading_since: Some(Instant::now()),
                    writing_since: None,
                    evicted: false,
                },
            );
            tracked
        };
        if let Some((v, writing)) = victim {
            health.evicted.fetch_add(1, Ordering::Relaxed);
            // A reader's blocked read returns end-of-file (nothing is being
            // written to it: one request is in flight at a time); a writer
            // stuck on a client that does not read gets EPIPE.
            let how = if writing {
                Shutdown::Both
            } else {
                Shutdown::Read
            };
            let _ = v.conn.shutdown(how);
        }
        Ok(tracked)
    }

    fn set_reading(&self, id: u64, since: Option<Instant>) {
        if let Some(e) = self.lock().live.get_mut(&id) {
            e.reading_since = since;
            e.writing_since = None;
        }
    }

    fn set_writing(&self, id: u64, since: Instant) {
        if let Some(e) = self.lock().live.get_mut(&id) {
            e.reading_since = None;
            e.writing_since = Some(since);
        }
    }
}

/// One accepted socket with its deadline and its entry in the table.
pub(crate) struct Tracked {
    conn: Connection,
    id: u64,
    owner: Arc<Connections>,
    deadline: Mutex<Option<Instant>>,
    // motherstream patch: writing an answer has its own deadline, so that a
    // client reading a byte at a time cannot stretch it either.
    write_deadline: Mutex<Option<Instant>>,
}

impl Tracked {
    fn deadline(&self) -> MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection starts reading a request: every read until it is
    /// handed out must finish within `timeout` from now, in total.
    pub(crate) fn start_reading(&self, timeout: Duration) {
        let now = Instant::now();
        *self.deadline() = Some(now + timeout);
        self.owner.set_reading(self.id, Some(now));
    }

    /// Writes from now on end `within` from now, in total (one answer).
    /// At the connection cap, a connection writing an answer may be
    /// evicted like one reading a request, the longest waiting first.
    pub(crate) fn write_for(&self, within: Duration) {
        let now = Instant::now();
        *self
            .write_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(now + within);
        self.owner.set_writing(self.id, now);
    }

    /// The request has been read and handed out.
    pub(crate) fn handed_out(&self) {
        self.owner.set_reading(self.id, None);
    }

    /// Reads from now on end `within` from now (lingering before a close).
    pub(crate) fn read_for(&self, within: Duration) {
        *self.deadline() = Some(Instant::now() + within);
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> IoResult<usize> {
        let deadline = *self.deadline();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            // SO_RCVTIMEO bounds one read; setting it to what is left of the
            // deadline bounds the sum of them (a client sending a byte a
            // second cannot stretch it).
            self.conn
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        match (&self.conn).read(buf) {
            // A blocking socket reports SO_RCVTIMEO as EAGAIN on Unix.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(timed_out()),
            r => r,
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> IoResult<usize> {
        let deadline = *self.write_deadline.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(write_timed_out());
            }
            self.conn
                .set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        match (&self.conn).write(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(write_timed_out()),
            r => r,
        }
    }

    pub(crate) fn flush(&self) -> IoResult<()> {
        (&self.conn).flush()
    }
}

fn timed_out() -> IoError {
    IoError::new(
        ErrorKind::TimedOut,
        "the client did not send its request in time",
    )
}

fn write_timed_out() -> IoError {
    IoError::new(
        ErrorKind::TimedOut,
        "the client did not read its answer in time",
    )
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.owner.lock().live.remove(&self.id);
    }
}

/// What the accept loop does after an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The connection failed before we took it (reset, aborted, signal):
    /// accept the next one at once.
    Next,
    /// Out of descriptors or memory: wait a little, then accept again (the
    /// pending connections stay in the listen backlog meanwhile).
    BackOff,
    /// The listening socket itself is unusable: the loop ends.
    Fatal,
}

pub(crate) fn classify_accept_error(e: &IoError) -> AcceptError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::BackOff,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT) => {
            AcceptError::Fatal
        }
        Some(_) => AcceptError::Next,
        None => AcceptError::BackOff,
    }
}

/// At most one warning a second for the same kind of event, with a count
/// of those not logged: a flood of connections must not flood the log.
pub(crate) struct Throttle {
    second: AtomicU64,
    count: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Throttle {
        Throttle {
            second: AtomicU64::new(u64::MAX),
            count: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line should be logged now, `n` = events since the
    /// last logged line (this one included).
    pub(crate) fn hit(&self, now_secs: u64) -> Option<u64> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.second.swap(now_secs, Ordering::Relaxed) != now_secs {
            self.count.store(0, Ordering::Relaxed);
            Some(n)
        } else {
            None
        }
    }
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn pair(l: &TcpListener) -> (TcpStream, Connection) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, Connection::from(s))
    }

    #[test]
    fn at_the_cap_the_longest_reading_connection_is_evicted() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let health = Health::default();
        let table = Connections::new(2);
        let (_c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let a = table.admit(s1, &health).ok().unwrap();
        let b = table.admit(s2, &health).ok().unwrap();
        b.handed_out();
        let _c = table.admit(s3, &health).ok().unwrap();
        assert_eq!(health.evicted.load(Ordering::Relaxed), 1);
        // `a` was reading: its reads now see end-of-file.
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 0);
        drop(a);
        assert_eq!(table.open(), 2);
    }

    // motherstream patch: a client that does not read its answer.
    #[test]
    fn at_the_cap_a_connection_stuck_writing_its_answer_is_evicted() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let health = Health::default();
        let table = Connections::new(2);
        let (_c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let a = table.admit(s1, &health).ok().unwrap();
        let b = table.admit(s2, &health).ok().unwrap();
        a.handed_out();
        b.handed_out();
        // `a` writes to a client that never reads; `b` waits for a handler.
        a.write_for(Duration::from_secs(10));
        let chunk = vec![0u8; 64 * 1024];
        let writer = {
            let a = a.clone();
            std::thread::spawn(move || loop {
                if let Err(e) = a.write(&chunk) {
                    return e.kind();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let _c = table.admit(s3, &health).ok().expect("the writer makes room");
        assert_eq!(health.evicted.load(Ordering::Relaxed), 1);
        // Its blocked write ends at once, long before its deadline.
        let kind = writer.join().unwrap();
        assert_ne!(kind, ErrorKind::TimedOut, "{kind:?}");
    }

    #[test]
    fn at_the_cap_with_every_connection_answered_a_new_one_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let health = Health::default();
        let table = Connections::new(1);
        let (_c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let a = table.admit(s1, &health).ok().unwrap();
        a.handed_out();
        assert!(table.admit(s2, &health).is_err());
        assert_eq!(health.refused.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(table.open(), 0);
    }

    #[test]
    fn the_deadline_bounds_all_reads_together() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let health = Health::default();
        let table = Connections::new(4);
        let (_c, s) = pair(&l);
        let t = table.admit(s, &health).ok().unwrap();
        t.start_reading(Duration::from_millis(50));
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let e = t.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(t.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    }

    // motherstream patch: a client that does not read its answer.
    #[test]
    fn the_write_deadline_bounds_all_writes_together() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let health = Health::default();
        let table = Connections::new(4);
        let (_c, s) = pair(&l);
        let t = table.admit(s, &health).ok().unwrap();
        t.write_for(Duration::from_millis(100));
        let start = Instant::now();
        let chunk = vec![0u8; 64 * 1024];
        let e = loop {
            match t.write(&chunk) {
                Ok(_) => assert!(start.elapsed() < Duration::from_secs(2), "never blocked"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        assert_eq!(t.write(&chunk).unwrap_err().kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn accept_errors_are_classified() {
        let e = |n| IoError::from_raw_os_error(n);
        assert_eq!(
            classify_accept_error(&e(libc::EMFILE)),
            AcceptError::BackOff
        );
        assert_eq!(
            classify_accept_error(&e(libc::ECONNABORTED)),
            AcceptError::Next
        );
        assert_eq!(classify_accept_error(&e(libc::EINVAL)), AcceptError::Fatal);
    }

    #[test]
    fn throttle_logs_once_a_second_with_a_count() {
        let t = Throttle::new();
        assert_eq!(t.hit(10), Some(1));
        assert_eq!(t.hit(10), None);
        assert_eq!(t.hit(10), None);
        assert_eq!(t.hit(11), Some(3));
    }
}
