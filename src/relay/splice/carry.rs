//! What of the splicer a hand-over to a new binary carries: the output
//! timeline (the wall line and what went out last), so the new process's
//! first tags continue it: nothing goes backwards, no timestamp step. The
//! sources' buffers are not carried: their readers connect again, and the
//! source on air goes on at its next keyframe, placed on the same wall line.

use super::{Active, OutState, SourceId, Splicer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    pub base: Option<i64>,
    pub last_video: Option<i64>,
    pub last_audio: Option<i64>,
    pub last_any: Option<i64>,
    pub max_pts: Option<i64>,
}

impl Splicer {
    /// The output timeline to carry.
    pub fn timeline(&self) -> Timeline {
        Timeline {
            base: self.base,
            last_video: self.outst.last_video,
            last_audio: self.outst.last_audio,
            last_any: self.outst.last_any,
            max_pts: self.outst.max_pts,
        }
    }

    /// When `id`'s next keyframe is expected to arrive (ms, the caller's
    /// arrival clock): its last keyframe's arrival on its line plus its
    /// observed keyframe interval. None until two keyframes were seen.
    pub fn next_keyframe_ms(&self, id: SourceId) -> Option<u64> {
        let s = self.sources.get(&id)?;
        let at = s.last_key_src? + s.line()? + i64::try_from(s.gop_ms?).ok()?;
        u64::try_from(at).ok()
    }

    /// Continue a carried timeline (a new splicer, no sources yet).
    pub fn resume(&mut self, t: &Timeline) {
        self.base = t.base;
        self.outst = OutState {
            last_video: t.last_video,
            last_audio: t.last_audio,
            last_any: t.last_any,
            max_pts: t.max_pts,
            // The frames behind `max_pts` are not carried: the resumed
            // source starts on a keyframe above it, so nothing is pending.
            recent_pts: Default::default(),
        };
    }

    /// `id` (just added) is the source the output showed before the
    /// hand-over: it is on air again from its next keyframe, with no cut
    /// (the output never showed anything else).
    pub fn resume_on_air(&mut self, id: SourceId, gop_ms: Option<u64>) {
        // Its keyframe interval as seen before: the next hand-over can be
        // timed to its keyframes before it has sent two again.
        if let Some(s) = self.sources.get_mut(&id) {
            s.gop_ms = s.gop_ms.or(gop_ms);
        }
        self.active = Some(Active {
            id,
            offset: 0,
            debt: 0,
            slew_src: 0,
            awaiting_keyframe: true,
            pts_floor: self.outst.max_pts,
            // A bridge is not carried: the new process starts one again
            // when the source's keyframes turn out far apart.
            bridged: None,
        });
        self.pending = None;
        self.shown = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn video(ts: u32, key: bool) -> Tag {
        Tag::video(ts, vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 9, 9])
    }

    fn avc_seq() -> Tag {
        Tag::video(0, vec![0x17, 0, 0, 0, 0, 1, 0x42])
    }

    /// A carried timeline continues: the resumed source's first frame lands
    /// on the wall line after the last one that went out, never before it.
    #[test]
    fn resumed_output_goes_on_where_it_stopped() {
        let mut a = Splicer::new(Config::default());
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        a.add_source(1);
        a.push(1, avc_seq(), 1000, &mut out, &mut ev);
        a.push(1, video(0, true), 1000, &mut out, &mut ev);
        a.switch(1, SwitchKind::Forced, 1000, &mut out, &mut ev);
        for i in 1..30u32 {
            a.push(
                1,
                video(i * 33, false),
                1000 + u64::from(i) * 33,
                &mut out,
                &mut ev,
            );
        }
        let last_out = out.iter().map(|t| t.ts).max().unwrap();
        let t = a.timeline();
        assert_eq!(t.last_video, Some(i64::from(last_out)));

        // The new process: same epoch, the source read again from scratch
        // (its timestamps go on at nginx), on air from its next keyframe.
        let mut b = Splicer::new(Config::default());
        b.resume(&t);
        b.add_source(7);
        b.resume_on_air(7, Some(2000));
        assert_eq!(b.active(), Some(7));
        let (mut out2, mut ev2) = (Vec::new(), Vec::new());
        // Frames before the keyframe do not go out.
        b.push(7, avc_seq(), 2050, &mut out2, &mut ev2);
        b.push(7, video(1023, false), 2050, &mut out2, &mut ev2);
        assert!(out2.is_empty());
        b.push(7, video(1056, true), 2083, &mut out2, &mut ev2);
        assert!(ev2.is_empty(), "no cut: the output never changed streamer");
        // The carried keyframe interval times the next hand-over at once.
        assert_eq!(b.next_keyframe_ms(7), Some(2083 + 2000));
        let key = out2
            .iter()
            .find(|t| t.is_keyframe() && !t.is_avc_seq_header())
            .unwrap();
        // On the wall line: arrival 2083 + base, i.e. 1083 ms after the
        // first frame's arrival, and after the last frame of the old run.
        assert!(key.ts > last_out);
        let first_out = out
            .iter()
            .filter(|t| !t.is_avc_seq_header())
            .map(|t| t.ts)
            .min()
            .unwrap();
        assert_eq!(i64::from(key.ts) - i64::from(first_out), 2083 - 1000);
    }
}
