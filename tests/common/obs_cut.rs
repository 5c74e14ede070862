//! Watching a switch the way the audience sees it in OBS: publishers whose
//! picture carries a wall-clock time code, and a 100 ms screenshot loop
//! that tells who is on screen, whether the picture moved since the last
//! sample, how old the picture is, what the name text says, and whether
//! OBS's meters heard the stream.
//!
//! Uses the OBS harness next to it (`super::obs`).
//!
//! The publisher's picture (any size; positions are fractions of it):
//! * rows 0.18–0.42: a test pattern moving 0.4 picture widths a second, so
//!   two pictures 100 ms apart always differ unless OBS froze;
//! * rows 0.48–0.62: 18 white-or-background cells, bit i of the wall-clock
//!   time the frame was made, in 10 ms units since a base the test picks
//!   (ffmpeg's `setpts` with `RTCTIME`, then `drawbox` with a timeline
//!   `enable` per bit: nothing to OCR);
//! * rows 0.72–0.95: the solid background colour (who is on screen).
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::obs::{classify, EventWatch, Obs, ObsClient, ObsOpts, Rgb, Seen, SCENE};
use super::{Daemon, Nginx};

/// Bits of the time code (10 ms units: 2,621 s before it wraps).
const BITS: u32 = 18;
/// Screenshot width asked of OBS (the canvas is scaled to it).
const SHOT_WIDTH: u32 = 160;
/// Meter windows quieter than this are silence (the sine's peak is 0.125).
pub const SILENT_PEAK: f64 = 1e-3;

/// Microseconds since the Unix epoch (the clock ffmpeg's RTCTIME reads).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The lavfi graph of a time-coded publisher.
fn graph(colour: &str, (w, h): (u32, u32), fps: u32, base_us: u64) -> String {
    let bw = w / 20;
    let box_side = (h * 24 / 100).max(8);
    let mut g = format!(
        "color=c={colour}:s={w}x{h}:r={fps}[bg];testsrc2=s={box_side}x{box_side}:r={fps}[fg];\
         [bg][fg]overlay=x='mod(t*{speed},{room})':y={y},\
         settb=expr=1/1000,setpts='(RTCTIME-{base_us})/1000'",
        speed = w * 2 / 5,
        room = w - box_side,
        y = h * 18 / 100,
    );
    for i in 0..BITS {
        g.push_str(&format!(
            ",drawbox=x={x}:y={y}:w={bw}:h={bh}:color=white:t=fill:enable='mod(floor(t*100/{d}),2)'",
            x = (i + 1) * bw,
            y = h * 48 / 100,
            bh = h * 14 / 100,
            d = 1u64 << i
        ));
    }
    // Back to a regular timeline for the encoder: the time code is drawn.
    g.push_str(&format!(",setpts='N*1000/{fps}'[out0]"));
    g
}

/// An ffmpeg publisher (x264 + AAC sine) of a solid colour with the moving
/// pattern and the time code.
pub struct TcPublisher {
    child: Child,
}

/// How a [`TcPublisher`] encodes its video.
#[derive(Debug, Clone, Copy)]
pub enum Encoder {
    /// The lab's: ultrafast, zerolatency (no B-frames), a keyframe every
    /// this many frames.
    Lab { gop: u32 },
    /// What streamers send: x264's defaults as OBS uses them (veryfast,
    /// keyframe interval 250 frames, B-frames, lookahead).
    Defaults,
}

impl Encoder {
    fn args(self) -> Vec<String> {
        let a: Vec<&str> = match self {
            Encoder::Lab { .. } => vec!["-preset", "ultrafast", "-tune", "zerolatency"],
            Encoder::Defaults => vec!["-preset", "veryfast", "-g", "250", "-bf", "3"],
        };
        let mut a: Vec<String> = a.into_iter().map(String::from).collect();
        if let Encoder::Lab { gop } = self {
            a.extend(["-g".to_string(), gop.to_string()]);
        }
        a
    }
}

