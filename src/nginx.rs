//! nginx-rtmp's HTTP side: the control module (drop a publisher) and the
//! stat page (who is publishing). Parsing is pure; the HTTP calls use ureq
//! with bounded timeouts. Drops run on their own thread, so a slow or dead
//! nginx never holds up the engine (and with it every hook).

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::key::StreamKey;

/// Connect timeout for every call to nginx (loopback: a live nginx answers
/// in microseconds; a dead one refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Whole-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);
/// Largest stat page read (a few KiB per stream).
const MAX_STAT_BYTES: u64 = 16 << 20;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirects(0)
        .build()
}

/// The control URL that drops the publisher of `app/key`. Both are
/// `[A-Za-z0-9_-]` (a key by construction, the app checked by the config),
/// so they need no escaping.
pub(crate) fn drop_publisher_url(control_url: &str, app: &str, key: &StreamKey) -> String {
    format!(
        "{}/drop/publisher?app={app}&name={}",
        control_url.trim_end_matches('/'),
        // An nginx control call names the stream by its key.
        key.expose()
    )
}

/// `http://unix:/path/to.sock:/location` (nginx's own notation, as in
/// `proxy_pass`): nginx's stat and control served on a unix socket that
/// only motherstream may open, instead of a TCP port every local user (and
/// a DNS-rebinding page) can reach.
pub(crate) const UNIX_URL_PREFIX: &str = "http://unix:";

/// Ask nginx to disconnect the publisher of `app/name`; the number of
/// clients it dropped (nginx answers "1", or "0" when nobody publishes it).
pub(crate) fn drop_publisher(control_url: &str, app: &str, key: &StreamKey) -> Result<u32, String> {
    let url = drop_publisher_url(control_url, app, key);
    let body = get(&url, 4096)?;
    body.trim()
        .parse()
        .map_err(|_| format!("unexpected answer {:?}", truncate(&body, 60)))
}

/// Start or stop recorder `rec` of `app/key` (`/control/record/start|stop`).
/// All three are `[A-Za-z0-9_-]` (a key by construction, the others
/// checked by the config), so they need no escaping.
pub(crate) fn record_url(
    control_url: &str,
    start: bool,
    app: &str,
    key: &StreamKey,
    rec: &str,
) -> String {
    format!(
        "{}/record/{}?app={app}&name={}&rec={rec}",
        control_url.trim_end_matches('/'),
        if start { "start" } else { "stop" },
        // An nginx control call names the stream by its key.
        key.expose()
    )
}

/// Ask nginx to start (or stop) a recording. nginx answers 200 with the
/// file's path, or 204 with an empty body when there is nothing to do (the
/// stream is not published, or the recorder already runs / is stopped):
/// `Ok(None)`. An unknown recorder is HTTP 500: an error.
pub(crate) fn record(
    control_url: &str,
    start: bool,
    app: &str,
    key: &StreamKey,
    rec: &str,
) -> Result<Option<String>, String> {
    let body = get(&record_url(control_url, start, app, key, rec), 4096)?;
    let path = body.trim();
    Ok((!path.is_empty()).then(|| path.to_string()))
}

/// The stream keys publishing in `app` (the ingest app), from the stat
/// page at `stat_url`. A name that is not a valid key was never queued.
pub fn published(stat_url: &str, app: &str) -> Result<Vec<StreamKey>, String> {
    let names = parse_stat(&get(stat_url, MAX_STAT_BYTES)?, app)?;
    Ok(names
        .iter()
        .filter_map(|n| StreamKey::parse(n).ok())
        .collect())
}

/// GET `url` (TCP or unix socket); the body of a 2xx answer, at most
/// `max` bytes.
fn get(url: &str, max: u64) -> Result<String, String> {
    use std::io::Read;
    if let Some(rest) = url.strip_prefix(UNIX_URL_PREFIX) {
        let (sock, path) = rest.split_once(":/").ok_or_else(|| {
            "a unix socket URL is http://unix:/path/to.sock:/location".to_string()
        })?;
        return unix_get(std::path::Path::new(sock), &format!("/{path}"), max);
    }
    let resp = agent().get(url).call().map_err(describe)?;
    let mut text = String::new();
    resp.into_reader()
        .take(max)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(text)
}

