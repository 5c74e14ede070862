//! The clips the output plays when no streamer can be shown: the slate
//! while nobody is on air, a streamer's "be right back" card while their
//! stream does not come through; each a splicer source of its own, played
//! only while on screen or about to be.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

impl SpliceRelay {
    /// The slate and the card play only while on screen or about to be.
    pub(super) fn stop_idle_players(&mut self) {
        let (active, pending) = (self.splicer.active(), self.splicer.pending());
        let idle = |id: Option<SourceId>| id.is_some() && id != active && id != pending;
        if idle(self.slate.as_ref().map(|(id, _)| *id)) {
            self.stop_slate();
        }
        if idle(self.card.as_ref().map(|(id, _, _)| *id)) {
            self.stop_card();
        }
    }

    /// The on-air streamer's stream is stalled or starved while the output
    /// shows them (or already their card).
    pub(super) fn on_air_unwell(&self) -> bool {
        let Some(w) = &self.want.on_air else {
            return false;
        };
        let unwell = self
            .slots
            .iter()
            .any(|s| s.key == w.key && s.health.state().unhealthy());
        let card_on = self.card.as_ref().is_some_and(|(_, _, k)| *k == w.key);
        unwell && (self.on_screen.as_ref() == Some(&w.key) || card_on)
    }

    /// The on-air streamer's card source, started if needed (the slate
    /// stands in while their card is being made).
    pub(super) fn card_id(&mut self, now: Instant) -> Option<SourceId> {
        let w = self.want.on_air.clone()?;
        if let Some((id, _, k)) = &self.card {
            if *k == w.key {
                return Some(*id);
            }
        }
        self.stop_card();
        let clip = self.cards.get(&w.name).or_else(|| self.clip.clone())?;
        let (id, p) = self.start_player(clip, Owner::Card(w.key.clone()), now);
        self.card = Some((id, p, w.key));
        self.last_card_tick = now;
        Some(id)
    }

    pub(super) fn stop_card(&mut self) {
        if let Some((id, _, _)) = self.card.take() {
            self.splicer.remove_source(id);
            self.owners.remove(&id);
        }
    }

    pub(super) fn is_running(&self, id: SourceId) -> bool {
        match self.owners.get(&id) {
            Some(Owner::Slate) => self.slate.is_some(),
            Some(Owner::Card(_)) => self.card.as_ref().is_some_and(|(c, _, _)| *c == id),
            Some(Owner::Streamer(k)) => self
                .slots
                .iter()
                .any(|s| s.key == *k && s.id == id && s.source.is_some()),
            None => false,
        }
    }

    /// A clip (the slate, a card) as a new source of the splicer, its first
    /// tags already pushed.
    pub(super) fn start_player(
        &mut self,
        clip: Arc<Clip>,
        owner: Owner,
        now: Instant,
    ) -> (SourceId, Player) {
        let id = self.next_id;
        self.next_id += 1;
        self.splicer.add_source(id);
        self.owners.insert(id, owner);
        let now_ms = self.ms(now);
        let mut p = Player::new(clip, now_ms);
        let mut tags = Vec::new();
        p.due(now_ms, &mut tags);
        for t in tags {
            self.splicer
                .push(id, t, now_ms, &mut self.out, &mut self.evs);
        }
        (id, p)
    }

    /// The slate's source id, starting the slate player if needed.
    pub(super) fn slate_id(&mut self, now: Instant) -> Option<SourceId> {
        if let Some((id, _)) = &self.slate {
            return Some(*id);
        }
        let clip = self.clip.clone()?;
        let (id, p) = self.start_player(clip, Owner::Slate, now);
        self.slate = Some((id, p));
        self.last_slate_tick = now;
        Some(id)
    }

    pub(super) fn stop_slate(&mut self) {
        if let Some((id, _)) = self.slate.take() {
            self.splicer.remove_source(id);
            self.owners.remove(&id);
        }
    }

    /// How often the slate's due tags are sent: in batches, except while a
    /// cut away from it waits for a streamer's first keyframe (then frame
    /// by frame, so the cut lands right after the last slate frame).
    pub(super) fn slate_batch(&self) -> Duration {
        if self.splicer.pending().is_some() {
            Duration::ZERO
        } else {
            SLATE_TICK
        }
    }
}
