//! Pure rules of what OBS is shown and what is missing from it: which
//! configured names exist, the loading item's visibility, the countdown
//! text and when it changes, the media source's `fpsprobesize` option.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::config::ObsConfig;

/// Which of the configured names exist in OBS, found at connect time and
/// after the scene collection changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Resources {
    pub(super) scene: bool,
    /// The media source exists as an input.
    pub(super) media: bool,
    /// Its item in the scene (needed only for hide/show).
    pub(super) media_item: Option<i64>,
    pub(super) loading_item: Option<i64>,
    pub(super) name: bool,
    pub(super) timer: bool,
}

/// Which configured scene and inputs exist, and what is missing.
pub(super) fn check_lists(
    cfg: &ObsConfig,
    scenes: &BTreeSet<String>,
    inputs: &BTreeSet<String>,
) -> (Resources, Vec<String>) {
    let res = Resources {
        scene: scenes.contains(&cfg.scene),
        media: inputs.contains(&cfg.media_source),
        name: !cfg.name_source.is_empty() && inputs.contains(&cfg.name_source),
        timer: !cfg.timer_source.is_empty() && inputs.contains(&cfg.timer_source),
        ..Resources::default()
    };
    let mut missing = Vec::new();
    if !res.scene {
        missing.push(format!("scene {:?} (obs.scene)", cfg.scene));
    }
    if !res.media {
        missing.push(format!("input {:?} (obs.media_source)", cfg.media_source));
    }
    if !cfg.name_source.is_empty() && !res.name {
        missing.push(format!("input {:?} (obs.name_source)", cfg.name_source));
    }
    if !cfg.timer_source.is_empty() && !res.timer {
        missing.push(format!("input {:?} (obs.timer_source)", cfg.timer_source));
    }
    (res, missing)
}

/// The scene items that should exist and do not.
pub(super) fn check_items(cfg: &ObsConfig, res: &Resources) -> Vec<String> {
    let mut missing = Vec::new();
    if res.scene {
        if res.media && res.media_item.is_none() {
            missing.push(format!(
                "item {:?} in scene {:?} (obs.media_source)",
                cfg.media_source, cfg.scene
            ));
        }
        if !cfg.loading_source.is_empty() && res.loading_item.is_none() {
            missing.push(format!(
                "item {:?} in scene {:?} (obs.loading_source)",
                cfg.loading_source, cfg.scene
            ));
        }
    } else if !cfg.loading_source.is_empty() {
        missing.push(format!(
            "item {:?} (obs.loading_source)",
            cfg.loading_source
        ));
    }
    missing
}

/// Show the loading item while nobody is on air, and for `hold` after a
/// switch (to cover the media source's short freeze).
pub(super) fn loading_visible(
    on_air: bool,
    switch_at: Option<Instant>,
    hold: Duration,
    now: Instant,
) -> bool {
    if !on_air {
        return true;
    }
    match switch_at {
        Some(t) if !hold.is_zero() => now < t + hold,
        _ => false,
    }
}

/// Countdown text: `MM:SS` (`H:MM:SS` from an hour on), rounded up so it
/// reads `00:00` only when the slot is over.
pub(super) fn countdown_text(ends: SystemTime, now: SystemTime) -> String {
    let left = ends.duration_since(now).unwrap_or(Duration::ZERO);
    let mut secs = left.as_secs();
    if left.subsec_nanos() > 0 {
        secs += 1;
    }
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// How long until [`countdown_text`] reads differently (None once it reads
/// `00:00` for good): the time left past the whole second below it.
pub(super) fn until_countdown_changes(ends: SystemTime, now: SystemTime) -> Option<Duration> {
    let left = ends.duration_since(now).ok().filter(|l| !l.is_zero())?;
    let below = Duration::from_secs(left.as_secs() - u64::from(left.subsec_nanos() == 0));
    Some(left - below)
}

/// `ffmpeg_options` with `fpsprobesize=0`, or None when already there.
/// OBS parses the option string as space-separated `key=value` pairs.
pub(super) fn with_fpsprobesize(opts: &str) -> Option<String> {
    let mut parts: Vec<String> = opts.split_whitespace().map(str::to_string).collect();
    if parts.iter().any(|p| p == "fpsprobesize=0") {
        return None;
    }
    parts.retain(|p| !p.starts_with("fpsprobesize="));
    parts.push("fpsprobesize=0".into());
    Some(parts.join(" "))
}

pub(super) fn names(v: &Value, list: &str, key: &str) -> BTreeSet<String> {
    v.get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get(key).and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn opt_name(label: &str, name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{label} {name:?}")
    }
}