impl TcPublisher {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        url: &str,
        key: &str,
        colour: &'static str,
        size: (u32, u32),
        fps: u32,
        encoder: Encoder,
        (rate, channels): (u32, u32),
        base_us: u64,
        log_dir: &Path,
    ) -> TcPublisher {
        super::remember_key(key);
        let log = log_dir.join(format!("pub-{key}-{}.log", wall_us()));
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", &graph(colour, size, fps, base_us)])
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:sample_rate={rate}"))
            .args(["-ac", &channels.to_string()])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .args(encoder.args())
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("publisher log"))
            .spawn()
            .expect("spawn ffmpeg publisher");
        TcPublisher { child }
    }
}

impl Drop for TcPublisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One screenshot of the program, read.
#[derive(Debug, Clone)]
pub struct Look {
    pub at: Instant,
    /// Wall clock (µs) half-way through the screenshot request.
    pub wall_us: u64,
    /// The background strip: who is on screen (or loading, grey, black).
    pub colour: Seen,
    /// The time code (ms since the base) when it reads as one.
    pub stamp_ms: Option<u64>,
    /// Grey levels of the moving-pattern rows.
    pattern: Vec<u8>,
}

impl Look {
    /// How old the picture is, seconds (None without a time code).
    pub fn delay(&self, base_us: u64) -> Option<f64> {
        let made = base_us + self.stamp_ms? * 1000;
        Some((self.wall_us as f64 - made as f64) / 1e6)
    }

    /// Whether the moving pattern did not move since `prev`: OBS showed
    /// the same frame 100 ms later.
    pub fn same_picture(&self, prev: &Look) -> bool {
        if self.pattern.len() != prev.pattern.len() || self.pattern.is_empty() {
            return false;
        }
        let diff: u64 = self
            .pattern
            .iter()
            .zip(&prev.pattern)
            .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64)
            .sum();
        (diff as f64 / self.pattern.len() as f64) < 0.5
    }
}

fn read_stamp(img: &Rgb) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..BITS {
        let x0 = (i as f32 + 1.3) / 20.0;
        let x1 = (i as f32 + 1.7) / 20.0;
        let [r, g, b] = img.mean(x0, 0.51, x1, 0.59);
        let luma = (r as u32 + g as u32 + b as u32) / 3;
        if luma > 170 {
            v |= 1 << i;
        }
    }
    Some(v * 10)
}

/// Take and read one screenshot of the program scene.
pub fn look(c: &mut ObsClient) -> Option<Look> {
    let t0 = wall_us();
    let img = c.screenshot(SCENE, SHOT_WIDTH).ok()?;
    let t1 = wall_us();
    let colour = classify(img.mean(0.1, 0.74, 0.9, 0.95));
    let stamp_ms = matches!(colour, Seen::Red | Seen::Blue)
        .then(|| read_stamp(&img))
        .flatten();
    let (ya, yb) = (
        (0.19 * img.height as f32) as usize,
        (0.41 * img.height as f32) as usize,
    );
    let mut pattern = Vec::with_capacity((yb - ya) * img.width);
    for y in ya..yb.min(img.height) {
        for x in 0..img.width {
            let [r, g, b] = img.px[y * img.width + x];
            pattern.push(((r as u32 + g as u32 + b as u32) / 3) as u8);
        }
    }
    Some(Look {
        at: Instant::now(),
        wall_us: (t0 + t1) / 2,
        colour,
        stamp_ms,
        pattern,
    })
}

