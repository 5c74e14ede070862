//! Behaviour tests of the OBS session, in simulated time, against an
//! in-memory model of an OBS scene collection that answers requests the
//! way obs-websocket 5.1 does (shapes captured from OBS 29; see
//! tests/obs_client.rs for the same behaviours against a real OBS).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::link::Recovery;
use super::rules::{
    check_items, check_lists, countdown_text, loading_visible, until_countdown_changes,
    with_fpsprobesize, Resources,
};
use super::*;
use crate::config::CueMode;
use crate::obs::protocol::{
    auth_response, AuthChallenge, Event, Hello, Identified, InputSettings, MediaAction,
    RequestResponse, RequestStatus, MEDIA_ACTION_RESTART,
};

const SCENE: &str = "MOTHERSTREAM";
const MEDIA: &str = "motherstream";
const LOADING: &str = "loading";
const NAME: &str = "name";
const TIMER: &str = "timer";
const PW: &str = "hunter2-obs";

fn config() -> ObsConfig {
    ObsConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port: 4455,
        password: Some(PW.into()),
        scene: SCENE.into(),
        media_source: MEDIA.into(),
        loading_source: LOADING.into(),
        name_source: NAME.into(),
        timer_source: TIMER.into(),
        cue: CueMode::None,
        loading_ms: 0,
        request_timeout_ms: 2000,
        ..ObsConfig::default()
    }
}

/// An OBS scene collection: one scene, its items (in order, bottom first)
/// and the inputs' settings.
struct FakeObs {
    scenes: Vec<String>,
    /// name → (kind, settings)
    inputs: BTreeMap<String, (String, Value)>,
    /// (source name, item id, enabled), bottom to top.
    items: Vec<(String, i64, bool)>,
    media_state: &'static str,
    /// Request types answered with code 600.
    failing: BTreeSet<&'static str>,
    restarts: u32,
}

impl FakeObs {
    fn new() -> FakeObs {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            MEDIA.to_string(),
            (
                "ffmpeg_source".into(),
                json!({"input": "rtmp://x/motherstream/live"}),
            ),
        );
        for t in [NAME, TIMER] {
            inputs.insert(
                t.to_string(),
                ("text_ft2_source_v2".into(), json!({"text": "stale"})),
            );
        }
        inputs.insert(LOADING.to_string(), ("color_source_v3".into(), json!({})));
        FakeObs {
            scenes: vec![SCENE.into()],
            inputs,
            items: vec![
                (MEDIA.into(), 1, true),
                (LOADING.into(), 2, false),
                (NAME.into(), 3, true),
                (TIMER.into(), 4, true),
            ],
            media_state: "OBS_MEDIA_STATE_PLAYING",
            failing: BTreeSet::new(),
            restarts: 0,
        }
    }

    fn without(mut self, source: &str) -> FakeObs {
        self.inputs.remove(source);
        self.items.retain(|i| i.0 != source);
        self
    }

    fn text(&self, input: &str) -> String {
        self.inputs[input].1["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn enabled(&self, source: &str) -> bool {
        self.items.iter().any(|i| i.0 == source && i.2)
    }

    fn item(&self, scene: &str, source: &str) -> Option<&(String, i64, bool)> {
        if !self.scenes.iter().any(|s| s == scene) {
            return None;
        }
        self.items.iter().find(|i| i.0 == source)
    }

    /// (success, responseData)
    fn answer(&mut self, r: &ObsRequest) -> (bool, Value) {
        if self.failing.contains(r.request_type()) {
            return (false, Value::Null);
        }
        let not_found = (false, Value::Null);
        match r {
            ObsRequest::GetVersion => (
                true,
                json!({"obsVersion": "29.0.2", "obsWebSocketVersion": "5.1.0", "rpcVersion": 1}),
            ),
            ObsRequest::GetSceneList => (
                true,
                json!({"currentProgramSceneName": SCENE,
                       "scenes": self.scenes.iter().map(|s| json!({"sceneName": s})).collect::<Vec<_>>()}),
            ),
            ObsRequest::GetInputList => (
                true,
                json!({"inputs": self.inputs.iter()
                    .map(|(n, (k, _))| json!({"inputName": n, "inputKind": k}))
                    .collect::<Vec<_>>()}),
            ),
            ObsRequest::GetSceneItemId {
                scene_name,
                source_name,
            } => match self.item(scene_name, source_name) {
                Some(i) => (true, json!({"sceneItemId": i.1})),
                None => not_found,
            },
            ObsRequest::GetSceneItemIndex { scene_item_id, .. } => {
                match self.items.iter().position(|i| i.1 == *scene_item_id) {
                    Some(p) => (true, json!({"sceneItemIndex": p})),
                    None => not_found,
                }
            }
            ObsRequest::GetInputSettings { input_name } => match self.inputs.get(input_name) {
                Some((k, s)) => (true, json!({"inputKind": k, "inputSettings": s})),
                None => not_found,
            },
            ObsRequest::SetInputSettings {
                input_name,
                input_settings,
                overlay,
            } => {
                assert!(overlay, "settings are always overlaid");
                let Some((_, s)) = self.inputs.get_mut(input_name) else {
                    return not_found;
                };
                if let (Value::Object(s), Ok(Value::Object(new))) =
                    (s, serde_json::to_value(input_settings))
                {
                    s.extend(new);
                }
                (true, Value::Null)
            }
            ObsRequest::SetSceneItemEnabled {
                scene_item_id,
                scene_item_enabled,
                ..
            } => match self.items.iter_mut().find(|i| i.1 == *scene_item_id) {
                Some(i) => {
                    i.2 = *scene_item_enabled;
                    (true, Value::Null)
                }
                None => not_found,
            },
            ObsRequest::TriggerMediaInputAction {
                input_name,
                media_action,
            } => {
                assert_eq!(*media_action, MediaAction::Restart);
                if !self.inputs.contains_key(input_name) {
                    return not_found;
                }
                self.restarts += 1;
                (true, Value::Null)
            }
            ObsRequest::GetMediaInputStatus { input_name } => {
                if !self.inputs.contains_key(input_name) {
                    return not_found;
                }
                (
                    true,
                    json!({"mediaState": self.media_state, "mediaCursor": 0}),
                )
            }
        }
    }
}

