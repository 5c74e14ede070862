//! A real OBS for tests: Debian's obs-studio under a private Xvfb, with a
//! generated profile (small canvas, low fps), a scene collection holding the
//! sources motherstream drives, and obs-websocket on a free port with a
//! password. Plus a small obs-websocket client to read OBS's state back.
//!
//! Self-contained (std, libc, serde_json, tungstenite and the crate's own
//! protocol module).
//!
//! OBS is CPU-heavy and the test machines have 2 cores: every `Obs` holds an
//! exclusive file lock for its lifetime, so OBS tests never run in parallel,
//! whichever test binary or process they are in.
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use motherstream::obs::protocol::{self, IdentifyPlan, Message, Request};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

pub const SCENE: &str = "MOTHERSTREAM";
pub const MEDIA: &str = "motherstream";
pub const LOADING: &str = "loading";
pub const NAME: &str = "name";
pub const TIMER: &str = "timer";
pub const COLLECTION: &str = "MOTHERSTREAM";
pub const PROFILE: &str = "motherstream";
/// OBS colour of the loading source (0xAABBGGRR): pure green, so a
/// screenshot tells it from the red and blue test publishers.
pub const LOADING_ABGR: u32 = 0xFF00_FF00;

#[derive(Clone, Debug)]
pub struct ObsOpts {
    /// What the media source plays.
    pub media_url: String,
    pub password: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Leave these out of the scene collection (to test missing sources).
    pub omit: Vec<&'static str>,
    /// The media source's `ffmpeg_options` in the generated collection.
    pub ffmpeg_options: String,
    /// The media source unmuted and in the mix (track 1), so OBS's meters
    /// and audio buffering see the stream's audio; muted otherwise.
    pub media_audio: bool,
    /// Make this OBS a publisher: (server, stream key) of a custom RTMP
    /// service, streaming from launch (`--startstreaming`) with the simple
    /// output's defaults (x264 veryfast, CBR 2500, keyframe interval auto).
    pub publish: Option<(String, String)>,
}

impl Default for ObsOpts {
    fn default() -> ObsOpts {
        ObsOpts {
            // Nothing listens there: the media source just keeps retrying.
            media_url: "rtmp://127.0.0.1:9/motherstream/live".into(),
            password: "obs-test-password".into(),
            width: 320,
            height: 180,
            fps: 10,
            omit: Vec::new(),
            ffmpeg_options: String::new(),
            media_audio: false,
            publish: None,
        }
    }
}

