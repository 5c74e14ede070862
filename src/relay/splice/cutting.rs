//! Cuts: when a pending switch fires (the new source's keyframe or bridge
//! picture, once the old source's B-frames are out, or a timeout), and
//! how the new source goes on air from its buffered GOP.

use super::flv::Tag;
use super::*;

impl Splicer {
    /// The pending target is ready to cut to (`how`): cut now, unless the
    /// switch is planned and the source on air has B-frames still to come
    /// that display before a frame already sent (then when they came, or
    /// after `CLOSE_WAIT_MS`).
    pub(super) fn cut_when_closed(
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

    /// An armed cut whose old source closed (or waited `wait_ms`) goes.
    pub(super) fn fire_armed(
        &mut self,
        now_ms: u64,
        wait_ms: u64,
        out: &mut Vec<Tag>,
        events: &mut Vec<Event>,
    ) {
        let Some((how, at)) = self.pending.as_ref().and_then(|p| p.armed) else {
            return;
        };
        if self.outst.closed() || now_ms >= at + wait_ms {
            self.cut(how, now_ms, out, events);
        }
    }

    pub(super) fn planned_timeout(&self, to: SourceId) -> u64 {
        if let Some(t) = self.cfg.planned_timeout_ms {
            return t;
        }
        match self.gop_ms(to) {
            Some(g) => g + TIMEOUT_OVER_GOP_MS,
            None => TIMEOUT_BEFORE_GOP_MS,
        }
    }

    /// Cuts to the pending target from its buffer; false (nothing changed)
    /// when it has no keyframe buffered.
    pub(super) fn cut(
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

    /// How far to lower a new source's offset so its first picture shows
    /// one frame after the last one shown, not later. A source with
    /// B-frames shows each frame a composition offset after its DTS, and
    /// its wall line puts the DTS (with the sound muxed beside it) where it
    /// arrived: its first picture then showed 67-133 ms after the last one
    /// of a source without them (x264 and OBS defaults), the old picture
    /// held that long at every such cut. Lowered by at most that offset
    /// (`ahead`), so a real hole (the old source stalled) stays one; its
    /// sound, placed on the same offset, keeps its pictures' sync, and the
    /// next cut puts the output back on the wall line (no creep).
    fn pull_to_last_picture<'a>(
        &self,
        gop: impl IntoIterator<Item = &'a Frame>,
        offset: i64,
        ahead: i64,
        at: &dyn Fn(i64, i64) -> i64,
    ) -> i64 {
        let o = &self.outst;
        let Some(max_pts) = o.max_pts else {
            return 0;
        };
        let Some(first_pts) = gop
            .into_iter()
            .enumerate()
            .map(|(i, f)| at(i as i64, offset) + i64::from(f.cts))
            .min()
        else {
            return 0;
        };
        let frame = o.frame_ms().unwrap_or(DEFAULT_FRAME_MS);
        (first_pts - (max_pts + frame)).min(ahead).max(0)
    }

    /// Puts `id` on air from its buffered GOP (its own, or its bridge's):
    /// sequence headers, then the buffered video squeezed 1 ms apart ending
    /// where its wall line puts the newest frame, lifted as needed so
    /// nothing goes backwards; then its buffered audio from the cut on.
    pub(super) fn start_from(
        &mut self,
        id: SourceId,
        from_bridge: bool,
        out: &mut Vec<Tag>,
    ) -> bool {
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
        // Their pictures show this long after the sound muxed beside them
        // (a bridge's frames are on their presentation times: the same).
        let ahead = src.gop.first().map_or(0, |f| i64::from(f.cts));
        let offset = wanted + lift - self.pull_to_last_picture(gop, wanted + lift, ahead, &at);
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
}
