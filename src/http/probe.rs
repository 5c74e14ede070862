//! The watchdog probe's trace through the hook path: which stages the
//! latest probe request passed. The HTTP side stamps it and the watchdog
//! (`crate::watchdog`) reads it. A leaf: the watchdog imports it (and
//! `http::Liveness`), nothing here imports the watchdog, so the two form
//! no circle.

use std::sync::atomic::{AtomicU64, Ordering};

/// The header that marks the probe's request: `<token>-<number>`.
pub(crate) const PROBE_HEADER: &str = "X-Motherstream-Probe";

/// How far the latest probes got. Written by the HTTP workers, the engine's
/// responder and the reply writers; read by the probe thread.
pub struct ProbeTrace {
    /// Random per run: only the probe thread can mark a request as a probe.
    token: String,
    worker: AtomicU64,
    engine: AtomicU64,
    reply: AtomicU64,
}

/// The stages a probe's request passes after the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// A worker took the request and handed it to the engine.
    Worker,
    /// The engine thread answered it.
    Engine,
    /// A reply writer handed the answer to the connection's thread.
    Reply,
}

impl ProbeTrace {
    pub fn new(token: String) -> ProbeTrace {
        ProbeTrace {
            token,
            worker: AtomicU64::new(0),
            engine: AtomicU64::new(0),
            reply: AtomicU64::new(0),
        }
    }

    /// The probe number in a `PROBE_HEADER` value, if it carries our token.
    pub(crate) fn probe_number(&self, header: &str) -> Option<u64> {
        let (token, n) = header.trim().rsplit_once('-')?;
        if self.token.is_empty() || !crate::secret::ct_eq(token.as_bytes(), self.token.as_bytes()) {
            return None;
        }
        n.parse().ok().filter(|&n| n > 0)
    }

    pub(crate) fn passed(&self, stage: Stage, probe: u64) {
        self.counter(stage).fetch_max(probe, Ordering::Release);
    }

    pub(crate) fn reached(&self, stage: Stage, probe: u64) -> bool {
        self.counter(stage).load(Ordering::Acquire) >= probe
    }

    fn counter(&self, stage: Stage) -> &AtomicU64 {
        match stage {
            Stage::Worker => &self.worker,
            Stage::Engine => &self.engine,
            Stage::Reply => &self.reply,
        }
    }

    pub(crate) fn header(&self, probe: u64) -> String {
        format!("{}-{probe}", self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_token_marks_a_probe() {
        let t = ProbeTrace::new("abc123".into());
        assert_eq!(t.probe_number("abc123-7"), Some(7));
        assert_eq!(t.probe_number(&t.header(42)), Some(42));
        for bad in ["abc124-7", "abc123-", "abc123-x", "-7", "7", "abc123-0", ""] {
            assert_eq!(t.probe_number(bad), None, "{bad}");
        }
        assert_eq!(ProbeTrace::new(String::new()).probe_number("-3"), None);
    }

    #[test]
    fn stages_remember_the_latest_probe() {
        let t = ProbeTrace::new("k".into());
        t.passed(Stage::Worker, 3);
        t.passed(Stage::Worker, 2);
        assert!(t.reached(Stage::Worker, 3));
        assert!(!t.reached(Stage::Worker, 4));
        assert!(!t.reached(Stage::Engine, 1));
    }
}
