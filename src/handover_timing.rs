//! Where a hand-over's frozen picture goes, as the new image sees it: each
//! step of its start-up takes a mark (CLOCK_MONOTONIC, the clock the old
//! image's let-go time was carried in), and the first tag written to the
//! output ffmpeg (the end of the freeze) says them all in one log line,
//! counted from the moment the old binary let go of the output.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Steps of the new image's start-up, in the order taken.
static MARKS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());
/// CLOCK_MONOTONIC (ms) when the old binary let go (0: not handed over).
static LET_GO_MS: AtomicU64 = AtomicU64::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Note that the start-up reached `step` (cheap; kept only until the first
/// tag is out, or forever on a fresh start: a handful of entries).
pub fn mark(step: &'static str) {
    if REPORTED.load(Ordering::Relaxed) {
        return;
    }
    let now = crate::sys::fds::monotonic_ms();
    if let Ok(mut m) = MARKS.lock() {
        m.push((step, now));
    }
}

/// This image was handed a show the old binary let go of at `mono_ms`.
pub(crate) fn handed_over(let_go_mono_ms: u64) {
    LET_GO_MS.store(let_go_mono_ms.max(1), Ordering::Relaxed);
}

/// The output got its first tags from this image: once after a hand-over,
/// log how long after the let-go each step came.
pub(crate) fn first_tag_written() {
    if REPORTED.load(Ordering::Relaxed) {
        return;
    }
    REPORTED.store(true, Ordering::Relaxed);
    let let_go = LET_GO_MS.load(Ordering::Relaxed);
    if let_go == 0 {
        return;
    }
    let now = crate::sys::fds::monotonic_ms();
    let marks = MARKS
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default();
    log::info!(
        "hand-over: first tag written to the output {} ms after the old binary let go ({})",
        now.saturating_sub(let_go),
        steps(&marks, let_go)
    );
}

/// "step +N ms, …" counted from `from`.
fn steps(marks: &[(&'static str, u64)], from: u64) -> String {
    marks
        .iter()
        .map(|(s, t)| format!("{s} +{} ms", t.saturating_sub(from)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_from_the_let_go() {
        assert_eq!(
            steps(&[("image started", 1040), ("state read", 1052)], 1000),
            "image started +40 ms, state read +52 ms"
        );
        assert_eq!(steps(&[("early", 5)], 10), "early +0 ms");
    }
}
