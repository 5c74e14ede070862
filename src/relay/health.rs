//! How well a source's stream comes through, measured from its tags alone.
//! Pure: arrival times are passed in (ms on any monotonic line).
//!
//! What decides the state is media *arrival*, never keyframes: OBS's default
//! encoder sends a keyframe every 8.3 s, and a source that sends frames is
//! not stalled however far apart its keyframes are.
//!
//! * **stalled**: no video (audio for an audio-only source) for
//!   `stall_ms`, or for three of its own frame intervals if that is longer;
//! * **starved**: for `starve_ms` in a row, the last second carried less
//!   than `starve_ratio` of the stream's own median bitrate, or fewer than
//!   `min_fps` frames (half its own median frame rate if that is lower: a
//!   stream sent at 5 fps on purpose is not starved);
//! * back to **live** once frames have flowed `resume_ms` at their own pace
//!   (an encoder that was held back sends its backlog in a burst first;
//!   cutting back inside the burst would put the output ahead of the wall
//!   clock) and, from starved, the last second is above the floors again.

use std::collections::VecDeque;

use super::flv::Tag;
use super::headers::{aac_config, avc_size};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) stall_ms: u64,
    pub(crate) starve_ratio_pct: u32,
    pub(crate) min_fps: u32,
    pub(crate) starve_ms: u64,
    pub(crate) resume_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stall_ms: 500,
            starve_ratio_pct: 25,
            min_fps: 10,
            starve_ms: 3000,
            resume_ms: 300,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum State {
    /// Nothing has arrived yet.
    Waiting,
    Live,
    Stalled,
    Starved,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Live => "live",
            State::Stalled => "stalled",
            State::Starved => "starved",
        }
    }

    /// Stalled or starved: the audience should not see this stream.
    pub(crate) fn unhealthy(self) -> bool {
        matches!(self, State::Stalled | State::Starved)
    }
}

/// What the stream's headers announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Format {
    /// From the AVC SPS (cropped).
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    pub(crate) video_codec: Option<&'static str>,
    pub(crate) audio_codec: Option<&'static str>,
    pub(crate) audio_rate: Option<u32>,
    pub(crate) audio_channels: Option<u8>,
    /// Some frame had a composition offset: the encoder uses B-frames.
    pub(crate) bframes: bool,
}

/// A measurement, as shown to people.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) state: Option<State>,
    /// When the state began (the caller's ms line): for a stall, when the
    /// last media arrived.
    pub(crate) since_ms: u64,
    /// How long the state has lasted when the report was made.
    pub(crate) age_ms: u64,
    /// Over the last second of arrivals.
    pub(crate) kbps: u32,
    /// Frames per second ×10 over the last second.
    pub(crate) fps_x10: u32,
    /// The stream's own median over the last minute.
    pub(crate) median_kbps: u32,
    /// Source time between its last two keyframes.
    pub(crate) keyframe_ms: Option<u64>,
    /// Audio arrived in the last 2 s.
    pub(crate) audio_present: bool,
    pub(crate) format: Format,
}

const WINDOW_MS: u64 = 1000;
const MEDIAN_SAMPLES: usize = 60;
/// Per-second samples before the relative bitrate floor applies.
const MIN_SAMPLES: usize = 5;
const AUDIO_PRESENT_MS: u64 = 2000;
/// A burst is src time running this far ahead of arrival time.
const PACE_SLACK_MS: i64 = 150;
/// The stall limit before a stream's frame interval is known.
const UNKNOWN_RATE_STALL_MS: u64 = 2000;
/// Window of the lag estimate (two are kept).
const LAG_WINDOW_MS: u64 = 10_000;

#[derive(Clone, Copy)]
struct Arrival {
    at: u64,
    bytes: u32,
    video_frame: bool,
    /// Unwrapped source timestamp (video frames).
    src: i64,
}

