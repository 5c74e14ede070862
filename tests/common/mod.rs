//! Test harness shared by the integration tests and the bench: a private
//! nginx-rtmp, ffmpeg lavfi publishers, an ffprobe of the output, the real
//! motherstream binary, and a raw HTTP/1.0 client that speaks exactly like
//! nginx-rtmp's notify module.
//!
//! Rules kept everywhere here: loopback only, free ports, every wait bounded
//! in time, every process we start is stopped by its own PID (or its own
//! process group, whose id is that PID), never by name.
pub mod activated;
pub mod chromium;
pub mod long_gop_cuts;
pub mod obs;
pub mod obs_cut;
pub mod on_air;
pub mod prober;
pub mod viewer;
pub mod webhook;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use serde_json::Value;

// ---------------------------------------------------------------- turns

/// All integration tests are one binary (`tests/it`) run two at a time
/// (`--test-threads=2`), so tests of different files pair up. A test whose
/// assertions depend on the machine's spare CPU (cut gaps, stalls,
/// watchdog pings, hand-over timing, hook latency under load) or that
/// runs a CPU hog (OBS, chromium) takes the heavy turn for its whole run,
/// and runs alone; every other test takes a light turn, and two light
/// tests run side by side. (Waiting heavy turns go first: std's `RwLock`
/// prefers writers.) OBS tests also serialise across processes (see
/// `obs::Obs`).
static TURNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Wait until no other test runs, and keep it so until the guard is
/// dropped. A test that panicked while holding a turn blocks no other.
pub fn heavy_turn() -> std::sync::RwLockWriteGuard<'static, ()> {
    TURNS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wait until no heavy test runs; light tests share.
pub fn light_turn() -> std::sync::RwLockReadGuard<'static, ()> {
    TURNS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------- basics

/// A free TCP port on 127.0.0.1 (bind port 0, read it back, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory under `std::env::temp_dir()`, removed (recursively) on Drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "motherstream-{tag}-{}-{n}-{nanos:x}",
                std::process::id()
            ));
            if fs::create_dir(&path).is_ok() {
                return TempDir { path };
            }
        }
        panic!("cannot create a temp dir under {:?}", std::env::temp_dir());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MS_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Poll `f` every `every` until it returns Some or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid we spawned ourselves; no memory involved.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Signal a whole process group (its id is the PID of the leader we spawned).
pub fn signal_group(pgid: u32, sig: libc::c_int) -> bool {
    // SAFETY: as above, with a negative pid = that process group.
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) == 0 }
}

/// Whether a process exists and is not a zombie (reads /proc, so it also
/// works for processes that are not our children, e.g. the daemon's relay).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" that closes comm
            let state = s
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Wait for a child to exit within `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    wait_for(timeout, Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    })
}

/// Last `n` lines of a text file (for failure reports).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------- nginx

/// A private nginx-rtmp: `nginx -p DIR -c DIR/nginx.conf`, `daemon off`,
/// one worker, RTMP and HTTP (/stat, /control) on free loopback ports, hooks
/// pointing at `http://127.0.0.1:<hook_port>`.
pub struct Nginx {
    pub rtmp_port: u16,
    pub http_port: u16,
    /// The secret path segment of the hook URLs this nginx calls
    /// (`/hook/<secret>/on_publish`); give it to the daemon
    /// (`DaemonOpts::hook_secret`).
    pub hook_secret: String,
    child: Child,
    dir: TempDir,
}

#[derive(Default, Clone)]
pub struct NginxOpts {
    /// Add `on_update` (every `notify_update_timeout`) to app live.
    pub on_update: bool,
    /// Extra directives for app live.
    pub live_extra: String,
    /// A manual recorder `motherstream` in app live writing into this
    /// directory, and the on_record_done hook (`[recording]` tests).
    pub record_dir: Option<PathBuf>,
}

impl Nginx {
    pub fn start(hook_port: u16) -> Nginx {
        Nginx::start_with(hook_port, &NginxOpts::default())
    }

