//! Freed heap goes back to the kernel: one second after a burst of
//! commands, and at every STATUS refresh for what bursts of reads (which
//! never reach the engine) freed.

use std::time::{Duration, Instant};

/// After a burst of at least this many commands, the engine returns freed
/// heap to the kernel once it has been idle for `TRIM_AFTER_IDLE`.
const TRIM_MIN_COMMANDS: usize = 1000;
const TRIM_AFTER_IDLE: Duration = Duration::from_secs(1);

pub(super) struct HeapTrim {
    /// Commands handled since the heap was last trimmed.
    since: usize,
    /// When the last batch ended.
    last_batch: Instant,
}

impl HeapTrim {
    pub(super) fn new(now: Instant) -> Self {
        HeapTrim {
            since: 0,
            last_batch: now,
        }
    }

    /// A batch of `commands` is being handled at `now`.
    pub(super) fn batch(&mut self, commands: usize, now: Instant) {
        self.since += commands;
        self.last_batch = now;
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        (self.since > 0).then(|| self.last_batch + TRIM_AFTER_IDLE)
    }

    pub(super) fn on_timer(&mut self, now: Instant) {
        if self.since > 0 && now >= self.last_batch + TRIM_AFTER_IDLE {
            if self.since >= TRIM_MIN_COMMANDS {
                crate::sys::trim_heap();
            }
            self.since = 0;
        }
    }
}
