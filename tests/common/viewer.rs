//! A decoding viewer of the output: ffmpeg plays the RTMP stream, decodes
//! every frame (`showinfo` / `ashowinfo`), and a reader thread stamps each
//! decoded frame with its wall-clock arrival. Tests read the gaps between
//! frames, picture sizes and sample rates from that record.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{signal_group, wait_child};
use std::os::unix::process::CommandExt;

#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Instant,
    /// Video: (width, height); audio: None.
    pub size: Option<(u32, u32)>,
    /// Presentation time (s) as decoded, and for audio the frame's
    /// duration (s).
    pub pts: Option<f64>,
    pub duration: Option<f64>,
}

pub struct Viewer {
    child: Child,
    frames: Arc<Mutex<Vec<Frame>>>,
    pub started: Instant,
}

impl Viewer {
    pub fn start(url: &str) -> Viewer {
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "info",
                "-fpsprobesize",
                "0",
            ])
            .args(["-i", url])
            .args([
                "-filter_complex",
                "[0:v]showinfo[v];[0:a]ashowinfo[a]",
                "-map",
                "[v]",
                "-map",
                "[a]",
                "-f",
                "null",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn ffmpeg viewer");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("viewer stderr");
        let f2 = frames.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                let at = Instant::now();
                if line.contains("Parsed_showinfo") && line.contains(" n:") {
                    let size = field(&line, " s:").and_then(|s| {
                        let (w, h) = s.split_once('x')?;
                        Some((w.parse().ok()?, h.parse().ok()?))
                    });
                    let pts = field(&line, " pts_time:").and_then(|p| p.parse().ok());
                    push(
                        &f2,
                        Frame {
                            at,
                            size,
                            pts,
                            duration: None,
                        },
                    );
                } else if line.contains("Parsed_ashowinfo") && line.contains(" n:") {
                    let rate: Option<u32> = field(&line, " rate:").and_then(|r| r.parse().ok());
                    let pts = field(&line, " pts_time:").and_then(|p| p.parse().ok());
                    let samples: Option<f64> =
                        field(&line, " nb_samples:").and_then(|n| n.parse().ok());
                    let duration = match (samples, rate) {
                        (Some(n), Some(r)) if r > 0 => Some(n / f64::from(r)),
                        _ => None,
                    };
                    push(
                        &f2,
                        Frame {
                            at,
                            size: None,
                            pts,
                            duration,
                        },
                    );
                }
            }
        });
        Viewer {
            child,
            frames,
            started: Instant::now(),
        }
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn video(&self) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.size.is_some())
            .collect()
    }

    /// Wait until a decoded video frame of `size` arrives after `since`.
    pub fn wait_size(
        &self,
        size: (u32, u32),
        since: Instant,
        timeout: Duration,
    ) -> Option<Instant> {
        self.wait_frame(since, timeout, |f| f.size == Some(size))
    }

    fn wait_frame(
        &self,
        since: Instant,
        timeout: Duration,
        want: impl Fn(&Frame) -> bool,
    ) -> Option<Instant> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(f) = self.frames().into_iter().find(|f| f.at >= since && want(f)) {
                return Some(f.at);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The gap into the video frame that arrived at `at` (a cut's first
    /// picture): from the frame before it. None without one before.
    pub fn gap_into(&self, at: Instant) -> Option<Duration> {
        let before = self.video().into_iter().map(|f| f.at).rfind(|t| *t < at)?;
        Some(at - before)
    }

    /// Longest gap between decoded video frames within [from, to].
    pub fn longest_video_gap(&self, from: Instant, to: Instant) -> Duration {
        let v: Vec<Instant> = self
            .video()
            .into_iter()
            .map(|f| f.at)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        v.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(Duration::MAX)
    }

    /// Largest forward step between consecutive decoded video PTS whose
    /// frames arrived within [from, to], in seconds (a step backwards
    /// counts by its size too).
    pub fn largest_video_pts_step(&self, from: Instant, to: Instant) -> f64 {
        let p: Vec<f64> = self
            .video()
            .into_iter()
            .filter(|f| f.at >= from && f.at <= to)
            .filter_map(|f| f.pts)
            .collect();
        p.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max)
    }

    /// Largest hole (or overlap) in the decoded audio timeline within
    /// [from, to]: next PTS minus (PTS + duration) of the one before, in
    /// seconds.
    pub fn largest_audio_hole(&self, from: Instant, to: Instant) -> f64 {
        let a: Vec<(f64, f64)> = self
            .frames()
            .into_iter()
            .filter(|f| f.size.is_none() && f.at >= from && f.at <= to)
            .filter_map(|f| Some((f.pts?, f.duration?)))
            .collect();
        a.windows(2)
            .map(|w| (w[1].0 - (w[0].0 + w[0].1)).abs())
            .fold(0.0, f64::max)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let i = line.find(name)? + name.len();
    line[i..].split_whitespace().next()
}

fn push(f: &Arc<Mutex<Vec<Frame>>>, fr: Frame) {
    if let Ok(mut v) = f.lock() {
        v.push(fr);
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = wait_child(&mut self.child, Duration::from_secs(3));
    }
}