    pub fn start_with(hook_port: u16, opts: &NginxOpts) -> Nginx {
        let dir = TempDir::new("nginx");
        for d in ["logs", "run", "tmp"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir nginx dir");
        }
        let hook_secret = random_hex(16);
        let mut last_err = String::new();
        // A port picked by free_port() can be taken by someone else before
        // nginx binds it: retry with new ports a few times.
        for _attempt in 0..3 {
            let rtmp_port = free_port();
            let http_port = free_port();
            let hooks = format!("http://127.0.0.1:{hook_port}/hook/{hook_secret}");
            let conf = nginx_conf(dir.path(), rtmp_port, http_port, &hooks, opts);
            fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
            let _ = fs::remove_file(dir.join("run/nginx.pid"));
            let p = dir.path();
            let mut child = Command::new("nginx")
                .arg("-p")
                .arg(p)
                .arg("-c")
                .arg(p.join("nginx.conf"))
                .arg("-e")
                .arg(p.join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    fs::File::create(p.join("logs/stderr.log")).expect("nginx stderr file"),
                ))
                .process_group(0)
                .spawn()
                .expect("spawn nginx (apt-get install nginx libnginx-mod-rtmp)");
            // Ready = the HTTP port accepts. The listening sockets are all
            // opened by the master before it forks the worker, so the RTMP
            // port is bound as well; a bare connect to RTMP would fire
            // on_connect, so we do not probe it.
            let ready = wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
                if let Ok(Some(st)) = child.try_wait() {
                    return Some(Err(st));
                }
                TcpStream::connect_timeout(
                    &format!("127.0.0.1:{http_port}").parse().expect("addr"),
                    Duration::from_millis(200),
                )
                .ok()
                .map(|_| Ok(()))
            });
            match ready {
                Some(Ok(())) => {
                    return Nginx {
                        rtmp_port,
                        http_port,
                        hook_secret,
                        child,
                        dir,
                    }
                }
                Some(Err(st)) => {
                    last_err = format!(
                        "nginx exited {st}: {}\n{}",
                        tail(&p.join("logs/error.log"), 20),
                        tail(&p.join("logs/stderr.log"), 20)
                    );
                }
                None => {
                    signal_group(child.id(), libc::SIGKILL);
                    let _ = wait_child(&mut child, Duration::from_secs(5));
                    last_err = format!(
                        "nginx not serving after 10 s: {}",
                        tail(&p.join("logs/error.log"), 20)
                    );
                }
            }
        }
        panic!("cannot start nginx: {last_err}");
    }

    pub fn rtmp_url(&self, app: &str, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{stream}", self.rtmp_port)
    }

    pub fn error_log(&self) -> PathBuf {
        self.dir.join("logs/error.log")
    }

    /// GET an nginx HTTP path (`/stat`, `/control/...`).
    /// The nginx client id of the output's publisher (from /stat): a
    /// change means the output was republished (OBS would reconnect).
    pub fn output_client(&self) -> Option<String> {
        let xml = self.http_get("/stat").body;
        let i = xml.find("<name>motherstream</name>")?;
        let app = &xml[i..];
        let app = &app[..app.find("</application>").unwrap_or(app.len())];
        for client in app.split("<client>").skip(1) {
            if client.contains("<publishing/>") {
                let a = client.find("<id>")? + 4;
                let b = client[a..].find("</id>")? + a;
                return Some(client[a..b].to_string());
            }
        }
        None
    }

    pub fn http_get(&self, path: &str) -> Resp {
        http(self.http_port, "GET", path, &[], b"")
    }

    /// Names of the streams currently published in `app`, from /stat.
    pub fn published(&self, app: &str) -> Vec<String> {
        let xml = self.http_get("/stat").body;
        let mut out = Vec::new();
        let Some(start) = xml.find(&format!("<name>{app}</name>")) else {
            return out;
        };
        let section = &xml[start..];
        let section = &section[..section.find("</application>").unwrap_or(section.len())];
        for stream in section.split("<stream>").skip(1) {
            let name = between(stream, "<name>", "</name>").unwrap_or_default();
            if stream.contains("<publishing/>") {
                out.push(name.to_string());
            }
        }
        out
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(&s[i..j])
}

/// `bytes` random bytes from the kernel, hex (test secrets).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `h` is the hook URL base, e.g. `http://127.0.0.1:PORT/hook/SECRET`.
fn nginx_conf(dir: &Path, rtmp_port: u16, http_port: u16, h: &str, opts: &NginxOpts) -> String {
    let d = dir.display();
    let hooks = format!(
        "on_publish {h}/on_publish;\n      on_publish_done {h}/on_publish_done;\n      \
         on_done {h}/on_done;\n      on_play {h}/on_play;\n      on_play_done {h}/on_play_done;"
    );
    let record = match &opts.record_dir {
        Some(dir) => format!(
            "recorder motherstream {{ record all manual; record_path {}; record_unique on; }}\n      \
             on_record_done {h}/on_record_done;",
            dir.display()
        ),
        None => String::new(),
    };
    let update = if opts.on_update {
        format!("on_update {h}/on_update;\n      notify_update_timeout 5s;")
    } else {
        String::new()
    };
    format!(
        r#"load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
pid {d}/run/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 1024; }}
rtmp {{
  server {{
    listen 127.0.0.1:{rtmp_port};
    notify_method post;
    on_connect {h}/on_connect;
    application live {{
      live on;
      idle_streams off;
      {hooks}
      {update}
      {record}
      {live_extra}
    }}
    application motherstream {{
      live on;
      {hooks}
    }}
    application other {{
      live on;
      {hooks}
    }}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{http_port};
    location /stat {{ rtmp_stat all; }}
    location /control {{ rtmp_control all; }}
  }}
}}
"#,
        live_extra = opts.live_extra
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nginx error.log (tail) ----\n{}",
                tail(&self.error_log(), 40)
            );
        }
        // SIGTERM = fast shutdown of master and worker; then make sure the
        // whole group (master + worker) is gone.
        signal(self.child.id(), libc::SIGTERM);
        if wait_child(&mut self.child, Duration::from_secs(5)).is_none() {
            signal_group(self.child.id(), libc::SIGKILL);
            let _ = wait_child(&mut self.child, Duration::from_secs(5));
        }
        signal_group(self.child.id(), libc::SIGKILL);
    }
}

// ---------------------------------------------------------------- ffmpeg publisher

/// An ffmpeg lavfi test publisher (testsrc2 + sine, x264 ultrafast, GOP 1 s
/// at 15 fps). Its picture size tells who is on air at the output.
pub struct Publisher {
    child: Child,
    dir: TempDir,
}

