//! The pure decisions of the recorder: what to record, what to prune,
//! whether there is space.

use crate::key::StreamKey;

const MS_PER_DAY: u64 = 86_400_000;

/// Of `(file name, mtime in unix ms)`, the recordings to remove: `.flv`
/// files last written more than `keep_days` before `now_ms` (0 = keep all).
pub(crate) fn to_prune(files: &[(String, u64)], now_ms: u64, keep_days: u64) -> Vec<String> {
    if keep_days == 0 {
        return Vec::new();
    }
    let cutoff = now_ms.saturating_sub(keep_days.saturating_mul(MS_PER_DAY));
    files
        .iter()
        .filter(|(name, mtime)| name.ends_with(".flv") && *mtime < cutoff)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether `free_bytes` is at or above the floor of `min_free_mb` MiB.
pub(crate) fn space_ok(free_bytes: u64, min_free_mb: u64) -> bool {
    free_bytes >= min_free_mb.saturating_mul(1 << 20)
}

/// Which recordings to stop and start. `recording`: the stream keys being
/// recorded; `wanted`: who is on screen and who the output is heading to
/// (the head of the queue, before the cut to them). The next streamer is
/// recorded from the switch decision on, not from the cut: nginx starts a
/// recording at the stream's next keyframe, and the splicer cuts on that
/// same keyframe, so starting at the cut would always lose one keyframe
/// interval. Below the free-space floor nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Plan<K = StreamKey> {
    pub(crate) stop: Vec<K>,
    pub(crate) start: Vec<K>,
}

pub(crate) fn plan<K: PartialEq + ToOwned + ?Sized>(
    recording: &[&K],
    wanted: &[Option<&K>],
    space_ok: bool,
) -> Plan<K::Owned> {
    let mut want: Vec<&K> = Vec::new();
    if space_ok {
        for w in wanted.iter().flatten() {
            if !want.contains(w) {
                want.push(w);
            }
        }
    }
    Plan {
        stop: recording
            .iter()
            .filter(|r| !want.contains(r))
            .map(|r| (*r).to_owned())
            .collect(),
        start: want
            .iter()
            .filter(|w| !recording.contains(w))
            .map(|w| (*w).to_owned())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_only_old_flv_files() {
        let day = MS_PER_DAY;
        let now = 100 * day;
        let files = vec![
            ("old.flv".to_string(), now - 31 * day),
            ("new.flv".to_string(), now - 29 * day),
            ("notes.txt".to_string(), now - 90 * day),
            ("edge.flv".to_string(), now - 30 * day),
        ];
        assert_eq!(to_prune(&files, now, 30), ["old.flv"]);
        assert!(to_prune(&files, now, 0).is_empty(), "0 keeps everything");
        assert_eq!(to_prune(&files, now, 1).len(), 3);
        assert!(
            to_prune(&files, 0, 1).is_empty(),
            "a clock at 0 removes nothing"
        );
    }

    #[test]
    fn free_space_floor() {
        assert!(space_ok(2048 << 20, 2048));
        assert!(!space_ok((2048 << 20) - 1, 2048));
        assert!(space_ok(0, 0));
        assert!(!space_ok(u64::MAX - 1, u64::MAX), "the floor saturates");
    }

    #[test]
    fn when_to_start_and_stop() {
        let p = |stop: &[&str], start: &[&str]| Plan {
            stop: stop.iter().map(|s| s.to_string()).collect(),
            start: start.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(plan::<str>(&[], &[None, None], true), p(&[], &[]));
        // The first streamer: recorded from the decision (head), on screen.
        assert_eq!(plan::<str>(&[], &[None, Some("a")], true), p(&[], &["a"]));
        assert_eq!(
            plan::<str>(&["a"], &[Some("a"), Some("a")], true),
            p(&[], &[])
        );
        // A planned switch: b is recorded ahead of the cut, a until it.
        assert_eq!(
            plan::<str>(&["a"], &[Some("a"), Some("b")], true),
            p(&[], &["b"])
        );
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("b"), Some("b")], true),
            p(&["a"], &[])
        );
        // The order changed back before the cut: b's recording stops.
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("a"), Some("a")], true),
            p(&["b"], &[])
        );
        // The last one left: the slate, nothing wanted.
        assert_eq!(plan::<str>(&["a"], &[None, None], true), p(&["a"], &[]));
        // Below the floor: stop everything, start nothing.
        assert_eq!(
            plan::<str>(&["a", "b"], &[Some("a"), Some("b")], false),
            p(&["a", "b"], &[])
        );
        assert_eq!(plan::<str>(&[], &[Some("a"), None], false), p(&[], &[]));
    }
}
