//! The recorder's part of a hand-over's state (filled and read by
//! `crate::recording`; its data only here, so that the hand-over's state
//! does not depend on the recorder).

use serde::{Deserialize, Serialize};

use crate::key::StreamKey;

/// A (stream key, display name) pair the recorder was told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streamer {
    #[serde(with = "crate::key::persist")]
    pub key: StreamKey,
    pub name: String,
}

/// A recording nginx writes (started, or stopped and not yet reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingFile {
    #[serde(with = "crate::key::persist")]
    pub key: StreamKey,
    pub name: String,
    /// When they reached the screen (unix ms; None: not yet, or never).
    pub shown_ms: Option<u64>,
    /// When motherstream stopped it (unix ms; None: still running).
    pub stopped_ms: Option<u64>,
    /// The file nginx said it writes.
    pub path: String,
}

/// A finished recording as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentFile {
    pub file: String,
    pub streamer: String,
    pub start_s: u64,
    pub duration_s: Option<u64>,
    pub size_bytes: u64,
}

/// What the recorder thread hands to the next binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingCarry {
    /// `[recording] recorder`: a binary configured for another recorder
    /// does not take these files.
    pub recorder: String,
    pub on_screen: Option<Streamer>,
    pub heading: Option<Streamer>,
    /// Running recordings (`stopped_ms` None), then the stopped ones
    /// whose `on_record_done` has not come yet.
    pub files: Vec<RecordingFile>,
    /// Why recording is paused (below the free-space floor).
    pub space_low: Option<String>,
    pub start_failing: bool,
    /// A start to try again this long after the hand-over.
    pub retry_in_ms: Option<u64>,
    pub recent: Vec<RecentFile>,
}
