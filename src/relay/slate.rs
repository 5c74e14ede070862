//! The slate: what the output shows while nobody is on air, so OBS's media
//! source never goes dead and the first streamer is cut in on their first
//! keyframe like any other.
//!
//! A short H.264/AAC clip is made once at start with ffmpeg (a still with
//! "nobody on air / how to join" text and silence), or taken from the
//! operator's `[relay] slate` (an image, or an H.264/AAC FLV clip). Its
//! tags are kept in memory and replayed in a loop by [`Player`], which is
//! pure: the relay asks it for the tags due by `now`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::flv::{Demuxer, Tag};

/// Length of the generated clip. Keyframes every second (a cut to the
/// slate is instant), 30 fps: a cut away from it lands within a frame of
/// the slate's last one (at 10 fps the output's timeline stepped up to
/// 0.1 s more there, what a viewer sees as a stutter).
const CLIP_SECONDS: u32 = 2;

/// The slate's tags, timestamps from 0, first tags the sequence headers.
#[derive(Debug, Clone)]
pub(crate) struct Clip {
    pub(crate) tags: Vec<Tag>,
    /// Time from the first tag to the point where the loop restarts.
    pub(crate) loop_ms: u64,
}

/// Font used for the slate's text when present (Debian: fonts-dejavu-core).
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Make the slate clip into `dir/slate.flv` and load it. `source` is the
/// operator's file (image or FLV clip); empty = the built-in picture.
pub(crate) fn make(
    ffmpeg: &str,
    source: &str,
    text: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<Clip, String> {
    make_as(ffmpeg, source, text, &dir.join("slate.flv"), timeout)
}

/// As [`make`], into `out` (other cards are made the same way).
pub(crate) fn make_as(
    ffmpeg: &str,
    source: &str,
    text: &str,
    out: &Path,
    timeout: Duration,
) -> Result<Clip, String> {
    let src = Path::new(source);
    if !source.is_empty() && src.extension().is_some_and(|e| e == "flv") {
        let bytes = std::fs::read(src).map_err(|e| format!("cannot read slate {source}: {e}"))?;
        return load(&bytes).map_err(|e| format!("slate {source}: {e}"));
    }
    run_to_end(ffmpeg, &clip_args(source, text, out), timeout)?;
    let bytes = std::fs::read(out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
    load(&bytes)
}

/// ffmpeg's arguments for a clip of `source` (an image; empty: a plain
/// background) with `text` on it and silence, written to `out`.
fn clip_args(source: &str, text: &str, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into()];
    args.push("-y".into());
    let size = "640x360";
    if source.is_empty() {
        args.extend(
            [
                "-f",
                "lavfi",
                "-i",
                &format!("color=c=0x1d1f2b:s={size}:r=10:d={CLIP_SECONDS}"),
            ]
            .map(String::from),
        );
    } else {
        args.extend(["-loop", "1", "-framerate", "10", "-t"].map(String::from));
        args.push(CLIP_SECONDS.to_string());
        args.extend(["-i".to_string(), source.to_string()]);
    }
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            &format!("anullsrc=r=44100:cl=stereo:d={CLIP_SECONDS}"),
        ]
        .map(String::from),
    );
    // 30 fps made by the filter: `-r 30` alone left the FLV at the input's
    // 10 fps (ffmpeg passes variable-rate formats' timestamps through).
    args.extend([
        "-vf".to_string(),
        format!("{},fps=30", video_filter(size, text)),
    ]);
    args.extend(
        [
            "-r",
            "30",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "stillimage",
            "-g",
            "30",
            // B-frames, always (b-adapt off), pyramid: the stream declares
            // two frames of reordering from the slate on. A viewer's decoder
            // sizes its reorder delay by the most it has seen; the slate's
            // own 0 grew to 2 at the first cut to OBS or x264's defaults,
            // and that cut's picture came two frames late at the viewer
            // (0.094-0.105 s frame gap against 0.044 s with this).
            "-bf",
            "3",
            "-b_strategy",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "flv",
        ]
        .map(String::from),
    );
    args.push(out.display().to_string());
    args
}