pub(crate) struct Health {
    cfg: Config,
    state: State,
    since: u64,
    window: VecDeque<Arrival>,
    samples: VecDeque<u32>,
    fps_samples: VecDeque<u32>,
    /// Medians of the samples, updated once a second (not per tag).
    median_kbps: Option<u32>,
    median_fps_x10: Option<u32>,
    next_sample: Option<u64>,
    last_video: Option<u64>,
    last_audio: Option<u64>,
    last_any: Option<u64>,
    has_video: bool,
    frame_ms: Option<u64>,
    /// Frame steps in a row far above `frame_ms`.
    rate_outliers: u32,
    last_frame_src: Option<i64>,
    last_key_src: Option<i64>,
    keyframe_ms: Option<u64>,
    unwrap: Option<(u32, i64)>,
    /// Since when the last second has been below the floors.
    low_since: Option<u64>,
    /// Since when it has been fine (leaving starved).
    ok_since: Option<u64>,
    /// The least `arrival − src` of video frames while live, in this window
    /// and the last (network delay only ever adds to it): a frame that
    /// comes back to it after a stall is fresh, not backlog.
    lag_cur: Option<(i64, u64)>,
    lag_prev: Option<i64>,
    /// The last frame's `arrival − src`.
    last_lag: Option<i64>,
    format: Format,
}

impl Health {
    pub(crate) fn new(cfg: Config, now_ms: u64) -> Health {
        Health {
            cfg,
            state: State::Waiting,
            since: now_ms,
            window: VecDeque::new(),
            samples: VecDeque::new(),
            fps_samples: VecDeque::new(),
            median_kbps: None,
            median_fps_x10: None,
            next_sample: None,
            last_video: None,
            last_audio: None,
            last_any: None,
            has_video: false,
            frame_ms: None,
            rate_outliers: 0,
            last_frame_src: None,
            last_key_src: None,
            keyframe_ms: None,
            unwrap: None,
            low_since: None,
            ok_since: None,
            lag_cur: None,
            lag_prev: None,
            last_lag: None,
            format: Format::default(),
        }
    }

