//! The recorder's state across `motherstream upgrade` (see
//! `crate::handover`). nginx writes the recording and goes on writing it
//! while this process execs: nothing of ours holds the file, so no
//! descriptor or child crosses. What is lost without this is the knowledge
//! of it: which recordings motherstream started (their file, streamer and
//! time on screen), which ones it stopped and waits to file, and who it was
//! told is on screen and next. The new image's recorder thread starts from
//! that, so the running recording is stopped at the next cut and filed
//! whole, as if no hand-over had happened. (The carried data's types are
//! in `crate::handover::recording`.)

use std::time::{Duration, Instant};

use super::shell::{Active, Finishing, Shell};
use crate::handover::recording::{RecentFile, RecordingCarry, RecordingFile, Streamer};
use crate::key::StreamKey;
use crate::view::Recent;

/// A (stream key, display name) pair as the recorder keeps it.
pub(super) fn streamer(who: &Option<(StreamKey, String)>) -> Option<Streamer> {
    who.as_ref().map(|(key, name)| Streamer {
        key: key.clone(),
        name: name.clone(),
    })
}

fn pair(s: Option<Streamer>) -> Option<(StreamKey, String)> {
    s.map(|s| (s.key, s.name))
}

impl Shell {
    /// This thread's state for the next binary.
    pub(super) fn carry(&self) -> RecordingCarry {
        let now = Instant::now();
        let running = self.active.iter().map(|a| RecordingFile {
            key: a.key.clone(),
            name: a.name.clone(),
            shown_ms: a.shown_ms,
            stopped_ms: None,
            path: a.path.clone(),
        });
        let stopped = self.finishing.iter().map(|f| RecordingFile {
            key: f.key.clone(),
            name: f.name.clone(),
            shown_ms: f.shown_ms,
            stopped_ms: Some(f.stopped_ms),
            path: f.path.clone(),
        });
        RecordingCarry {
            recorder: self.cfg.recorder.clone(),
            on_screen: streamer(&self.on_screen),
            heading: streamer(&self.heading),
            files: running.chain(stopped).collect(),
            space_low: self.space_low.clone(),
            start_failing: self.start_failing,
            retry_in_ms: self
                .retry_at
                .map(|r| r.saturating_duration_since(now).as_millis() as u64),
            recent: self
                .recent
                .iter()
                .map(|r| RecentFile {
                    file: r.file.clone(),
                    streamer: r.streamer.clone(),
                    start_s: r.start_s,
                    duration_s: r.duration_s,
                    size_bytes: r.size_bytes,
                })
                .collect(),
        }
    }

