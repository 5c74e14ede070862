//! The splicer: turns the tags of several live sources into one continuous
//! FLV output that shows one source at a time. Pure: no I/O, no clock reads;
//! arrival times come from the caller.
//!
//! The rules come from measurements (`notes/splice.md`):
//! - a cut starts on a keyframe of the new source, preceded by its AVC and
//!   AAC sequence headers (always both);
//! - a planned switch keeps the old source on until the new one's next
//!   keyframe (timeout → catch-up); a forced switch catches up at once from
//!   the new source's buffered GOP (video squeezed 1 ms apart, its audio
//!   dropped);
//! - output timestamps follow the wall clock, never "last + one frame": OBS
//!   plays by timestamp, so any run of the output timeline ahead of real time
//!   is delay it keeps for good.
//!
//! How time is kept: the output has one *wall line*, `out = arrival + base`
//! (`base` fixed at the first cut). Each source has its own line
//! `arrival = src_ts + line`, estimated as the minimum of `arrival − src_ts`
//! over the last 2–4 s (the least delayed tags; network jitter only ever adds
//! delay). A source goes on air with `offset = line + base`, so its tags land
//! where their arrival puts them, and cutting from A to B gives
//! `out(B) = out(last of A) + (arrival(B) − arrival(last of A))` without
//! carrying A's jitter into B. Only the "nothing goes backwards" bounds can
//! push B higher (a catch-up burst needs one ms per buffered frame, B's first
//! PTS must clear A's highest PTS); that excess is *debt*, repaid by lowering
//! the offset (audio and video together, so A/V sync holds) 1 ms per
//! `SLEW_EVERY_MS` of source time, so repeated cuts cannot creep.
//!
//! Bridges (long keyframe intervals, `notes/splice.md` items 10-12): a
//! source may have a *bridge*, a re-encode of its video with an IDR every
//! ~0.25 s made by the caller (an ffmpeg child) from the feed this splicer
//! hands out (`take_feed`: the source's video from a keyframe on, rebased
//! to start near 0). Its output comes back through `push_bridge` and is
//! mapped onto the source's own clock (the encoder keeps the timestamps).
//! A cut may then start on a bridge IDR (planned: the next one; forced: a
//! catch-up of at most one short bridge GOP) and play bridge frames, with
//! the source's own audio, until the source's next own keyframe: there the
//! output hands over to the source's own frames (their sequence header
//! first), lifted just enough that DTS and PTS keep rising.

use std::collections::{HashMap, VecDeque};

use super::flv::{self, Tag};