impl Publisher {
    pub fn start(rtmp_port: u16, key: &str, size: (u32, u32)) -> Publisher {
        Publisher::start_url(&format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}"), size)
    }

    pub fn start_url(url: &str, size: (u32, u32)) -> Publisher {
        Publisher::start_args(url, size, 15, 15)
    }

    fn remember_url_key(url: &str) {
        if let Some(key) = url.rsplit('/').next() {
            remember_key(key.split('?').next().unwrap_or(key));
        }
    }

    /// `fps` frames per second with a keyframe every `gop` frames.
    pub fn start_args(url: &str, size: (u32, u32), fps: u32, gop: u32) -> Publisher {
        Publisher::start_full(url, size, fps, gop, 44_100, 1)
    }

    /// As `start_args`, with the audio's sample rate and channel count.
    pub fn start_full(
        url: &str,
        size: (u32, u32),
        fps: u32,
        gop: u32,
        rate: u32,
        channels: u32,
    ) -> Publisher {
        Publisher::remember_url_key(url);
        let dir = TempDir::new("pub");
        let log = fs::File::create(dir.join("ffmpeg.log")).expect("publisher log");
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(format!("testsrc2=size={}x{}:rate={fps}", size.0, size.1))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:sample_rate={rate}"))
            .args(["-ac"])
            .arg(channels.to_string())
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
            ])
            .arg(gop.to_string())
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ffmpeg (apt-get install ffmpeg)");
        Publisher { child, dir }
    }

    /// ffmpeg with x264's own defaults (no `-g`: a keyframe every 250
    /// frames, 3 B-frames with pyramid and composition offsets), preset
    /// veryfast as OBS's simple output uses.
    pub fn start_x264_defaults(
        url: &str,
        size: (u32, u32),
        fps: u32,
        rate: u32,
        channels: u32,
    ) -> Publisher {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={}x{}:rate={fps}", size.0, size.1))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:sample_rate={rate}"))
            .arg("-ac")
            .arg(channels.to_string())
            .args(["-c:v", "libx264", "-preset", "veryfast"])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
            .arg(url);
        Publisher::spawn_logged(url, cmd)
    }

    /// A GStreamer publisher: `videotestsrc ! x264enc ! flvmux !
    /// rtmp2sink`, x264enc with B-frames and a keyframe every 250 frames
    /// (x264's default; x264enc's own "0 = auto" gave ~10 s here), AAC
    /// from libav.
    pub fn start_gstreamer(url: &str, size: (u32, u32), fps: u32, rate: u32) -> Publisher {
        let pipeline = format!(
            "flvmux name=m streamable=true ! rtmp2sink location={url} \
             videotestsrc is-live=true pattern=ball ! \
             video/x-raw,width={w},height={h},framerate={fps}/1 ! \
             x264enc speed-preset=veryfast bframes=2 key-int-max=250 ! h264parse ! queue ! m. \
             audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! \
             audio/x-raw,rate={rate},channels=2 ! avenc_aac ! aacparse ! queue ! m.",
            w = size.0,
            h = size.1
        );
        let mut cmd = Command::new("gst-launch-1.0");
        // -e: on SIGINT, end the stream (EOS) and close the connection.
        cmd.args(["-q", "-e"]).args(pipeline.split_whitespace());
        Publisher::spawn_logged(url, cmd)
    }

    /// Any publisher command (its key noted for [`GuestNames`], stderr to
    /// its log, killed when dropped).
    pub fn spawn_logged(url: &str, mut cmd: Command) -> Publisher {
        Publisher::remember_url_key(url);
        let dir = TempDir::new("pub");
        let log = fs::File::create(dir.join("ffmpeg.log")).expect("publisher log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (see tests/stages/encoders.deps)"));
        Publisher { child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// SIGINT (ffmpeg finishes the stream cleanly), SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        signal(self.child.id(), libc::SIGINT);
        if let Some(st) = wait_child(&mut self.child, Duration::from_secs(3)) {
            return Some(st);
        }
        let _ = self.child.kill();
        wait_child(&mut self.child, Duration::from_secs(3))
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("ffmpeg.log")).unwrap_or_default()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, Duration::from_secs(3));
    }
}

