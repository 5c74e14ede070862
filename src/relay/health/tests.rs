//! The health rules on synthetic streams: tags with arrival times.

use super::*;
use crate::relay::flv::Tag;
use crate::relay::headers::{aac_config, avc_size, sps_size};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// x264 (veryfast, High profile) 320x180 and (ultrafast, Baseline)
/// 1920x1080 sequence headers, and AAC 48 kHz stereo / 44.1 kHz mono, as
/// ffmpeg 5.1 wrote them into FLV.
const AVC_320: &str = "17000000000164000dffe1001a6764000dacd941419f9f0110000003001000000303c0f142996001000468ef8fcbfdf8f800";
const AVC_1080: &str =
    "17000000000142c028ffe100196742c028da01e0089f970110000003001000000303c0f1832a01000468ce0fc8";
const AAC_48_2: &str = "af00119056e500";
const AAC_44_1: &str = "af00120856e500";

/// A synthetic stream: 30 fps video (`frame_bytes` each, keyframe every
/// `gop` frames, composition offset `cts`), AAC every ~23 ms.
struct Stream {
    fps: u64,
    gop: u64,
    frame_bytes: usize,
    cts: u8,
    frame: u64,
    audio: u64,
}

impl Stream {
    fn new(fps: u64, gop: u64, frame_bytes: usize) -> Stream {
        Stream {
            fps,
            gop,
            frame_bytes,
            cts: 0,
            frame: 0,
            audio: 0,
        }
    }

    /// The sequence headers; the state after them.
    fn headers(&self, h: &mut Health, at: u64) -> State {
        h.tag(&Tag::video(0, hex(AVC_320)), at);
        h.tag(&Tag::audio(0, hex(AAC_48_2)), at);
        h.state()
    }

    /// Source time of the next video frame.
    fn next_ts(&self) -> u64 {
        self.frame * 1000 / self.fps
    }

    /// Feeds the tags whose source time is below `until_src`, all arriving
    /// at `arrive(src)`. Returns every state change.
    fn feed(
        &mut self,
        h: &mut Health,
        until_src: u64,
        arrive: impl Fn(u64) -> u64,
    ) -> Vec<(u64, State)> {
        let mut changes = Vec::new();
        loop {
            let v = self.next_ts();
            let a = self.audio * 1024 * 1000 / 48000;
            if v >= until_src && a >= until_src {
                break;
            }
            if v <= a {
                let key = self.frame % self.gop == 0;
                let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, self.cts];
                body.resize(self.frame_bytes.max(6), 0xab);
                let at = arrive(v);
                if let Some(s) = h.tag(&Tag::video(v as u32, body), at) {
                    changes.push((at, s));
                }
                self.frame += 1;
            } else {
                let at = arrive(a);
                if let Some(s) = h.tag(&Tag::audio(a as u32, vec![0xaf, 1, 0x21, 0x10]), at) {
                    changes.push((at, s));
                }
                self.audio += 1;
            }
        }
        changes
    }
}

/// Polls every 50 ms from `from` to `to`.
fn poll_until(h: &mut Health, from: u64, to: u64) -> Vec<(u64, State)> {
    let mut v = Vec::new();
    let mut t = from;
    while t <= to {
        if let Some(s) = h.poll(t) {
            v.push((t, s));
        }
        t += 50;
    }
    v
}

