//! The scene the hand-over tests and the hand-over bench share: a decoding
//! viewer of the output that has seen the slate, alice on air (30 fps,
//! 48 kHz stereo, her own size) and bob queued (44.1 kHz mono, the
//! slate's size), so that who is on the output shows in its picture size.

use std::time::{Duration, Instant};

use super::viewer::{Frame, Viewer};
use super::{Nginx, Publisher};

/// Alice's picture size.
pub const ALICE: (u32, u32) = (320, 180);
/// Bob's size, and the slate's.
pub const BOB: (u32, u32) = (640, 360);
pub const FPS: u32 = 30;
/// A keyframe every 2 s.
pub const GOP: u32 = 60;

/// A viewer of the output once it shows the slate.
pub fn viewer_on_slate(nginx: &Nginx) -> Viewer {
    let viewer = Viewer::start(&nginx.rtmp_url("motherstream", "live"));
    assert!(
        viewer
            .wait_size(BOB, viewer.started, Duration::from_secs(15))
            .is_some(),
        "the slate should be on the output"
    );
    viewer
}

/// Alice publishing with a keyframe every `gop` frames.
pub fn alice(nginx: &Nginx, gop: u32) -> Publisher {
    Publisher::start_full(&nginx.rtmp_url("live", "alice"), ALICE, FPS, gop, 48_000, 2)
}

pub fn bob(nginx: &Nginx) -> Publisher {
    Publisher::start_full(&nginx.rtmp_url("live", "bob"), BOB, FPS, GOP, 44_100, 1)
}

/// Longest gap between frames of one kind (video or audio) arriving within
/// [from, to]; None with fewer than two of them.
pub fn longest_gap(frames: &[Frame], video: bool, from: Instant, to: Instant) -> Option<Duration> {
    let t: Vec<Instant> = frames
        .iter()
        .filter(|f| f.size.is_some() == video && f.at >= from && f.at <= to)
        .map(|f| f.at)
        .collect();
    t.windows(2).map(|w| w[1] - w[0]).max()
}