/// Picture size of the video at `url` (ffprobe), or None when nothing
/// could be read within `timeout` (the probe is killed hard then).
pub fn probe_size(url: &str, timeout: Duration) -> Option<(u32, u32)> {
    let dir = TempDir::new("probe");
    let out_path = dir.join("out.txt");
    let rw_us = timeout.as_micros().max(100_000).to_string();
    let mut child = Command::new("ffprobe")
        .args(["-hide_banner", "-v", "error", "-rw_timeout", &rw_us])
        .args(["-fpsprobesize", "0", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(fs::File::create(&out_path).expect("probe out")))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ffprobe");
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = wait_child(&mut child, Duration::from_secs(3));
        return None;
    }
    let text = fs::read_to_string(&out_path).ok()?;
    let line = text.lines().find(|l| l.contains('x'))?;
    let (w, h) = line.trim().trim_end_matches('x').split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// Probe `url` until it shows `size` (each probe ≤ 5 s), within `timeout`.
/// Returns the last size seen on failure, for the assertion message.
pub fn wait_size(url: &str, size: (u32, u32), timeout: Duration) -> Result<(), Option<(u32, u32)>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = probe_size(
            url,
            left.min(Duration::from_secs(5))
                .max(Duration::from_millis(500)),
        );
        if got == Some(size) {
            return Ok(());
        }
        if got.is_some() {
            last = got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

// ---------------------------------------------------------------- raw HTTP

#[derive(Debug, Clone)]
pub struct Resp {
    /// 0 when the server closed without a parsable answer.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of a request shaped like nginx-rtmp's notify requests:
/// `HTTP/1.0`, `Host: 127.0.0.1` (no port), form content type,
/// `Connection: Close`, `Content-Length` — in that order. Extra headers go
/// before Content-Length.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    let has_ct = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if method == "POST" && !has_ct {
        r.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    r.push_str("Connection: Close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a new TCP connection; the answer as (status, headers, body).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    http_to(&format!("127.0.0.1:{port}"), method, path, headers, body)
}

/// Like [`http`] but to any host (used for the non-loopback admin test).
pub fn http_to(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let raw = exchange(
        &mut s,
        &request_bytes(method, path, headers, body),
        Duration::from_secs(10),
        false,
    )
    .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"));
    parse_resp(&raw)
}

pub fn get(port: u16, path: &str) -> Resp {
    http(port, "GET", path, &[], b"")
}

pub fn post(port: u16, path: &str, body: &str) -> Resp {
    http(port, "POST", path, &[], body.as_bytes())
}

/// Send `bytes` on a new connection and read until the server closes (or
/// has sent a complete answer with Content-Length), within `timeout`.
pub fn send_raw(port: u16, bytes: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    exchange(&mut s, bytes, timeout, true)
}

fn exchange(
    s: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
    half_close: bool,
) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    // A server may answer (413, 400) and close before reading all we send:
    // a write error is not fatal, the answer may still be readable.
    let write_err = s.write_all(bytes).err();
    // nginx does not half-close; a raw sender may, so that a server waiting
    // for more bytes sees the end at once.
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if Instant::now() >= deadline {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if complete(&buf) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if buf.is_empty() {
                    return Err(write_err.unwrap_or(e));
                }
                break;
            }
        }
    }
    Ok(buf)
}