/// The picture fitted into `size` (`WxH`), and up to four lines of `text`
/// on it when a font is installed.
fn video_filter(size: &str, text: &str) -> String {
    let mut vf = format!(
        "scale={}:force_original_aspect_ratio=decrease,pad={}:(ow-iw)/2:(oh-ih)/2,format=yuv420p",
        size.replace('x', ":"),
        size.replace('x', ":")
    );
    if let Some(font) = FONTS.iter().find(|f| Path::new(f).exists()) {
        for (i, line) in text.lines().take(4).enumerate() {
            vf.push_str(&format!(
                ",drawtext=fontfile={font}:text='{}':fontcolor=white:fontsize={}:x=(w-text_w)/2:y=(h/2)-60+{}",
                escape_drawtext(line),
                if i == 0 { 32 } else { 20 },
                i * 44
            ));
        }
    }
    vf
}

/// Run ffmpeg with `args` to its end within `timeout` (killed after it);
/// its error output is the error when it fails.
fn run_to_end(ffmpeg: &str, args: &[String], timeout: Duration) -> Result<(), String> {
    let mut child = super::spawn_ffmpeg(ffmpeg, args, Stdio::null(), Stdio::null())
        .map_err(|e| format!("cannot run {ffmpeg} to make the slate: {e}"))?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{ffmpeg} took over {timeout:?} to make the slate"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for {ffmpeg}: {e}")),
        }
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!(
            "{ffmpeg} could not make the slate ({status}): {}",
            err.trim()
        ));
    }
    Ok(())
}