pub fn free_tcp_port() -> u16 {
    // obs-websocket 5.1 listens on all interfaces: check the wildcard.
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn unique_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("ms-{tag}-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Exclusive lock shared by every OBS test on the machine.
struct ObsLock(File);

impl ObsLock {
    fn take() -> ObsLock {
        let path = std::env::temp_dir().join("motherstream-obs-tests.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open OBS test lock");
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        ObsLock(f)
    }
}

impl Drop for ObsLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlocking first says so.
        // SAFETY: flock on a file descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Wait for a child with a timeout (polling try_wait, bounded).
fn wait_timeout(child: &mut Child, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn set_pdeathsig(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; the child dies with the test.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub struct Obs {
    pub port: u16,
    pub password: String,
    pub opts: ObsOpts,
    dir: PathBuf,
    display: u32,
    xvfb: Child,
    obs: Option<Child>,
    launches: u32,
    _lock: ObsLock,
}

/// The daemon's `[obs]` table for an OBS on `port` with the test scene's
/// items, `password` written (0600) to `dir/obs-password`. `timer`: the
/// daemon also drives the timer text (every second while on air).
pub fn daemon_obs_toml(port: u16, password: &str, dir: &Path, timer: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let pw = dir.join("obs-password");
    fs::write(&pw, format!("{password}\n")).expect("OBS password file");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).expect("chmod password file");
    let mut t = format!(
        "[obs]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\npassword_file = \"{}\"\n\
         scene = \"{SCENE}\"\nmedia_source = \"{MEDIA}\"\nloading_source = \"{LOADING}\"\n\
         name_source = \"{NAME}\"\n",
        pw.display()
    );
    if timer {
        t.push_str(&format!("timer_source = \"{TIMER}\"\n"));
    }
    t
}

impl Obs {
    /// [`daemon_obs_toml`] with this OBS's port and password.
    pub fn daemon_toml(&self, dir: &Path, timer: bool) -> String {
        daemon_obs_toml(self.port, &self.password, dir, timer)
    }

    /// Start Xvfb and OBS; returns once obs-websocket answers requests.
    pub fn start(opts: ObsOpts) -> Obs {
        let lock = ObsLock::take();
        let dir = unique_dir("obs");
        let (display, xvfb) = start_xvfb(&dir);
        let mut obs = Obs {
            port: free_tcp_port(),
            password: opts.password.clone(),
            opts,
            dir,
            display,
            xvfb,
            obs: None,
            launches: 0,
            _lock: lock,
        };
        obs.write_config();
        obs.launch();
        obs
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.join("config/obs-studio")
    }

    fn write_config(&self) {
        let c = self.config_dir();
        let o = &self.opts;
        fs::create_dir_all(c.join(format!("basic/profiles/{PROFILE}"))).expect("mkdir");
        fs::create_dir_all(c.join("basic/scenes")).expect("mkdir");
        for d in ["home", "run"] {
            fs::create_dir_all(self.dir.join(d)).expect("mkdir");
        }
        // XDG_RUNTIME_DIR must be private.
        let _ = fs::set_permissions(
            self.dir.join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        let global = format!(
            "[General]\nFirstRun=true\nConfirmOnExit=false\nEnableAutoUpdates=false\n\n\
             [Basic]\nProfile={PROFILE}\nProfileDir={PROFILE}\nSceneCollection={COLLECTION}\n\
             SceneCollectionFile={COLLECTION}\nConfigOnNewProfile=false\n\n\
             [BasicWindow]\nPreviewEnabled=false\nSysTrayWhenStarted=true\n\n\
             [OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\nServerPort={}\n\
             AlertsEnabled=false\nAuthRequired=true\nServerPassword={}\n",
            self.port, self.password
        );
        fs::write(c.join("global.ini"), global).expect("global.ini");
        let basic = format!(
            "[General]\nName={PROFILE}\n\n[Video]\nBaseCX={w}\nBaseCY={h}\nOutputCX={w}\n\
             OutputCY={h}\nFPSType=1\nFPSInt={fps}\nScaleType=bilinear\n\n\
             [Audio]\nSampleRate=48000\nChannelSetup=Mono\n\n[Output]\nMode=Simple\n",
            w = o.width,
            h = o.height,
            fps = o.fps
        );
        fs::write(c.join(format!("basic/profiles/{PROFILE}/basic.ini")), basic).expect("basic.ini");
        if let Some((server, key)) = &o.publish {
            // [SimpleOutput] stays out of basic.ini: OBS's own defaults.
            let service = json!({
                "type": "rtmp_custom",
                "settings": {"server": server, "key": key, "use_auth": false, "bwtest": false}
            });
            fs::write(
                c.join(format!("basic/profiles/{PROFILE}/service.json")),
                service.to_string(),
            )
            .expect("service.json");
        }
        fs::write(
            c.join(format!("basic/scenes/{COLLECTION}.json")),
            serde_json::to_string_pretty(&scene_collection(o)).expect("json"),
        )
        .expect("scene collection");
    }

    fn launch(&mut self) {
        self.launches += 1;
        let log =
            File::create(self.dir.join(format!("obs-{}.out", self.launches))).expect("obs log");
        let log2 = log.try_clone().expect("clone");
        let mut cmd = Command::new("obs");
        cmd.args([
            "--multi",
            "--minimize-to-tray",
            "--disable-updater",
            "--disable-missing-files-check",
            "--profile",
            PROFILE,
            "--collection",
            COLLECTION,
            "--scene",
            SCENE,
        ])
        .args(self.opts.publish.as_ref().map(|_| "--startstreaming"))
        .current_dir(&self.dir)
        .env("HOME", self.dir.join("home"))
        .env("XDG_CONFIG_HOME", self.dir.join("config"))
        .env("XDG_RUNTIME_DIR", self.dir.join("run"))
        .env("DISPLAY", format!(":{}", self.display))
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("QT_QPA_PLATFORM", "xcb")
        .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
        set_pdeathsig(&mut cmd);
        let child = cmd.spawn().expect("spawn obs (apt-get install obs-studio)");
        self.obs = Some(child);
        self.wait_ready(Duration::from_secs(40));
    }

    /// Wait until obs-websocket answers GetSceneList with our scene.
    fn wait_ready(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < end {
            if let Some(c) = self.obs.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("OBS exited early ({st}):\n{}", self.log_tail());
                }
            }
            match ObsClient::connect(self.port, &self.password) {
                Ok(mut c) => match c.request("GetSceneList", json!({})) {
                    Ok(v) if v.to_string().contains(SCENE) => return,
                    Ok(v) => last = format!("scene list {v}"),
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        panic!(
            "OBS did not answer on port {} within {timeout:?} ({last}):\n{}",
            self.port,
            self.log_tail()
        );
    }

    pub fn pid(&self) -> Option<u32> {
        self.obs.as_ref().map(|c| c.id())
    }

    pub fn client(&self) -> ObsClient {
        ObsClient::connect(self.port, &self.password).expect("test client connects to OBS")
    }

    /// SIGKILL OBS (no close frame, as in a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.obs.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// OBS handles SIGINT (not SIGTERM) as a clean quit; it can hang while
    /// its media source reconnects, so SIGKILL after a timeout.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.obs.take() {
            signal(c.id(), libc::SIGINT);
            if !wait_timeout(&mut c, Duration::from_secs(8)) {
                signal(c.id(), libc::SIGKILL);
                let _ = c.wait();
            }
        }
    }

    /// Start OBS again with the same config and port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The newest OBS log (its own log file, else its stdout/stderr).
    pub fn log_tail(&self) -> String {
        let logs = self.config_dir().join("logs");
        let mut files: Vec<PathBuf> = fs::read_dir(&logs)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let mut text = String::new();
        if let Some(f) = files.last() {
            text = fs::read_to_string(f).unwrap_or_default();
        }
        if let Ok(out) = fs::read_to_string(self.dir.join(format!("obs-{}.out", self.launches))) {
            text.push_str("\n--- stdout/stderr ---\n");
            text.push_str(&out);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Obs {
    fn drop(&mut self) {
        self.stop();
        signal(self.xvfb.id(), libc::SIGTERM);
        if !wait_timeout(&mut self.xvfb, Duration::from_secs(3)) {
            signal(self.xvfb.id(), libc::SIGKILL);
            let _ = self.xvfb.wait();
        }
        if std::env::var_os("MS_KEEP_OBS_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Xvfb picks a free display itself and writes its number to fd 3.
fn start_xvfb(dir: &Path) -> (u32, Child) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fds we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: fresh fds from pipe2.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wr_raw = wr.as_raw_fd();
    let err = File::create(dir.join("xvfb.out")).expect("xvfb log");
    let mut cmd = Command::new("Xvfb");
    cmd.args([
        "-displayfd",
        "3",
        "-screen",
        "0",
        "1024x576x24",
        "-nolisten",
        "tcp",
        "-noreset",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(err)
    .process_group(0);
    // SAFETY: dup2 and prctl are async-signal-safe; dup2 clears CLOEXEC
    // on fd 3 only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wr_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn Xvfb (apt-get install xvfb)");
    drop(wr);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(File::from(rd)).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(line) if line.trim().parse::<u32>().is_ok() => {
            (line.trim().parse().unwrap_or_default(), child)
        }
        other => {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
            let log = fs::read_to_string(dir.join("xvfb.out")).unwrap_or_default();
            panic!("Xvfb gave no display number ({other:?}): {log}");
        }
    }
}

fn scene_item(name: &str, id: u32, visible: bool, o: &ObsOpts, fill: bool) -> Value {
    let mut item = json!({
        "name": name, "id": id, "visible": visible, "locked": false,
        "rot": 0.0, "pos": {"x": 0.0, "y": 0.0}, "scale": {"x": 1.0, "y": 1.0},
        "align": 5, "bounds_type": 0, "bounds_align": 0, "bounds": {"x": 0.0, "y": 0.0},
        "crop_left": 0, "crop_top": 0, "crop_right": 0, "crop_bottom": 0,
        "scale_filter": "disable", "blend_method": "default", "blend_type": "normal",
        "show_transition": {"duration": 0}, "hide_transition": {"duration": 0},
        "private_settings": {}
    });
    if fill {
        // Scale to fit the canvas whatever the stream's size.
        item["bounds_type"] = json!(2);
        item["bounds"] = json!({"x": o.width as f64, "y": o.height as f64});
    }
    item
}

fn scene_collection(o: &ObsOpts) -> Value {
    let keep = |n: &str| !o.omit.contains(&n);
    let font = json!({"face": "DejaVu Sans", "size": 16, "style": "Book", "flags": 0});
    let mut sources = Vec::new();
    let mut items = Vec::new();
    // Items are stored bottom first: media, texts, then loading on top.
    if keep(MEDIA) {
        items.push(scene_item(MEDIA, 1, true, o, true));
        // A path plays as a local file, looped (OBS loops local files only).
        let local = o.media_url.starts_with('/');
        sources.push(json!({
            "id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": MEDIA,
            "settings": {
                "is_local_file": local, "local_file": o.media_url, "looping": local,
                "input": o.media_url, "input_format": "",
                "reconnect_delay_sec": 1, "restart_on_activate": false,
                "clear_on_media_end": false, "close_when_inactive": false,
                "hw_decode": false, "buffering_mb": 1, "ffmpeg_options": o.ffmpeg_options
            },
            "mixers": if o.media_audio { 1 } else { 0 }, "sync": 0, "flags": 0,
            "volume": 1.0, "muted": !o.media_audio,
            "enabled": true, "monitoring_type": 0, "private_settings": {}
        }));
    }
    for (name, id, x) in [(NAME, 2, 4.0), (TIMER, 3, (o.width as f64) - 60.0)] {
        if keep(name) {
            let mut it = scene_item(name, id, true, o, false);
            it["pos"] = json!({"x": x, "y": 2.0});
            items.push(it);
            sources.push(json!({
                "id": "text_ft2_source", "versioned_id": "text_ft2_source_v2", "name": name,
                "settings": {"text": "", "font": font, "color1": 4294967295u32,
                             "color2": 4294967295u32, "outline": true},
                "enabled": true, "private_settings": {}
            }));
        }
    }
    if keep(LOADING) {
        items.push(scene_item(LOADING, 4, true, o, false));
        sources.push(json!({
            "id": "color_source", "versioned_id": "color_source_v3", "name": LOADING,
            "settings": {"color": LOADING_ABGR, "width": o.width, "height": o.height},
            "enabled": true, "private_settings": {}
        }));
    }
    let mut all = vec![];
    if keep(SCENE) {
        all.push(json!({
            "id": "scene", "versioned_id": "scene", "name": SCENE,
            "settings": {"items": items, "id_counter": 4, "custom_size": false},
            "enabled": true, "private_settings": {}
        }));
    }
    all.extend(sources);
    let scene_name = if keep(SCENE) { SCENE } else { "Other" };
    if !keep(SCENE) {
        all.push(
            json!({"id": "scene", "versioned_id": "scene", "name": "Other",
                        "settings": {"items": [], "id_counter": 0, "custom_size": false}}),
        );
    }
    json!({
        "name": COLLECTION,
        "current_scene": scene_name,
        "current_program_scene": scene_name,
        "scene_order": [{"name": scene_name}],
        "sources": all,
        "groups": [],
        "quick_transitions": [],
        "transitions": [],
        "current_transition": "Cut",
        "transition_duration": 0,
        "preview_locked": false,
        "scaling_enabled": false,
        "modules": {}
    })
}

/// A minimal blocking obs-websocket client for reading OBS's state back.
pub struct ObsClient {
    ws: tungstenite::WebSocket<TcpStream>,
    ids: protocol::RequestIds,
}

impl ObsClient {
    pub fn connect(port: u16, password: &str) -> Result<ObsClient, String> {
        ObsClient::connect_with(port, password, 0)
    }

    /// Connect subscribed to the event categories in `subscriptions`
    /// (obs-websocket's EventSubscription bits).
    pub fn connect_with(
        port: u16,
        password: &str,
        subscriptions: u32,
    ) -> Result<ObsClient, String> {
        let stream = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut req = format!("ws://127.0.0.1:{port}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol::SUBPROTOCOL),
        );
        let (ws, _) = tungstenite::client(req, stream).map_err(|e| format!("handshake: {e}"))?;
        let mut c = ObsClient {
            ws,
            ids: protocol::RequestIds::new("test"),
        };
        let hello = match c.read()? {
            Message::Hello(h) => h,
            other => return Err(format!("expected Hello, got op {}", other.op())),
        };
        match protocol::identify_for(&hello, Some(password), subscriptions) {
            IdentifyPlan::Send(f) => c.send(f)?,
            IdentifyPlan::NeedPassword => return Err("password needed".into()),
        }
        match c.read()? {
            Message::Identified(_) => Ok(c),
            other => Err(format!("expected Identified, got op {}", other.op())),
        }
    }

    fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(tungstenite::Message::Text(text))
            .map_err(|e| format!("send: {e}"))
    }

    fn read(&mut self) -> Result<Message, String> {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    return Message::decode(&t).map_err(|e| e.to_string())
                }
                Ok(tungstenite::Message::Close(f)) => return Err(format!("closed: {f:?}")),
                Ok(_) => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// A request; Err carries OBS's status or the transport error.
    pub fn request(&mut self, ty: &str, data: Value) -> Result<Value, String> {
        let id = self.ids.next_id();
        self.send(
            Message::Request(Request {
                request_type: ty.into(),
                request_id: id.clone(),
                request_data: Some(data),
            })
            .encode(),
        )?;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Message::RequestResponse(r) = self.read()? {
                if r.request_id == id {
                    return if r.request_status.result {
                        Ok(r.response_data.unwrap_or(Value::Null))
                    } else {
                        Err(format!("{ty}: {}", r.request_status.describe()))
                    };
                }
            }
        }
        Err(format!("{ty}: no answer"))
    }

    pub fn input_settings(&mut self, input: &str) -> Result<Value, String> {
        self.request("GetInputSettings", json!({"inputName": input}))
            .map(|v| v.get("inputSettings").cloned().unwrap_or(Value::Null))
    }

    pub fn text(&mut self, input: &str) -> Result<String, String> {
        self.input_settings(input).map(|s| {
            s.get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
    }

    pub fn item_id(&mut self, source: &str) -> Result<i64, String> {
        self.request(
            "GetSceneItemId",
            json!({"sceneName": SCENE, "sourceName": source}),
        )?
        .get("sceneItemId")
        .and_then(Value::as_i64)
        .ok_or_else(|| "no sceneItemId".to_string())
    }

    pub fn item_enabled(&mut self, source: &str) -> Result<bool, String> {
        let id = self.item_id(source)?;
        self.request(
            "GetSceneItemEnabled",
            json!({"sceneName": SCENE, "sceneItemId": id}),
        )?
        .get("sceneItemEnabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| "no sceneItemEnabled".to_string())
    }

    pub fn set_item_enabled(&mut self, source: &str, on: bool) -> Result<(), String> {
        let id = self.item_id(source)?;
        self.request(
            "SetSceneItemEnabled",
            json!({"sceneName": SCENE, "sceneItemId": id, "sceneItemEnabled": on}),
        )
        .map(|_| ())
    }

    pub fn media_state(&mut self, input: &str) -> Result<String, String> {
        self.request("GetMediaInputStatus", json!({"inputName": input}))?
            .get("mediaState")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "no mediaState".to_string())
    }

    /// A screenshot of a source (scene or input) as RGB pixels, via BMP
    /// (decoded here; no image crate needed).
    pub fn screenshot(&mut self, source: &str, width: u32) -> Result<Rgb, String> {
        let v = self.request(
            "GetSourceScreenshot",
            json!({"sourceName": source, "imageFormat": "bmp", "imageWidth": width}),
        )?;
        let data = v
            .get("imageData")
            .and_then(Value::as_str)
            .ok_or("no imageData")?;
        let b64 = data.split_once(',').map(|(_, b)| b).unwrap_or(data);
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("base64: {e}"))?;
        Rgb::from_bmp(&bytes)
    }
}

/// An RGB image, rows top to bottom.
#[derive(Debug, Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub px: Vec<[u8; 3]>,
}

impl Rgb {
    pub fn from_bmp(b: &[u8]) -> Result<Rgb, String> {
        let u32_at = |o: usize| -> Result<u32, String> {
            b.get(o..o + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| "short BMP".to_string())
        };
        if b.get(0..2) != Some(b"BM") {
            return Err("not a BMP".into());
        }
        let off = u32_at(10)? as usize;
        let w = u32_at(18)? as i32;
        let h = u32_at(22)? as i32;
        let bpp = b.get(28).copied().unwrap_or(0) as usize;
        if w <= 0 || h == 0 || !(bpp == 24 || bpp == 32) {
            return Err(format!("unsupported BMP {w}x{h} {bpp} bpp"));
        }
        let (w, top_down, hh) = (w as usize, h < 0, h.unsigned_abs() as usize);
        let stride = (w * bpp / 8).div_ceil(4) * 4;
        let mut px = Vec::with_capacity(w * hh);
        for row in 0..hh {
            let src = if top_down { row } else { hh - 1 - row };
            for x in 0..w {
                let o = off + src * stride + x * bpp / 8;
                let p = b.get(o..o + 3).ok_or("short BMP data")?;
                px.push([p[2], p[1], p[0]]);
            }
        }
        Ok(Rgb {
            width: w,
            height: hh,
            px,
        })
    }

    /// Mean colour of a rectangle given in fractions of the image.
    pub fn mean(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> [u8; 3] {
        let (xa, xb) = (
            (x0 * self.width as f32) as usize,
            ((x1 * self.width as f32) as usize).min(self.width),
        );
        let (ya, yb) = (
            (y0 * self.height as f32) as usize,
            ((y1 * self.height as f32) as usize).min(self.height),
        );
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        for y in ya..yb {
            for x in xa..xb {
                let p = self.px[y * self.width + x];
                for c in 0..3 {
                    sum[c] += p[c] as u64;
                }
                n += 1;
            }
        }
        if n == 0 {
            return [0, 0, 0];
        }
        [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8]
    }
}

/// What a colour looks like, for the switch bench and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    Red,
    Blue,
    Green,
    Black,
    Grey,
    Other,
}

pub fn classify([r, g, b]: [u8; 3]) -> Seen {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max < 40 {
        Seen::Black
    } else if max - min < 30 {
        Seen::Grey
    } else if r > 120 && r - g.max(b) > 60 {
        Seen::Red
    } else if b > 120 && b - r.max(g) > 60 {
        Seen::Blue
    } else if g > 120 && g - r.max(b) > 60 {
        Seen::Green
    } else {
        Seen::Other
    }
}

/// Read a whole small file, or "" (for logs in failure messages).
pub fn read_or_empty(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Poll `f` every 100 ms until it returns Some or `timeout` passes.
pub fn until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// obs-websocket event subscription bits (5.x).
pub const EV_SCENE_ITEMS: u32 = 128;
pub const EV_MEDIA_INPUTS: u32 = 256;
/// High-volume: `InputVolumeMeters` every 50 ms.
pub const EV_INPUT_VOLUME_METERS: u32 = 1 << 16;

#[derive(Debug, Clone)]
pub struct ObsEvent {
    pub at: Instant,
    pub kind: String,
    pub data: Value,
}

/// A second connection to OBS that records events as they come, with the
/// time each arrived: scene item and media input events in `events`, the
/// peak level of one input from every `InputVolumeMeters` in `meters`.
pub struct EventWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    events: std::sync::Arc<std::sync::Mutex<Vec<ObsEvent>>>,
    meters: std::sync::Arc<std::sync::Mutex<Vec<(Instant, f64)>>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Obs {
    /// Record the events in `subscriptions`; meters of `meter_input` only.
    pub fn watch(&self, subscriptions: u32, meter_input: &str) -> EventWatch {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let mut c = ObsClient::connect_with(self.port, &self.password, subscriptions)
            .expect("event client connects to OBS");
        // Short reads, so the stop flag is seen promptly.
        let _ =
            c.ws.get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)));
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let meters = Arc::new(Mutex::new(Vec::new()));
        let (s2, e2, m2) = (stop.clone(), events.clone(), meters.clone());
        let input = meter_input.to_string();
        let join = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                let text = match c.ws.read() {
                    Ok(tungstenite::Message::Text(t)) => t,
                    Ok(tungstenite::Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => break,
                };
                let at = Instant::now();
                let Ok(Message::Event(ev)) = Message::decode(&text) else {
                    continue;
                };
                let data = ev.event_data.unwrap_or(Value::Null);
                if ev.event_type == "InputVolumeMeters" {
                    let peak = meter_peak(&data, &input);
                    if let Ok(mut m) = m2.lock() {
                        m.push((at, peak));
                    }
                } else if let Ok(mut v) = e2.lock() {
                    v.push(ObsEvent {
                        at,
                        kind: ev.event_type,
                        data,
                    });
                }
            }
        });
        EventWatch {
            stop,
            events,
            meters,
            join: Some(join),
        }
    }

    /// Everything OBS logged in this test (all its log files and its
    /// stdout/stderr), for checks such as "audio is lagging".
    pub fn log_all(&self) -> String {
        let logs = self.config_dir().join("logs");
        let mut files: Vec<PathBuf> = fs::read_dir(&logs)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let mut text = String::new();
        for f in files {
            text.push_str(&read_or_empty(&f));
        }
        for n in 1..=self.launches {
            text.push_str(&read_or_empty(&self.dir.join(format!("obs-{n}.out"))));
        }
        text
    }
}

/// Highest channel peak (linear) of `input` in an `InputVolumeMeters`
/// event; 0 when the input is not listed or has no channels.
pub fn meter_peak(data: &Value, input: &str) -> f64 {
    data["inputs"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["inputName"] == input))
        .and_then(|i| i["inputLevelsMul"].as_array())
        .map(|chs| {
            chs.iter()
                .filter_map(|c| c.get(1).and_then(Value::as_f64))
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0)
}

impl EventWatch {
    /// Every recorded event within [from, to] (any kind but meters).
    pub fn all_events(&self, from: Instant, to: Instant) -> Vec<ObsEvent> {
        self.events
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|e| e.at >= from && e.at <= to)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (arrival, peak) of every meter event within [from, to].
    pub fn meters(&self, from: Instant, to: Instant) -> Vec<(Instant, f64)> {
        self.meters
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| *t >= from && *t <= to)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