#[test]
fn sizes_and_audio_config_come_from_the_headers() {
    assert_eq!(avc_size(&hex(AVC_320)), Some((320, 180)));
    assert_eq!(avc_size(&hex(AVC_1080)), Some((1920, 1080)));
    assert_eq!(aac_config(&hex(AAC_48_2)), Some((48000, 2)));
    assert_eq!(aac_config(&hex(AAC_44_1)), Some((44100, 1)));
    // Truncated and garbage input: no answer, no panic.
    for cut in 0..hex(AVC_320).len() {
        let _ = avc_size(&hex(AVC_320)[..cut]);
    }
    assert_eq!(
        avc_size(&[0x17, 0, 0, 0, 0, 1, 2, 3, 4, 0xe1, 0xff, 0xff]),
        None
    );
    assert_eq!(aac_config(&[0xaf]), None);
    let _ = sps_size(&[0x67; 40]);
    let _ = sps_size(&[0x67, 100, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn a_steady_stream_is_live_and_measured() {
    let mut h = Health::new(Config::default(), 0);
    assert_eq!(h.state(), State::Waiting);
    let mut s = Stream::new(30, 60, 2500);
    s.cts = 66;
    assert_eq!(s.headers(&mut h, 1000), State::Live, "media arrives");
    let ch = s.feed(&mut h, 10_000, |src| 1000 + src);
    assert_eq!(ch, [], "no change while it flows");
    let r = h.report(0);
    assert_eq!(r.state, Some(State::Live));
    assert!((290..=310).contains(&r.fps_x10), "{}", r.fps_x10);
    // 30 × 2500 B of video + ~47 audio tags of 4 B, per second.
    assert!((600..=610).contains(&r.kbps), "{}", r.kbps);
    assert!((600..=610).contains(&r.median_kbps), "{}", r.median_kbps);
    assert_eq!(r.keyframe_ms, Some(2000));
    assert!(r.format.bframes);
    assert_eq!((r.format.width, r.format.height), (Some(320), Some(180)));
    assert_eq!(r.format.audio_rate, Some(48000));
    assert_eq!(r.format.audio_channels, Some(2));
    assert_eq!(r.format.audio_codec, Some("AAC"));
    assert!(r.audio_present);
    assert!(hints(&r).is_empty(), "{:?}", hints(&r));
}

#[test]
fn no_media_is_a_stall_within_the_limit_and_long_keyframes_are_not() {
    let mut h = Health::new(Config::default(), 0);
    // OBS's default: a keyframe every 250 frames (8.3 s).
    let mut s = Stream::new(30, 250, 1000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    s.feed(&mut h, 20_000, |src| src);
    assert_eq!(h.state(), State::Live, "8.3 s keyframes are not a stall");
    assert_eq!(h.report(0).keyframe_ms, Some(8333));
    let hint = hints(&h.report(0));
    assert!(
        hint.iter().any(|x| x.contains("keyframe every 8.3 s")),
        "{hint:?}"
    );
    // The publisher freezes: the last tag arrived at ~20,000.
    let last = 20_000 - 1;
    let due = h.next_check().expect("a stall check is due");
    assert!(due <= last + 500, "{due}");
    // Past its time it stays due (a caller's clock read earlier reaches it).
    poll_until(&mut h, last, last + 450);
    assert!(
        h.next_check().is_some_and(|d| d <= last + 500),
        "{:?}",
        h.next_check()
    );
    let ch = poll_until(&mut h, last, last + 2000);
    let (at, st) = ch[0];
    assert_eq!(st, State::Stalled);
    assert!(
        at - last <= 550,
        "stalled {} ms after the last tag",
        at - last
    );
    assert!(hints(&h.report(0))[0].contains("nothing arrives"));
}

#[test]
fn a_backlog_burst_is_not_back_until_frames_come_at_their_pace() {
    let mut h = Health::new(Config::default(), 0);
    let mut s = Stream::new(30, 60, 1000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    s.feed(&mut h, 5000, |src| src);
    poll_until(&mut h, 5000, 20_000);
    assert_eq!(h.state(), State::Stalled);
    // SIGCONT at 20,000: 15 s of backlog arrive within 200 ms, then frames
    // come at their own pace again.
    let ch = s.feed(&mut h, 20_000, |src| 20_000 + (src - 5000) / 75);
    assert!(ch.is_empty(), "not back inside the burst: {ch:?}");
    let ch = s.feed(&mut h, 22_000, |src| src + 200);
    assert_eq!(ch.len(), 1, "{ch:?}");
    let (at, st) = ch[0];
    assert_eq!(st, State::Live);
    assert!(
        (20_400..=20_800).contains(&at),
        "back {} ms after the burst",
        at - 20_200
    );
}

#[test]
fn a_trickle_is_starved_after_a_few_seconds_and_recovers() {
    let mut h = Health::new(Config::default(), 0);
    let mut s = Stream::new(30, 60, 2000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    s.feed(&mut h, 20_000, |src| src);
    assert_eq!(h.state(), State::Live);
    // 2 fps of small frames for 15 s (the encoder drops frames).
    let mut changes = Vec::new();
    let mut t = 20_000;
    let mut src = 20_000;
    while t < 35_000 {
        let body = {
            let mut b = vec![0x27, 1, 0, 0, 0];
            b.resize(300, 0);
            b
        };
        changes.extend(h.tag(&Tag::video(src as u32, body), t).map(|x| (t, x)));
        changes.extend(poll_until(&mut h, t + 50, t + 450));
        t += 500;
        src += 500;
    }
    let starved = changes
        .iter()
        .find(|(_, s)| *s == State::Starved)
        .expect("starved");
    assert!(
        (22_500..=24_600).contains(&starved.0),
        "starved at {}: {changes:?}",
        starved.0
    );
    assert!(
        !changes.iter().any(|(_, s)| *s == State::Stalled),
        "2 fps is not a stall: {changes:?}"
    );
    let r = h.report(0);
    assert!(r.fps_x10 <= 30, "{}", r.fps_x10);
    assert!(hints(&r)[0].contains("kbit/s at 2 fps"), "{:?}", hints(&r));
    // Back to 30 fps at full size.
    s.frame = 35_000 * 30 / 1000;
    s.audio = 35_000 * 48 / 1024 + 1;
    let ch = s.feed(&mut h, 40_000, |src| src);
    let back = ch.iter().find(|(_, s)| *s == State::Live).expect("live");
    assert!(back.0 - 35_000 <= 1500, "back after {} ms", back.0 - 35_000);
}

#[test]
fn a_slow_stream_on_purpose_is_neither_starved_nor_stalled() {
    let mut h = Health::new(Config::default(), 0);
    // 5 fps slideshow: below the 10 fps floor, but it is its own rate.
    let mut s = Stream::new(5, 10, 3000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    let ch = s.feed(&mut h, 60_000, |src| src);
    assert_eq!(ch, [], "{ch:?}");
    assert_eq!(h.state(), State::Live);
    assert!(h.stall_limit_ms() >= 600);
    // 1 fps: three of its own frame intervals without a frame is a stall,
    // one is not.
    let mut h = Health::new(Config::default(), 0);
    let mut s = Stream::new(1, 2, 3000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    let mut changes = s.feed(&mut h, 30_000, |src| src);
    changes.extend(poll_until(&mut h, 30_000, 31_900));
    assert_eq!(changes, [], "{changes:?}");
    assert_eq!(h.stall_limit_ms(), 3000);
}

#[test]
fn audio_only_is_judged_by_audio() {
    let mut h = Health::new(Config::default(), 0);
    for i in 0..200u64 {
        let t = i * 21;
        h.tag(&Tag::audio(t as u32, vec![0xaf, 1, 0x21]), t);
    }
    assert_eq!(h.state(), State::Live);
    assert_eq!(h.report(0).format.audio_codec, Some("AAC"));
    let ch = poll_until(&mut h, 4200, 5000);
    assert_eq!(ch.first().map(|c| c.1), Some(State::Stalled));
}

#[test]
fn after_a_stall_the_first_frame_that_is_not_backlog_is_back_at_once() {
    let mut h = Health::new(Config::default(), 0);
    let mut s = Stream::new(30, 60, 1000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    // Frames arrive 40-90 ms after their time (network jitter).
    s.feed(&mut h, 12_000, |src| src + 40 + (src * 7) % 50);
    poll_until(&mut h, 12_000, 20_000);
    assert_eq!(h.state(), State::Stalled);
    // The backlog arrives within 300 ms, then frames on time again.
    let ch = s.feed(&mut h, 20_000, |src| 20_000 + (src - 12_000) * 300 / 8000);
    assert!(ch.is_empty(), "backlog is not back: {ch:?}");
    let ch = s.feed(&mut h, 21_000, |src| (src + 60).max(20_300));
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert_eq!(ch[0].1, State::Live);
    assert!(
        ch[0].0 <= 20_400,
        "back at {} (the first fresh frame)",
        ch[0].0
    );
}

#[test]
fn a_hole_in_the_timestamps_does_not_change_the_frame_rate() {
    let mut h = Health::new(Config::default(), 0);
    let mut s = Stream::new(30, 60, 1000);
    assert_eq!(s.headers(&mut h, 0), State::Live);
    s.feed(&mut h, 5000, |src| src);
    // nginx dropped 2.3 s of frames of a subscriber that fell behind.
    s.frame += 69;
    s.audio += 2300 * 48 / 1024;
    s.feed(&mut h, 7400, |src| src);
    assert_eq!(h.stall_limit_ms(), 500, "still 30 fps right after the hole");
}
