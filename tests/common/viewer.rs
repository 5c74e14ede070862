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
    /// Audio: sample rate.
    pub rate: Option<u32>,
    /// Presentation time in the output's timeline, seconds (what a player
    /// pacing by timestamp, like OBS, goes by).
    pub pts: Option<f64>,
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
                    push(
                        &f2,
                        Frame {
                            at,
                            size,
                            rate: None,
                            pts: field(&line, " pts_time:").and_then(|p| p.parse().ok()),
                        },
                    );
                } else if line.contains("Parsed_ashowinfo") && line.contains(" n:") {
                    let rate = field(&line, " rate:").and_then(|r| r.parse().ok());
                    push(
                        &f2,
                        Frame {
                            at,
                            size: None,
                            rate,
                            pts: field(&line, " pts_time:").and_then(|p| p.parse().ok()),
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

    /// Wait until a decoded audio frame at `rate` Hz arrives after `since`.
    pub fn wait_rate(&self, rate: u32, since: Instant, timeout: Duration) -> Option<Instant> {
        self.wait_frame(since, timeout, |f| f.rate == Some(rate))
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