/// Wait until OBS shows `want` with a readable time code.
pub fn wait_seen(c: &mut ObsClient, want: Seen, timeout: Duration) -> Option<Look> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(l) = look(c) {
            if l.colour == want && l.stamp_ms.is_some() {
                return Some(l);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What one switch looked and sounded like in OBS.
#[derive(Debug, Clone, Default)]
pub struct Cut {
    /// From the switch to the first screenshot of the new streamer.
    pub on_screen: Option<Duration>,
    /// From the switch to the first sample whose name text is the new name.
    pub name_at: Option<Duration>,
    /// Samples whose picture had not moved since the previous one, and
    /// when (from the switch).
    pub frozen: u32,
    pub frozen_at: Vec<Duration>,
    /// Samples showing neither streamer (loading, grey, black, other).
    pub off: BTreeMap<Seen, u32>,
    pub samples: u32,
    /// Meter windows (50 ms) below [`SILENT_PEAK`], and all of them.
    pub silent: u32,
    pub meter_windows: u32,
    /// Picture delay (s) of each sample of the new streamer after the cut.
    pub delays: Vec<f64>,
    /// One letter per sample: R/B streamer, L loading, g grey, K black,
    /// ? other, ! no screenshot; lower case r/b = frozen.
    pub timeline: String,
}

impl Cut {
    /// Frozen samples across the cut: from `before` ahead of the new
    /// streamer's first screenshot to the end of the measurement.
    pub fn frozen_at_cut(&self, before: Duration) -> u32 {
        let Some(p) = self.on_screen else {
            return self.frozen;
        };
        let from = p.saturating_sub(before);
        self.frozen_at.iter().filter(|t| **t >= from).count() as u32
    }

    /// Median picture delay after the cut (s).
    pub fn delay(&self) -> Option<f64> {
        let mut d = self.delays.clone();
        d.sort_by(f64::total_cmp);
        d.get(d.len() / 2).copied()
    }
}

/// Screenshots compared for a frozen picture are at least this far apart
/// (more than two frames of OBS's 30 fps canvas).
const MIN_GAP: Duration = Duration::from_millis(80);

/// The next sample 100 ms after the last one was due; after a screenshot
/// that took longer than that, 100 ms from now (never a burst of samples
/// to catch up: those would be the same OBS frame).
fn next_sample(due: Instant) -> Instant {
    let next = due + Duration::from_millis(100);
    let now = Instant::now();
    if next < now {
        now + Duration::from_millis(100)
    } else {
        next
    }
}

/// Sample every 100 ms from `t0` (the switch) until the new streamer has
/// been on screen for `settle`, or `timeout`. `name` is the new name text
/// to wait for (None: do not read the text).
#[allow(clippy::too_many_arguments)]
pub fn measure_cut(
    c: &mut ObsClient,
    watch: &EventWatch,
    t0: Instant,
    new: Seen,
    name: Option<(&str, &str)>,
    base_us: u64,
    settle: Duration,
    timeout: Duration,
) -> Cut {
    let mut cut = Cut::default();
    let mut prev: Option<Look> = None;
    let mut next = t0;
    let mut end = t0 + timeout;
    while Instant::now() < end {
        let l = look(c);
        let at = Instant::now().saturating_duration_since(t0);
        if let Some((input, text)) = name {
            if cut.name_at.is_none() && c.text(input).is_ok_and(|t| t == text) {
                cut.name_at = Some(at);
            }
        }
        cut.samples += 1;
        let Some(l) = l else {
            cut.timeline.push('!');
            next = next_sample(next);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            continue;
        };
        // Two screenshots closer than two OBS frames apart show the same
        // frame without anything having frozen (after a slow screenshot).
        let frozen = prev
            .as_ref()
            .is_some_and(|p| l.at.duration_since(p.at) >= MIN_GAP && l.same_picture(p));
        if frozen {
            cut.frozen += 1;
            cut.frozen_at.push(at);
        }
        let code = match l.colour {
            Seen::Red => 'R',
            Seen::Blue => 'B',
            Seen::Green => 'L',
            Seen::Black => 'K',
            Seen::Grey => 'g',
            Seen::Other => '?',
        };
        cut.timeline.push(if frozen {
            code.to_ascii_lowercase()
        } else {
            code
        });
        if !matches!(l.colour, Seen::Red | Seen::Blue) {
            *cut.off.entry(l.colour).or_insert(0) += 1;
        }
        if l.colour == new {
            if cut.on_screen.is_none() {
                cut.on_screen = Some(at);
                end = end.min(Instant::now() + settle);
            } else if let Some(d) = l.delay(base_us) {
                cut.delays.push(d);
            }
        }
        prev = Some(l);
        next = next_sample(next);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    for (_, peak) in watch.meters(t0, Instant::now()) {
        cut.meter_windows += 1;
        if peak < SILENT_PEAK {
            cut.silent += 1;
        }
    }
    cut
}

/// Least-squares slope of `ys` against their index (units per step).
pub fn slope(ys: &[f64]) -> Option<f64> {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return None;
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        num += dx * (y - my);
        den += dx * dx;
    }
    Some(num / den)
}

/// Median, min and max.
pub fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    Some((*v.get(v.len() / 2)?, *v.first()?, *v.last()?))
}

/// The nginx client ids of the players (non-publishing clients) of `app`,
/// from `/stat`.
pub fn player_clients(stat_xml: &str, app: &str) -> Vec<String> {
    let Some(i) = stat_xml.find(&format!("<name>{app}</name>")) else {
        return Vec::new();
    };
    let app = &stat_xml[i..];
    let app = &app[..app.find("</application>").unwrap_or(app.len())];
    app.split("<client>")
        .skip(1)
        .filter_map(|c| {
            if c.contains("<publishing/>") {
                return None;
            }
            let a = c.find("<id>")? + 4;
            let b = c[a..].find("</id>")? + a;
            Some(c[a..b].to_string())
        })
        .collect()
}

/// A plain ffmpeg player (`-fpsprobesize 0`, not pacing by timestamp)
/// decoding a stream to small RGB frames: when each frame arrived, who it
/// shows and its time code. The floor that OBS's numbers compare with.
pub struct TcPlayer {
    child: Child,
    frames: std::sync::Arc<std::sync::Mutex<Vec<PlayerFrame>>>,
}

/// (arrival, wall clock µs, who, time code ms) of one decoded frame.
type PlayerFrame = (Instant, u64, Seen, Option<u64>);

impl TcPlayer {
    pub fn start(url: &str, log_dir: &Path) -> TcPlayer {
        let (w, h) = (160usize, 90usize);
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-fpsprobesize", "0", "-i", url, "-an"])
            .args(["-vf", &format!("scale={w}:{h}"), "-fps_mode", "passthrough"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log_dir.join(format!("player-{}.log", wall_us()))).expect("log"))
            .spawn()
            .expect("spawn ffmpeg player");
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take();
        let f2 = frames.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let Some(mut out) = out else { return };
            let mut buf = vec![0u8; w * h * 3];
            while out.read_exact(&mut buf).is_ok() {
                let (at, wall) = (Instant::now(), wall_us());
                let img = Rgb {
                    width: w,
                    height: h,
                    px: buf.chunks(3).map(|p| [p[0], p[1], p[2]]).collect(),
                };
                let colour = classify(img.mean(0.1, 0.74, 0.9, 0.95));
                let stamp = matches!(colour, Seen::Red | Seen::Blue)
                    .then(|| read_stamp(&img))
                    .flatten();
                if let Ok(mut v) = f2.lock() {
                    v.push((at, wall, colour, stamp));
                }
            }
        });
        TcPlayer { child, frames }
    }

    /// When `want` was first decoded after `t0`.
    pub fn first_after(&self, t0: Instant, want: Seen) -> Option<Duration> {
        let v = self.frames.lock().ok()?;
        v.iter()
            .find(|(t, _, k, _)| *t >= t0 && *k == want)
            .map(|(t, ..)| *t - t0)
    }

    /// Median age (s) of the frames of `want` decoded within [from, to].
    pub fn delay(&self, want: Seen, from: Instant, to: Instant, base_us: u64) -> Option<f64> {
        let v = self.frames.lock().ok()?;
        let d: Vec<f64> = v
            .iter()
            .filter(|(t, _, k, _)| *t >= from && *t <= to && *k == want)
            .filter_map(|(_, wall, _, s)| {
                Some((*wall as f64 - (base_us + (*s)? * 1000) as f64) / 1e6)
            })
            .collect();
        stats(d).map(|(m, ..)| m)
    }
}