/// Whether `buf` holds a full response according to its Content-Length.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    matches!(len, Some(n) if buf.len() >= end + 4 + n)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn parse_resp(raw: &[u8]) -> Resp {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return Resp {
            status: 0,
            headers: vec![],
            body: String::from_utf8_lossy(raw).into_owned(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let len = find_len(&headers);
    if let Some(n) = len {
        body.truncate(n);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn find_len(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
}

// ---------------------------------------------------------------- hook bodies
// Shaped like the captures in tests/fixtures/nginx-rtmp/full-cycle-post.jsonl.

const FMLE: &str = "FMLE/3.0%20(compatible%3B%20Lavf59.27";
const LNX: &str = "LNX%209,0,124,2";

fn common_fields(app: &str, flashver: &str, rtmp_port: u16) -> String {
    format!("app={app}&flashver={flashver}&swfurl=&tcurl=rtmp://127.0.0.1:{rtmp_port}/{app}&pageurl=&addr=127.0.0.1")
}

pub fn connect_body(app: &str, rtmp_port: u16) -> String {
    format!(
        "{}&epoch=1812394&call=connect",
        common_fields(app, FMLE, rtmp_port)
    )
}

/// The guest names of one install, computed here, independently of the
/// daemon: `guest-` and the first 8 hex digits of HMAC-SHA256 of the key
/// under the install's `tag.secret`.
///
/// Tests speak of streamers by the keys they published; public output
/// shows guest names. [`GuestNames::text`] gives back, in a name or a
/// message, the key of each guest name that stands for a key this test
/// process published (raw hooks or ffmpeg), so tests written when keys
/// were public names read as they did. The raw answers never hold a key:
/// tests/it/public_names.rs checks them.
#[derive(Debug, Clone)]
pub struct GuestNames {
    state_dir: PathBuf,
}

impl GuestNames {
    /// The guest names of the install whose state directory is `dir`.
    pub fn in_dir(dir: &Path) -> GuestNames {
        GuestNames {
            state_dir: dir.to_path_buf(),
        }
    }

    fn secret(&self) -> Option<Vec<u8>> {
        let text = fs::read_to_string(self.state_dir.join("tag.secret")).ok()?;
        Some(text.trim().as_bytes().to_vec())
    }

    fn guest_with(secret: &[u8], key: &str) -> String {
        use hmac::Mac;
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(key.as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("guest-{}", &hex[..8])
    }

    pub fn guest(&self, key: &str) -> String {
        let secret = self.secret().expect("the daemon has made tag.secret");
        GuestNames::guest_with(&secret, key)
    }

    /// Guest name → key, for every key this process published.
    pub fn map(&self) -> std::collections::HashMap<String, String> {
        let Some(secret) = self.secret() else {
            return Default::default();
        };
        keys_seen()
            .into_iter()
            .map(|k| (GuestNames::guest_with(&secret, &k), k))
            .collect()
    }

    /// `s` with a known guest name replaced by its key: the whole string
    /// (a name), or with `within`, every occurrence in it (a message).
    fn replace(s: String, map: &std::collections::HashMap<String, String>, within: bool) -> String {
        if let Some(k) = map.get(&s) {
            return k.clone();
        }
        if !within || !s.contains("guest") {
            return s;
        }
        // Chat messages escape Markdown: `guest\-1a2b3c4d`.
        map.iter().fold(s, |s, (g, k)| {
            s.replace(g.as_str(), k).replace(&g.replace('-', "\\-"), k)
        })
    }

    /// Every string in `v` that is a known guest name, as its key.
    pub fn json(&self, v: Value) -> Value {
        self.walk(v, false)
    }

    /// Every known guest name in every string of `v` (names inside chat
    /// messages too), as its key.
    pub fn json_within(&self, v: Value) -> Value {
        self.walk(v, true)
    }

    fn walk(&self, v: Value, within: bool) -> Value {
        fn walk(v: Value, g: &std::collections::HashMap<String, String>, w: bool) -> Value {
            match v {
                Value::String(s) => Value::String(GuestNames::replace(s, g, w)),
                Value::Array(a) => Value::Array(a.into_iter().map(|x| walk(x, g, w)).collect()),
                Value::Object(o) => {
                    Value::Object(o.into_iter().map(|(k, x)| (k, walk(x, g, w))).collect())
                }
                other => other,
            }
        }
        walk(v, &self.map(), within)
    }
}

/// Stream keys this test process has published, for [`GuestNames`].
fn keys_seen() -> Vec<String> {
    KEYS_SEEN
        .lock()
        .map(|k| k.iter().cloned().collect())
        .unwrap_or_default()
}

static KEYS_SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Note a stream key the test publishes with (see [`GuestNames`]). The
/// set is the process's: every test of the binary adds to it.
pub fn remember_key(key: &str) {
    if let Ok(mut k) = KEYS_SEEN.lock() {
        k.insert(key.to_string());
    }
}

/// A publisher's on_publish; `args` are the publisher's raw `?args`
/// ("" for none), appended as nginx does.
pub fn publish_body(app: &str, name: &str, clientid: u64, args: &str) -> String {
    remember_key(name);
    let mut b = format!(
        "{}&clientid={clientid}&call=publish&name={name}&type=live",
        common_fields(app, FMLE, 1935)
    );
    if !args.is_empty() {
        b.push('&');
        b.push_str(args);
    }
    b
}

pub fn publish_done_body(app: &str, name: &str, clientid: u64) -> String {
    format!(
        "{}&clientid={clientid}&call=publish_done&name={name}",
        common_fields(app, FMLE, 1935)
    )
}

/// on_done as a player sends it (after play_done).
pub fn player_done_body(app: &str, name: &str, clientid: u64) -> String {
    format!(
        "{}&clientid={clientid}&call=done&name={name}",
        common_fields(app, LNX, 1935)
    )
}

pub fn play_body(app: &str, name: &str, clientid: u64) -> String {
    format!(
        "{}&clientid={clientid}&call=play&name={name}&start=4294965296&duration=0&reset=0",
        common_fields(app, LNX, 1935)
    )
}

pub fn play_done_body(app: &str, name: &str, clientid: u64) -> String {
    format!(
        "{}&clientid={clientid}&call=play_done&name={name}",
        common_fields(app, LNX, 1935)
    )
}

// ---------------------------------------------------------------- daemon

/// Environment variables the daemon reads that must not leak in from the
/// test runner's environment.
const DAEMON_ENV: &[&str] = &[
    "HOST",
    "RTMP_PORT",
    "OBS_HOST",
    "OBS_PORT",
    "OBS_PASSWORD",
    "STATE_DIRECTORY",
    "LOGS_DIRECTORY",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
];

pub struct DaemonOpts {
    /// `[http] listen` address.
    pub listen: String,
    pub rtmp_port: u16,
    pub nginx_http_port: u16,
    /// Extra TOML, deep-merged over the generated config (tables merge,
    /// values replace).
    pub extra_toml: String,
    /// Path of the binary (default: the one cargo built for this test).
    pub bin: PathBuf,
    /// Hook secret written to `<state>/hook.secret` before the first start
    /// (the one the test's nginx uses, `Nginx::hook_secret`). None: the
    /// daemon creates its own.
    pub hook_secret: Option<String>,
}

/// The real motherstream binary with a generated config and a private
/// state dir; stderr goes to `<dir>/daemon.log`.
pub struct Daemon {
    pub port: u16,
    pub listen: String,
    /// The admin token and hook secret in effect (read from the daemon's
    /// files after each start, as the CLI does).
    pub admin_token: String,
    pub hook_secret: String,
    child: Option<Child>,
    bin: PathBuf,
    dir: TempDir,
    /// How long the last start took from spawn to the first 200 of /healthz.
    pub last_start: Duration,
    starts: u32,
}

pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_motherstream"))
}

/// Environment variable naming the release build of the daemon (the binary
/// the .deb packages; `tests/run-all.sh` builds it first and sets it).
pub const RELEASE_BIN: &str = "MOTHERSTREAM_RELEASE_BIN";

/// The release build, for tests whose bounds are timing figures of the
/// daemon the operator runs: the debug build is several times slower per
/// tag (a queue change's turn measured 38-98 ms there) and its figures are
/// not the product's. `None` outside CI when it is not built, with a loud
/// note on the terminal that `test`'s timing bounds are not checked; under
/// `CI` a missing release build fails the test.
pub fn release_build(test: &str) -> Option<PathBuf> {
    match std::env::var_os(RELEASE_BIN) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{RELEASE_BIN}={} is not a file", p.display());
            Some(p)
        }
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{RELEASE_BIN} is not set: CI must run {test} against the release build (tests/run-all.sh builds it)"
            );
            // Straight to the terminal: libtest captures only print!s.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** {test}: {RELEASE_BIN} not set: its timing bounds are NOT checked; \
                 running on the debug build with functional bounds (cargo build --release; \
                 {RELEASE_BIN}=target/release/motherstream) ***\n"
            );
            None
        }
    }
}

