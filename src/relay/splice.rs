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

pub(crate) type SourceId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SwitchKind {
    /// Keep the old source on until the new one's next keyframe.
    Planned,
    /// The old source is gone (or must go now): catch up at once.
    Forced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CutHow {
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
pub(crate) enum Event {
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
pub(crate) struct Config {
    /// None = observed GOP of the target + 1000 ms, 3000 ms before a GOP is
    /// seen.
    pub(crate) planned_timeout_ms: Option<u64>,
    /// Cap of the per-source GOP buffer (source time from its keyframe).
    pub(crate) max_buffer_ms: u64,
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
pub(crate) const SLEW_EVERY_MS: i64 = 50;
/// Byte cap of one source's GOP buffer, whatever `max_buffer_ms` says.
pub(crate) const MAX_BUFFER_BYTES: usize = 32 << 20;
/// A source whose timestamps jump by more than this (against its arrival
/// times) has restarted its clock: it is re-anchored on the wall line.
pub(crate) const DISCONTINUITY_MS: i64 = 1000;
/// A bridge frame this much older (source time) than the source's newest
/// video is backlog, not a picture to cut on.
pub(crate) const BRIDGE_FRESH_MS: i64 = 600;
/// A source whose keyframes are at most this far apart needs no bridge: a
/// planned cut waits at most this long for its keyframe. Every common
/// encoder setting is over it (2 s is the usual advice, OBS's default is
/// 8.3 s), so the next streamer has a bridge whenever bridges are on: the
/// issue's half second holds for them all. With 2500 here, 2 s streams
/// passed through and a planned cut to them waited 1.1-2.1 s for their
/// keyframe. Bridges for them once failed the slot-end gap tests (0.10-0.27
/// s): that stall was the queue's fsync on the engine thread, which also
/// feeds the output (3-720 ms; saved off that thread since,
/// `engine/persist.rs`); with it gone, tests/it/splice.rs's slot ends and
/// planned moves pass bridged. A bridge costs 6-26 % of a core at the
/// tests' 160x120-384x216 (more at 1080p: `[relay] bridge = false` turns
/// them off and cuts wait for keyframes again).
pub(crate) const BRIDGE_OVER_GOP_MS: u64 = 500;
/// A planned cut skips the bridge when the source's own keyframe is due
/// within this long: a bridge stint that short would cost a hand-over for
/// nothing.
pub(crate) const OWN_KEY_SOON_MS: i64 = 300;
/// Feed timestamps start here (room for negative composition offsets).
const FEED_START_MS: i64 = 1000;
/// A planned cut waits at most this long for the old source's pending
/// B-frames (a cut after a P-frame loses the B-frames displayed before it:
/// a skip of up to 4 frames).
const CLOSE_WAIT_MS: u64 = 200;
/// How far behind the clock the tags being handled may have arrived (a
/// busy engine's backlog) before an armed cut's wait is counted on the
/// clock rather than on them (see `tick`).
const LATE_TAGS_MS: u64 = 300;
/// Output PTS of this many recent video frames are kept to tell whether
/// the old source has B-frames still to come.
const RECENT_PTS: usize = 16;
/// Audio kept per source to fill the hole at a cut.
const AUDIO_RING_MS: i64 = 1500;
/// At most this much of the new source's audio goes out before its first
/// picture at a cut (see `start_from`).
const MAX_AUDIO_FILL_MS: i64 = 300;
/// A frame's display time when the output's is not known yet (30 fps).
const DEFAULT_FRAME_MS: i64 = 33;
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

/// A tag's unwrapped timestamp, its arrival, and whether its source's
/// clock jumped there.
struct Arrived {
    ts: i64,
    arrival_ms: u64,
    jumped: bool,
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

pub(crate) struct Splicer {
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

impl Splicer {
    pub(crate) fn new(cfg: Config) -> Splicer {
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
    pub(crate) fn add_source(&mut self, id: SourceId) {
        self.sources.insert(id, Source::default());
        if let Some(a) = self.active.as_mut().filter(|a| a.id == id) {
            a.awaiting_keyframe = true;
        }
    }

    /// The source is gone. If it was on air the output gets nothing until the
    /// caller switches; a pending switch to it is dropped.
    pub(crate) fn remove_source(&mut self, id: SourceId) {
        self.sources.remove(&id);
        if self.pending.as_ref().is_some_and(|p| p.to == id) {
            self.pending = None;
        }
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
    }

    pub(crate) fn active(&self) -> Option<SourceId> {
        self.active.as_ref().map(|a| a.id)
    }

    pub(crate) fn pending(&self) -> Option<SourceId> {
        self.pending.as_ref().map(|p| p.to)
    }

    /// The kind of the pending switch.
    pub(crate) fn pending_kind(&self) -> Option<SwitchKind> {
        self.pending.as_ref().map(|p| p.kind)
    }

    /// The source the output shows, or showed last (it may be gone).
    #[cfg(test)]
    pub(crate) fn shown(&self) -> Option<SourceId> {
        self.shown
    }

    /// Observed keyframe interval of a source (source time), once it has sent
    /// two keyframes.
    pub(crate) fn gop_ms(&self, id: SourceId) -> Option<u64> {
        self.sources.get(&id).and_then(|s| s.gop_ms)
    }

    /// The source has a keyframe buffered: a catch-up to it can start now.
    pub(crate) fn has_keyframe(&self, id: SourceId) -> bool {
        self.sources
            .get(&id)
            .is_some_and(|s| !s.gop.is_empty() && s.avc_seq.is_some() && !s.unsupported)
            || self.bridge_fresh(id)
    }

    /// Source time from the buffered keyframe to the newest buffered frame
    /// (what a catch-up to it would fast-forward).
    pub(crate) fn buffered_ms(&self, id: SourceId) -> Option<u64> {
        let s = self
            .sources
            .get(&id)
            .filter(|s| self.has_keyframe(id) && !s.gop.is_empty())?;
        Some((s.gop[s.gop.len() - 1].src - s.gop[0].src).max(0) as u64)
    }

    /// When `tick()` must be called next; None = no timer.
    pub(crate) fn deadline(&self) -> Option<u64> {
        let p = self.pending.as_ref()?;
        let armed = p.armed.map(|(_, at)| at + CLOSE_WAIT_MS + LATE_TAGS_MS);
        match (p.deadline, armed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn switch(
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
    pub(crate) fn tick(&mut self, now_ms: u64, out: &mut Vec<Tag>, events: &mut Vec<Event>) {
        // The timer only catches an old source that stopped sending: the
        // tags of one that goes on carry their arrival times, and the wait
        // is counted on those (`play`). On a busy machine the engine works
        // through tags that arrived a while ago; counted on the clock, the
        // wait ran out before the old source's last B-frames were handled,
        // and the cut lost them (a 0.07-0.13 s step, measured).
        self.fire_armed(now_ms, CLOSE_WAIT_MS + LATE_TAGS_MS, out, events);
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
    pub(crate) fn output_restarted(&mut self, now_ms: u64, out: &mut Vec<Tag>) {
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

    pub(crate) fn push(
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
        if self.buffer(id, &tag, ts) {
            let when = Arrived {
                ts,
                arrival_ms,
                jumped,
            };
            self.play(id, &tag, &when, out, events);
        }
    }

    /// Keeps what a cut to `id` needs (its sequence headers, its video
    /// since the last keyframe, its recent audio) and feeds its bridge.
    /// False for a tag that goes nowhere.
    fn buffer(&mut self, id: SourceId, tag: &Tag, ts: i64) -> bool {
        let max_buffer_ms = self.cfg.max_buffer_ms as i64;
        let video = tag.is_video();
        let Some(src) = self.sources.get_mut(&id) else {
            return false;
        };
        // No verdict on a source that has sent no video yet: nginx sends a
        // new reader no video until the publisher's next keyframe, which
        // may be 10 s away (notes/splice.md item 11). It is judged by what
        // it announces (`unsupported_reason`) and cut to once it has a
        // keyframe.
        if tag.is_avc_seq_header() {
            src.avc_seq = Some(tag.clone());
            if let Some(b) = src.bridge.as_ref() {
                if let Some(origin) = b.origin {
                    self.feed.push((id, retimed(tag, ts - origin)));
                }
            }
        } else if tag.is_aac_seq_header() {
            src.aac_seq = Some(tag.clone());
        } else if video {
            // Only coded pictures go on (not end-of-sequence, not
            // info/command frames).
            if !tag.is_avc_nalu() || tag.data.len() < 5 || tag.frame_type() == Some(5) {
                return false;
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
                    self.feed.push((id, retimed(tag, ts - origin)));
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
            return false;
        }
        true
    }

    /// A tag of `id` once buffered: the keyframe a pending cut waits for,
    /// or a tag of the source on air.
    fn play(
        &mut self,
        id: SourceId,
        tag: &Tag,
        when: &Arrived,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        let &Arrived {
            ts,
            arrival_ms,
            jumped,
        } = when;
        let video = tag.is_video();
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
            self.reanchor(id, tag, ts);
        }
        self.forward(tag, ts, out);
        if keyframe {
            if let Some(a) = self.active.as_mut() {
                a.pts_floor = None;
            }
        }
        if video {
            self.fire_armed(arrival_ms, CLOSE_WAIT_MS, out, events);
        }
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

mod bridging;
pub(crate) mod carry;
mod codecs;
mod cutting;
mod timing;
pub(crate) use carry::Timeline;
use codecs::unsupported_reason;
use timing::retimed;

#[cfg(test)]
mod tests;