    /// New limits (a reload) apply from now on.
    pub(crate) fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    fn unwrap_ts(&mut self, raw: u32) -> i64 {
        let v = match self.unwrap {
            None => i64::from(raw),
            Some((last_raw, last)) => last + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.unwrap = Some((raw, v));
        v
    }

    /// Our reader of the stream connected again (it ended on our side, or
    /// nginx dropped it): its gap is not the streamer's. nginx sends audio
    /// at once and video from the next keyframe, so until a video frame
    /// arrives any media counts; timestamps may start afresh.
    pub(crate) fn reconnected(&mut self, now_ms: u64) {
        self.has_video = false;
        if self.last_any.is_some() {
            self.last_any = Some(now_ms);
        }
        self.unwrap = None;
        self.lag_cur = None;
        self.lag_prev = None;
        self.last_lag = None;
        self.last_frame_src = None;
        self.last_key_src = None;
        self.window.clear();
    }

    /// One tag arrived. Returns the new state if it changed.
    pub(crate) fn tag(&mut self, tag: &Tag, now_ms: u64) -> Option<State> {
        let video = tag.is_video();
        if !video && !tag.is_audio() {
            return None;
        }
        let ts = self.unwrap_ts(tag.ts);
        let mut frame = false;
        if video {
            if tag.is_avc_seq_header() {
                if let Some((w, h)) = avc_size(&tag.data) {
                    self.format.width = Some(w);
                    self.format.height = Some(h);
                }
            } else if tag.is_avc_nalu() || tag.video_codec().is_some_and(|c| c != 7) {
                frame = true;
            }
            if let Some(c) = tag.video_codec() {
                self.format.video_codec = Some(video_codec_name(c, tag.is_enhanced()));
            }
            if frame {
                self.has_video = true;
                self.last_video = Some(now_ms);
                if tag.composition_time() != 0 {
                    self.format.bframes = true;
                }
                if let Some(last) = self.last_frame_src {
                    let d = ts - last;
                    // Up to 5 s: a slideshow at 1 fps has its own pace. A
                    // hole in the timestamps (nginx drops frames of a
                    // subscriber that falls behind, e.g. in a backlog burst)
                    // is not its rate: a step over 4× the known interval
                    // counts only when it repeats.
                    let d = d.clamp(0, 5000) as u64;
                    let outlier = self.frame_ms.is_some_and(|f| d > f * 4);
                    self.rate_outliers = if outlier { self.rate_outliers + 1 } else { 0 };
                    if d > 0 && (!outlier || self.rate_outliers >= 3) {
                        // Smoothed, so one late frame does not move it much.
                        self.frame_ms = Some(self.frame_ms.map_or(d, |f| (f * 7 + d) / 8));
                    }
                }
                self.last_frame_src = Some(ts);
                self.observe_lag(now_ms as i64 - ts, now_ms);
                if tag.is_keyframe() {
                    if let Some(k) = self.last_key_src {
                        if ts > k {
                            self.keyframe_ms = Some((ts - k) as u64);
                        }
                    }
                    self.last_key_src = Some(ts);
                }
            }
        } else {
            if tag.is_aac_seq_header() {
                if let Some((rate, ch)) = aac_config(&tag.data) {
                    self.format.audio_rate = Some(rate);
                    self.format.audio_channels = Some(ch);
                }
            }
            if let Some(f) = tag.audio_format() {
                self.format.audio_codec = Some(audio_codec_name(f, tag.is_enhanced()));
            }
            self.last_audio = Some(now_ms);
        }
        self.last_any = Some(now_ms);
        self.window.push_back(Arrival {
            at: now_ms,
            bytes: tag.data.len() as u32,
            video_frame: frame,
            src: ts,
        });
        self.poll(now_ms)
    }

    fn observe_lag(&mut self, lag: i64, now_ms: u64) {
        self.last_lag = Some(lag);
        // Learnt only while live: backlog after a stall must not lower it.
        if !matches!(self.state, State::Live | State::Waiting) {
            return;
        }
        match self.lag_cur {
            Some((_, start)) if now_ms >= start + LAG_WINDOW_MS => {
                self.lag_prev = self.lag_cur.map(|(l, _)| l);
                self.lag_cur = Some((lag, now_ms));
            }
            Some((l, start)) => self.lag_cur = Some((l.min(lag), start)),
            None => self.lag_cur = Some((lag, now_ms)),
        }
    }

    /// The last frame arrived as early as the stream's frames do when all
    /// is well: no backlog left.
    fn fresh(&self) -> bool {
        let best = match (self.lag_cur.map(|(l, _)| l), self.lag_prev) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (best, self.last_lag) {
            (Some(b), Some(l)) => l <= b + PACE_SLACK_MS,
            _ => false,
        }
    }

    /// Look at the clock (also with no tags). Returns the new state if it
    /// changed.
    pub(crate) fn poll(&mut self, now_ms: u64) -> Option<State> {
        while self
            .window
            .front()
            .is_some_and(|a| a.at + WINDOW_MS <= now_ms)
        {
            self.window.pop_front();
        }
        self.sample(now_ms);
        let new = self.decide(now_ms);
        if new != self.state {
            self.state = new;
            // A stall began when the media stopped, not when it was noticed.
            self.since = match new {
                State::Stalled => self.last_video.or(self.last_any).unwrap_or(now_ms),
                _ => now_ms,
            };
            self.low_since = None;
            self.ok_since = None;
            Some(new)
        } else {
            None
        }
    }

    /// One bitrate and frame-rate sample per second, for the medians.
    fn sample(&mut self, now_ms: u64) {
        if self.last_any.is_none() {
            return;
        }
        let next = *self.next_sample.get_or_insert(now_ms + WINDOW_MS);
        if now_ms < next {
            return;
        }
        // Seconds with no media at all are the stall rule's business.
        if !matches!(self.state, State::Stalled) {
            self.samples.push_back(self.kbps());
            self.fps_samples.push_back(self.fps_x10());
            while self.samples.len() > MEDIAN_SAMPLES {
                self.samples.pop_front();
                self.fps_samples.pop_front();
            }
            self.median_kbps = Health::median(&self.samples);
            self.median_fps_x10 = Health::median(&self.fps_samples);
        }
        self.next_sample = Some(now_ms.max(next) + WINDOW_MS);
    }

    fn kbps(&self) -> u32 {
        let bytes: u64 = self.window.iter().map(|a| u64::from(a.bytes)).sum();
        (bytes * 8 / WINDOW_MS) as u32
    }

    fn fps_x10(&self) -> u32 {
        self.window.iter().filter(|a| a.video_frame).count() as u32 * 10 * 1000 / WINDOW_MS as u32
    }

    fn median(v: &VecDeque<u32>) -> Option<u32> {
        if v.len() < MIN_SAMPLES {
            return None;
        }
        let mut s: Vec<u32> = v.iter().copied().collect();
        s.sort_unstable();
        Some(s[s.len() / 2])
    }

    /// No media for longer than the stall limit.
    pub(crate) fn stall_limit_ms(&self) -> u64 {
        // Until its frame rate is known (its first frames), a slow stream
        // gets the benefit of the doubt.
        // (Audio, judged while no video comes, has no such doubt.)
        let own = match self.frame_ms {
            Some(f) => f * 3,
            None if self.has_video => UNKNOWN_RATE_STALL_MS,
            None => 0,
        };
        self.cfg.stall_ms.max(own)
    }

    fn gap_ms(&self, now_ms: u64) -> Option<u64> {
        let last = if self.has_video {
            self.last_video
        } else {
            self.last_any
        };
        last.map(|t| now_ms.saturating_sub(t))
    }

    /// The last second is below the floors.
    fn low(&self) -> bool {
        if !self.has_video {
            return false;
        }
        // Judged against the stream's own rates only once they are known.
        let Some(own_fps) = self.median_fps_x10 else {
            return false;
        };
        if self.fps_x10() < (own_fps / 2).min(self.cfg.min_fps * 10) {
            return true;
        }
        match self.median_kbps {
            Some(m) => {
                u64::from(self.kbps()) * 100 < u64::from(m) * u64::from(self.cfg.starve_ratio_pct)
            }
            None => false,
        }
    }

    /// Frames have arrived for `resume_ms` at about their own pace (not a
    /// backlog burst).
    fn paced(&self, now_ms: u64) -> bool {
        let from = now_ms.saturating_sub(self.cfg.resume_ms);
        let frames: Vec<&Arrival> = self
            .window
            .iter()
            .filter(|a| a.video_frame || !self.has_video)
            .collect();
        let Some(first) = frames.first() else {
            return false;
        };
        if first.at > from {
            // Not flowing for long enough yet.
            return false;
        }
        let recent: Vec<&&Arrival> = frames.iter().filter(|a| a.at >= from).collect();
        let (Some(a), Some(b)) = (recent.first(), recent.last()) else {
            return false;
        };
        if recent.len() < 2 {
            return false;
        }
        let src_span = b.src - a.src;
        let arr_span = b.at as i64 - a.at as i64;
        src_span <= arr_span + PACE_SLACK_MS
    }

    fn decide(&mut self, now_ms: u64) -> State {
        if self.last_any.is_none() {
            return State::Waiting;
        }
        let stalled = self
            .gap_ms(now_ms)
            .is_some_and(|g| g >= self.stall_limit_ms());
        if stalled {
            return State::Stalled;
        }
        let low = self.low();
        match self.state {
            State::Waiting => State::Live,
            State::Live => {
                if low {
                    let since = *self.low_since.get_or_insert(now_ms);
                    if now_ms - since >= self.cfg.starve_ms {
                        return State::Starved;
                    }
                } else {
                    self.low_since = None;
                }
                State::Live
            }
            State::Stalled => {
                // Back at the first frame that is not backlog (or after
                // frames have come at their pace for a while).
                let frame_now = self.last_video == Some(now_ms) || !self.has_video;
                if (frame_now && self.fresh()) || self.paced(now_ms) {
                    State::Live
                } else {
                    State::Stalled
                }
            }
            State::Starved => {
                if low || !self.paced(now_ms) {
                    self.ok_since = None;
                    return State::Starved;
                }
                let since = *self.ok_since.get_or_insert(now_ms);
                if now_ms - since >= self.cfg.resume_ms {
                    State::Live
                } else {
                    State::Starved
                }
            }
        }
    }

    /// When `poll` must be called next to notice a stall or a state change
    /// that no tag would bring: an absolute time, possibly already past
    /// (never "a moment from now", which a caller comparing with a clock
    /// read a moment earlier would never reach).
    pub(crate) fn next_check(&self) -> Option<u64> {
        match self.state {
            State::Waiting => None,
            State::Live => {
                let last = if self.has_video {
                    self.last_video
                } else {
                    self.last_any
                };
                let stall = last.map(|t| t + self.stall_limit_ms());
                // Low seconds are noticed by tags; a trickle may bring few.
                let low = self.low_since.map(|s| s + self.cfg.starve_ms);
                [stall, low, self.next_sample].into_iter().flatten().min()
            }
            // Leaving these is driven by tags.
            State::Stalled | State::Starved => self.next_sample,
        }
    }

    pub(crate) fn report(&self, now_ms: u64) -> Report {
        Report {
            state: Some(self.state),
            since_ms: self.since,
            age_ms: now_ms.saturating_sub(self.since),
            kbps: self.kbps(),
            fps_x10: self.fps_x10(),
            median_kbps: self.median_kbps.unwrap_or(0),
            keyframe_ms: self.keyframe_ms,
            audio_present: self.last_audio.is_some_and(|t| {
                self.last_any
                    .is_some_and(|l| l.saturating_sub(t) < AUDIO_PRESENT_MS)
            }),
            format: self.format.clone(),
        }
    }
}

fn video_codec_name(c: u8, enhanced: bool) -> &'static str {
    if enhanced {
        return "enhanced RTMP";
    }
    match c {
        7 => "H.264",
        2 => "Sorenson H.263",
        4 | 5 => "VP6",
        12 => "HEVC",
        13 => "AV1",
        _ => "other",
    }
}

