//! The splicer's bridges (module doc of `splice`): when a source wants
//! one, what its encoder is fed, whether a bridge picture is fresh enough
//! to cut on, the bridge's frames on air, and the hand-over to the
//! source's own frames at its next keyframe.

use super::flv::Tag;
use super::*;

impl Splicer {
    /// Whether `id` should have a bridge running: its keyframes are more
    /// than `BRIDGE_OVER_GOP_MS` apart (seen, or its first is that old), and
    /// it is not on air on its own frames. The caller decides which sources may have one (the
    /// next streamer's).
    pub(crate) fn bridge_wanted(&self, id: SourceId) -> bool {
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
    pub(crate) fn set_bridge(&mut self, id: SourceId, on: bool) {
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
    pub(crate) fn bridge_epoch(&self, id: SourceId) -> u64 {
        self.sources.get(&id).map_or(0, |s| s.bridge_epoch)
    }

    /// Video tags to write to the bridges' encoders, in order: per source,
    /// its AVC sequence header, then its coded frames from a keyframe on,
    /// timestamps rebased to start at 1 s.
    pub(crate) fn take_feed(&mut self) -> Vec<(SourceId, Tag)> {
        std::mem::take(&mut self.feed)
    }

    /// The source's bridge is fresh: it has an IDR buffered close to the
    /// source's newest video.
    pub(super) fn bridge_fresh(&self, id: SourceId) -> bool {
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
    pub(super) fn own_key_soon(&self, id: SourceId) -> bool {
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
    pub(super) fn bridge_better(&self, id: SourceId) -> bool {
        if !self.bridge_fresh(id) {
            return false;
        }
        let Some(s) = self.sources.get(&id) else {
            return false;
        };
        let bridge_len = s.bridge.as_ref().map_or(usize::MAX, |b| b.gop.len());
        s.gop.is_empty() || s.avc_seq.is_none() || bridge_len < s.gop.len()
    }

    /// A tag from the bridge of `id` (FLV out of its encoder: timestamps as
    /// fed, no B-frames).
    pub(crate) fn push_bridge(
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
    pub(super) fn hand_over(&mut self, id: SourceId, out: &mut Vec<Tag>, events: &mut Vec<Event>) {
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
}
