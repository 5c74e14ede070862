//! The recorder's part of a hand-over's state (filled and read by
//! `crate::recording`; its data only here, so that the hand-over's state
//! does not depend on the recorder).

use serde::{Deserialize, Serialize};

use crate::key::StreamKey;

/// A (stream key, display name) pair the recorder was told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Streamer {
    #[serde(with = "crate::key::persist")]
    pub(crate) key: StreamKey,
    pub(crate) name: String,
}

/// A recording nginx writes (started, or stopped and not yet reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingFile {
    #[serde(with = "crate::key::persist")]
    pub(crate) key: StreamKey,
    pub(crate) name: String,
    /// When they reached the screen (unix ms; None: not yet, or never).
    pub(crate) shown_ms: Option<u64>,
    /// When motherstream stopped it (unix ms; None: still running).
    pub(crate) stopped_ms: Option<u64>,
    /// The file nginx said it writes.
    pub(crate) path: String,
}

/// A finished recording as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecentFile {
    pub(crate) file: String,
    pub(crate) streamer: String,
    pub(crate) start_s: u64,
    pub(crate) duration_s: Option<u64>,
    pub(crate) size_bytes: u64,
}

/// What the recorder thread hands to the next binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingCarry {
    /// `[recording] recorder`: a binary configured for another recorder
    /// does not take these files.
    pub(crate) recorder: String,
    pub(crate) on_screen: Option<Streamer>,
    pub(crate) heading: Option<Streamer>,
    /// Running recordings (`stopped_ms` None), then the stopped ones
    /// whose `on_record_done` has not come yet.
    pub files: Vec<RecordingFile>,
    /// Why recording is paused (below the free-space floor).
    pub(crate) space_low: Option<String>,
    pub(crate) start_failing: bool,
    /// A start to try again this long after the hand-over.
    pub(crate) retry_in_ms: Option<u64>,
    pub(crate) recent: Vec<RecentFile>,
}