impl Drop for TcPlayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The planned-switch runs (the `obs_splice` test and the `obs_switch`
/// bench): frames of both streamers, and the lab one's keyframe interval.
const SWITCH_FPS: u32 = 30;
const SWITCH_GOP: u32 = 60; // 2 s

/// A headless OBS playing `nginx`'s output for the planned-switch runs:
/// 320x180 at 30 fps (screenshots 100 ms apart fall on different frames),
/// its media source unmuted so its meters hear the stream.
pub fn switch_obs(nginx: &Nginx) -> Obs {
    Obs::start(ObsOpts {
        media_url: nginx.rtmp_url("motherstream", "live"),
        media_audio: true,
        width: 320,
        height: 180,
        fps: SWITCH_FPS,
        ..ObsOpts::default()
    })
}

/// What a planned switch is measured by: OBS's scene item and media
/// events, and the media source's meters.
pub fn switch_watch(obs: &Obs) -> EventWatch {
    obs.watch(
        super::obs::EV_SCENE_ITEMS
            | super::obs::EV_MEDIA_INPUTS
            | super::obs::EV_INPUT_VOLUME_METERS,
        super::obs::MEDIA,
    )
}

/// A streamer of the planned-switch runs, publishing as `key`: red is
/// 320x180 with 48 kHz stereo and a keyframe every 2 s (the lab's
/// encoder), blue 640x360 with 44.1 kHz mono and x264's defaults as OBS
/// sends them (a keyframe every 8.3 s, B-frames): sizes, sample rates,
/// keyframe intervals and B-frames differ across every cut. 30 fps.
pub fn switch_publisher(seen: Seen, url: &str, key: &str, base_us: u64, dir: &Path) -> TcPublisher {
    let (colour, size, audio, encoder) = match seen {
        Seen::Red => (
            "red",
            (320, 180),
            (48_000, 2),
            Encoder::Lab { gop: SWITCH_GOP },
        ),
        Seen::Blue => ("blue", (640, 360), (44_100, 1), Encoder::Defaults),
        other => panic!("no switch publisher shows {other:?}"),
    };
    TcPublisher::start(
        url, key, colour, size, SWITCH_FPS, encoder, audio, base_us, dir,
    )
}

/// Planned switch number `n`: after a pause that gives each switch its own
/// keyframe phase, `POST /api/move` puts `key` first (nobody is
/// disconnected); then the cut as OBS shows it, until `seen` (with `key`'s
/// name text) has been on screen for `settle`, 8 s at most. The move's time
/// and the cut.
#[allow(clippy::too_many_arguments)]
pub fn planned_switch(
    daemon: &Daemon,
    c: &mut ObsClient,
    watch: &EventWatch,
    n: usize,
    key: &str,
    seen: Seen,
    base_us: u64,
    settle: Duration,
) -> (Instant, Cut) {
    // A new keyframe phase for each switch.
    std::thread::sleep(Duration::from_millis((n as u64 * 670) % 2000));
    let t0 = Instant::now();
    let r = daemon.admin(
        "/api/move",
        &format!(r#"{{"name":"{key}","position":0}}"#),
        None,
    );
    assert_eq!(r.status, 200, "move {n}: {}", r.body);
    let name = daemon.guest(key);
    let cut = measure_cut(
        c,
        watch,
        t0,
        seen,
        Some((super::obs::NAME, name.as_str())),
        base_us,
        settle,
        Duration::from_secs(8),
    );
    (t0, cut)
}
