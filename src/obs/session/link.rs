//! One identified connection to OBS: the request queue (one in flight),
//! the answers, OBS's events, applying the desired state and watching the
//! media source. Pure, like the rest of the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rules::{countdown_text, until_countdown_changes, Resources};
use super::{Action, Failure, Now, Outcome, Outgoing, View, HEARTBEAT};
use crate::config::{CueMode, ObsConfig};
use crate::obs::protocol::{
    str_field, Event, InputSettings, MediaAction, MediaState, ObsRequest, RequestIds,
    RequestResponse, RequestStatus,
};

mod resolve;

use resolve::Resolving;

/// Media status checks while someone is on air.
const MEDIA_CHECK_EVERY: Duration = Duration::from_secs(2);
/// First media status check after a switch or (re)connect.
const MEDIA_CHECK_AFTER_SWITCH: Duration = Duration::from_secs(1);
/// After OBS reports the media playback ended (notes: restart ~0.1 s later).
const MEDIA_CHECK_AFTER_ENDED: Duration = Duration::from_millis(100);
/// Scene collection edits (sources added/removed/renamed) are re-checked
/// after this quiet time.
const RESOLVE_DEBOUNCE: Duration = Duration::from_millis(300);
/// The countdown is re-rendered this long after the second changes, so a
/// wake-up never lands just before the boundary.
const COUNTDOWN_SLACK: Duration = Duration::from_millis(1);

/// Why a request was sent: decides what its answer means.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Purpose {
    /// The GetVersion right after Identified.
    Version,
    Heartbeat,
    SceneList,
    InputList,
    MediaItem,
    LoadingItem,
    MediaIndex,
    LoadingIndex,
    /// The media source's settings, for `fpsprobesize`.
    ProbeSettings,
    ProbeSet {
        old: String,
        new: String,
    },
    Text {
        input: String,
    },
    Enabled {
        item: i64,
        enabled: bool,
        /// The show that completes a hide-show cue of this switch.
        cue: Option<u64>,
    },
    CueRestart {
        seq: u64,
    },
    MediaStatus,
    Recover {
        attempt: u32,
    },
}

#[derive(Debug)]
struct InFlight {
    id: String,
    request: ObsRequest,
    purpose: Purpose,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the first GetVersion.
    Version,
    /// First resolve and the media source's options.
    Setup,
    /// Applying the desired state.
    Live,
}

/// What OBS was last told on this connection (None = not yet).
#[derive(Debug, Default)]
pub(super) struct Applied {
    switch_seq: Option<u64>,
    name: Option<String>,
    timer: Option<String>,
    loading: Option<bool>,
}

/// Recovery of a media source that ended or failed while someone is on air.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    restarts: u32,
    not_before: Option<Instant>,
    /// The previous check after a restart saw PLAYING.
    playing_seen: bool,
}

impl Recovery {
    /// 0 s for the first restart, then 2, 4, 8, 16, 30, 30 … s.
    pub(super) fn delay_after(restarts: u32) -> Duration {
        let secs = 1u64 << restarts.min(5);
        Duration::from_secs(secs.min(30))
    }
}

/// One identified connection.
pub(super) struct Link {
    ids: RequestIds,
    timeout: Duration,
    in_flight: Option<InFlight>,
    queue: VecDeque<(ObsRequest, Purpose)>,
    pub(super) last_rx: Instant,
    pub(super) obs_version: String,
    stage: Stage,
    /// GetVersion answered (taken by the session to reset its backoff).
    pub(super) identified: bool,
    /// Connected has been reported for this connection.
    announced: bool,
    res: Resources,
    resolving: Option<Resolving>,
    resolve_due: Option<Instant>,
    applied: Applied,
    next_media_check: Option<Instant>,
    recovery: Recovery,
    /// When the countdown text changes next.
    timer_tick: Option<Instant>,
    /// When the loading item's hold across a switch ends.
    loading_until: Option<Instant>,
    /// OBS announced ExitStarted.
    exiting: bool,
}

impl Link {
    pub(super) fn new(connection: u64, timeout: Duration, now: Instant) -> Link {
        Link {
            // The prefix changes per connection so a late answer from an
            // old connection can never match.
            ids: RequestIds::new(format!("ms-{connection}")),
            timeout,
            in_flight: None,
            queue: VecDeque::new(),
            last_rx: now,
            obs_version: String::new(),
            stage: Stage::Version,
            identified: false,
            announced: false,
            res: Resources::default(),
            resolving: None,
            resolve_due: None,
            applied: Applied::default(),
            next_media_check: None,
            recovery: Recovery::default(),
            timer_tick: None,
            loading_until: None,
            exiting: false,
        }
    }

