//! TEMPORARY STUB (replaced by the splice branch's splice.rs at merge).
use super::flv::Tag;
pub type SourceId = u64;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchKind {
    Planned,
    Forced,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutHow {
    Keyframe,
    CatchUp,
    TimeoutCatchUp,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Cut {
        from: Option<SourceId>,
        to: SourceId,
        how: CutHow,
        waited_ms: u64,
        at_ms: u64,
    },
    Unsupported {
        source: SourceId,
        what: String,
    },
}
pub struct Config {
    pub planned_timeout_ms: Option<u64>,
    pub max_buffer_ms: u64,
}
pub struct Splicer {
    active: Option<SourceId>,
    pending: Option<SourceId>,
    off: u64,
}
impl Splicer {
    pub fn new(_c: Config) -> Splicer {
        Splicer {
            active: None,
            pending: None,
            off: 0,
        }
    }
    pub fn add_source(&mut self, _id: SourceId) {}
    pub fn remove_source(&mut self, id: SourceId) {
        if self.active == Some(id) {
            self.active = None
        }
        if self.pending == Some(id) {
            self.pending = None
        }
    }
    pub fn push(
        &mut self,
        id: SourceId,
        tag: Tag,
        arrival_ms: u64,
        out: &mut Vec<Tag>,
        ev: &mut Vec<Event>,
    ) {
        if self.pending == Some(id) && tag.is_keyframe() {
            ev.push(Event::Cut {
                from: self.active,
                to: id,
                how: CutHow::Keyframe,
                waited_ms: 0,
                at_ms: arrival_ms,
            });
            self.active = Some(id);
            self.pending = None;
        }
        if self.active == Some(id) && !tag.is_script() {
            let _ = self.off;
            out.push(Tag {
                ts: arrival_ms as u32,
                ..tag
            })
        }
    }
    pub fn switch(
        &mut self,
        to: SourceId,
        _k: SwitchKind,
        _now: u64,
        _o: &mut Vec<Tag>,
        _e: &mut Vec<Event>,
    ) {
        self.pending = Some(to)
    }
    pub fn tick(&mut self, _now: u64, _o: &mut Vec<Tag>, _e: &mut Vec<Event>) {}
    pub fn deadline(&self) -> Option<u64> {
        None
    }
    pub fn output_restarted(&mut self, _now: u64, _o: &mut Vec<Tag>) {}
    pub fn active(&self) -> Option<SourceId> {
        self.active
    }
    pub fn pending(&self) -> Option<SourceId> {
        self.pending
    }
}
