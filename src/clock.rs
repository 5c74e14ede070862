//! Wall-clock time as the daemon writes it down: unix milliseconds. A leaf,
//! so the relay, the notifiers and the HTTP side read the clock without
//! reaching into the engine (whose own `Clock` can be a manual one).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 if the clock is set before
/// 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