/// Recursively merge `extra` into `base` (tables merge, values replace).
pub fn merge_toml(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge_toml(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Daemon {
    pub fn start(opts: DaemonOpts) -> Daemon {
        let dir = TempDir::new("daemon");
        fs::create_dir_all(dir.join("state")).expect("mkdir state");
        let base = format!(
            r#"
[http]
listen = "{listen}"
[rtmp]
host = "127.0.0.1"
port = {rtmp}
control_url = "http://127.0.0.1:{nh}/control"
stat_url = "http://127.0.0.1:{nh}/stat"
[relay]
ffmpeg = "ffmpeg"
log_file = "{d}/ffmpeg.log"
[state]
dir = "{d}/state"
[log]
level = "debug"
target = "stderr"
"#,
            listen = opts.listen,
            rtmp = opts.rtmp_port,
            nh = opts.nginx_http_port,
            d = dir.path().display()
        );
        let mut table: toml::Table = base.parse().expect("generated TOML");
        let extra: toml::Table = opts
            .extra_toml
            .parse()
            .unwrap_or_else(|e| panic!("extra TOML from the test: {e}"));
        merge_toml(&mut table, extra);
        fs::write(
            dir.join("motherstream.toml"),
            toml::to_string(&table).expect("TOML"),
        )
        .expect("write config");
        if let Some(secret) = &opts.hook_secret {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("state/hook.secret"))
                .expect("write hook.secret");
            writeln!(f, "{secret}").expect("write hook.secret");
        }
        let port = opts
            .listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("listen port");
        let mut d = Daemon {
            port,
            listen: opts.listen,
            admin_token: String::new(),
            hook_secret: String::new(),
            child: None,
            bin: opts.bin,
            dir,
            last_start: Duration::ZERO,
            starts: 0,
        };
        d.spawn_and_wait();
        d
    }

    fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let _ = writeln!(&log, "==== harness: start #{} ====", self.starts);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .process_group(0);
        for k in DAEMON_ENV {
            cmd.env_remove(k);
        }
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.bin));
        let port = self.port;
        let host = self.connect_addr();
        let ok = wait_for(Duration::from_secs(20), Duration::from_millis(1), || {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(Err(st));
            }
            let s = TcpStream::connect(&host).ok()?;
            let mut s = s;
            let raw = exchange(
                &mut s,
                &request_bytes("GET", "/healthz", &[], b""),
                Duration::from_secs(2),
                false,
            )
            .ok()?;
            (parse_resp(&raw).status == 200).then_some(Ok(()))
        });
        self.last_start = t0.elapsed();
        match ok {
            Some(Ok(())) => {
                self.child = Some(child);
                self.admin_token = self.secret("admin_token_file", "admin.token");
                self.hook_secret = self.secret("hook_secret_file", "hook.secret");
            }
            Some(Err(st)) => panic!(
                "motherstream exited {st} before serving on port {port}:\n{}",
                tail(&self.log_path(), 60)
            ),
            None => {
                signal(child.id(), libc::SIGKILL);
                let _ = wait_child(&mut child, Duration::from_secs(5));
                panic!(
                    "motherstream: no 200 from /healthz on port {port} within 20 s:\n{}",
                    tail(&self.log_path(), 60)
                )
            }
        }
    }

    /// First line of the secret file `[http] key` names, else of
    /// `<state>/default_name` (where the daemon creates it).
    fn secret(&self, key: &str, default_name: &str) -> String {
        let cfg: toml::Table = fs::read_to_string(self.config_path())
            .expect("read config")
            .parse()
            .expect("config TOML");
        let path = cfg
            .get("http")
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
            .filter(|p| !p.is_empty())
            .map_or_else(|| self.state_dir().join(default_name), PathBuf::from);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the daemon serves but {path:?} is unreadable: {e}"));
        text.lines().next().unwrap_or("").trim().to_string()
    }

    fn connect_addr(&self) -> String {
        let (host, port) = self.listen.rsplit_once(':').expect("listen");
        let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
        format!("{host}:{port}")
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("daemon not running")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("motherstream.toml")
    }

    /// `[state] dir` of the daemon's config (the harness's default unless
    /// the test set its own).
    pub fn state_dir(&self) -> PathBuf {
        fs::read_to_string(self.config_path())
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|c| {
                c.get("state")
                    .and_then(|s| s.get("dir"))
                    .and_then(|d| d.as_str().map(PathBuf::from))
            })
            .unwrap_or_else(|| self.dir.join("state"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn relay_log_path(&self) -> PathBuf {
        self.dir.join("ffmpeg.log")
    }

    /// Everything the daemon wrote to stderr so far (all starts).
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL and reap; the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            wait_child(&mut c, Duration::from_secs(5)).expect("daemon did not die on SIGKILL");
        }
    }

    /// SIGTERM and wait (≤ 10 s); the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon not running");
        signal(c.id(), libc::SIGTERM);
        match wait_child(&mut c, Duration::from_secs(10)) {
            Some(st) => st,
            None => {
                signal(c.id(), libc::SIGKILL);
                let _ = wait_child(&mut c, Duration::from_secs(5));
                panic!(
                    "motherstream did not exit within 10 s of SIGTERM:\n{}",
                    tail(&self.log_path(), 40)
                );
            }
        }
    }

    /// Wait (≤ `timeout`) for the daemon to exit on its own; its status.
    /// The child is reaped and forgotten; nothing is signalled.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let st = wait_child(c, timeout)?;
        self.child = None;
        Some(st)
    }

    /// Start again with the same config and state dir (after kill9/terminate).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn_and_wait();
    }

    pub fn get(&self, path: &str) -> Resp {
        http_to(&self.connect_addr(), "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        http_to(&self.connect_addr(), "POST", path, &[], body.as_bytes())
    }

    /// Any request, headers as given (Host is always `127.0.0.1`).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        http_to(&self.connect_addr(), method, path, headers, body.as_bytes())
    }

    /// The path nginx calls for hook `name`: `/hook/<secret>/<name>`.
    pub fn hook_path(&self, name: &str) -> String {
        format!("/hook/{}/{name}", self.hook_secret)
    }

    /// POST a hook as nginx does, at its secret URL.
    pub fn hook(&self, name: &str, body: &str) -> Resp {
        self.post(&self.hook_path(name), body)
    }

    /// POST an admin call as a JSON body with `Authorization: Bearer
    /// <token>`: the given token, or (None) the daemon's own.
    pub fn admin(&self, path: &str, body: &str, token: Option<&str>) -> Resp {
        let auth = format!("Bearer {}", token.unwrap_or(&self.admin_token));
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        self.request("POST", path, &headers, body)
    }

    /// GET an admin endpoint with the daemon's token.
    pub fn admin_get(&self, path: &str) -> Resp {
        let auth = format!("Bearer {}", self.admin_token);
        self.request("GET", path, &[("Authorization", auth.as_str())], "")
    }

    /// Enqueue `name` with a raw on_publish (no real stream behind it).
    pub fn raw_publish(&self, name: &str, clientid: u64) -> Resp {
        self.hook("on_publish", &publish_body("live", name, clientid, ""))
    }

    /// `/queue-json` as a list of names, as the test knows them: a guest
    /// name is given back as the key it stands for (see [`Daemon::known`]).
    pub fn queue(&self) -> Vec<String> {
        let guests = self.guests();
        self.queue_raw()
            .into_iter()
            .map(|n| guests.get(&n).cloned().unwrap_or(n))
            .collect()
    }

    /// `/queue-json` as the public sees it.
    pub fn queue_raw(&self) -> Vec<String> {
        let r = self.get("/queue-json");
        assert_eq!(r.status, 200, "/queue-json: {r:?}");
        serde_json::from_str(&r.body).unwrap_or_else(|e| {
            panic!(
                "/queue-json is not a JSON array of strings ({e}): {:?}",
                r.body
            )
        })
    }

    /// `/api/status`, guest names given back as keys (see [`Daemon::known`]);
    /// the public's version is `get("/api/status")`.
    pub fn status(&self) -> Value {
        let r = self.get("/api/status");
        assert_eq!(r.status, 200, "/api/status: {r:?}");
        self.known_json(r.json())
    }

    /// Guest names of this daemon's install (see [`GuestNames`]).
    pub fn guest_names(&self) -> GuestNames {
        GuestNames {
            state_dir: self.state_dir(),
        }
    }

    /// The public name the daemon gives an unregistered `key`.
    pub fn guest(&self, key: &str) -> String {
        self.guest_names().guest(key)
    }

    /// [`Daemon::known`] applied to every string in `v`.
    pub fn known_json(&self, v: Value) -> Value {
        self.guest_names().json(v)
    }

    fn guests(&self) -> std::collections::HashMap<String, String> {
        self.guest_names().map()
    }

    /// The relay pid from /api/status (`on_air.relay.pid`), if any.
    pub fn relay_pid(&self) -> Option<u32> {
        self.status()["on_air"]["relay"]["pid"]
            .as_u64()
            .map(|p| p as u32)
    }

    pub fn relay_state(&self) -> Option<String> {
        self.status()["on_air"]["relay"]["state"]
            .as_str()
            .map(str::to_string)
    }

    /// Who the output shows: on air and cut to (relay "running").
    pub fn on_screen(&self) -> Option<String> {
        let s = self.status();
        (s["on_air"]["relay"]["state"] == "running")
            .then(|| s["on_air"]["name"].as_str().map(str::to_string))
            .flatten()
    }

    /// Wait until the output shows `name`; panics with the status.
    pub fn wait_on_screen(&self, name: &str, timeout: Duration) {
        let ok = wait_for(timeout, Duration::from_millis(20), || {
            (self.on_screen().as_deref() == Some(name)).then_some(())
        });
        assert!(
            ok.is_some(),
            "{name} not on screen within {timeout:?}: {}",
            self.status()
        );
    }

    /// Wait until `/queue-json` equals `want`; panics with the last value.
    pub fn wait_queue(&self, want: &[&str], timeout: Duration) {
        let mut last = Vec::new();
        let ok = wait_for(timeout, Duration::from_millis(50), || {
            last = self.queue();
            (last == want).then_some(())
        });
        assert!(
            ok.is_some(),
            "queue: want {want:?}, have {last:?} after {timeout:?}"
        );
    }

    /// Wait until a running relay with a pid is reported; its pid.
    pub fn wait_relay(&self, timeout: Duration) -> u32 {
        let mut last = Value::Null;
        wait_for(timeout, Duration::from_millis(50), || {
            last = self.status();
            let r = &last["on_air"]["relay"];
            let pid = r["pid"].as_u64()? as u32;
            (r["state"] == "running" && pid_alive(pid)).then_some(pid)
        })
        .unwrap_or_else(|| panic!("no running relay within {timeout:?}; /api/status: {last}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- motherstream log (tail) ----\n{}",
                tail(&self.log_path(), 80)
            );
            eprintln!(
                "---- relay ffmpeg.log (tail) ----\n{}",
                tail(&self.relay_log_path(), 20)
            );
        }
        if let Some(mut c) = self.child.take() {
            // A clean stop lets the daemon stop its relay; SIGKILL if it hangs.
            signal(c.id(), libc::SIGTERM);
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                signal(c.id(), libc::SIGKILL);
                let _ = wait_child(&mut c, Duration::from_secs(5));
            }
        }
    }
}

