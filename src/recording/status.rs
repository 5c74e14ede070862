//! The recorder's part of `/api/status`: who is recorded, why not, and
//! the newest finished recordings.

use std::sync::{Arc, RwLock};

use serde_json::json;

/// A finished recording, as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    pub file: String,
    pub streamer: String,
    pub start_s: u64,
    /// Known for recordings made by this run.
    pub duration_s: Option<u64>,
    pub size_bytes: u64,
}

#[derive(Debug, Default)]
pub(super) struct Status {
    /// Who is being recorded, since when (unix s).
    pub(super) recording: Option<(String, u64)>,
    /// Why recording is off although someone is on screen.
    pub(super) paused: Option<String>,
    /// Newest first.
    pub(super) recent: Vec<Recent>,
}

/// The recorder's part of `/api/status`, published by its thread.
#[derive(Debug, Clone, Default)]
pub struct StatusView(Arc<RwLock<Arc<Status>>>);

impl StatusView {
    pub(super) fn set(&self, s: Status) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }

    fn get(&self) -> Arc<Status> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let s = self.get();
        json!({
            "recording": s.recording.as_ref().map(|(name, since)| json!({"name": name, "since": since})),
            "paused": s.paused,
            "recent": s.recent.iter().map(|r| json!({
                "file": r.file,
                "streamer": r.streamer,
                "start": r.start_s,
                "duration_s": r.duration_s,
                "size_bytes": r.size_bytes,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_shape() {
        let v = StatusView::default();
        v.set(Status {
            recording: Some(("A".into(), 5)),
            paused: None,
            recent: vec![Recent {
                file: "A-x.flv".into(),
                streamer: "A".into(),
                start_s: 1,
                duration_s: Some(4),
                size_bytes: 10,
            }],
        });
        let j = v.json();
        assert_eq!(j["recording"]["name"], "A");
        assert_eq!(j["recent"][0]["duration_s"], 4);
        assert_eq!(j["recent"][0]["streamer"], "A");
        assert!(j["paused"].is_null());
    }
}