/// The session, a simulated clock, the fake OBS, and everything the session
/// asked for.
struct Rig {
    s: Session,
    desired: BroadcastState,
    t0: Instant,
    wall0: SystemTime,
    at: Duration,
    obs: FakeObs,
    /// OBS answers requests (false: frozen).
    answering: bool,
    open: bool,
    connects: u32,
    identifies: Vec<Identify>,
    /// Sent, not answered yet.
    unanswered: VecDeque<(String, ObsRequest)>,
    /// Every request sent, with the time it was sent.
    sent: Vec<(Duration, ObsRequest)>,
    reports: Vec<(Duration, ObsStatus)>,
    disconnects: u32,
    /// Tick inputs fed (one per wake-up of the thread).
    ticks: u32,
}

impl Rig {
    fn new(cfg: ObsConfig) -> Rig {
        Rig::with_obs(cfg, FakeObs::new())
    }

    fn with_obs(cfg: ObsConfig, obs: FakeObs) -> Rig {
        Rig {
            s: Session::new(cfg),
            desired: BroadcastState::default(),
            t0: Instant::now(),
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            at: Duration::ZERO,
            obs,
            answering: true,
            open: false,
            connects: 0,
            identifies: Vec::new(),
            unanswered: VecDeque::new(),
            sent: Vec::new(),
            reports: Vec::new(),
            disconnects: 0,
            ticks: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.t0 + self.at,
            wall: self.wall0 + self.at,
        }
    }

    /// Feed one input; perform the actions (the connection itself is left
    /// to the test: `Connect` only counts).
    fn step(&mut self, input: Input) -> Vec<Action> {
        let actions = self.s.step(&self.desired, input, self.now());
        for a in &actions {
            match a {
                Action::Connect => self.connects += 1,
                Action::Send(Outgoing::Identify(i)) => {
                    assert!(self.open, "Identify on a closed connection");
                    self.identifies.push(i.clone());
                }
                Action::Send(Outgoing::Request { id, request }) => {
                    assert!(self.open, "request on a closed connection");
                    assert!(
                        self.unanswered.is_empty(),
                        "{request:?} sent while {:?} is in flight",
                        self.unanswered
                    );
                    self.unanswered.push_back((id.clone(), request.clone()));
                    self.sent.push((self.at, request.clone()));
                }
                Action::Disconnect => {
                    self.open = false;
                    self.disconnects += 1;
                    self.unanswered.clear();
                }
                Action::Report(st) => self.reports.push((self.at, st.clone())),
            }
        }
        // Whatever was due has been done: the next deadline is ahead.
        if let Some(d) = self.s.deadline() {
            assert!(d > self.now().mono, "deadline in the past after a step");
        }
        actions
    }

    /// OBS answers everything in flight, and whatever follows.
    fn settle(&mut self) {
        while self.answering && self.open {
            let Some((id, req)) = self.unanswered.pop_front() else {
                return;
            };
            let (ok, data) = self.obs.answer(&req);
            let resp = RequestResponse {
                request_type: req.request_type().into(),
                request_id: id,
                request_status: RequestStatus {
                    result: ok,
                    code: if ok { 100 } else { 600 },
                    comment: (!ok).then(|| "No source was found".to_string()),
                },
                response_data: (ok && !data.is_null()).then_some(data),
            };
            self.step(Input::Frame(Message::RequestResponse(resp)));
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            obs_web_socket_version: "5.1.0".into(),
            rpc_version: 1,
            authentication: Some(AuthChallenge {
                challenge: "+IxH4CnCiqpX1rM9scsNynZzbOe4KhDeYcTNS3PDaeY=".into(),
                salt: "lM1GncleQOaCu9lT1yeUZhFYnqhsLLP1G5lAGo3ixaI=".into(),
            }),
        }
    }

    /// The session asked to connect: open, and OBS says Hello (with a
    /// password challenge).
    fn knock(&mut self) {
        self.open = true;
        let password = self.s.config().password.clone();
        self.step(Input::Connected { password });
        let hello = self.hello();
        self.step(Input::Frame(Message::Hello(hello)));
    }

    /// The session asked to connect: open, handshake, answer the setup.
    fn accept(&mut self) {
        self.knock();
        self.step(Input::Frame(Message::Identified(Identified {
            negotiated_rpc_version: 1,
        })));
        self.settle();
    }

    fn start_connected(&mut self) {
        self.step(Input::Start);
        assert_eq!(self.connects, 1);
        self.accept();
        assert!(self.connected(), "reports: {:?}", self.reports);
    }

    fn connected(&self) -> bool {
        matches!(self.reports.last(), Some((_, ObsStatus::Connected { .. })))
    }