// ---------------------------------------------------------------- rig

/// nginx + the daemon, wired together. Fields drop in order: the daemon
/// (and its relay) first, then nginx.
pub struct Rig {
    pub daemon: Daemon,
    pub nginx: Nginx,
}

pub const SIZE_A: (u32, u32) = (160, 120);
pub const SIZE_B: (u32, u32) = (176, 144);
pub const SIZE_C: (u32, u32) = (192, 108);

impl Rig {
    pub fn start(extra_toml: &str) -> Rig {
        Rig::start_with(extra_toml, &NginxOpts::default())
    }

    pub fn start_with(extra_toml: &str, nginx_opts: &NginxOpts) -> Rig {
        Rig::start_bin(extra_toml, nginx_opts, daemon_bin())
    }

    /// Run the release build when there is one (see [`release_build`]);
    /// true when it runs.
    pub fn start_release(extra_toml: &str, test: &str) -> (Rig, bool) {
        if !cfg!(debug_assertions) {
            // A bench: this build's own daemon is the release build.
            return (Rig::start(extra_toml), true);
        }
        match release_build(test) {
            Some(bin) => (Rig::start_bin(extra_toml, &NginxOpts::default(), bin), true),
            None => (Rig::start(extra_toml), false),
        }
    }

    /// nginx and the daemon binary `bin`, wired together.
    pub fn start_bin(extra_toml: &str, nginx_opts: &NginxOpts, bin: PathBuf) -> Rig {
        let hook_port = free_port();
        let nginx = Nginx::start_with(hook_port, nginx_opts);
        let daemon = Daemon::start(DaemonOpts {
            listen: format!("127.0.0.1:{hook_port}"),
            rtmp_port: nginx.rtmp_port,
            nginx_http_port: nginx.http_port,
            extra_toml: extra_toml.to_string(),
            bin,
            hook_secret: Some(nginx.hook_secret.clone()),
        });
        Rig { daemon, nginx }
    }