    pub(super) fn enqueue(&mut self, request: ObsRequest, purpose: Purpose) {
        self.queue.push_back((request, purpose));
    }

    /// Set up, nothing in flight or queued, not resolving, OBS not
    /// exiting: nothing of this connection lives outside OBS's next frame.
    pub(super) fn quiet(&self) -> bool {
        self.stage == Stage::Live
            && self.announced
            && self.in_flight.is_none()
            && self.queue.is_empty()
            && self.resolving.is_none()
            && self.resolve_due.is_none()
            && !self.exiting
    }

    /// Applying the desired state and watching the media source happen
    /// only on a live connection, outside a resolve, before OBS exits.
    fn applying(&self) -> bool {
        self.stage == Stage::Live && self.resolving.is_none() && !self.exiting
    }

    pub(super) fn deadline(&self, v: &View) -> Option<Instant> {
        let mut d: Vec<Instant> = Vec::new();
        match &self.in_flight {
            Some(f) => d.push(f.deadline),
            None => d.push(self.last_rx + HEARTBEAT),
        }
        if self.stage == Stage::Live && self.resolving.is_none() && !self.exiting {
            d.extend(self.resolve_due);
            d.extend(self.timer_tick);
            d.extend(self.loading_until);
            if v.desired.on_air.is_some() && self.res.media {
                d.extend(self.next_media_check);
            }
        }
        d.into_iter().min()
    }

