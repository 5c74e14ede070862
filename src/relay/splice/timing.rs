//! Time keeping of the splicer: a source's 32-bit timestamps unwrapped and
//! its wall line (module doc of `splice`), and what went out last, which
//! every output tag must not go behind.

use super::flv::Tag;
use super::*;

impl Source {
    /// Unwraps a 32-bit timestamp by the signed distance from the last one,
    /// so small reorderings go back and 2^32 wraps go on.
    pub(super) fn unwrap_ts(&mut self, raw: u32) -> i64 {
        let v = match self.unwrap {
            None => i64::from(raw),
            Some((last_raw, last)) => last + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.unwrap = Some((raw, v));
        v
    }

    pub(super) fn line(&self) -> Option<i64> {
        match (self.line_cur, self.line_prev) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Updates the line estimate; true when the timestamps jumped.
    pub(super) fn observe(&mut self, video: bool, src: i64, arrival: u64) -> bool {
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

    pub(super) fn clear_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }
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
    pub(super) fn put_video(&mut self, tag: &Tag, t: i64, floor: i64, out: &mut Vec<Tag>) {
        let pts = t + i64::from(tag.composition_time());
        let dts = self.last_video.map_or(t, |l| t.max(l + 1)).max(floor);
        let pts = pts.max(dts);
        let cts = i32::try_from(pts - dts).unwrap_or(i32::MAX);
        out.push(retimed(&tag.with_composition_time(cts), dts));
        self.last_video = Some(dts);
        self.sent_pts(pts);
        self.last_any = Some(self.last_any.map_or(dts, |l| l.max(dts)));
    }

    pub(super) fn sent_pts(&mut self, pts: i64) {
        if self.recent_pts.len() == RECENT_PTS {
            self.recent_pts.pop_front();
        }
        self.recent_pts.push_back(pts);
        self.max_pts = Some(self.max_pts.map_or(pts, |m| m.max(pts)));
    }

    /// The output's frame interval: the smallest step between the recent
    /// pictures in display order.
    pub(super) fn frame_ms(&self) -> Option<i64> {
        let mut p: Vec<i64> = self.recent_pts.iter().copied().collect();
        p.sort_unstable();
        p.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).min()
    }

    /// Every frame that displays before the latest one sent has been sent:
    /// no hole wider than 1.5 frame intervals in the upper half of the
    /// recent PTS. A frame still to come displays just below the newest
    /// ones (within the encoder's reorder depth, a few frames); the lower
    /// half is left out because the window starts at an arbitrary frame in
    /// decoding order: with x264's adaptive B-frames (mini-GOPs of 1-4
    /// frames) it often starts after a P-frame whose B-frames it holds, and
    /// that P's PTS showed as a hole at its bottom. Counted, that hole
    /// kept the old source "open" through a whole planned cut's wait, which
    /// then ran out on any frame and lost the B-frames still to come (0.07-
    /// 0.13 s steps at slot ends from x264's defaults, measured).
    pub(super) fn closed(&self) -> bool {
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
        d[(d.len() - 1) / 2..]
            .iter()
            .all(|&x| x <= frame + frame / 2 + 1)
    }
}

/// Output time → FLV timestamp (wraps after 49.7 days like the input).
pub(super) fn wire(t: i64) -> u32 {
    t.rem_euclid(1 << 32) as u32
}

pub(super) fn retimed(tag: &Tag, t: i64) -> Tag {
    Tag {
        kind: tag.kind,
        ts: wire(t),
        data: tag.data.clone(),
    }
}