    /// Take over what the previous binary's recorder carried; false (and
    /// nothing taken) when it recorded with another nginx recorder.
    pub(super) fn adopt(&mut self, c: RecordingCarry) -> bool {
        if c.recorder != self.cfg.recorder {
            log::warn!(
                "recording: the previous binary recorded with nginx recorder {:?}, this one is configured for {:?}: its {} recording(s) stay in {}",
                c.recorder,
                self.cfg.recorder,
                c.files.len(),
                self.incoming().display()
            );
            return false;
        }
        self.on_screen = pair(c.on_screen);
        self.heading = pair(c.heading);
        for f in c.files {
            match f.stopped_ms {
                None => self.active.push(Active {
                    key: f.key,
                    name: f.name,
                    shown_ms: f.shown_ms,
                    path: f.path,
                }),
                Some(stopped_ms) => self.finishing.push_back(Finishing {
                    key: f.key,
                    name: f.name,
                    shown_ms: f.shown_ms,
                    stopped_ms,
                    path: f.path,
                }),
            }
        }
        self.space_low = c.space_low;
        self.start_failing = c.start_failing;
        self.retry_at = c
            .retry_in_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.recent = c
            .recent
            .into_iter()
            .map(|r| Recent {
                file: r.file,
                streamer: r.streamer,
                start_s: r.start_s,
                duration_s: r.duration_s,
                size_bytes: r.size_bytes,
            })
            .collect();
        let names: Vec<&str> = self.active.iter().map(|a| a.name.as_str()).collect();
        log::info!(
            "recording: carried over from the previous binary: {} running ({}), {} stopped and waiting for nginx's report",
            self.active.len(),
            names.join(", "),
            self.finishing.len()
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecordingConfig;
    use crate::view::Published;

    fn key(c: char) -> StreamKey {
        StreamKey::parse(&c.to_string().repeat(32)).expect("a valid key")
    }

    fn shell(recorder: &str) -> Shell {
        let cfg = RecordingConfig {
            recorder: recorder.into(),
            ..RecordingConfig::default()
        };
        Shell::new(cfg, "http://x".into(), "live".into(), Published::default())
    }

    /// What one binary's recorder knows, the next one knows: through
    /// JSON, as the hand-over's memfd carries it.
    #[test]
    fn the_recorders_state_round_trips_through_a_hand_over() {
        let mut old = shell("motherstream");
        old.on_screen = Some((key('a'), "alice".into()));
        old.heading = Some((key('b'), "bob".into()));
        old.active.push(Active {
            key: key('a'),
            name: "alice".into(),
            shown_ms: Some(1_000),
            path: "/spool/a-1.flv".into(),
        });
        old.active.push(Active {
            key: key('b'),
            name: "bob".into(),
            shown_ms: None,
            path: "/spool/b-2.flv".into(),
        });
        old.finishing.push_back(Finishing {
            key: key('c'),
            name: "carol".into(),
            shown_ms: Some(500),
            stopped_ms: 900,
            path: "/spool/c-0.flv".into(),
        });
        old.space_low = Some("only 1 MB free".into());
        old.start_failing = true;
        old.retry_at = Some(Instant::now() + Duration::from_secs(5));
        old.recent.push_back(Recent {
            file: "carol-2026-01-01T000000Z.flv".into(),
            streamer: "carol".into(),
            start_s: 1,
            duration_s: Some(2),
            size_bytes: 3,
        });
        let text = serde_json::to_string(&old.carry()).expect("encode");
        assert!(
            !text.contains("retry_at"),
            "instants are carried as durations"
        );
        let carried: RecordingCarry = serde_json::from_str(&text).expect("decode");
        assert_eq!(carried, old.carry_with_retry(carried.retry_in_ms));

        let mut new = shell("motherstream");
        assert!(new.adopt(carried));
        assert_eq!(new.on_screen, old.on_screen);
        assert_eq!(new.heading, old.heading);
        let active = |s: &Shell| -> Vec<(String, Option<u64>, String)> {
            s.active
                .iter()
                .map(|a| (a.name.clone(), a.shown_ms, a.path.clone()))
                .collect()
        };
        assert_eq!(active(&new), active(&old));
        assert_eq!(new.finishing.len(), 1);
        let f = &new.finishing[0];
        assert_eq!(
            (
                &f.key,
                f.name.as_str(),
                f.shown_ms,
                f.stopped_ms,
                f.path.as_str()
            ),
            (&key('c'), "carol", Some(500), 900, "/spool/c-0.flv")
        );
        assert_eq!(new.space_low, old.space_low);
        assert!(new.start_failing);
        let retry = new.retry_at.expect("the retry is kept");
        assert!(retry > Instant::now() + Duration::from_secs(4));
        assert_eq!(new.recent, old.recent);
    }

    /// Another `[recording] recorder` in the new binary's configuration:
    /// nginx's files of the old one are not claimed (their paths and
    /// hooks name the other recorder).
    #[test]
    fn another_recorder_takes_nothing() {
        let mut old = shell("motherstream");
        old.active.push(Active {
            key: key('a'),
            name: "alice".into(),
            shown_ms: Some(1),
            path: "/spool/a.flv".into(),
        });
        let mut new = shell("other");
        assert!(!new.adopt(old.carry()));
        assert!(new.active.is_empty() && new.on_screen.is_none());
    }

    /// The freeze of a hand-over that is then abandoned: the thread acts
    /// on nothing while frozen (a second freeze gets no answer), and on
    /// what came meanwhile once thawed.
    #[test]
    fn a_frozen_recorder_holds_what_comes_until_thawed() {
        let d = crate::scratch::ScratchDir::new("recfreeze");
        let cfg = RecordingConfig {
            enabled: true,
            dir: d.0.join("rec").display().to_string(),
            incoming_dir: d.0.display().to_string(),
            min_free_mb: 0,
            ..RecordingConfig::default()
        };
        // Nothing listens on port 1: every start fails at once.
        let mut r = super::super::Recorder::spawn(
            cfg,
            "http://127.0.0.1:1/control".into(),
            "live".into(),
            None,
        )
        .expect("spawn");
        let wait = Duration::from_secs(5);
        let first = r.freeze(wait).expect("an idle thread answers");
        assert!(!first.start_failing && first.on_screen.is_none());
        r.on_screen(Some((key('a'), "alice".into())));
        let e = r
            .freeze(Duration::from_millis(100))
            .expect_err("a frozen thread answers nothing");
        assert!(e.contains("did not answer"), "{e}");
        r.thaw();
        // The held OnScreen is acted on after the thaw: a start, failed.
        let after = r.freeze(wait).expect("thawed");
        assert!(after.start_failing, "{after:?}");
        assert_eq!(after.on_screen.map(|s| s.name).as_deref(), Some("alice"));
        r.thaw();
        r.shutdown();
    }

    impl Shell {
        /// `carry()` with the retry as it was measured when encoded (the
        /// clock moved on since).
        fn carry_with_retry(&self, retry_in_ms: Option<u64>) -> RecordingCarry {
            RecordingCarry {
                retry_in_ms,
                ..self.carry()
            }
        }
    }
}