pub type SourceId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchKind {
    /// Keep the old source on until the new one's next keyframe.
    Planned,
    /// The old source is gone (or must go now): catch up at once.
    Forced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutHow {
    /// On a keyframe of the new source as it arrived.
    Keyframe,
    /// From the new source's buffered GOP, at once.
    CatchUp,
    /// A planned switch whose keyframe did not come in time.
    TimeoutCatchUp,
    /// On an IDR of the new source's bridge (re-encode) as it arrived.
    Bridge,
    /// From the bridge's buffered (short) GOP, at once.
    BridgeCatchUp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The output now shows `to` (emitted exactly when its first tags are
    /// emitted).
    Cut {
        from: Option<SourceId>,
        to: SourceId,
        how: CutHow,
        /// From the `switch()` call to the cut.
        waited_ms: u64,
        at_ms: u64,
    },
    /// A source carries something other than H.264 video / AAC audio (or
    /// enhanced RTMP), or no video at all: it cannot be spliced. Emitted once
    /// per source; the splicer never cuts to it.
    Unsupported { source: SourceId, what: String },
    /// The on-air source's own keyframe took over from its bridge.
    BridgeHandover {
        source: SourceId,
        /// Bridge frames that went out.
        frames: u64,
        /// How far the output timeline was lifted at the handover (ms).
        lift_ms: i64,
        /// How far (source time) the bridge's output trailed the source's
        /// own video at its last frame: the encoder's latency.
        lag_ms: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// None = observed GOP of the target + 1000 ms, 3000 ms before a GOP is
    /// seen.
    pub planned_timeout_ms: Option<u64>,
    /// Cap of the per-source GOP buffer (source time from its keyframe).
    pub max_buffer_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            planned_timeout_ms: None,
            max_buffer_ms: 10_000,
        }
    }
}

/// Debt (output timeline ahead of the wall line) is repaid 1 ms per this
/// much source time: a 2 % rate, invisible (no resampling; players smooth
/// 1 ms), and a 60-frame burst is repaid in 3 s.
pub const SLEW_EVERY_MS: i64 = 50;
/// Byte cap of one source's GOP buffer, whatever `max_buffer_ms` says.
pub const MAX_BUFFER_BYTES: usize = 32 << 20;
/// A source whose timestamps jump by more than this (against its arrival
/// times) has restarted its clock: it is re-anchored on the wall line.
pub const DISCONTINUITY_MS: i64 = 1000;
/// A bridge frame this much older (source time) than the source's newest
/// video is backlog, not a picture to cut on.
pub const BRIDGE_FRESH_MS: i64 = 600;
/// A source whose keyframes are at most this far apart needs no bridge: a
/// planned cut waits at most this long for its keyframe. 2 s keyframes
/// pass through untouched, measured both ways in tests/splice.rs on a
/// loaded 2-core machine (bridges over 0.5 s tried): ten planned moves a
/// run, picture after 0.04-0.50 s bridged against 1.1-2.1 s, longest frame
/// gap at most 0.08 s either way; but ten slot ends a run (the old
/// publisher dropped, a new one starting, the new streamer playing bridge
/// frames until their own keyframe 0.25-0.5 s later) showed 0.10-0.27 s
/// gaps in 3 of 3 runs bridged against at most 0.05 s passthrough. Traced
/// with the viewer's frame times against the journal: the output stalls
/// 0.14-0.33 s at the slot-end decision itself (the old streamer's frames,
/// none lost), bridged or not; passthrough cuts 0.3-1.7 s later, outside
/// the test's window (the new picture ± 0.5 s), a bridged cut within
/// 0.25 s, inside it. That stall must go before 2 s streams get bridges.
/// Each bridge took 7-26 % of a core at 160x120-176x144.
pub const BRIDGE_OVER_GOP_MS: u64 = 2500;
/// A planned cut skips the bridge when the source's own keyframe is due
/// within this long: a bridge stint that short would cost a hand-over for
/// nothing.
pub const OWN_KEY_SOON_MS: i64 = 300;
/// Feed timestamps start here (room for negative composition offsets).
const FEED_START_MS: i64 = 1000;
/// A planned cut waits at most this long for the old source's pending
/// B-frames (a cut after a P-frame loses the B-frames displayed before it:
/// a skip of up to 4 frames).
const CLOSE_WAIT_MS: u64 = 200;
/// Output PTS of this many recent video frames are kept to tell whether
/// the old source has B-frames still to come.
const RECENT_PTS: usize = 16;
/// Audio kept per source to fill the hole at a cut.
const AUDIO_RING_MS: i64 = 1500;
/// At most this much of the new source's audio goes out before its first
/// picture at a cut (see `start_from`).
const MAX_AUDIO_FILL_MS: i64 = 300;
/// Bridged: hand over this long after the own keyframe even if the bridge
/// did not catch up with it (stalled or dead bridge).
const HANDOVER_TIMEOUT_MS: u64 = 1000;
/// Bridged: hand over once a bridge frame this close before the own
/// keyframe went out (one frame at 30 fps).
const HANDOVER_EARLY_MS: i64 = 35;
/// Window of the per-source line estimate (two windows are kept).
const LINE_WINDOW_MS: i64 = 2000;
const TIMEOUT_OVER_GOP_MS: u64 = 1000;
const TIMEOUT_BEFORE_GOP_MS: u64 = 3000;

/// A buffered video frame.
struct Frame {
    src: i64,
    cts: i32,
    tag: Tag,
}

#[derive(Default)]
struct Source {
    unsupported: bool,
    /// Last raw timestamp and its unwrapped value.
    unwrap: Option<(u32, i64)>,
    /// Last (unwrapped ts, arrival) per kind [audio, video], for
    /// discontinuity detection.
    last: [Option<(i64, u64)>; 2],
    /// Line estimate: minimum of `arrival − src` in this window and the last.
    line_cur: Option<i64>,
    line_prev: Option<i64>,
    line_window_start: i64,
    avc_seq: Option<Tag>,
    aac_seq: Option<Tag>,
    /// Video frames since the last keyframe (the keyframe first).
    gop: Vec<Frame>,
    gop_bytes: usize,
    last_key_src: Option<i64>,
    gop_ms: Option<u64>,
    /// Recent audio (unwrapped source ts), for the start of a cut.
    audio: VecDeque<(i64, Tag)>,
    newest_video: Option<i64>,
    bridge: Option<Bridge>,
    /// Bumped when the bridge must start afresh (new clock).
    bridge_epoch: u64,
}

/// A source's bridge: what was fed, what came back.
#[derive(Default)]
struct Bridge {
    /// Feed timestamp = source ts − origin.
    origin: Option<i64>,
    /// The bridge's output, on the source's clock: its sequence header and
    /// its frames since its last IDR.
    avc_seq: Option<Tag>,
    gop: Vec<Frame>,
    unwrap: Option<(u32, i64)>,
}

impl Bridge {
    fn newest(&self) -> Option<i64> {
        self.gop.last().map(|f| f.src + i64::from(f.cts))
    }
}

impl Source {
    /// Unwraps a 32-bit timestamp by the signed distance from the last one,
    /// so small reorderings go back and 2^32 wraps go on.
    fn unwrap_ts(&mut self, raw: u32) -> i64 {
        let v = match self.unwrap {
            None => i64::from(raw),
            Some((last_raw, last)) => last + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.unwrap = Some((raw, v));
        v
    }

    fn line(&self) -> Option<i64> {
        match (self.line_cur, self.line_prev) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Updates the line estimate; true when the timestamps jumped.
    fn observe(&mut self, video: bool, src: i64, arrival: u64) -> bool {
        let slot = usize::from(video);
        let jumped = match self.last[slot] {
            Some((last_src, last_arrival)) => {
                let d_src = src - last_src;
                let d_arr = arrival.saturating_sub(last_arrival) as i64;
                d_src < -DISCONTINUITY_MS || d_src - d_arr > DISCONTINUITY_MS
            }
            None => false,
        };
        self.last[slot] = Some((src, arrival));
        let v = arrival as i64 - src;
        if jumped {
            self.last[1 - slot] = None;
            self.line_prev = None;
            self.line_cur = None;
        }
        match self.line_cur {
            None => {
                self.line_cur = Some(v);
                self.line_window_start = src;
            }
            Some(_) if src - self.line_window_start >= LINE_WINDOW_MS => {
                self.line_prev = self.line_cur;
                self.line_cur = Some(v);
                self.line_window_start = src;
            }
            Some(cur) => self.line_cur = Some(cur.min(v)),
        }
        jumped
    }

    fn clear_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }
}

struct Active {
    id: SourceId,
    offset: i64,
    /// How far `offset` is above the wall line (repaid by slewing).
    debt: i64,
    slew_src: i64,
    /// The output restarted and the buffer had no keyframe: nothing of this
    /// source goes out until its next keyframe.
    awaiting_keyframe: bool,
    /// The previous source's highest PTS: until this source's next keyframe,
    /// disposable frames that would display at or before it are dropped
    /// (open-GOP leading frames).
    pts_floor: Option<i64>,
    /// On air through its bridge, until its own next keyframe.
    bridged: Option<Bridged>,
}

#[derive(Default)]
struct Bridged {
    /// The own keyframe to hand over at: its PTS (source clock) and arrival.
    handover: Option<(i64, u64)>,
    frames: u64,
    lag_ms: i64,
}

struct Pending {
    to: SourceId,
    kind: SwitchKind,
    requested_ms: u64,
    deadline: Option<u64>,
    /// The target is ready (how, since when) but the old source has
    /// B-frames still to come that display before a frame already sent:
    /// the cut waits for them (at most `CLOSE_WAIT_MS`).
    armed: Option<(CutHow, u64)>,
}

/// What went out last (unwrapped output time, ms).
#[derive(Default)]
struct OutState {
    last_video: Option<i64>,
    last_audio: Option<i64>,
    last_any: Option<i64>,
    max_pts: Option<i64>,
    /// PTS of the last `RECENT_PTS` video frames out.
    recent_pts: VecDeque<i64>,
}

impl OutState {
    /// Sends a video frame wanted at DTS `t`. Its DTS goes at least to
    /// `floor` and above the last video DTS out; its PTS stays at
    /// `t + cts` (never below its new DTS), its composition offset
    /// rewritten to match. A source with B-frames shows each frame an
    /// offset after its DTS: cut in after a source without them, its first
    /// frames' DTS fall below the old source's last one. Lifting the whole
    /// source over that bound put its pictures 0.1-0.15 s ahead of its
    /// audio line (a visible PTS step at every such cut); moving only the
    /// DTS of those few frames up costs nothing on screen.
    fn put_video(&mut self, tag: &Tag, t: i64, floor: i64, out: &mut Vec<Tag>) {
        let pts = t + i64::from(tag.composition_time());
        let dts = self.last_video.map_or(t, |l| t.max(l + 1)).max(floor);
        let pts = pts.max(dts);
        let cts = i32::try_from(pts - dts).unwrap_or(i32::MAX);
        out.push(retimed(&tag.with_composition_time(cts), dts));
        self.last_video = Some(dts);
        self.sent_pts(pts);
        self.last_any = Some(self.last_any.map_or(dts, |l| l.max(dts)));
    }

    fn sent_pts(&mut self, pts: i64) {
        if self.recent_pts.len() == RECENT_PTS {
            self.recent_pts.pop_front();
        }
        self.recent_pts.push_back(pts);
        self.max_pts = Some(self.max_pts.map_or(pts, |m| m.max(pts)));
    }

    /// Every frame that displays before the latest one sent has been sent:
    /// no hole in the recent PTS wider than 1.5 frame intervals.
    fn closed(&self) -> bool {
        let mut p: Vec<i64> = self.recent_pts.iter().copied().collect();
        // Shown in the order sent (no B-frames): nothing is pending.
        if p.len() < 3 || p.windows(2).all(|w| w[0] < w[1]) {
            return true;
        }
        p.sort_unstable();
        let d: Vec<i64> = p.windows(2).map(|w| w[1] - w[0]).collect();
        let Some(frame) = d.iter().copied().filter(|&x| x > 0).min() else {
            return true;
        };
        d.iter().all(|&x| x <= frame + frame / 2 + 1)
    }
}

pub struct Splicer {
    cfg: Config,
    sources: HashMap<SourceId, Source>,
    active: Option<Active>,
    pending: Option<Pending>,
    /// The source the output shows (or showed last): `from` of the next cut.
    shown: Option<SourceId>,
    /// `out = arrival + base`: the wall line, fixed at the first cut.
    base: Option<i64>,
    outst: OutState,
    /// Video for the bridges (see `take_feed`).
    feed: Vec<(SourceId, Tag)>,
}

/// Output time → FLV timestamp (wraps after 49.7 days like the input).
fn wire(t: i64) -> u32 {
    t.rem_euclid(1 << 32) as u32
}

fn retimed(tag: &Tag, t: i64) -> Tag {
    Tag {
        kind: tag.kind,
        ts: wire(t),
        data: tag.data.clone(),
    }
}

fn video_codec_name(codec: u8) -> &'static str {
    match codec {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "screen video v2",
        7 => "H.264",
        12 => "HEVC",
        13 => "AV1",
        _ => "unknown",
    }
}

fn audio_format_name(format: u8) -> &'static str {
    match format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        2 | 14 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        10 => "AAC",
        11 => "Speex",
        13 => "Opus",
        15 => "device-specific",
        _ => "unknown",
    }
}