    pub fn output_url(&self) -> String {
        self.nginx.rtmp_url("motherstream", "live")
    }

    pub fn publish(&self, key: &str, size: (u32, u32)) -> Publisher {
        Publisher::start(self.nginx.rtmp_port, key, size)
    }

    /// Start a publisher and wait until the daemon has it in the queue.
    pub fn join(&self, key: &str, size: (u32, u32)) -> Publisher {
        self.join_as(key, key, size)
    }

    /// Start a publisher with `key` and wait until `name` (its public name)
    /// is queued.
    pub fn join_as(&self, key: &str, name: &str, size: (u32, u32)) -> Publisher {
        let mut p = self.publish(key, size);
        let ok = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            if !p.is_running() {
                return Some(false);
            }
            self.daemon
                .queue()
                .iter()
                .any(|n| n == name)
                .then_some(true)
        });
        assert_eq!(
            ok,
            Some(true),
            "{name} did not join (queue {:?}); ffmpeg: {}",
            self.daemon.queue(),
            p.stderr()
        );
        p
    }

    /// Wait until the output shows `size`.
    pub fn assert_on_air(&self, size: (u32, u32), timeout: Duration) {
        if let Err(last) = wait_size(&self.output_url(), size, timeout) {
            panic!(
                "output should show {size:?} within {timeout:?}, last seen {last:?}; queue {:?}, status {}",
                self.daemon.queue(),
                self.daemon.status()
            );
        }
    }
}

// ---------------------------------------------------------------- cli

/// What a run of the CLI printed, and its exit code.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `motherstream --config CONFIG ARGS…` (the CLI) to completion.
pub fn run_cli(config: &Path, args: &[&str]) -> CliRun {
    let mut cmd = Command::new(daemon_bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null());
    for k in DAEMON_ENV {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("run the motherstream CLI");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The permission bits of a file or directory (not following a link).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