/// drawtext's own escaping: quote, colon, backslash and percent.
fn escape_drawtext(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '\'' | ':' | '%' | ',' => {
                o.push('\\');
                o.push(c);
            }
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// Parse an FLV clip into a loopable slate: H.264 + AAC with sequence
/// headers and a keyframe at the start.
pub(crate) fn load(bytes: &[u8]) -> Result<Clip, String> {
    let mut d = Demuxer::new(true);
    d.push(bytes);
    let mut tags = Vec::new();
    loop {
        match d.next_tag() {
            Ok(Some(t)) if t.is_script() => {}
            Ok(Some(t)) => tags.push(t),
            Ok(None) => break,
            Err(e) => return Err(format!("not a usable FLV clip: {e}")),
        }
    }
    if !tags.iter().any(|t| t.is_avc_seq_header()) {
        return Err("no H.264 sequence header".into());
    }
    if !tags.iter().any(|t| t.is_aac_seq_header()) {
        return Err("no AAC sequence header".into());
    }
    if !tags.iter().any(|t| t.is_keyframe()) {
        return Err("no keyframe".into());
    }
    let first = tags.iter().map(|t| t.ts).min().unwrap_or(0);
    for t in &mut tags {
        t.ts -= first;
    }
    // Loop length: last video frame plus one frame interval.
    let vts: Vec<u32> = tags
        .iter()
        .filter(|t| t.is_video() && !t.is_avc_seq_header())
        .map(|t| t.ts)
        .collect();
    let step = vts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(100);
    let last = tags.iter().map(|t| t.ts).max().unwrap_or(0);
    Ok(Clip {
        tags,
        loop_ms: u64::from(last.max(vts.last().copied().unwrap_or(0)) + step.max(1)),
    })
}

/// Replays a clip on the wall clock: tag `i` of loop `k` is due at
/// `start + k * loop_ms + ts_i`, with timestamps continuing across loops.
/// Sequence headers only on the first loop (the splicer remembers them).
#[derive(Debug)]
pub(crate) struct Player {
    clip: std::sync::Arc<Clip>,
    start_ms: u64,
    loop_n: u64,
    idx: usize,
}

impl Player {
    pub(crate) fn new(clip: std::sync::Arc<Clip>, now_ms: u64) -> Player {
        Player {
            clip,
            start_ms: now_ms,
            loop_n: 0,
            idx: 0,
        }
    }

    fn due_at(&self) -> u64 {
        let ts = self.clip.tags.get(self.idx).map_or(0, |t| u64::from(t.ts));
        self.start_ms + self.loop_n * self.clip.loop_ms + ts
    }

    /// When the next tag is due.
    pub(crate) fn next_due(&self) -> u64 {
        self.due_at()
    }

    /// Tags due by `now_ms`, with their source timestamps.
    pub(crate) fn due(&mut self, now_ms: u64, out: &mut Vec<Tag>) {
        // Bounded: never more than two loops at once (after a long pause
        // the player skips ahead instead of bursting).
        let limit = self.clip.tags.len() * 2;
        let mut n = 0;
        while self.due_at() <= now_ms && n < limit && !self.clip.tags.is_empty() {
            let t = &self.clip.tags[self.idx];
            let header = t.is_avc_seq_header() || t.is_aac_seq_header();
            if !(header && self.loop_n > 0) {
                let ts = u64::from(t.ts) + self.loop_n * self.clip.loop_ms;
                out.push(Tag {
                    kind: t.kind,
                    ts: (ts & 0xffff_ffff) as u32,
                    data: t.data.clone(),
                });
            }
            self.idx += 1;
            if self.idx == self.clip.tags.len() {
                self.idx = 0;
                self.loop_n += 1;
            }
            n += 1;
        }
        if n == limit {
            // Catch up with the clock without sending the skipped loops.
            let behind = now_ms.saturating_sub(self.due_at());
            self.loop_n += behind / self.clip.loop_ms.max(1) + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn clip() -> Clip {
        let v = |ts: u32, b: &[u8]| Tag {
            kind: super::super::flv::TAG_VIDEO,
            ts,
            data: Bytes::copy_from_slice(b),
        };
        let a = |ts: u32, b: &[u8]| Tag {
            kind: super::super::flv::TAG_AUDIO,
            ts,
            data: Bytes::copy_from_slice(b),
        };
        Clip {
            tags: vec![
                v(0, &[0x17, 0, 0, 0, 0]),
                a(0, &[0xaf, 0, 0x12, 0x10]),
                v(0, &[0x17, 1, 0, 0, 0, 1]),
                a(23, &[0xaf, 1, 1]),
                v(100, &[0x27, 1, 0, 0, 0, 2]),
            ],
            loop_ms: 200,
        }
    }

    #[test]
    fn player_follows_the_clock_and_loops_without_headers() {
        let mut p = Player::new(std::sync::Arc::new(clip()), 1000);
        let mut out = Vec::new();
        p.due(1000, &mut out);
        assert_eq!(out.len(), 3, "headers and the keyframe at once");
        out.clear();
        p.due(1099, &mut out);
        assert_eq!(out.iter().map(|t| t.ts).collect::<Vec<_>>(), [23]);
        out.clear();
        assert_eq!(p.next_due(), 1100);
        p.due(1250, &mut out);
        // frame at 100, then loop 1 (headers skipped): keyframe at 200,
        // audio at 223
        assert_eq!(
            out.iter().map(|t| t.ts).collect::<Vec<_>>(),
            [100, 200, 223]
        );
        assert!(out[1].is_keyframe());
    }

    #[test]
    fn player_skips_ahead_after_a_long_pause() {
        let mut p = Player::new(std::sync::Arc::new(clip()), 0);
        let mut out = Vec::new();
        p.due(1_000_000, &mut out);
        assert!(out.len() <= 10);
        assert!(p.next_due() > 1_000_000);
    }

    /// The built-in slate's coded pictures, made by the real ffmpeg.
    fn built_in_pictures() -> Vec<Tag> {
        let dir = crate::scratch::ScratchDir::new("slate");
        let clip = make(
            "ffmpeg",
            "",
            "nobody on air",
            &dir.0,
            Duration::from_secs(60),
        )
        .expect("ffmpeg makes the slate");
        clip.tags.into_iter().filter(|t| t.is_avc_nalu()).collect()
    }

    /// The built-in slate plays at 30 fps, so a cut away from it lands
    /// within a frame of its last picture (it was made at 10 fps: a cut
    /// from it held its last picture up to 0.1 s). Runs the real ffmpeg.
    #[test]
    fn the_built_in_slate_is_made_at_30_fps() {
        let video: Vec<u32> = built_in_pictures().iter().map(|t| t.ts).collect();
        assert!(video.len() >= 55, "{} pictures in 2 s", video.len());
        let widest = video.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(widest <= 34, "pictures {widest} ms apart");
    }

    /// The slate carries B-frames (composition offsets on its pictures), so
    /// a viewer's decoder holds its reorder frames from the slate on and a
    /// first cut to a B-frame streamer does not grow it (a two-frame late
    /// picture at that cut before). Runs the real ffmpeg.
    #[test]
    fn the_built_in_slate_carries_b_frames() {
        let offsets: Vec<i32> = built_in_pictures()
            .iter()
            .map(|t| t.composition_time())
            .collect();
        let reordered = offsets.iter().filter(|&&c| c > 0).count();
        assert!(
            reordered * 2 >= offsets.len(),
            "{reordered} of {} pictures shown after their decoding",
            offsets.len()
        );
    }

    #[test]
    fn drawtext_text_is_escaped() {
        assert_eq!(escape_drawtext("a:b'c%d\n"), "a\\:b\\'c\\%d");
    }
}