    /// Returns true when the connection just became ready (report it).
    pub(super) fn drive(&mut self, v: &View, now: Now, out: &mut Vec<Action>) -> Outcome<bool> {
        if let Some(f) = &self.in_flight {
            if now.mono >= f.deadline {
                return Err(Failure::normal(format!(
                    "OBS did not answer {} within {} ms",
                    f.request.request_type(),
                    self.timeout.as_millis()
                )));
            }
        }
        if self.stage == Stage::Live
            && !self.exiting
            && self.resolving.is_none()
            && self.resolve_due.is_some_and(|d| d <= now.mono)
        {
            self.start_resolve();
        }
        if self.applying() {
            self.apply(v, now);
            self.watch_media(v, now.mono);
        }
        self.pump(now.mono, out);
        if self.in_flight.is_none() && now.mono >= self.last_rx + HEARTBEAT {
            // Any frame refreshes last_rx; no answer = dead.
            self.enqueue(ObsRequest::GetVersion, Purpose::Heartbeat);
            self.pump(now.mono, out);
        }
        if self.stage == Stage::Live && !self.announced && self.in_flight.is_none() {
            self.announced = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// Send the next queued request unless one is in flight.
    fn pump(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.in_flight.is_some() {
            return;
        }
        let Some((request, purpose)) = self.queue.pop_front() else {
            return;
        };
        let id = self.ids.next_id();
        out.push(Action::Send(Outgoing::Request {
            id: id.clone(),
            request: request.clone(),
        }));
        self.in_flight = Some(InFlight {
            id,
            request,
            purpose,
            deadline: now + self.timeout,
        });
    }

    pub(super) fn on_response(&mut self, r: RequestResponse, v: &View, now: Now) {
        let Some(f) = self.in_flight.as_ref() else {
            log::debug!("OBS answered an unknown request {}", r.request_id);
            return;
        };
        if f.id != r.request_id {
            log::debug!("OBS answered an unknown request {}", r.request_id);
            return;
        }
        if f.request.request_type() != r.request_type {
            // A bug somewhere: not an answer; the deadline will tell.
            log::warn!(
                "OBS answered {} with a {} response",
                f.request.request_type(),
                r.request_type
            );
            return;
        }
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let answer = if r.request_status.result {
            Ok(r.response_data.unwrap_or(Value::Null))
        } else {
            Err(r.request_status)
        };
        self.on_answer(f.purpose, answer, v, now);
    }

    fn on_answer(
        &mut self,
        purpose: Purpose,
        answer: Result<Value, RequestStatus>,
        v: &View,
        now: Now,
    ) {
        let cfg = v.cfg;
        match purpose {
            Purpose::Version => {
                let data = answer.unwrap_or(Value::Null);
                self.obs_version = str_field(Some(&data), "obsVersion")
                    .unwrap_or("unknown")
                    .to_string();
                log::debug!("OBS {}", self.obs_version);
                self.identified = true;
                self.stage = Stage::Setup;
                self.start_resolve();
            }
            Purpose::Heartbeat => {}
            Purpose::SceneList
            | Purpose::InputList
            | Purpose::MediaItem
            | Purpose::LoadingItem
            | Purpose::MediaIndex
            | Purpose::LoadingIndex => self.resolve_answered(purpose, answer, cfg, now.mono),
            Purpose::ProbeSettings => {
                self.probe_answered(cfg, answer);
                self.stage = Stage::Live;
            }
            Purpose::ProbeSet { old, new } => {
                let input = &cfg.media_source;
                match answer {
                    Ok(_) => log::info!(
                        "OBS media source {input:?}: set ffmpeg_options to {new:?} (was {old:?}) so a new streamer shows sooner"
                    ),
                    Err(st) => log::warn!(
                        "OBS media source {input:?}: cannot set ffmpeg_options: {}",
                        st.describe()
                    ),
                }
            }
            Purpose::Text { input } => {
                if let Err(st) = answer {
                    log::warn!("OBS: cannot set the text of {input:?}: {}", st.describe());
                    self.resolve_soon(now.mono);
                }
            }
            Purpose::Enabled { item, enabled, cue } => match answer {
                Ok(_) => {
                    if let Some(seq) = cue {
                        log::debug!(
                            "switch {seq}: hid and showed the media source (cue = hide-show)"
                        );
                    }
                }
                Err(st) => {
                    log::warn!(
                        "OBS: cannot {} item {item} of scene {:?}: {}",
                        if enabled { "show" } else { "hide" },
                        cfg.scene,
                        st.describe()
                    );
                    self.resolve_soon(now.mono);
                }
            },
            Purpose::CueRestart { seq } => match answer {
                Ok(_) => log::debug!("switch {seq}: restarted the media source (cue = restart)"),
                Err(st) => log::warn!(
                    "OBS: cannot restart {:?}: {}",
                    cfg.media_source,
                    st.describe()
                ),
            },
            Purpose::MediaStatus => self.media_status_answered(answer, v, now.mono),
            Purpose::Recover { attempt } => match answer {
                Ok(_) => {
                    self.recovery.restarts = attempt;
                    self.recovery.not_before = Some(now.mono + Recovery::delay_after(attempt));
                    self.next_media_check = Some(now.mono + MEDIA_CHECK_AFTER_SWITCH);
                }
                Err(st) => log::warn!(
                    "OBS: cannot restart {:?}: {}",
                    cfg.media_source,
                    st.describe()
                ),
            },
        }
    }

    fn resolve_soon(&mut self, now: Instant) {
        self.resolve_due.get_or_insert(now + RESOLVE_DEBOUNCE);
    }

    pub(super) fn on_event(&mut self, e: Event, v: &View, now: Now) {
        let input = str_field(e.event_data.as_ref(), "inputName");
        match e.event_type.as_str() {
            "ExitStarted" => {
                // OBS now tears its scenes down (a flood of *Removed events)
                // and then closes with 1001: leave it alone until then.
                log::info!("OBS is exiting");
                self.exiting = true;
            }
            "MediaInputPlaybackEnded"
                if input == Some(v.cfg.media_source.as_str()) && v.desired.on_air.is_some() =>
            {
                let soon = now.mono + MEDIA_CHECK_AFTER_ENDED;
                self.next_media_check = Some(self.next_media_check.map_or(soon, |c| c.min(soon)));
            }
            "InputCreated"
            | "InputRemoved"
            | "InputNameChanged"
            | "SceneCreated"
            | "SceneRemoved"
            | "SceneNameChanged"
            | "SceneItemCreated"
            | "SceneItemRemoved"
            | "CurrentSceneCollectionChanged" => {
                log::debug!(
                    "OBS {}: checking the configured sources again",
                    e.event_type
                );
                self.resolve_due = Some(now.mono + RESOLVE_DEBOUNCE);
            }
            _ => {}
        }
    }

    /// Bring OBS in line with the desired state, sending only what differs.
    fn apply(&mut self, v: &View, now: Now) {
        let want = v.desired;
        let cfg = v.cfg;
        // Cue the media source on a switch seen while connected; after a
        // (re)connect the first state is applied without a cue.
        if self.applied.switch_seq != Some(want.switch_seq) {
            let is_switch = self.applied.switch_seq.is_some();
            self.applied.switch_seq = Some(want.switch_seq);
            if want.on_air.is_some() {
                if is_switch {
                    self.cue(cfg, want.switch_seq);
                    self.recovery = Recovery::default();
                }
                self.next_media_check = Some(now.mono + MEDIA_CHECK_AFTER_SWITCH);
            }
        }
        if self.res.name {
            let text = want.on_air.clone().unwrap_or_default();
            if self.applied.name.as_ref() != Some(&text) {
                self.set_text(&cfg.name_source, &text);
                self.applied.name = Some(text);
            }
        }
        self.timer_tick = None;
        if self.res.timer {
            let text = want
                .slot_ends_at
                .map(|e| countdown_text(e, now.wall))
                .unwrap_or_default();
            if self.applied.timer.as_ref() != Some(&text) {
                self.set_text(&cfg.timer_source, &text);
                self.applied.timer = Some(text);
            }
            self.timer_tick = want
                .slot_ends_at
                .and_then(|e| until_countdown_changes(e, now.wall))
                .map(|d| now.mono + d + COUNTDOWN_SLACK);
        }
        self.loading_until = None;
        if let Some(item) = self.res.loading_item {
            let show = v.loading_wanted(now.mono);
            if self.applied.loading != Some(show) {
                self.set_enabled(cfg, item, show, None);
                self.applied.loading = Some(show);
            }
            if show && want.on_air.is_some() {
                // Shown only for the hold across the switch.
                self.loading_until = v
                    .switch_at
                    .map(|t| t + Duration::from_millis(cfg.loading_ms));
            }
        }
    }

    fn cue(&mut self, cfg: &ObsConfig, seq: u64) {
        if !self.res.media {
            return;
        }
        match cfg.cue {
            CueMode::None => {}
            CueMode::Restart => self.enqueue(
                ObsRequest::TriggerMediaInputAction {
                    input_name: cfg.media_source.clone(),
                    media_action: MediaAction::Restart,
                },
                Purpose::CueRestart { seq },
            ),
            CueMode::HideShow => {
                if let Some(item) = self.res.media_item {
                    self.set_enabled(cfg, item, false, None);
                    self.set_enabled(cfg, item, true, Some(seq));
                }
            }
        }
    }

    fn set_text(&mut self, input: &str, text: &str) {
        self.enqueue(
            ObsRequest::SetInputSettings {
                input_name: input.to_string(),
                input_settings: InputSettings::Text {
                    text: text.to_string(),
                },
                overlay: true,
            },
            Purpose::Text {
                input: input.to_string(),
            },
        );
    }

    fn set_enabled(&mut self, cfg: &ObsConfig, item: i64, enabled: bool, cue: Option<u64>) {
        self.enqueue(
            ObsRequest::SetSceneItemEnabled {
                scene_name: cfg.scene.clone(),
                scene_item_id: item,
                scene_item_enabled: enabled,
            },
            Purpose::Enabled { item, enabled, cue },
        );
    }

    /// While someone is on air, check the media source every few seconds
    /// and restart it when it ended or failed (first at once, then backing
    /// off).
    fn watch_media(&mut self, v: &View, now: Instant) {
        if v.desired.on_air.is_none() {
            self.recovery = Recovery::default();
            return;
        }
        if !self.res.media || self.next_media_check.map_or(true, |c| c > now) {
            if self.res.media && self.next_media_check.is_none() {
                self.next_media_check = Some(now + MEDIA_CHECK_EVERY);
            }
            return;
        }
        self.next_media_check = Some(now + MEDIA_CHECK_EVERY);
        self.enqueue(
            ObsRequest::GetMediaInputStatus {
                input_name: v.cfg.media_source.clone(),
            },
            Purpose::MediaStatus,
        );
    }

    fn media_status_answered(
        &mut self,
        answer: Result<Value, RequestStatus>,
        v: &View,
        now: Instant,
    ) {
        let input = &v.cfg.media_source;
        let state = match answer {
            Ok(d) => MediaState::parse(str_field(Some(&d), "mediaState").unwrap_or("")),
            Err(st) => {
                log::debug!("OBS GetMediaInputStatus {input:?}: {}", st.describe());
                return;
            }
        };
        let Some(on_air) = &v.desired.on_air else {
            return;
        };
        if state == MediaState::Playing {
            // Right after a RESTART of a dead URL OBS briefly says PLAYING;
            // only two PLAYING checks in a row end the backoff.
            if self.recovery.restarts == 0 || self.recovery.playing_seen {
                if self.recovery.restarts > 0 {
                    log::info!(
                        "OBS media source {input:?} is playing again after {} restart(s)",
                        self.recovery.restarts
                    );
                }
                self.recovery = Recovery::default();
            } else {
                self.recovery.playing_seen = true;
            }
            return;
        }
        self.recovery.playing_seen = false;
        log::debug!("OBS media source {input:?} is {state:?}");
        if !state.needs_recovery() || self.recovery.not_before.is_some_and(|nb| nb > now) {
            return;
        }
        let n = self.recovery.restarts + 1;
        log::warn!(
            "OBS media source {input:?} is {state:?} while {on_air:?} is on air; restarting it (attempt {n})"
        );
        self.enqueue(
            ObsRequest::TriggerMediaInputAction {
                input_name: input.clone(),
                media_action: MediaAction::Restart,
            },
            Purpose::Recover { attempt: n },
        );
    }
}