fn fourcc_text(tag: &Tag) -> String {
    match tag.fourcc() {
        Some(cc) => {
            let name = match &cc {
                b"hvc1" => " (HEVC)",
                b"av01" => " (AV1)",
                b"vp09" => " (VP9)",
                b"avc1" => " (H.264)",
                b"Opus" => " (Opus)",
                b"fLaC" => " (FLAC)",
                b"ac-3" => " (AC-3)",
                b"ec-3" => " (E-AC-3)",
                b".mp3" => " (MP3)",
                b"mp4a" => " (AAC)",
                _ => "",
            };
            format!("'{}'{name}", String::from_utf8_lossy(&cc).escape_default())
        }
        None => "(no FourCC)".to_string(),
    }
}

/// Why this tag's source cannot be spliced, if it cannot.
fn unsupported_reason(tag: &Tag) -> Option<String> {
    if tag.is_video() {
        if tag.is_enhanced() {
            return Some(format!("enhanced RTMP video {}", fourcc_text(tag)));
        }
        match tag.video_codec() {
            Some(flv::VIDEO_CODEC_AVC) | None => None,
            Some(c) => Some(format!("video codec {c} ({})", video_codec_name(c))),
        }
    } else if tag.is_audio() {
        if tag.is_enhanced() {
            return Some(format!("enhanced RTMP audio {}", fourcc_text(tag)));
        }
        match tag.audio_format() {
            Some(flv::AUDIO_FORMAT_AAC) | None => None,
            Some(f) => Some(format!("audio format {f} ({})", audio_format_name(f))),
        }
    } else {
        None
    }
}

