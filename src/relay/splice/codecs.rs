//! What the splicer tells about a source it cannot splice: codec names
//! and the reason, for the journal and the console.

use super::flv::{self, Tag};

pub(super) fn video_codec_name(codec: u8) -> &'static str {
    match codec {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "screen video v2",
        7 => "H.264",
        12 => "HEVC",
        13 => "AV1",
        _ => "unknown",
    }
}

pub(super) fn audio_format_name(format: u8) -> &'static str {
    match format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        2 | 14 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        10 => "AAC",
        11 => "Speex",
        13 => "Opus",
        15 => "device-specific",
        _ => "unknown",
    }
}

pub(super) fn fourcc_text(tag: &Tag) -> String {
    match tag.fourcc() {
        Some(cc) => {
            let name = match &cc {
                b"hvc1" => " (HEVC)",
                b"av01" => " (AV1)",
                b"vp09" => " (VP9)",
                b"avc1" => " (H.264)",
                b"Opus" => " (Opus)",
                b"fLaC" => " (FLAC)",
                b"ac-3" => " (AC-3)",
                b"ec-3" => " (E-AC-3)",
                b".mp3" => " (MP3)",
                b"mp4a" => " (AAC)",
                _ => "",
            };
            format!("'{}'{name}", String::from_utf8_lossy(&cc).escape_default())
        }
        None => "(no FourCC)".to_string(),
    }
}

/// Why this tag's source cannot be spliced, if it cannot.
pub(super) fn unsupported_reason(tag: &Tag) -> Option<String> {
    if tag.is_video() {
        if tag.is_enhanced() {
            return Some(format!("enhanced RTMP video {}", fourcc_text(tag)));
        }
        match tag.video_codec() {
            Some(flv::VIDEO_CODEC_AVC) | None => None,
            Some(c) => Some(format!("video codec {c} ({})", video_codec_name(c))),
        }
    } else if tag.is_audio() {
        if tag.is_enhanced() {
            return Some(format!("enhanced RTMP audio {}", fourcc_text(tag)));
        }
        match tag.audio_format() {
            Some(flv::AUDIO_FORMAT_AAC) | None => None,
            Some(f) => Some(format!("audio format {f} ({})", audio_format_name(f))),
        }
    } else {
        None
    }
}