/// A blocking HTTP/1.0 GET over a unix socket (ureq 2 has none). nginx
/// answers an HTTP/1.0 request without chunking and closes the connection,
/// so the body is everything after the head. Every read and write is bounded
/// by the timeouts, the whole exchange by REQUEST_TIMEOUT.
fn unix_get(sock: &std::path::Path, path: &str, max: u64) -> Result<String, String> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .map_err(|e| format!("cannot connect to {}: {e}", sock.display()))?;
    s.set_write_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|()| s.set_read_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("cannot set socket timeouts: {e}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let limit = max + 16 * 1024;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = REQUEST_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!("no complete answer within {REQUEST_TIMEOUT:?}"));
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| format!("cannot set socket timeouts: {e}"))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() as u64 > limit {
                    return Err(format!("answer larger than {max} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
    parse_http_answer(&raw)
}

/// Status line + headers + body of a whole HTTP/1.x answer → the body of a
/// 2xx, else an error naming the status.
fn parse_http_answer(raw: &[u8]) -> Result<String, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no complete HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status: u16 = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", truncate(&head, 60)))?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    Ok(String::from_utf8_lossy(&raw[end + 4..]).into_owned())
}

/// The error without its URL: a drop URL holds the stream key.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => {
            let mut m = t.kind().to_string();
            if let Some(msg) = t.message() {
                m.push_str(": ");
                m.push_str(msg);
            }
            if let Some(src) = std::error::Error::source(&t) {
                m.push_str(": ");
                m.push_str(&src.to_string());
            }
            m
        }
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The stream names with a publisher in application `app` of nginx-rtmp's
/// `rtmp_stat` XML (`rtmp/server/application[name]/live/stream[publishing]`).
pub(crate) fn parse_stat(xml: &str, app: &str) -> Result<Vec<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("bad stat XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "rtmp" {
        return Err(format!(
            "bad stat XML: root element <{}>, not <rtmp>",
            root.tag_name().name()
        ));
    }
    let child_text = |n: roxmltree::Node, tag: &str| {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .map(str::trim)
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for server in root.children().filter(|n| n.has_tag_name("server")) {
        for a in server.children().filter(|n| n.has_tag_name("application")) {
            if child_text(a, "name").as_deref() != Some(app) {
                continue;
            }
            for live in a.children().filter(|n| n.has_tag_name("live")) {
                for st in live.children().filter(|n| n.has_tag_name("stream")) {
                    let publishing = st.children().any(|c| c.has_tag_name("publishing"));
                    if let (true, Some(name)) = (publishing, child_text(st, "name")) {
                        if !out.contains(&name) {
                            out.push(name);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A publisher to disconnect. `who` is its public name, for the log.
struct DropJob {
    app: String,
    key: StreamKey,
    who: String,
}

/// The thread that disconnects publishers through the control module.
pub(crate) struct Control {
    tx: Option<Sender<DropJob>>,
    join: Option<JoinHandle<()>>,
}

impl Control {
    /// Start the thread. An empty `control_url` is allowed: drops are then
    /// logged as impossible (once), and the queue still moves on.
    pub(crate) fn spawn(control_url: String) -> std::io::Result<Control> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let join = std::thread::Builder::new()
            .name("nginx-control".into())
            .spawn(move || control_thread(&control_url, &rx))?;
        Ok(Control {
            tx: Some(tx),
            join: Some(join),
        })
    }

    /// Queue a drop; never blocks.
    pub(crate) fn drop_publisher(&self, app: &str, key: &StreamKey, who: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(DropJob {
                app: app.into(),
                key: key.clone(),
                who: who.into(),
            });
        }
    }

    /// Finish the queued drops (each bounded by the timeouts) and join.
    pub(crate) fn shutdown(mut self) {
        self.tx.take();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn control_thread(control_url: &str, rx: &Receiver<DropJob>) {
    // Log reachability once per change, not once per drop.
    let mut reachable: Option<bool> = None;
    while let Ok(job) = rx.recv() {
        if control_url.is_empty() {
            if reachable.is_none() {
                log::warn!(
                    "cannot disconnect {}: [rtmp] control_url is not set; they are off the queue but may still be publishing",
                    job.who
                );
                reachable = Some(false);
            }
            continue;
        }
        let t0 = std::time::Instant::now();
        match drop_publisher(control_url, &job.app, &job.key) {
            Ok(n) => {
                if reachable == Some(false) {
                    log::info!("nginx control module at {control_url} is reachable again");
                }
                reachable = Some(true);
                log::info!(
                    "disconnected {} through nginx ({n} publisher{} dropped in {:.1} ms)",
                    job.who,
                    if n == 1 { "" } else { "s" },
                    t0.elapsed().as_secs_f64() * 1000.0
                );
            }
            Err(e) => {
                if reachable != Some(false) {
                    log::error!(
                        "cannot disconnect {} through the nginx control module at {control_url}: {e}; they are off the queue anyway",
                        job.who
                    );
                } else {
                    log::debug!(
                        "nginx control still failing ({e}); {} not disconnected",
                        job.who
                    );
                }
                reachable = Some(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::k;

    const STAT: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<?xml-stylesheet type="text/xsl" href="stat.xsl" ?>
<rtmp><nginx_version>1.22.1</nginx_version><nginx_rtmp_version>1.1.4</nginx_rtmp_version>
<server><application><name>live</name><live>
<stream><name>key1</name><time>5000</time><bw_in>0</bw_in>
<client><id>3</id><address>127.0.0.1</address><flashver>FMLE/3.0</flashver><publishing/><active/></client>
<client><id>9</id><address>127.0.0.1</address><flashver>LNX 9,0,124,2</flashver><active/></client>
<meta><video><width>160</width></video></meta><nclients>2</nclients><publishing/><active/></stream>
<stream><name>idle</name><time>10</time><client><id>12</id><flashver>LNX</flashver></client><nclients>1</nclients></stream>
<stream><name>key2</name><client><id>4</id><publishing/></client><publishing/><active/></stream>
<nclients>3</nclients></live></application>
<application><name>motherstream</name><live>
<stream><name>live</name><client><id>7</id><publishing/></client><publishing/></stream>
</live></application></server></rtmp>"#;

    #[test]
    fn stat_lists_publishing_streams_of_one_app() {
        assert_eq!(parse_stat(STAT, "live").unwrap(), ["key1", "key2"]);
        assert_eq!(parse_stat(STAT, "motherstream").unwrap(), ["live"]);
        assert!(parse_stat(STAT, "nope").unwrap().is_empty());
    }

    #[test]
    fn bad_stat_pages_are_errors() {
        assert!(parse_stat("<html>oops</html>", "live").is_err());
        assert!(parse_stat("not xml", "live").is_err());
        assert!(parse_stat("", "live").is_err());
    }

    #[test]
    fn drop_url_shape() {
        assert_eq!(
            drop_publisher_url("http://127.0.0.1:8080/control/", "live", &k("k-1")),
            "http://127.0.0.1:8080/control/drop/publisher?app=live&name=k-1"
        );
    }

    #[test]
    fn record_url_shape() {
        assert_eq!(
            record_url(
                "http://unix:/run/x.sock:/control/",
                true,
                "live",
                &k("k1"),
                "rec"
            ),
            "http://unix:/run/x.sock:/control/record/start?app=live&name=k1&rec=rec"
        );
        assert_eq!(
            record_url(
                "http://127.0.0.1:8080/control",
                false,
                "live",
                &k("k1"),
                "r-2"
            ),
            "http://127.0.0.1:8080/control/record/stop?app=live&name=k1&rec=r-2"
        );
    }

    #[test]
    fn http_answers_over_a_socket() {
        assert_eq!(
            parse_http_answer(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n1").unwrap(),
            "1"
        );
        assert_eq!(parse_http_answer(b"HTTP/1.1 204 No\r\n\r\n").unwrap(), "");
        assert_eq!(
            parse_http_answer(b"HTTP/1.1 403 Forbidden\r\n\r\nno").unwrap_err(),
            "HTTP 403"
        );
        assert!(parse_http_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_http_answer(b"SSH-2.0\r\n\r\n").is_err());
    }

    /// A fake nginx on a unix socket: the request it gets, the answer it
    /// gives; and a socket that accepts but never answers.
    #[test]
    fn unix_socket_get_and_its_timeout() {
        use std::io::{Read, Write};
        let d = crate::scratch::ScratchDir::new("nginxunix");
        let sock = d.0.join("control.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 256];
            let n = c.read(&mut req).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
                .unwrap();
            drop(c);
            let req = String::from_utf8_lossy(&req[..n]).into_owned();
            // Second connection: accept and say nothing.
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(500));
            drop(c);
            req
        });
        let url = format!("http://unix:{}:/control", sock.display());
        assert_eq!(drop_publisher(&url, "live", &k("k1")).unwrap(), 1);
        let t0 = std::time::Instant::now();
        let e = drop_publisher(&url, "live", &k("k1")).unwrap_err();
        assert!(
            t0.elapsed() < REQUEST_TIMEOUT + Duration::from_millis(500),
            "{e}"
        );
        let req = server.join().unwrap();
        assert!(
            req.starts_with("GET /control/drop/publisher?app=live&name=k1 HTTP/1.0\r\n"),
            "{req}"
        );
        let e = published(
            &format!("http://unix:{}/nope.sock:/stat", d.0.display()),
            "live",
        )
        .unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }

    #[test]
    fn unreachable_nginx_is_an_error_within_the_timeout() {
        // A port that was free a moment ago: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let t0 = std::time::Instant::now();
        let e = drop_publisher(
            &format!("http://127.0.0.1:{port}/control"),
            "live",
            &k("secretkey"),
        )
        .unwrap_err();
        assert!(
            !e.contains("secretkey"),
            "the key leaks into the error: {e}"
        );
        assert!(e.contains("refused"), "{e}");
        assert!(published(&format!("http://127.0.0.1:{port}/stat"), "live").is_err());
        assert!(t0.elapsed() < REQUEST_TIMEOUT * 2);
    }
}
