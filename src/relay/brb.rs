//! "Be right back" cards: what the output shows while the on-air
//! streamer's stream does not come through ("DJ Alice — reconnecting…").
//!
//! One card per streamer, made like the slate (a still with text and
//! silence by ffmpeg, or the operator's `[relay] brb` picture or FLV clip
//! with its own sound) on a thread of its own as soon as the streamer is on
//! air or next, so it is ready before it is needed; the relay never waits
//! for ffmpeg. Until a card is ready the slate stands in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::slate::{self, Clip};

/// Cards kept at most (each a couple of seconds of a still).
const MAX_CARDS: usize = 16;
const MAKE_TIMEOUT: Duration = Duration::from_secs(20);

enum Card {
    Making,
    Ready(Arc<Clip>),
    Failed,
}

pub(crate) struct Cards {
    ffmpeg: String,
    /// The operator's picture or clip ("" = the built-in still).
    source: String,
    dir: PathBuf,
    cards: Arc<Mutex<HashMap<String, Card>>>,
    /// Files are numbered, never named after streamers.
    next_file: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The card's text for a streamer.
pub(crate) fn text(name: &str) -> String {
    format!("{name} — reconnecting…\nback in a moment")
}

impl Cards {
    pub(crate) fn new(ffmpeg: &str, source: &str, dir: PathBuf) -> Cards {
        Cards {
            ffmpeg: ffmpeg.to_string(),
            source: source.to_string(),
            dir,
            cards: Arc::new(Mutex::new(HashMap::new())),
            next_file: 0,
        }
    }

    /// New settings: cards made from now on use them (the old ones are
    /// dropped).
    pub(crate) fn reconfigure(&mut self, ffmpeg: &str, source: &str) {
        if self.ffmpeg != ffmpeg || self.source != source {
            self.ffmpeg = ffmpeg.to_string();
            self.source = source.to_string();
            lock(&self.cards).clear();
        }
    }

    /// Start making `name`'s card unless it exists or is being made.
    pub(crate) fn prepare(&mut self, name: &str) {
        let mut cards = lock(&self.cards);
        if cards.contains_key(name) {
            return;
        }
        if cards.len() >= MAX_CARDS {
            cards.retain(|_, c| matches!(c, Card::Making));
        }
        cards.insert(name.to_string(), Card::Making);
        drop(cards);
        self.next_file += 1;
        let out = self.dir.join(format!("brb-{}.flv", self.next_file % 64));
        let key = name.to_string();
        let (ffmpeg, source, name) = (self.ffmpeg.clone(), self.source.clone(), name.to_string());
        let cards = self.cards.clone();
        let spawned = std::thread::Builder::new()
            .name("brb-card".into())
            .spawn(move || {
                let made = slate::make_as(&ffmpeg, &source, &text(&name), &out, MAKE_TIMEOUT);
                let _ = std::fs::remove_file(&out);
                let card = match made {
                    Ok(c) => Card::Ready(Arc::new(c)),
                    Err(e) => {
                        log::error!(
                            "cannot make the be-right-back card for {name}: {e}; the slate stands in"
                        );
                        Card::Failed
                    }
                };
                let mut cards = lock(&cards);
                // Dropped meanwhile (settings changed): not wanted.
                if cards.contains_key(&name) {
                    cards.insert(name, card);
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread to make a card: {e}");
            lock(&self.cards).insert(key, Card::Failed);
        }
    }

    /// `name`'s card if it is ready.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Clip>> {
        match lock(&self.cards).get(name) {
            Some(Card::Ready(c)) => Some(c.clone()),
            _ => None,
        }
    }
}