impl Splicer {
    pub fn new(cfg: Config) -> Splicer {
        Splicer {
            cfg,
            sources: HashMap::new(),
            active: None,
            pending: None,
            shown: None,
            base: None,
            outst: OutState::default(),
            feed: Vec::new(),
        }
    }

    /// Starts buffering a source's tags. Adding an id that exists starts its
    /// stream afresh (a reconnected reader: new timestamps, empty buffer)
    /// and keeps a pending switch to it; if it is on air, nothing of it goes
    /// out until its next keyframe, which is placed on the wall line again.
    pub fn add_source(&mut self, id: SourceId) {
        self.sources.insert(id, Source::default());
        if let Some(a) = self.active.as_mut().filter(|a| a.id == id) {
            a.awaiting_keyframe = true;
        }
    }

    /// The source is gone. If it was on air the output gets nothing until the
    /// caller switches; a pending switch to it is dropped.
    pub fn remove_source(&mut self, id: SourceId) {
        self.sources.remove(&id);
        if self.pending.as_ref().is_some_and(|p| p.to == id) {
            self.pending = None;
        }
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
    }

    pub fn active(&self) -> Option<SourceId> {
        self.active.as_ref().map(|a| a.id)
    }

    pub fn pending(&self) -> Option<SourceId> {
        self.pending.as_ref().map(|p| p.to)
    }

    /// The kind of the pending switch.
    pub fn pending_kind(&self) -> Option<SwitchKind> {
        self.pending.as_ref().map(|p| p.kind)
    }

    /// The source the output shows, or showed last (it may be gone).
    pub fn shown(&self) -> Option<SourceId> {
        self.shown
    }

    /// Observed keyframe interval of a source (source time), once it has sent
    /// two keyframes.
    pub fn gop_ms(&self, id: SourceId) -> Option<u64> {
        self.sources.get(&id).and_then(|s| s.gop_ms)
    }

    /// The source has a keyframe buffered: a catch-up to it can start now.
    pub fn has_keyframe(&self, id: SourceId) -> bool {
        self.sources
            .get(&id)
            .is_some_and(|s| !s.gop.is_empty() && s.avc_seq.is_some() && !s.unsupported)
            || self.bridge_fresh(id)
    }

    /// Whether `id` should have a bridge running: its keyframes are more
    /// than `BRIDGE_OVER_GOP_MS` apart (seen, or its first is that old), and
    /// it is not on air on its own frames. The caller decides which sources may have one (the
    /// next streamer's).
    pub fn bridge_wanted(&self, id: SourceId) -> bool {
        let Some(s) = self.sources.get(&id) else {
            return false;
        };
        if s.unsupported || s.last_key_src.is_none() {
            return false;
        }
        if let Some(a) = self.active.as_ref().filter(|a| a.id == id) {
            return a.bridged.is_some();
        }
        // Before its second keyframe: once its first is that old.
        let since_key = match (s.newest_video, s.last_key_src) {
            (Some(n), Some(k)) => (n - k).max(0) as u64,
            _ => 0,
        };
        s.gop_ms
            .map_or(since_key > BRIDGE_OVER_GOP_MS, |g| g > BRIDGE_OVER_GOP_MS)
    }

    /// A bridge starts (`on`) or stopped. Starting hands its encoder the
    /// buffered GOP first (see `take_feed`). A bridge that stops while the
    /// source is on air through it leaves the output waiting for the
    /// source's own next keyframe.
    pub fn set_bridge(&mut self, id: SourceId, on: bool) {
        let Some(src) = self.sources.get_mut(&id) else {
            return;
        };
        if !on {
            src.bridge = None;
            if let Some(a) = self.active.as_mut().filter(|a| a.id == id) {
                if a.bridged.take().is_some() {
                    a.awaiting_keyframe = true;
                }
            }
            return;
        }
        if src.bridge.is_some() {
            return;
        }
        let mut b = Bridge::default();
        if let (Some(seq), Some(first)) = (src.avc_seq.as_ref(), src.gop.first()) {
            let origin = first.src - FEED_START_MS;
            b.origin = Some(origin);
            self.feed.push((id, retimed(seq, FEED_START_MS)));
            for f in &src.gop {
                self.feed.push((id, retimed(&f.tag, f.src - origin)));
            }
        }
        src.bridge = Some(b);
    }

    /// The bridge of `id` must be restarted when this changes (the
    /// source's clock jumped: the feed starts afresh).
    pub fn bridge_epoch(&self, id: SourceId) -> u64 {
        self.sources.get(&id).map_or(0, |s| s.bridge_epoch)
    }

    /// Video tags to write to the bridges' encoders, in order: per source,
    /// its AVC sequence header, then its coded frames from a keyframe on,
    /// timestamps rebased to start at 1 s.
    pub fn take_feed(&mut self) -> Vec<(SourceId, Tag)> {
        std::mem::take(&mut self.feed)
    }

    /// The source's bridge is fresh: it has an IDR buffered close to the
    /// source's newest video.
    fn bridge_fresh(&self, id: SourceId) -> bool {
        let Some(s) = self.sources.get(&id) else {
            return false;
        };
        let Some(b) = s.bridge.as_ref() else {
            return false;
        };
        match (b.avc_seq.as_ref(), b.newest(), s.newest_video) {
            (Some(_), Some(n), Some(v)) => v - n <= BRIDGE_FRESH_MS,
            _ => false,
        }
    }