fn audio_codec_name(f: u8, enhanced: bool) -> &'static str {
    if enhanced {
        return "enhanced RTMP";
    }
    match f {
        10 => "AAC",
        2 | 14 => "MP3",
        11 => "Speex",
        13 => "Opus",
        0 | 3 => "PCM",
        _ => "other",
    }
}

/// Plain advice for the streamer, from what arrives.
pub(crate) fn hints(r: &Report) -> Vec<String> {
    let mut v = Vec::new();
    let fps = f64::from(r.fps_x10) / 10.0;
    match r.state {
        Some(State::Stalled) => v.push(
            "nothing arrives from you right now — check your connection (a wired one is best)"
                .to_string(),
        ),
        Some(State::Starved) => v.push(format!(
            "we get {} kbit/s at {fps:.0} fps from you — lower your bitrate or use a wired connection",
            r.kbps
        )),
        _ => {}
    }
    if let Some(k) = r.keyframe_ms.filter(|k| *k > 2500) {
        v.push(format!(
            "keyframe every {:.1} s — set Keyframe Interval to 2 in OBS → Settings → Output",
            k as f64 / 1000.0
        ));
    }
    if r.state == Some(State::Live) && !r.audio_present {
        v.push("no audio arrives — add an audio source in OBS".to_string());
    }
    if let Some(c) = r.format.video_codec.filter(|c| *c != "H.264") {
        v.push(format!("video is {c} — set the encoder to x264 / H.264"));
    }
    if let Some(c) = r.format.audio_codec.filter(|c| *c != "AAC") {
        v.push(format!("audio is {c} — set the audio encoder to AAC"));
    }
    v
}

#[cfg(test)]
mod tests;
