//! The OBS websocket's part of a hand-over's state (made and read by
//! `crate::obs`): the identified connection goes on in the new image, with
//! no new connection and no new Identify.

use serde::{Deserialize, Serialize};

/// An identified obs-websocket connection, taken over at a message
/// boundary with nothing in flight (see `obs::client`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObsCarry {
    /// The TCP socket, kept across exec.
    pub(crate) fd: i32,
    /// Where it is connected (`[obs] host`, `port`): a new binary
    /// configured for another OBS closes it.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Connections the session made so far (request ids of the next one
    /// never match an answer meant for an earlier one).
    pub(crate) connections: u64,
    /// Bytes received and not yet a whole message (the start of the next
    /// frame), read on first by the new image.
    pub(crate) pending: Vec<u8>,
    /// What OBS was last told to show (`obs::BroadcastState`): the new
    /// image goes on from it, so nothing changes on screen before the
    /// engine says so.
    #[serde(default)]
    pub(crate) on_air: Option<String>,
    #[serde(default)]
    pub(crate) next_up: Option<String>,
    #[serde(default)]
    pub(crate) switch_seq: u64,
    #[serde(default)]
    pub(crate) slot_ends_at_ms: Option<u64>,
}