    /// The source's own next keyframe is due within `OWN_KEY_SOON_MS` (its
    /// keyframe interval known, counted from its newest video).
    fn own_key_soon(&self, id: SourceId) -> bool {
        let Some(s) = self.sources.get(&id) else {
            return false;
        };
        match (s.gop_ms, s.last_key_src, s.newest_video) {
            // One overdue by more than a few frames is not counted on.
            (Some(g), Some(k), Some(n)) => (-100..=OWN_KEY_SOON_MS).contains(&(k + g as i64 - n)),
            _ => false,
        }
    }

    /// A catch-up to `id` is shorter from its bridge than from its own GOP.
    fn bridge_better(&self, id: SourceId) -> bool {
        if !self.bridge_fresh(id) {
            return false;
        }
        let Some(s) = self.sources.get(&id) else {
            return false;
        };
        let bridge_len = s.bridge.as_ref().map_or(usize::MAX, |b| b.gop.len());
        s.gop.is_empty() || s.avc_seq.is_none() || bridge_len < s.gop.len()
    }

    /// Source time from the buffered keyframe to the newest buffered frame
    /// (what a catch-up to it would fast-forward).
    pub fn buffered_ms(&self, id: SourceId) -> Option<u64> {
        let s = self
            .sources
            .get(&id)
            .filter(|s| self.has_keyframe(id) && !s.gop.is_empty())?;
        Some((s.gop[s.gop.len() - 1].src - s.gop[0].src).max(0) as u64)
    }