    fn show(&mut self, state: BroadcastState) {
        self.desired = state;
        self.step(Input::Desired);
        self.settle();
    }

    /// Let `d` of simulated time pass, waking the session at each of its
    /// deadlines, as the shell does.
    fn advance(&mut self, d: Duration) {
        let end = self.at + d;
        while let Some(dl) = self.s.deadline() {
            let dl = dl - self.t0;
            if dl > end {
                break;
            }
            self.at = self.at.max(dl);
            self.ticks += 1;
            self.step(Input::Tick);
            self.settle();
        }
        self.at = end;
    }

    fn event(&mut self, ty: &str, data: Value) {
        self.step(Input::Frame(Message::Event(Event {
            event_type: ty.into(),
            event_intent: 0,
            event_data: Some(data),
        })));
        self.settle();
    }

    fn sent_since(&self, since: Duration) -> Vec<ObsRequest> {
        self.sent
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn count(&self, pred: impl Fn(&ObsRequest) -> bool) -> usize {
        self.sent.iter().filter(|(_, r)| pred(r)).count()
    }

    fn disconnected_reasons(&self) -> Vec<String> {
        self.reports
            .iter()
            .filter_map(|(_, r)| match r {
                ObsStatus::Disconnected { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

fn on_air(name: &str, seq: u64, slot: Option<Duration>, rig: &Rig) -> BroadcastState {
    BroadcastState {
        on_air: Some(name.into()),
        next_up: None,
        switch_seq: seq,
        slot_ends_at: slot.map(|d| rig.now().wall + d),
    }
}

fn nobody(seq: u64) -> BroadcastState {
    BroadcastState {
        switch_seq: seq,
        ..BroadcastState::default()
    }
}

fn is_restart(r: &ObsRequest) -> bool {
    matches!(r, ObsRequest::TriggerMediaInputAction { input_name, .. } if input_name == MEDIA)
}

fn is_media_check(r: &ObsRequest) -> bool {
    matches!(r, ObsRequest::GetMediaInputStatus { .. })
}

fn sets_text_of(input: &str) -> impl Fn(&ObsRequest) -> bool + '_ {
    move |r| matches!(r, ObsRequest::SetInputSettings { input_name, input_settings: InputSettings::Text { .. }, .. } if input_name == input)
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn connects_with_auth_checks_the_collection_then_reports_connected() {
    let mut r = Rig::new(config());
    assert_eq!(r.step(Input::Start), [Action::Connect]);
    r.open = true;
    assert!(r
        .step(Input::Connected {
            password: Some(PW.into())
        })
        .is_empty());
    let hello = r.hello();
    let a = r.step(Input::Frame(Message::Hello(hello.clone())));
    let auth = hello
        .authentication
        .as_ref()
        .map(|a| auth_response(PW, &a.salt, &a.challenge));
    assert_eq!(
        a,
        [Action::Send(Outgoing::Identify(Identify {
            rpc_version: 1,
            authentication: auth,
            event_subscriptions: Some(SUBSCRIPTIONS),
        }))]
    );
    r.step(Input::Frame(Message::Identified(Identified {
        negotiated_rpc_version: 1,
    })));
    assert!(r.reports.is_empty(), "not connected before the setup");
    r.settle();

    let item = |source: &str| ObsRequest::GetSceneItemId {
        scene_name: SCENE.into(),
        source_name: source.into(),
    };
    let index = |id: i64| ObsRequest::GetSceneItemIndex {
        scene_name: SCENE.into(),
        scene_item_id: id,
    };
    let text = |input: &str, t: &str| ObsRequest::SetInputSettings {
        input_name: input.into(),
        input_settings: InputSettings::Text { text: t.into() },
        overlay: true,
    };
    assert_eq!(
        r.sent_since(Duration::ZERO),
        [
            ObsRequest::GetVersion,
            ObsRequest::GetSceneList,
            ObsRequest::GetInputList,
            item(MEDIA),
            item(LOADING),
            index(1),
            index(2),
            ObsRequest::GetInputSettings {
                input_name: MEDIA.into()
            },
            // fpsprobesize=0 added once, on connect.
            ObsRequest::SetInputSettings {
                input_name: MEDIA.into(),
                input_settings: InputSettings::FfmpegOptions {
                    ffmpeg_options: "fpsprobesize=0".into()
                },
                overlay: true,
            },
            // The whole state: nobody on air.
            text(NAME, ""),
            text(TIMER, ""),
            ObsRequest::SetSceneItemEnabled {
                scene_name: SCENE.into(),
                scene_item_id: 2,
                scene_item_enabled: true
            },
        ]
    );
    assert_eq!(
        r.reports,
        [(
            Duration::ZERO,
            ObsStatus::Connected {
                obs_version: "29.0.2".into()
            }
        )]
    );
    assert_eq!(r.obs.inputs[MEDIA].1["ffmpeg_options"], "fpsprobesize=0");
    assert!(r.obs.enabled(LOADING) && r.obs.text(NAME).is_empty());
}

#[test]
fn fpsprobesize_is_left_alone_when_present_or_not_a_media_source() {
    let mut obs = FakeObs::new();
    obs.inputs.get_mut(MEDIA).unwrap().1["ffmpeg_options"] = json!("a=b fpsprobesize=0");
    let mut r = Rig::with_obs(config(), obs);
    r.start_connected();
    assert_eq!(
        r.count(
            |q| matches!(q, ObsRequest::SetInputSettings { input_name, .. } if input_name == MEDIA)
        ),
        0
    );

    let mut obs = FakeObs::new();
    obs.inputs.get_mut(MEDIA).unwrap().0 = "vlc_source".into();
    let mut r = Rig::with_obs(config(), obs);
    r.start_connected();
    assert_eq!(
        r.count(
            |q| matches!(q, ObsRequest::SetInputSettings { input_name, .. } if input_name == MEDIA)
        ),
        0
    );
}

#[test]
fn texts_and_loading_follow_the_broadcast_state() {
    let mut r = Rig::new(config());
    r.start_connected();
    r.show(nobody(0));
    assert!(r.obs.enabled(LOADING) && r.obs.text(NAME).is_empty());

    // Someone on air with a slot: name set, loading hidden, countdown runs.
    let alice = on_air("Alice Ünïcode", 1, Some(SECS(125)), &r);
    r.show(alice);
    assert_eq!(r.obs.text(NAME), "Alice Ünïcode");
    assert!(!r.obs.enabled(LOADING));
    assert_eq!(r.obs.text(TIMER), "02:05");
    r.advance(MS(1500));
    assert_eq!(r.obs.text(TIMER), "02:04");
    r.advance(SECS(1));
    assert_eq!(r.obs.text(TIMER), "02:03");

    // Next streamer without a slot limit: timer blank.
    let bob = on_air("Bob", 2, None, &r);
    r.show(bob);
    assert_eq!(r.obs.text(NAME), "Bob");
    assert!(r.obs.text(TIMER).is_empty());
    assert!(!r.obs.enabled(LOADING));

    // A refresh of the same state sends nothing.
    let before = r.sent.len();
    let bob = BroadcastState {
        next_up: Some("Carol".into()),
        ..r.desired.clone()
    };
    r.show(bob);
    assert_eq!(r.sent.len(), before);

    // Queue empty: loading back, texts blank.
    r.show(nobody(3));
    assert!(r.obs.enabled(LOADING) && r.obs.text(NAME).is_empty());
}

#[test]
fn the_countdown_is_rendered_once_a_second_on_the_second() {
    let mut r = Rig::new(config());
    r.start_connected();
    let state = on_air("A", 1, Some(MS(10_500)), &r);
    r.show(state);
    assert_eq!(r.obs.text(TIMER), "00:11");
    let ticks = r.ticks;
    let since = r.at;
    r.advance(MS(4_000));
    // Changes at 0.5 s, then every second: 4 in 4 s, each right after the
    // second turns (no wake-ups in between, none missed).
    let texts: Vec<(Duration, String)> = r
        .sent
        .iter()
        .filter(|(t, q)| *t > since && sets_text_of(TIMER)(q))
        .map(|(t, q)| match q {
            ObsRequest::SetInputSettings {
                input_settings: InputSettings::Text { text },
                ..
            } => (*t - since, text.clone()),
            _ => unreachable!(),
        })
        .collect();
    let expect: Vec<(Duration, String)> = [
        (501, "00:10"),
        (1501, "00:09"),
        (2501, "00:08"),
        (3501, "00:07"),
    ]
    .iter()
    .map(|(ms, t)| (MS(*ms), t.to_string()))
    .collect();
    assert_eq!(texts, expect);
    // Media checks (1 s, then every 2 s) add their own wake-ups.
    assert!(r.ticks - ticks <= 4 + 2, "{} wake-ups", r.ticks - ticks);
    // At the end it reads 00:00 and stops waking for it.
    r.advance(SECS(10));
    assert_eq!(r.obs.text(TIMER), "00:00");
}

#[test]
fn loading_ms_covers_the_first_moment_of_a_switch() {
    let mut cfg = config();
    cfg.loading_ms = 1500;
    let mut r = Rig::new(cfg);
    r.start_connected();
    let bob = on_air("Bob", 2, None, &r);
    r.show(bob);
    r.advance(SECS(2));
    assert!(!r.obs.enabled(LOADING));
    let carol = on_air("Carol", 3, None, &r);
    r.show(carol);
    assert!(r.obs.text(NAME) == "Carol" && r.obs.enabled(LOADING));
    r.advance(MS(1499));
    assert!(r.obs.enabled(LOADING), "still within loading_ms");
    r.advance(MS(1));
    assert!(!r.obs.enabled(LOADING), "hidden after loading_ms");
}

#[test]
fn one_request_at_a_time_and_only_the_newest_state_counts() {
    let mut r = Rig::new(config());
    r.start_connected();
    // Three states while the first text is still in flight.
    r.desired = on_air("A", 1, None, &r);
    r.step(Input::Desired);
    r.desired = on_air("B", 2, None, &r);
    r.step(Input::Desired);
    r.desired = on_air("C", 3, None, &r);
    r.step(Input::Desired);
    assert_eq!(
        r.unanswered.len(),
        1,
        "the rig also checks this on every send"
    );
    r.settle();
    assert_eq!(r.obs.text(NAME), "C");
}

#[test]
fn the_state_at_connect_is_applied_without_a_cue_and_restart_cues_switches_only() {
    let mut cfg = config();
    cfg.cue = CueMode::Restart;
    let mut r = Rig::new(cfg);
    // The state found at (re)connect is applied without a cue: OBS may
    // already show that streamer.
    r.desired = on_air("A", 1, None, &r);
    r.start_connected();
    assert_eq!(r.obs.text(NAME), "A");
    assert_eq!(r.count(is_restart), 0);
    let b = on_air("B", 2, None, &r);
    r.show(b);
    assert_eq!(r.count(is_restart), 1);
    // A refresh of the same switch is no cue.
    let b = BroadcastState {
        next_up: Some("C".into()),
        ..r.desired.clone()
    };
    r.show(b);
    r.advance(SECS(3));
    assert_eq!(r.count(is_restart), 1);
}

#[test]
fn hide_show_cue_hides_then_shows_the_media_item() {
    let mut cfg = config();
    cfg.cue = CueMode::HideShow;
    let mut r = Rig::new(cfg);
    r.start_connected();
    let a = on_air("A", 1, None, &r);
    r.show(a);
    r.advance(MS(10));
    let since = r.at;
    let c = on_air("C", 3, None, &r);
    r.show(c);
    let media = |on: bool| ObsRequest::SetSceneItemEnabled {
        scene_name: SCENE.into(),
        scene_item_id: 1,
        scene_item_enabled: on,
    };
    let toggles: Vec<ObsRequest> = r
        .sent_since(since)
        .into_iter()
        .filter(|q| *q == media(false) || *q == media(true))
        .collect();
    assert_eq!(toggles, [media(false), media(true)]);
    assert!(r.obs.enabled(MEDIA));
    // Default cue: nothing to the media item.
    let mut r = Rig::new(config());
    r.start_connected();
    let a = on_air("A", 1, None, &r);
    r.show(a);
    let b = on_air("B", 2, None, &r);
    r.show(b);
    assert_eq!(r.count(|q| *q == media(false)), 0);
    assert_eq!(r.count(is_restart), 0);
}

#[test]
fn a_wrong_password_is_reported_once_and_retried_slowly() {
    let mut cfg = config();
    cfg.password = Some("not-the-password".into());
    let mut r = Rig::new(cfg);
    r.step(Input::Start);
    r.knock();
    assert_eq!(r.identifies.len(), 1);
    r.step(Input::Closed {
        code: 4009,
        reason: "Authentication failed.".into(),
    });
    let reasons = r.disconnected_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("password") && reasons[0].contains("4009"),
        "{reasons:?}"
    );
    // Slow retry: nothing for 60 s, then one attempt.
    r.advance(SECS(59));
    assert_eq!(r.connects, 1, "the session hammered OBS");
    r.advance(SECS(1));
    assert_eq!(r.connects, 2);
    r.knock();
    r.step(Input::Closed {
        code: 4009,
        reason: "Authentication failed.".into(),
    });
    assert_eq!(
        r.disconnected_reasons().len(),
        1,
        "status repeated while retrying"
    );
    assert_eq!(r.s.deadline(), Some(r.now().mono + SECS(60)));
}

#[test]
fn a_missing_password_is_said_precisely_and_fixing_it_connects() {
    let mut cfg = config();
    cfg.password = None;
    let mut r = Rig::new(cfg.clone());
    r.step(Input::Start);
    r.knock();
    assert!(r.identifies.is_empty(), "no Identify that can only fail");
    let reasons = r.disconnected_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("requires a password"), "{reasons:?}");
    assert_eq!(r.disconnects, 1);
    assert_eq!(r.s.deadline(), Some(r.now().mono + SECS(60)));
    // A config with the password (e.g. a fixed password file) connects now.
    cfg.password = Some(PW.into());
    let a = r.step(Input::Config {
        cfg: Box::new(cfg.clone()),
        password: Some(PW.into()),
    });
    assert_eq!(a, [Action::Connect]);
    r.accept();
    assert!(r.connected());
}

#[test]
fn failures_back_off_and_are_reported_once_per_kind_of_trouble() {
    let mut r = Rig::new(config());
    r.step(Input::Start);
    let mut delays = Vec::new();
    for _ in 0..7 {
        r.step(Input::ConnectFailed(
            "cannot connect to 127.0.0.1:4455: refused".into(),
        ));
        let d = r.s.deadline().expect("a retry") - r.now().mono;
        delays.push(d.as_secs());
        let n = r.connects;
        r.advance(d);
        assert_eq!(r.connects, n + 1);
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(
        r.disconnected_reasons().len(),
        1,
        "one report for the outage"
    );
    // A different kind of trouble (slow class) is reported.
    r.accept();
    r.step(Input::Closed {
        code: 4011,
        reason: String::new(),
    });
    assert_eq!(r.disconnected_reasons().len(), 2);
    // Connected resets the backoff.
    r.advance(SECS(60));
    r.accept();
    assert!(r.connected());
    r.step(Input::TransportError(
        "reading from OBS: connection closed".into(),
    ));
    assert_eq!(r.s.deadline(), Some(r.now().mono + SECS(1)));
}

#[test]
fn a_reconnect_reapplies_the_whole_current_state() {
    let mut r = Rig::new(config());
    r.start_connected();
    let alice = on_air("Alice", 1, None, &r);
    r.show(alice);
    // OBS killed: no close frame.
    r.step(Input::TransportError(
        "reading from OBS: OBS dropped the connection without a close frame (killed or crashed?)"
            .into(),
    ));
    assert_eq!(r.disconnected_reasons().len(), 1);
    // The queue keeps moving while OBS is down.
    let bob = on_air("Bob", 2, None, &r);
    r.show(bob);
    r.show(nobody(3));
    let carol = on_air("Carol", 4, Some(SECS(600)), &r);
    r.show(carol);
    // The restarted OBS has the stale collection from disk.
    r.obs = FakeObs::new();
    r.obs.items[1].2 = true;
    r.advance(SECS(1));
    assert_eq!(r.connects, 2);
    r.accept();
    assert!(r.connected());
    assert_eq!(r.obs.text(NAME), "Carol");
    assert!(!r.obs.enabled(LOADING));
    assert!(
        r.obs.text(TIMER).starts_with("09:5"),
        "{}",
        r.obs.text(TIMER)
    );
    // The state at reconnect is no switch: no cue, even in restart mode.
    assert_eq!(r.count(is_restart), 0);
}

#[test]
fn a_clean_obs_exit_stops_the_requests_and_retries_normally() {
    let mut r = Rig::new(config());
    r.start_connected();
    r.event("ExitStarted", Value::Null);
    // OBS tears its scenes down: the session leaves it alone.
    let n = r.sent.len();
    let a = on_air("A", 1, None, &r);
    r.show(a);
    r.event("InputRemoved", json!({"inputName": NAME}));
    r.advance(MS(500));
    assert_eq!(r.sent.len(), n);
    r.step(Input::Closed {
        code: 1001,
        reason: String::new(),
    });
    let reasons = r.disconnected_reasons();
    assert!(reasons[0].contains("shutting down"), "{reasons:?}");
    assert_eq!(r.s.deadline(), Some(r.now().mono + SECS(1)));
}

#[test]
fn a_silent_obs_counts_as_dead_after_heartbeat_plus_deadline() {
    let mut r = Rig::new(config());
    r.start_connected();
    let last_frame = r.at;
    r.answering = false;
    r.advance(SECS(5));
    assert_eq!(r.unanswered.len(), 1, "heartbeat sent after 5 s of silence");
    assert_eq!(r.unanswered[0].1, ObsRequest::GetVersion);
    r.advance(MS(1999));
    assert!(r.disconnected_reasons().is_empty());
    r.advance(MS(1));
    let reasons = r.disconnected_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("did not answer GetVersion within 2000 ms"),
        "{reasons:?}"
    );
    assert!(r.at - last_frame < SECS(9));
    assert_eq!(r.disconnects, 1);
    // Picked up again when it answers.
    r.answering = true;
    let frida = on_air("Frida", 1, None, &r);
    r.show(frida);
    r.advance(SECS(1));
    r.accept();
    assert!(r.connected());
    assert_eq!(r.obs.text(NAME), "Frida");
}

#[test]
fn a_silent_handshake_times_out() {
    let mut r = Rig::new(config());
    r.step(Input::Start);
    r.open = true;
    r.step(Input::Connected {
        password: Some(PW.into()),
    });
    r.advance(SECS(2));
    let reasons = r.disconnected_reasons();
    assert!(reasons[0].contains("waiting for Hello"), "{reasons:?}");
}

#[test]
fn idle_and_connected_it_wakes_once_per_heartbeat() {
    let mut r = Rig::new(config());
    r.start_connected();
    r.show(nobody(0));
    let (ticks, sent) = (r.ticks, r.sent.len());
    r.advance(SECS(60));
    assert_eq!(r.ticks - ticks, 12, "one wake-up per 5 s heartbeat");
    assert_eq!(r.sent.len() - sent, 12);
    assert!(r.sent[sent..]
        .iter()
        .all(|(_, q)| *q == ObsRequest::GetVersion));
    assert!(r.connected() && r.reports.len() == 1);
    // Any frame from OBS (an event here) postpones the heartbeat.
    r.advance(SECS(4));
    r.event("SceneItemEnableStateChanged", json!({"sceneItemId": 2}));
    assert_eq!(r.s.deadline(), Some(r.now().mono + HEARTBEAT));
}

#[test]
fn missing_sources_are_named_and_the_rest_still_works() {
    let mut cfg = config();
    cfg.timer_source = "timer-missing".into();
    let obs = FakeObs::new().without(LOADING).without(TIMER);
    let inputs: BTreeSet<String> = obs.inputs.keys().cloned().collect();
    let scenes: BTreeSet<String> = obs.scenes.iter().cloned().collect();
    let (res, mut missing) = check_lists(&cfg, &scenes, &inputs);
    missing.extend(check_items(
        &cfg,
        &Resources {
            media_item: Some(1),
            ..res
        },
    ));
    let l = missing.join(", ");
    assert!(
        l.contains("input \"timer-missing\" (obs.timer_source)")
            && l.contains("item \"loading\" in scene \"MOTHERSTREAM\" (obs.loading_source)")
            && !l.contains("obs.name_source")
            && !l.contains("obs.media_source"),
        "{l}"
    );
    // A missing scene names the scene and the item.
    let (res, mut missing) = check_lists(&cfg, &BTreeSet::new(), &inputs);
    missing.extend(check_items(&cfg, &res));
    assert!(missing.contains(&"scene \"MOTHERSTREAM\" (obs.scene)".to_string()));
    assert!(missing.contains(&"item \"loading\" (obs.loading_source)".to_string()));

    let mut r = Rig::with_obs(cfg, obs);
    r.start_connected();
    let dora = on_air("Dora", 1, Some(SECS(30)), &r);
    r.show(dora);
    assert_eq!(r.obs.text(NAME), "Dora");
    assert_eq!(r.count(sets_text_of("timer-missing")), 0);
    assert_eq!(
        r.count(|q| matches!(q, ObsRequest::SetSceneItemEnabled { .. })),
        0
    );
}

#[test]
fn a_dead_media_source_is_restarted_with_backoff() {
    let mut obs = FakeObs::new();
    obs.media_state = "OBS_MEDIA_STATE_ENDED";
    let mut r = Rig::with_obs(config(), obs);
    r.start_connected();
    // Nobody on air: the media source is left alone.
    r.show(nobody(0));
    r.advance(SECS(3));
    assert_eq!(r.count(is_media_check) + r.count(is_restart), 0);
    let since = r.at;
    let eve = on_air("Eve", 1, None, &r);
    r.show(eve);
    r.advance(MS(6500));
    let restarts: Vec<Duration> = r
        .sent
        .iter()
        .filter(|(_, q)| is_restart(q))
        .map(|(t, _)| *t - since)
        .collect();
    // First check 1 s after the switch: restart at once; then ≥ 2 s, ≥ 4 s.
    // (checks 1 s after a restart, then every 2 s)
    assert_eq!(restarts, [SECS(1), SECS(4)]);
    r.advance(SECS(20));
    let restarts: Vec<Duration> = r
        .sent
        .iter()
        .filter(|(_, q)| is_restart(q))
        .map(|(t, _)| *t - since)
        .collect();
    let gaps: Vec<u64> = restarts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert!(
        gaps.iter().zip([2u64, 4, 8, 16]).all(|(g, min)| *g >= min),
        "{gaps:?}"
    );

    // Two PLAYING checks in a row end the backoff: the next failure is
    // restarted at once again.
    r.obs.media_state = "OBS_MEDIA_STATE_PLAYING";
    r.advance(SECS(5));
    let n = r.count(is_restart);
    r.obs.media_state = "OBS_MEDIA_STATE_ERROR";
    r.advance(MS(2001));
    assert_eq!(r.count(is_restart), n + 1);
}

#[test]
fn a_playback_ended_event_checks_the_media_source_soon() {
    let mut r = Rig::new(config());
    r.start_connected();
    let a = on_air("A", 1, None, &r);
    r.show(a);
    r.advance(MS(1500));
    r.obs.media_state = "OBS_MEDIA_STATE_ENDED";
    let n = r.count(is_media_check);
    r.event("MediaInputPlaybackEnded", json!({"inputName": MEDIA}));
    assert_eq!(r.s.deadline(), Some(r.now().mono + MS(100)));
    r.advance(MS(100));
    assert_eq!(r.count(is_media_check), n + 1);
    assert_eq!(r.count(is_restart), 1);
    assert_eq!(r.obs.restarts, 1);
    // Another source's event means nothing.
    let n = r.count(is_media_check);
    r.event("MediaInputPlaybackEnded", json!({"inputName": "other"}));
    r.advance(MS(100));
    assert_eq!(r.count(is_media_check), n);
}

#[test]
fn scene_collection_edits_are_checked_again_after_a_quiet_time() {
    let mut r = Rig::new(config());
    r.start_connected();
    let a = on_air("A", 1, None, &r);
    r.show(a);
    let lists = |r: &Rig| r.count(|q| *q == ObsRequest::GetSceneList);
    assert_eq!(lists(&r), 1);
    r.event("InputCreated", json!({"inputName": "x"}));
    r.advance(MS(200));
    r.event("SceneItemCreated", json!({"sourceName": "x"}));
    r.advance(MS(299));
    assert_eq!(lists(&r), 1, "debounced");
    // The operator fixes the text: it is applied again after the check.
    r.obs.inputs.get_mut(NAME).unwrap().1["text"] = json!("typed by hand");
    r.advance(MS(1));
    assert_eq!(lists(&r), 2);
    assert_eq!(r.obs.text(NAME), "A", "everything applied again");
}

#[test]
fn a_failed_request_checks_the_collection_again() {
    let mut r = Rig::new(config());
    r.start_connected();
    r.obs.failing.insert("SetInputSettings");
    let a = on_air("A", 1, None, &r);
    r.show(a);
    r.obs.failing.clear();
    let lists = r.count(|q| *q == ObsRequest::GetSceneList);
    r.advance(MS(300));
    assert_eq!(r.count(|q| *q == ObsRequest::GetSceneList), lists + 1);
    assert_eq!(r.obs.text(NAME), "A");
}

#[test]
fn config_changes_reconnect_only_when_something_changed() {
    let mut r = Rig::new(config());
    r.start_connected();
    let same = r.step(Input::Config {
        cfg: Box::new(config()),
        password: Some(PW.into()),
    });
    assert!(same.is_empty());
    let mut cfg = config();
    cfg.request_timeout_ms = 1500;
    let a = r.step(Input::Config {
        cfg: Box::new(cfg.clone()),
        password: Some(PW.into()),
    });
    assert_eq!(a, [Action::Disconnect, Action::Connect]);
    // A new password alone reconnects too.
    r.accept();
    let a = r.step(Input::Config {
        cfg: Box::new(cfg.clone()),
        password: Some("new".into()),
    });
    assert_eq!(a, [Action::Disconnect, Action::Connect]);
    r.accept();
    // Disabled: disconnect, say so, and sleep until the next config.
    cfg.enabled = false;
    let a = r.step(Input::Config {
        cfg: Box::new(cfg),
        password: Some("new".into()),
    });
    assert_eq!(
        a,
        [
            Action::Disconnect,
            Action::Report(ObsStatus::Disconnected {
                reason: "OBS integration disabled (obs.enabled = false)".into()
            })
        ]
    );
    assert_eq!(r.s.deadline(), None);
}

#[test]
fn disabled_at_start_reports_and_sleeps() {
    let mut cfg = config();
    cfg.enabled = false;
    let mut r = Rig::new(cfg);
    let a = r.step(Input::Start);
    assert!(
        matches!(&a[..], [Action::Report(ObsStatus::Disconnected { reason })] if reason.contains("disabled"))
    );
    assert_eq!(r.s.deadline(), None);
}

#[test]
fn late_or_foreign_answers_are_ignored() {
    let mut r = Rig::new(config());
    r.start_connected();
    let n = r.sent.len();
    for (id, ty) in [("ms-0-1", "GetVersion"), ("zz-9", "GetSceneList")] {
        r.step(Input::Frame(Message::RequestResponse(RequestResponse {
            request_type: ty.into(),
            request_id: id.into(),
            request_status: RequestStatus {
                result: true,
                code: 100,
                comment: None,
            },
            response_data: None,
        })));
    }
    assert_eq!(r.sent.len(), n);
    assert!(r.connected() && r.reports.len() == 1);
}

// Pure rules (moved from client.rs).

#[test]
fn countdown_formats() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |ms: u64| countdown_text(now + Duration::from_millis(ms), now);
    assert_eq!(at(754_000), "12:34");
    assert_eq!(at(753_001), "12:34", "rounds up");
    assert_eq!(at(0), "00:00");
    assert_eq!(at(59_000), "00:59");
    assert_eq!(at(3_600_000), "1:00:00");
    assert_eq!(at(3_725_000), "1:02:05");
    // A slot that ended in the past reads 00:00.
    assert_eq!(countdown_text(now, now + Duration::from_secs(5)), "00:00");
}

#[test]
fn countdown_changes_on_the_second() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let after = |ms: u64| until_countdown_changes(now + Duration::from_millis(ms), now);
    assert_eq!(after(754_000), Some(SECS(1)));
    assert_eq!(after(753_001), Some(MS(1)));
    assert_eq!(after(500), Some(MS(500)));
    assert_eq!(after(0), None);
    assert_eq!(until_countdown_changes(now, now + SECS(1)), None);
    // Just past the change, the text differs.
    let ends = now + MS(753_001);
    assert_ne!(countdown_text(ends, now), countdown_text(ends, now + MS(1)));
}

#[test]
fn fpsprobesize_is_added_once() {
    assert_eq!(with_fpsprobesize("").as_deref(), Some("fpsprobesize=0"));
    assert_eq!(
        with_fpsprobesize("rtmp_buffer=100").as_deref(),
        Some("rtmp_buffer=100 fpsprobesize=0")
    );
    assert_eq!(
        with_fpsprobesize("fpsprobesize=5 a=b").as_deref(),
        Some("a=b fpsprobesize=0")
    );
    assert_eq!(with_fpsprobesize("a=b fpsprobesize=0"), None);
}

#[test]
fn loading_shows_while_nobody_is_on_air_and_across_a_switch() {
    let t0 = Instant::now();
    let hold = Duration::from_millis(800);
    assert!(loading_visible(false, None, Duration::ZERO, t0));
    assert!(!loading_visible(true, Some(t0), Duration::ZERO, t0));
    assert!(loading_visible(
        true,
        Some(t0),
        hold,
        t0 + Duration::from_millis(500)
    ));
    assert!(!loading_visible(true, Some(t0), hold, t0 + hold));
    assert!(!loading_visible(true, None, hold, t0));
}

#[test]
fn recovery_backs_off() {
    let d: Vec<u64> = (1..=7)
        .map(|n| Recovery::delay_after(n).as_secs())
        .collect();
    assert_eq!(d, [2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn restart_requests_carry_the_protocol_action() {
    let Message::Request(q) = ObsRequest::TriggerMediaInputAction {
        input_name: MEDIA.into(),
        media_action: MediaAction::Restart,
    }
    .to_message("x".into()) else {
        panic!()
    };
    assert_eq!(q.request_data.unwrap()["mediaAction"], MEDIA_ACTION_RESTART);
}

/// A session carried over a hand-over goes on as after Identified: no
/// connect, no Identify, the scene resolved again, the carried state
/// applied without a cue or a loading hold (it is what OBS shows), and it
/// is quiet (can be carried again) once set up; request ids never repeat
/// the old image's.
#[test]
fn a_carried_session_goes_on_without_identify() {
    let mut cfg = config();
    cfg.loading_ms = 1500;
    cfg.cue = CueMode::Restart;
    let mut r = Rig::new(cfg);
    r.desired = on_air("Bob", 7, None, &r);
    r.open = true;
    let a = r.step(Input::Carried { connection: 3 });
    assert!(r.s.quiet().is_none(), "not set up yet");
    let first_id = a.iter().find_map(|a| match a {
        Action::Send(Outgoing::Request { id, .. }) => Some(id.clone()),
        _ => None,
    });
    assert!(
        first_id.as_deref().is_some_and(|id| id.starts_with("ms-4")),
        "{a:?}"
    );
    r.settle();
    assert_eq!(r.connects, 0, "no new connection");
    assert!(r.identifies.is_empty(), "no Identify");
    assert!(r.connected(), "reports: {:?}", r.reports);
    assert_eq!(r.obs.text(NAME), "Bob");
    assert!(!r.obs.enabled(LOADING), "no loading hold: not a switch");
    assert_eq!(r.count(is_restart), 0, "no cue");
    assert_eq!(r.s.quiet(), Some(4));
}
