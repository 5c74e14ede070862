//! What of the splicer a hand-over to a new binary carries: the output
//! timeline (the wall line and what went out last), so the new process's
//! first tags continue it: nothing goes backwards, no timestamp step.
//!
//! Sources whose RTMP session is carried too (`source::SessionCarry`) go on
//! mid-stream: their per-source state comes along ([`SourceCarry`]: the
//! timestamp line, sequence headers, the GOP since the last keyframe, the
//! recent audio) and the one on air keeps its place on the output
//! ([`ActiveCarry`]: offset and debt), so its next frame goes out as if
//! nothing happened. A source read again from scratch goes on at its next
//! keyframe instead, placed on the same wall line.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Active, Frame, OutState, Source, SourceId, Splicer};
use crate::relay::flv::Tag;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Timeline {
    pub(crate) base: Option<i64>,
    pub(crate) last_video: Option<i64>,
    pub(crate) last_audio: Option<i64>,
    pub(crate) last_any: Option<i64>,
    pub(crate) max_pts: Option<i64>,
}

/// A tag in the carried state (its body as base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagCarry {
    pub(crate) kind: u8,
    pub(crate) ts: u32,
    pub(crate) data: String,
}

impl TagCarry {
    fn of(t: &Tag) -> TagCarry {
        use base64::Engine as _;
        TagCarry {
            kind: t.kind,
            ts: t.ts,
            data: base64::engine::general_purpose::STANDARD.encode(&t.data),
        }
    }

    fn tag(&self) -> Option<Tag> {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()?;
        Some(Tag::new(self.kind, self.ts, data))
    }
}

/// One source's splicer state, for a source whose session is carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceCarry {
    pub(crate) unsupported: bool,
    pub(crate) unwrap: Option<(u32, i64)>,
    pub(crate) last: [Option<(i64, u64)>; 2],
    pub(crate) line_cur: Option<i64>,
    pub(crate) line_prev: Option<i64>,
    pub(crate) line_window_start: i64,
    pub(crate) avc_seq: Option<TagCarry>,
    pub(crate) aac_seq: Option<TagCarry>,
    /// Video since the last keyframe: (unwrapped ts, composition offset, tag).
    pub(crate) gop: Vec<(i64, i32, TagCarry)>,
    pub(crate) last_key_src: Option<i64>,
    pub(crate) gop_ms: Option<u64>,
    pub(crate) audio: Vec<(i64, TagCarry)>,
    pub(crate) newest_video: Option<i64>,
}

/// Where the source on air stands on the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ActiveCarry {
    pub(crate) offset: i64,
    pub(crate) debt: i64,
    pub(crate) slew_src: i64,
    pub(crate) awaiting_keyframe: bool,
    pub(crate) pts_floor: Option<i64>,
}

impl Splicer {
    /// The output timeline to carry.
    pub(crate) fn timeline(&self) -> Timeline {
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
    pub(crate) fn next_keyframe_ms(&self, id: SourceId) -> Option<u64> {
        let s = self.sources.get(&id)?;
        let at = s.last_key_src? + s.line()? + i64::try_from(s.gop_ms?).ok()?;
        u64::try_from(at).ok()
    }

    /// `id`'s state, to carry with its session.
    pub(crate) fn source_carry(&self, id: SourceId) -> Option<SourceCarry> {
        let s = self.sources.get(&id)?;
        Some(SourceCarry {
            unsupported: s.unsupported,
            unwrap: s.unwrap,
            last: s.last,
            line_cur: s.line_cur,
            line_prev: s.line_prev,
            line_window_start: s.line_window_start,
            avc_seq: s.avc_seq.as_ref().map(TagCarry::of),
            aac_seq: s.aac_seq.as_ref().map(TagCarry::of),
            gop: s
                .gop
                .iter()
                .map(|f| (f.src, f.cts, TagCarry::of(&f.tag)))
                .collect(),
            last_key_src: s.last_key_src,
            gop_ms: s.gop_ms,
            audio: s.audio.iter().map(|(t, a)| (*t, TagCarry::of(a))).collect(),
            newest_video: s.newest_video,
        })
    }

    /// Where `id` stands on the output, if it is on air (not bridged: a
    /// bridge is not carried).
    pub(crate) fn active_carry(&self, id: SourceId) -> Option<ActiveCarry> {
        let a = self.active.as_ref().filter(|a| a.id == id)?;
        if a.bridged.is_some() {
            return None;
        }
        Some(ActiveCarry {
            offset: a.offset,
            debt: a.debt,
            slew_src: a.slew_src,
            awaiting_keyframe: a.awaiting_keyframe,
            pts_floor: a.pts_floor,
        })
    }

    /// `id` (just added) goes on from a carried state.
    pub(crate) fn restore_source(&mut self, id: SourceId, c: &SourceCarry) {
        let gop: Vec<Frame> = c
            .gop
            .iter()
            .filter_map(|(src, cts, t)| {
                Some(Frame {
                    src: *src,
                    cts: *cts,
                    tag: t.tag()?,
                })
            })
            .collect();
        let s = Source {
            unsupported: c.unsupported,
            unwrap: c.unwrap,
            last: c.last,
            line_cur: c.line_cur,
            line_prev: c.line_prev,
            line_window_start: c.line_window_start,
            avc_seq: c.avc_seq.as_ref().and_then(TagCarry::tag),
            aac_seq: c.aac_seq.as_ref().and_then(TagCarry::tag),
            gop_bytes: gop.iter().map(|f| f.tag.data.len()).sum(),
            gop,
            last_key_src: c.last_key_src,
            gop_ms: c.gop_ms,
            audio: c
                .audio
                .iter()
                .filter_map(|(t, a)| Some((*t, a.tag()?)))
                .collect::<VecDeque<_>>(),
            newest_video: c.newest_video,
            ..Source::default()
        };
        self.sources.insert(id, s);
    }

    /// `id` (restored) was on air before the hand-over and goes on where it
    /// was: its next frame goes out as if nothing happened.
    pub(crate) fn resume_carried_on_air(&mut self, id: SourceId, a: &ActiveCarry) {
        self.active = Some(Active {
            id,
            offset: a.offset,
            debt: a.debt,
            slew_src: a.slew_src,
            awaiting_keyframe: a.awaiting_keyframe,
            pts_floor: a.pts_floor,
            bridged: None,
        });
        self.pending = None;
        self.shown = Some(id);
    }

    /// Continue a carried timeline (a new splicer, no sources yet).
    pub(crate) fn resume(&mut self, t: &Timeline) {
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
    pub(crate) fn resume_on_air(&mut self, id: SourceId, gop_ms: Option<u64>) {
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