    /// When `tick()` must be called next; None = no timer.
    pub fn deadline(&self) -> Option<u64> {
        let p = self.pending.as_ref()?;
        let armed = p.armed.map(|(_, at)| at + CLOSE_WAIT_MS);
        match (p.deadline, armed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The pending target is ready to cut to (`how`): cut now, unless the
    /// switch is planned and the source on air has B-frames still to come
    /// that display before a frame already sent (then when they came, or
    /// after `CLOSE_WAIT_MS`).
    fn cut_when_closed(
        &mut self,
        how: CutHow,
        now_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        let wait = self.active.is_some()
            && !self.outst.closed()
            && self
                .pending
                .as_ref()
                .is_some_and(|p| p.kind == SwitchKind::Planned);
        if !wait {
            self.cut(how, now_ms, out, events);
            return;
        }
        if let Some(p) = self.pending.as_mut() {
            if p.armed.is_none() {
                p.armed = Some((how, now_ms));
            }
        }
    }

    /// An armed cut whose old source closed (or waited long enough) goes.
    fn fire_armed(&mut self, now_ms: u64, out: &mut Vec<Tag>, events: &mut Vec<Event>) {
        let Some((how, at)) = self.pending.as_ref().and_then(|p| p.armed) else {
            return;
        };
        if self.outst.closed() || now_ms >= at + CLOSE_WAIT_MS {
            self.cut(how, now_ms, out, events);
        }
    }

    fn planned_timeout(&self, to: SourceId) -> u64 {
        if let Some(t) = self.cfg.planned_timeout_ms {
            return t;
        }
        match self.gop_ms(to) {
            Some(g) => g + TIMEOUT_OVER_GOP_MS,
            None => TIMEOUT_BEFORE_GOP_MS,
        }
    }

    pub fn switch(
        &mut self,
        to: SourceId,
        kind: SwitchKind,
        now_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        if self.sources.get(&to).is_some_and(|s| s.unsupported) {
            // Never cut to it; the caller was told by `Event::Unsupported`.
            return;
        }
        if self.active() == Some(to) {
            // Back to the one on air: nothing to cut.
            self.pending = None;
            return;
        }
        match kind {
            SwitchKind::Planned if self.active.is_some() => {
                self.pending = Some(Pending {
                    to,
                    kind,
                    requested_ms: now_ms,
                    deadline: Some(now_ms.saturating_add(self.planned_timeout(to))),
                    armed: None,
                });
            }
            SwitchKind::Planned | SwitchKind::Forced => {
                // Nothing on air (or it must go now): catch up if we can,
                // else the cut happens on the target's first keyframe.
                self.active = None;
                self.pending = Some(Pending {
                    to,
                    kind,
                    requested_ms: now_ms,
                    deadline: None,
                    armed: None,
                });
                self.cut(CutHow::CatchUp, now_ms, out, events);
            }
        }
    }

    /// The planned switch timed out: catch up (or, with no keyframe buffered
    /// yet, keep waiting for the first one with the old source on).
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Tag>, events: &mut Vec<Event>) {
        self.fire_armed(now_ms, out, events);
        let due = self
            .pending
            .as_ref()
            .and_then(|p| p.deadline)
            .is_some_and(|d| d <= now_ms);
        if !due {
            return;
        }
        if !self.cut(CutHow::TimeoutCatchUp, now_ms, out, events) {
            if let Some(p) = self.pending.as_mut() {
                p.deadline = None;
            }
        }
    }

    /// The output ffmpeg was restarted: the next output must begin with the
    /// active source's AVC+AAC sequence headers and a keyframe (catch-up from
    /// its buffer, else its next keyframe). The timeline goes on monotonic.
    pub fn output_restarted(&mut self, now_ms: u64, out: &mut Vec<Tag>) {
        let _ = now_ms;
        let Some(id) = self.active() else {
            return;
        };
        if !self.start_from(id, false, out) {
            if let Some(a) = self.active.as_mut() {
                a.awaiting_keyframe = true;
            }
        }
    }

    /// Cuts to the pending target from its buffer; false (nothing changed)
    /// when it has no keyframe buffered.
    fn cut(
        &mut self,
        how: CutHow,
        now_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) -> bool {
        let Some(p) = self.pending.as_ref() else {
            return false;
        };
        let (to, requested) = (p.to, p.requested_ms);
        let mut how = how;
        let from_bridge = match how {
            CutHow::Bridge => true,
            CutHow::Keyframe => false,
            _ => self.bridge_better(to),
        };
        if from_bridge && how != CutHow::Bridge {
            how = CutHow::BridgeCatchUp;
        }
        if !self.start_from(to, from_bridge, out) {
            return false;
        }
        self.pending = None;
        events.push(Event::Cut {
            from: self.shown,
            to,
            how,
            waited_ms: now_ms.saturating_sub(requested),
            at_ms: now_ms,
        });
        self.shown = Some(to);
        true
    }

    /// Puts `id` on air from its buffered GOP (its own, or its bridge's):
    /// sequence headers, then the buffered video squeezed 1 ms apart ending
    /// where its wall line puts the newest frame, lifted as needed so
    /// nothing goes backwards; then its buffered audio from the cut on.
    fn start_from(&mut self, id: SourceId, from_bridge: bool, out: &mut Vec<Tag>) -> bool {
        let Some(src) = self.sources.get(&id) else {
            return false;
        };
        if src.unsupported {
            return false;
        }
        let (gop, avc_seq) = match (from_bridge, src.bridge.as_ref()) {
            (false, _) => (&src.gop, src.avc_seq.as_ref()),
            (true, Some(b)) => (&b.gop, b.avc_seq.as_ref()),
            (true, None) => return false,
        };
        if gop.is_empty() {
            return false;
        }
        let (Some(avc_seq), Some(line)) = (avc_seq, src.line()) else {
            return false;
        };
        let k = gop.len() as i64;
        let newest = gop[gop.len() - 1].src;
        // First cut ever: the output starts at 0.
        let base = self.base.unwrap_or((k - 1) - newest - line);
        let wanted = line + base;
        let at = |i: i64, offset: i64| newest + offset - (k - 1 - i);
        let o = &self.outst;
        // The new source's first frames go out after everything sent (their
        // DTS only: see `put_video`) ...
        let floor = [o.last_video, o.last_any]
            .into_iter()
            .flatten()
            .map(|t| t + 1)
            .fold(0, i64::max);
        // ... and show after everything shown: the whole source is lifted
        // for that, as its audio must follow its pictures.
        let mut lift = 0;
        if let Some(max_pts) = o.max_pts {
            for (i, f) in gop.iter().enumerate() {
                let need = max_pts + 1 - (at(i as i64, wanted) + i64::from(f.cts));
                lift = lift.max(need);
            }
        }
        let offset = wanted + lift;
        let first = at(0, offset).max(floor);
        out.push(retimed(avc_seq, first));
        if let Some(aac) = src.aac_seq.as_ref() {
            out.push(retimed(aac, first));
        }
        let pts_floor = self.outst.max_pts;
        self.outst.recent_pts.clear();
        for (i, f) in gop.iter().enumerate() {
            self.outst
                .put_video(&f.tag, at(i as i64, offset), floor, out);
        }
        // A squeezed catch-up's PTS say nothing about what comes next.
        if k > 1 {
            self.outst.recent_pts.clear();
        }
        // The new source's audio continues the old one's, from where it
        // ended: its first picture may sit above the old source's audio
        // (lifted over the old source's highest PTS, up to 4 frames with
        // B-frames; or a bridge's encoder latency). Starting its audio only
        // at that picture left a hole that long, and made the output
        // ffmpeg hold the video back until audio caught up. (A catch-up of
        // the source's own long GOP drops that GOP's audio, as before.)
        let mut last_audio = self.outst.last_audio;
        let audio_from = last_audio.map_or(first, |l| l.max(first - MAX_AUDIO_FILL_MS));
        let ring = if from_bridge || k == 1 {
            &src.audio
        } else {
            &VecDeque::new()
        };
        for (ts, tag) in ring {
            let t = ts + offset;
            if t >= audio_from && last_audio.map_or(true, |l| t > l) {
                out.push(retimed(tag, t));
                last_audio = Some(t);
            }
        }
        self.outst.last_audio = last_audio;
        if let Some(a) = last_audio {
            self.outst.last_any = Some(self.outst.last_any.map_or(a, |l| l.max(a)));
        }
        self.base = Some(base);
        self.active = Some(Active {
            id,
            offset,
            debt: lift,
            slew_src: newest,
            awaiting_keyframe: false,
            pts_floor,
            bridged: from_bridge.then(Bridged::default),
        });
        true
    }

    fn mark_unsupported(&mut self, id: SourceId, what: String, events: &mut Vec<Event>) {
        if let Some(s) = self.sources.get_mut(&id) {
            s.unsupported = true;
            s.clear_gop();
            s.bridge = None;
        }
        if self.pending.as_ref().is_some_and(|p| p.to == id) {
            self.pending = None;
        }
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        events.push(Event::Unsupported { source: id, what });
    }

    pub fn push(
        &mut self,
        id: SourceId,
        tag: Tag,
        arrival_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        let max_buffer_ms = self.cfg.max_buffer_ms as i64;
        let Some(src) = self.sources.get_mut(&id) else {
            return;
        };
        // onMetaData and other script data never go out: the output ffmpeg
        // writes its own, and mid-stream it becomes a phantom stream.
        if src.unsupported || tag.is_script() || tag.data.is_empty() {
            return;
        }
        if let Some(what) = unsupported_reason(&tag) {
            self.mark_unsupported(id, what, events);
            return;
        }
        let video = tag.is_video();
        if !video && !tag.is_audio() {
            return;
        }
        let ts = src.unwrap_ts(tag.ts);
        let jumped = src.observe(video, ts, arrival_ms);
        if jumped {
            src.clear_gop();
            src.audio.clear();
            if src.bridge.is_some() {
                // A new clock: the bridge's encoder starts afresh.
                src.bridge = Some(Bridge::default());
                src.bridge_epoch += 1;
            }
        }
        // No verdict on a source that has sent no video yet: nginx sends a
        // new reader no video until the publisher's next keyframe, which
        // may be 10 s away (notes/splice.md item 11). It is judged by what
        // it announces (`unsupported_reason`) and cut to once it has a
        // keyframe.
        if tag.is_avc_seq_header() {
            src.avc_seq = Some(tag.clone());
            if let Some(b) = src.bridge.as_ref() {
                if let Some(origin) = b.origin {
                    self.feed.push((id, retimed(&tag, ts - origin)));
                }
            }
        } else if tag.is_aac_seq_header() {
            src.aac_seq = Some(tag.clone());
        } else if video {
            // Only coded pictures go on (not end-of-sequence, not
            // info/command frames).
            if !tag.is_avc_nalu() || tag.data.len() < 5 || tag.frame_type() == Some(5) {
                return;
            }
            src.newest_video = Some(src.newest_video.map_or(ts, |n| n.max(ts)));
            let frame = Frame {
                src: ts,
                cts: tag.composition_time(),
                tag: tag.clone(),
            };
            if tag.is_keyframe() {
                if let Some(k) = src.last_key_src {
                    if ts > k {
                        src.gop_ms = Some((ts - k) as u64);
                    }
                }
                src.last_key_src = Some(ts);
                src.clear_gop();
                src.gop_bytes = tag.data.len();
                src.gop.push(frame);
            } else if !src.gop.is_empty() {
                src.gop_bytes += tag.data.len();
                src.gop.push(frame);
                // A GOP too long to replay is no use: wait for the next key.
                if ts - src.gop[0].src > max_buffer_ms || src.gop_bytes > MAX_BUFFER_BYTES {
                    src.clear_gop();
                }
            }
            if let Some(b) = src.bridge.as_mut() {
                // The encoder's decoder starts on a keyframe, its sequence
                // header first.
                if b.origin.is_none() && tag.is_keyframe() {
                    if let Some(seq) = src.avc_seq.as_ref() {
                        b.origin = Some(ts - FEED_START_MS);
                        self.feed.push((id, retimed(seq, FEED_START_MS)));
                    }
                }
                if let Some(origin) = b.origin {
                    self.feed.push((id, retimed(&tag, ts - origin)));
                }
            }
        } else if tag.is_aac_raw() {
            src.audio.push_back((ts, tag.clone()));
            while src
                .audio
                .front()
                .is_some_and(|(t, _)| ts - t > AUDIO_RING_MS)
            {
                src.audio.pop_front();
            }
        } else {
            return;
        }

        let keyframe = tag.is_keyframe();
        if keyframe && self.pending.as_ref().is_some_and(|p| p.to == id) {
            // The buffer holds just this keyframe: the cut starts with it.
            self.cut_when_closed(CutHow::Keyframe, arrival_ms, out, events);
            return;
        }
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if a.id != id {
            return;
        }
        if a.awaiting_keyframe {
            if keyframe {
                self.start_from(id, false, out);
            }
            return;
        }
        if let Some(br) = a.bridged.as_mut() {
            if keyframe && br.handover.is_none() {
                let pts = ts + i64::from(tag.composition_time());
                br.handover = Some((pts, arrival_ms));
            }
            let overdue = br
                .handover
                .is_some_and(|(_, at)| arrival_ms.saturating_sub(at) >= HANDOVER_TIMEOUT_MS);
            if overdue {
                self.hand_over(id, out, events);
                if video {
                    // This frame went out with the buffered ones.
                    return;
                }
            } else if video {
                // Its own pictures wait (in its GOP buffer, from the
                // keyframe on) until the bridge reaches that keyframe.
                return;
            }
        }
        if jumped {
            self.reanchor(id, &tag, ts);
        }
        self.forward(&tag, ts, out);
        if keyframe {
            if let Some(a) = self.active.as_mut() {
                a.pts_floor = None;
            }
        }
        if video {
            self.fire_armed(arrival_ms, out, events);
        }
    }

    /// A tag from the bridge of `id` (FLV out of its encoder: timestamps as
    /// fed, no B-frames).
    pub fn push_bridge(
        &mut self,
        id: SourceId,
        tag: Tag,
        arrival_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        let Some(src) = self.sources.get_mut(&id) else {
            return;
        };
        let Some(b) = src.bridge.as_mut() else {
            return;
        };
        let Some(origin) = b.origin else {
            return;
        };
        if !tag.is_video() || tag.data.len() < 5 || tag.is_enhanced() {
            return;
        }
        let on_air_bridged = self
            .active
            .as_ref()
            .is_some_and(|a| a.id == id && a.bridged.is_some());
        if tag.is_avc_seq_header() {
            b.avc_seq = Some(tag.clone());
            if on_air_bridged {
                let t = self.outst.last_video.unwrap_or(0);
                out.push(retimed(&tag, t));
            }
            return;
        }
        if !tag.is_avc_nalu() || tag.frame_type() == Some(5) {
            return;
        }
        let raw = match b.unwrap {
            None => i64::from(tag.ts),
            Some((last_raw, last)) => last + i64::from(tag.ts.wrapping_sub(last_raw) as i32),
        };
        b.unwrap = Some((tag.ts, raw));
        let ts = raw + origin;
        let cts = i64::from(tag.composition_time());
        let keyframe = tag.is_keyframe();
        let frame = Frame {
            src: ts,
            cts: tag.composition_time(),
            tag: tag.clone(),
        };
        if keyframe {
            b.gop.clear();
            b.gop.push(frame);
        } else if !b.gop.is_empty() {
            b.gop.push(frame);
            // Its IDRs are a fraction of a second apart; a long run without
            // one is not a bridge to cut on.
            if b.gop.len() > 300 {
                b.gop.clear();
            }
        }
        if keyframe
            && self.pending.as_ref().is_some_and(|p| p.to == id)
            && self.bridge_fresh(id)
            && !self.own_key_soon(id)
        {
            self.cut_when_closed(CutHow::Bridge, arrival_ms, out, events);
            return;
        }
        if !on_air_bridged {
            return;
        }
        let pts = ts + cts;
        let handover = self
            .active
            .as_ref()
            .and_then(|a| a.bridged.as_ref())
            .and_then(|br| br.handover);
        if let Some((own_pts, _)) = handover {
            if pts >= own_pts {
                // The bridge reached the own keyframe: its own frames on.
                self.hand_over(id, out, events);
                return;
            }
        }
        self.forward(&tag, ts, out);
        let lag = self
            .sources
            .get(&id)
            .and_then(|s| s.newest_video)
            .map_or(0, |n| n - ts);
        if let Some(br) = self.active.as_mut().and_then(|a| a.bridged.as_mut()) {
            br.frames += 1;
            br.lag_ms = lag;
        }
        if let Some((own_pts, _)) = handover {
            // The frame before the own keyframe went out (at 30 fps or
            // more): hand over now rather than wait one more bridge frame.
            if pts >= own_pts - HANDOVER_EARLY_MS {
                self.hand_over(id, out, events);
            }
        }
    }

    /// The bridged source's own frames take over: its sequence header, then
    /// its buffered frames from the own keyframe on, lifted just enough
    /// that the output's DTS and PTS keep rising.
    fn hand_over(&mut self, id: SourceId, out: &mut Vec<Tag>, events: &mut Vec<Event>) {
        let Some(src) = self.sources.get(&id) else {
            return;
        };
        let Some(a) = self.active.as_mut().filter(|a| a.id == id) else {
            return;
        };
        let Some(br) = a.bridged.take() else {
            return;
        };
        let (Some(seq), Some(first)) = (src.avc_seq.as_ref(), src.gop.first()) else {
            a.awaiting_keyframe = true;
            return;
        };
        let o = &mut self.outst;
        // Shown after every bridge frame; the own frames' DTS (below the
        // bridge's by their composition offset) go up in `put_video`.
        let mut lift = 0;
        if let Some(m) = o.max_pts {
            for f in &src.gop {
                let pts = f.src + a.offset + i64::from(f.cts);
                lift = lift.max(m + 1 - pts);
            }
        }
        a.offset += lift;
        a.debt += lift;
        a.slew_src = first.src;
        a.pts_floor = None;
        let t0 = o
            .last_video
            .map_or(first.src + a.offset, |l| (first.src + a.offset).max(l + 1));
        out.push(retimed(seq, t0));
        if let Some(aac) = src.aac_seq.as_ref() {
            // Both headers at every splice point (notes/splice.md item 2).
            out.push(retimed(aac, o.last_audio.map_or(t0, |l| l.max(t0))));
        }
        for f in &src.gop {
            o.put_video(&f.tag, f.src + a.offset, 0, out);
        }
        events.push(Event::BridgeHandover {
            source: id,
            frames: br.frames,
            lift_ms: lift,
            lag_ms: br.lag_ms,
        });
    }

    /// The active source's timestamps jumped: put it back on the wall line
    /// (lifted so nothing goes backwards).
    fn reanchor(&mut self, id: SourceId, tag: &Tag, ts: i64) {
        let (Some(line), Some(base)) = (self.sources.get(&id).and_then(Source::line), self.base)
        else {
            return;
        };
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let wanted = line + base;
        let t = ts + wanted;
        let o = &self.outst;
        let floor = if tag.is_video() {
            // Its DTS goes up in `put_video`; its PTS must clear the rest.
            o.max_pts
                .map_or(0, |m| m + 1 - i64::from(tag.composition_time()))
        } else {
            o.last_audio.map_or(0, |l| l + 1)
        };
        let lift = (floor - t).max(0);
        a.offset = wanted + lift;
        a.debt = lift;
        a.slew_src = ts;
    }

    /// One tag of the active source, on its offset.
    fn forward(&mut self, tag: &Tag, ts: i64, out: &mut Vec<Tag>) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if a.debt > 0 && ts - a.slew_src >= SLEW_EVERY_MS {
            a.offset -= 1;
            a.debt -= 1;
            a.slew_src = ts;
        }
        let t = ts + a.offset;
        let o = &mut self.outst;
        // In-band header changes go through (ffmpeg turns them into new
        // extradata); they are not packets, so they only need to not go
        // backwards.
        if tag.is_avc_seq_header() {
            out.push(retimed(tag, t.max(o.last_video.unwrap_or(0))));
            return;
        }
        if tag.is_aac_seq_header() {
            out.push(retimed(tag, t.max(o.last_audio.unwrap_or(0))));
            return;
        }
        if tag.is_video() {
            let cts = i64::from(tag.composition_time());
            if tag.is_disposable() && a.pts_floor.is_some_and(|f| t + cts <= f) {
                return;
            }
            // The source's own DTS going backwards must not reach the output.
            o.put_video(tag, t, 0, out);
        } else {
            // Audio that would land at or before the last audio out is
            // dropped (else non-monotonic audio DTS).
            if t < 0 || o.last_audio.is_some_and(|l| t <= l) {
                return;
            }
            out.push(retimed(tag, t));
            o.last_audio = Some(t);
            o.last_any = Some(o.last_any.map_or(t, |l| l.max(t)));
        }
    }
}

mod carry;
pub use carry::Timeline;

#[cfg(test)]
mod tests;
