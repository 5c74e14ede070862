//! FLV tags: an incremental demuxer, a writer, and the few body fields the
//! splicer needs (codec, frame type, AVC/AAC packet type, composition time).
//!
//! RTMP audio/video message bodies are FLV tag bodies, and RTMP timestamps
//! are FLV tag timestamps, so a `Tag` comes either from this demuxer (an
//! ffmpeg `-f flv pipe:1` reader) or straight from an RTMP client.

use std::fmt;

use bytes::Bytes;

pub(crate) const TAG_AUDIO: u8 = 8;
pub(crate) const TAG_VIDEO: u8 = 9;
pub(crate) const TAG_SCRIPT: u8 = 18;

/// Video codec id of H.264 (low nibble of the first body byte).
pub(crate) const VIDEO_CODEC_AVC: u8 = 7;
/// What `Tag::video_codec` reports for an enhanced-RTMP video tag (the
/// IsExHeader bit set; the codec is then a FourCC, see `Tag::fourcc`).
pub(crate) const VIDEO_CODEC_ENHANCED: u8 = 0x80;
/// Sound format of AAC (high nibble of the first body byte).
pub(crate) const AUDIO_FORMAT_AAC: u8 = 10;
/// Sound format that announces an enhanced-RTMP (v2) audio header.
pub(crate) const AUDIO_FORMAT_ENHANCED: u8 = 9;

/// Bodies larger than this are refused by the demuxer: a real video frame is
/// far smaller (a 4K keyframe at 50 Mbit/s is ~2 MiB), and a garbage size
/// field must not make us buffer up to the 16 MiB the 24-bit field allows.
pub(crate) const MAX_TAG_SIZE: usize = 8 << 20;

const FILE_HEADER_LEN: usize = 9;
const TAG_HEADER_LEN: usize = 11;
const PREV_SIZE_LEN: usize = 4;
/// A header may announce a longer header (future versions); cap the skip.
const MAX_FILE_HEADER_LEN: usize = 1024;

/// One FLV tag. `ts` is the full 32-bit millisecond timestamp (the 24-bit
/// field plus the extension byte as the high byte); for video it is the DTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub(crate) kind: u8,
    pub(crate) ts: u32,
    pub(crate) data: Bytes,
}

impl Tag {
    pub(crate) fn new(kind: u8, ts: u32, data: impl Into<Bytes>) -> Tag {
        Tag {
            kind,
            ts,
            data: data.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn video(ts: u32, data: impl Into<Bytes>) -> Tag {
        Tag::new(TAG_VIDEO, ts, data)
    }

    #[cfg(test)]
    pub(crate) fn audio(ts: u32, data: impl Into<Bytes>) -> Tag {
        Tag::new(TAG_AUDIO, ts, data)
    }

    #[cfg(test)]
    pub(crate) fn script(ts: u32, data: impl Into<Bytes>) -> Tag {
        Tag::new(TAG_SCRIPT, ts, data)
    }

    pub(crate) fn is_video(&self) -> bool {
        self.kind == TAG_VIDEO
    }

    pub(crate) fn is_audio(&self) -> bool {
        self.kind == TAG_AUDIO
    }

    pub(crate) fn is_script(&self) -> bool {
        self.kind == TAG_SCRIPT
    }

    /// An enhanced-RTMP video tag (IsExHeader bit): HEVC, AV1, VP9 ...
    pub(crate) fn is_enhanced(&self) -> bool {
        match self.data.first() {
            Some(&b) if self.is_video() => b & 0x80 != 0,
            Some(&b) if self.is_audio() => b >> 4 == AUDIO_FORMAT_ENHANCED,
            _ => false,
        }
    }

    /// The FourCC of an enhanced-RTMP audio or video tag.
    pub(crate) fn fourcc(&self) -> Option<[u8; 4]> {
        if !self.is_enhanced() || self.data.len() < 5 {
            return None;
        }
        let mut cc = [0u8; 4];
        cc.copy_from_slice(&self.data[1..5]);
        Some(cc)
    }

    /// Codec id (7 = AVC); `VIDEO_CODEC_ENHANCED` for enhanced RTMP.
    pub(crate) fn video_codec(&self) -> Option<u8> {
        if !self.is_video() {
            return None;
        }
        let b = *self.data.first()?;
        if b & 0x80 != 0 {
            Some(VIDEO_CODEC_ENHANCED)
        } else {
            Some(b & 0x0f)
        }
    }

    /// Sound format (10 = AAC).
    pub(crate) fn audio_format(&self) -> Option<u8> {
        if !self.is_audio() {
            return None;
        }
        self.data.first().map(|b| b >> 4)
    }

    /// Video frame type: 1 key, 2 inter, 3 disposable inter, 4 generated
    /// key, 5 info/command.
    pub(crate) fn frame_type(&self) -> Option<u8> {
        if !self.is_video() {
            return None;
        }
        let b = *self.data.first()?;
        if b & 0x80 != 0 {
            Some((b >> 4) & 0x07)
        } else {
            Some(b >> 4)
        }
    }

    fn is_avc(&self) -> bool {
        self.video_codec() == Some(VIDEO_CODEC_AVC)
    }

    fn avc_packet_type(&self) -> Option<u8> {
        if self.is_avc() {
            self.data.get(1).copied()
        } else {
            None
        }
    }

    fn is_aac(&self) -> bool {
        self.audio_format() == Some(AUDIO_FORMAT_AAC)
    }

    /// A key frame that carries a picture (not a sequence header).
    pub fn is_keyframe(&self) -> bool {
        if self.frame_type() != Some(1) {
            return false;
        }
        if self.is_avc() {
            return self.avc_packet_type() == Some(1);
        }
        if self.is_enhanced() {
            // Enhanced packet types: 0 = sequence start, 2 = sequence end.
            let packet_type = self.data[0] & 0x0f;
            return packet_type != 0 && packet_type != 2;
        }
        true
    }

    /// Frame type 3: nothing else references it.
    pub(crate) fn is_disposable(&self) -> bool {
        self.frame_type() == Some(3)
    }

    pub(crate) fn is_avc_seq_header(&self) -> bool {
        self.avc_packet_type() == Some(0)
    }

    pub(crate) fn is_avc_nalu(&self) -> bool {
        self.avc_packet_type() == Some(1)
    }

    /// AVC end of sequence (AVCPacketType 2): the tests check that none is
    /// forwarded.
    #[cfg(test)]
    pub(crate) fn is_avc_eos(&self) -> bool {
        self.avc_packet_type() == Some(2)
    }

    pub(crate) fn is_aac_seq_header(&self) -> bool {
        self.is_aac() && self.data.get(1) == Some(&0)
    }

    pub(crate) fn is_aac_raw(&self) -> bool {
        self.is_aac() && self.data.get(1) == Some(&1)
    }

    /// Signed 24-bit composition time offset (PTS − DTS, ms) of an AVC NALU
    /// packet; 0 for anything else.
    pub(crate) fn composition_time(&self) -> i32 {
        if !self.is_avc_nalu() || self.data.len() < 5 {
            return 0;
        }
        let raw = (u32::from(self.data[2]) << 16)
            | (u32::from(self.data[3]) << 8)
            | u32::from(self.data[4]);
        // Sign-extend from 24 bits.
        ((raw << 8) as i32) >> 8
    }

    /// This AVC NALU packet with another composition time offset (clamped
    /// to the 24-bit range); anything else unchanged. The splicer uses it
    /// to keep a frame's PTS where it belongs when its DTS must move up.
    pub(crate) fn with_composition_time(&self, cts: i32) -> Tag {
        if !self.is_avc_nalu() || self.data.len() < 5 || cts == self.composition_time() {
            return self.clone();
        }
        let c = cts.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
        let mut data = self.data.to_vec();
        data[2..5].copy_from_slice(&c[1..4]);
        Tag {
            kind: self.kind,
            ts: self.ts,
            data: data.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvError {
    /// The stream does not start with "FLV".
    BadSignature([u8; 3]),
    /// The file header announces a header length we do not accept.
    BadHeaderLength(u32),
    /// A tag's body size is above `MAX_TAG_SIZE`.
    TagTooLarge(usize),
    /// A tag type other than audio, video or script (the stream is garbage
    /// or out of step).
    UnknownTagType(u8),
    /// The filter/encryption bit is set: the body is not readable.
    Encrypted,
    /// The size after a tag does not match the tag (the stream is out of step).
    BadPrevTagSize { expected: u32, found: u32 },
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::BadSignature(s) => {
                write!(
                    f,
                    "not an FLV stream (starts with {s:02x?}, expected \"FLV\")"
                )
            }
            FlvError::BadHeaderLength(n) => write!(f, "FLV header announces {n} bytes"),
            FlvError::TagTooLarge(n) => {
                write!(f, "FLV tag of {n} bytes (limit {MAX_TAG_SIZE})")
            }
            FlvError::UnknownTagType(t) => write!(f, "unknown FLV tag type {t}"),
            FlvError::Encrypted => write!(f, "encrypted FLV tag"),
            FlvError::BadPrevTagSize { expected, found } => write!(
                f,
                "FLV previous-tag size {found} after a tag of {expected} bytes: stream out of step"
            ),
        }
    }
}

impl std::error::Error for FlvError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FileHeader,
    /// Skipping the rest of a long header plus PreviousTagSize0.
    Skip(usize),
    Tags,
    /// An error was reported: every later call reports it again.
    Failed,
}

/// Incremental FLV demuxer: `push` bytes as they come, then call `next_tag`
/// until it returns `Ok(None)`. After an error the stream is unusable (the
/// same error is returned again).
pub struct Demuxer {
    buf: Vec<u8>,
    pos: usize,
    state: State,
    error: Option<FlvError>,
}

impl Demuxer {
    /// `expect_file_header`: the stream starts with the 13-byte file header
    /// (ffmpeg's output); otherwise it starts directly with a tag.
    pub fn new(expect_file_header: bool) -> Demuxer {
        Demuxer {
            buf: Vec::new(),
            pos: 0,
            state: if expect_file_header {
                State::FileHeader
            } else {
                State::Tags
            },
            error: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.state == State::Failed {
            return;
        }
        // Drop what was consumed before growing, so the buffer stays about
        // one tag long.
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 64 * 1024) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as tags.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn fail(&mut self, e: FlvError) -> Result<Option<Tag>, FlvError> {
        self.state = State::Failed;
        self.error = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        Err(e)
    }

    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        loop {
            let avail = &self.buf[self.pos..];
            match self.state {
                State::Failed => {
                    return Err(self.error.clone().unwrap_or(FlvError::BadSignature([0; 3])))
                }
                State::FileHeader => {
                    if avail.len() < FILE_HEADER_LEN {
                        // Reject a bad signature as soon as it is visible.
                        let n = avail.len().min(3);
                        if avail[..n] != b"FLV"[..n] {
                            let mut s = [0u8; 3];
                            s[..n].copy_from_slice(&avail[..n]);
                            return self.fail(FlvError::BadSignature(s));
                        }
                        return Ok(None);
                    }
                    if &avail[..3] != b"FLV" {
                        let s = [avail[0], avail[1], avail[2]];
                        return self.fail(FlvError::BadSignature(s));
                    }
                    let header_len = u32::from_be_bytes([avail[5], avail[6], avail[7], avail[8]]);
                    let len = header_len as usize;
                    if !(FILE_HEADER_LEN..=MAX_FILE_HEADER_LEN).contains(&len) {
                        return self.fail(FlvError::BadHeaderLength(header_len));
                    }
                    self.pos += FILE_HEADER_LEN;
                    self.state = State::Skip(len - FILE_HEADER_LEN + PREV_SIZE_LEN);
                }
                State::Skip(n) => {
                    let take = n.min(avail.len());
                    self.pos += take;
                    if take < n {
                        self.state = State::Skip(n - take);
                        return Ok(None);
                    }
                    self.state = State::Tags;
                }
                State::Tags => {
                    if avail.len() < TAG_HEADER_LEN {
                        return Ok(None);
                    }
                    let h = &avail[..TAG_HEADER_LEN];
                    if h[0] & 0x20 != 0 {
                        return self.fail(FlvError::Encrypted);
                    }
                    let kind = h[0] & 0x1f;
                    if ![TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT].contains(&kind) {
                        return self.fail(FlvError::UnknownTagType(h[0]));
                    }
                    let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
                    if size > MAX_TAG_SIZE {
                        return self.fail(FlvError::TagTooLarge(size));
                    }
                    let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    let total = TAG_HEADER_LEN + size + PREV_SIZE_LEN;
                    if avail.len() < total {
                        self.buf.reserve(total - avail.len());
                        return Ok(None);
                    }
                    let p = TAG_HEADER_LEN + size;
                    let prev =
                        u32::from_be_bytes([avail[p], avail[p + 1], avail[p + 2], avail[p + 3]]);
                    let expected = (TAG_HEADER_LEN + size) as u32;
                    if prev != expected {
                        return self.fail(FlvError::BadPrevTagSize {
                            expected,
                            found: prev,
                        });
                    }
                    let data = Bytes::copy_from_slice(&avail[TAG_HEADER_LEN..p]);
                    self.pos += total;
                    return Ok(Some(Tag { kind, ts, data }));
                }
            }
        }
    }
}

/// The 13-byte file header: signature, version 1, flags, header length 9,
/// PreviousTagSize0.
pub(crate) fn write_file_header(out: &mut Vec<u8>, audio: bool, video: bool) {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    out.extend_from_slice(b"FLV");
    out.push(1);
    out.push(flags);
    out.extend_from_slice(&9u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// One tag (stream id 0) followed by its previous-tag size. The body must be
/// below 16 MiB (24-bit size field); RTMP message lengths are 24-bit too.
pub(crate) fn write_tag(out: &mut Vec<u8>, tag: &Tag) {
    let size = tag.data.len();
    debug_assert!(size < 1 << 24, "FLV tag body of {size} bytes");
    let size = (size as u32) & 0x00ff_ffff;
    let ts = tag.ts.to_be_bytes();
    out.push(tag.kind & 0x1f);
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&tag.data[..size as usize]);
    out.extend_from_slice(&(TAG_HEADER_LEN as u32 + size).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    fn sample_tags() -> Vec<Tag> {
        vec![
            Tag::script(0, &b"\x02\x00\x0aonMetaData"[..]),
            Tag::video(0, vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            Tag::audio(0, vec![0xaf, 0, 0x12, 0x10]),
            Tag::video(0, vec![0x17, 1, 0, 0, 0x42, 0xaa, 0xbb]),
            Tag::audio(21, vec![0xaf, 1, 1, 2, 3]),
            Tag::video(33, vec![0x27, 1, 0xff, 0xff, 0xdf, 9]),
            Tag::video(0x00ff_ffff, vec![0x27, 1, 0, 0, 0, 7]),
            Tag::video(0x0100_0000, vec![0x27, 1, 0, 0, 0, 8]),
            Tag::audio(0xffff_fff0, vec![0xaf, 1, 4]),
            Tag::video(u32::MAX, vec![]),
        ]
    }

    fn encode(tags: &[Tag], header: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if header {
            write_file_header(&mut out, true, true);
        }
        for t in tags {
            write_tag(&mut out, t);
        }
        out
    }

    fn drain(d: &mut Demuxer, got: &mut Vec<Tag>) {
        while let Some(t) = d.next_tag().expect("valid stream") {
            got.push(t);
        }
    }

    #[test]
    fn file_header_bytes() {
        let mut out = Vec::new();
        write_file_header(&mut out, true, true);
        assert_eq!(out, b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        out.clear();
        write_file_header(&mut out, false, true);
        assert_eq!(out[4], 1);
    }

    #[test]
    fn tag_bytes_carry_extension_byte_as_high_byte() {
        let mut out = Vec::new();
        write_tag(&mut out, &Tag::video(0x1234_5678, vec![0x17, 1]));
        assert_eq!(
            out,
            [9, 0, 0, 2, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 0x17, 1, 0, 0, 0, 13]
        );
    }

    #[test]
    fn round_trip_at_every_split_point() {
        let tags = sample_tags();
        for header in [true, false] {
            let bytes = encode(&tags, header);
            for split in 0..=bytes.len() {
                let mut d = Demuxer::new(header);
                let mut got = Vec::new();
                d.push(&bytes[..split]);
                drain(&mut d, &mut got);
                d.push(&bytes[split..]);
                drain(&mut d, &mut got);
                assert_eq!(got, tags, "split at {split}, header {header}");
                assert_eq!(d.buffered(), 0);
            }
        }
    }

    #[test]
    fn round_trip_random_chunkings() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let n = 1 + rng.below(40) as usize;
            let tags: Vec<Tag> = (0..n)
                .map(|_| {
                    let kind = [TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT][rng.below(3) as usize];
                    let cap = if rng.below(10) == 0 { 5000 } else { 40 };
                    let len = rng.below(cap) as usize;
                    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    Tag::new(kind, rng.next() as u32, data)
                })
                .collect();
            let bytes = encode(&tags, true);
            let mut d = Demuxer::new(true);
            let mut got = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let cap = if round % 2 == 0 { 7 } else { 3000 };
                let step = 1 + rng.below(cap) as usize;
                let end = (at + step).min(bytes.len());
                d.push(&bytes[at..end]);
                drain(&mut d, &mut got);
                at = end;
            }
            assert_eq!(got, tags, "round {round}");
        }
    }

    #[test]
    fn longer_file_header_is_skipped() {
        let mut bytes = b"FLV\x01\x05\x00\x00\x00\x0c\xaa\xbb\xcc\x00\x00\x00\x00".to_vec();
        write_tag(&mut bytes, &Tag::audio(5, vec![0xaf, 1]));
        let mut d = Demuxer::new(true);
        d.push(&bytes);
        assert_eq!(d.next_tag().unwrap(), Some(Tag::audio(5, vec![0xaf, 1])));
        assert_eq!(d.next_tag().unwrap(), None);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut d = Demuxer::new(true);
        d.push(b"GET / HTTP/1.1\r\n");
        let e = d.next_tag().unwrap_err();
        assert_eq!(e, FlvError::BadSignature(*b"GET"));
        assert!(e.to_string().contains("not an FLV stream"));
        // Reported early, from the first bytes.
        let mut d = Demuxer::new(true);
        d.push(b"X");
        assert!(matches!(d.next_tag(), Err(FlvError::BadSignature(_))));
        // And it sticks.
        d.push(b"LV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        assert!(d.next_tag().is_err());

        let mut d = Demuxer::new(false);
        d.push(&[0x42; 32]);
        assert_eq!(d.next_tag(), Err(FlvError::UnknownTagType(0x42)));

        let mut d = Demuxer::new(false);
        d.push(&[0x29, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_tag(), Err(FlvError::Encrypted));

        let mut d = Demuxer::new(true);
        d.push(b"FLV\x01\x05\xff\xff\xff\xff");
        assert_eq!(d.next_tag(), Err(FlvError::BadHeaderLength(u32::MAX)));
    }

    #[test]
    fn oversized_tag_is_refused_before_buffering() {
        let mut d = Demuxer::new(false);
        // 0xffffff bytes announced.
        d.push(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_tag(), Err(FlvError::TagTooLarge(0xff_ffff)));
        assert!(d.next_tag().unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn out_of_step_previous_size_is_an_error() {
        let mut bytes = encode(&[Tag::audio(1, vec![0xaf, 1, 2])], false);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let mut d = Demuxer::new(false);
        d.push(&bytes);
        assert!(matches!(
            d.next_tag(),
            Err(FlvError::BadPrevTagSize { expected: 14, .. })
        ));
    }

    #[test]
    fn body_fields() {
        let seq = Tag::video(0, vec![0x17, 0, 0, 0, 0, 1]);
        assert!(seq.is_avc_seq_header() && !seq.is_keyframe());
        assert_eq!(seq.video_codec(), Some(7));
        let key = Tag::video(0, vec![0x17, 1, 0, 0, 0x42, 0]);
        assert!(key.is_keyframe() && !key.is_disposable());
        assert_eq!(key.composition_time(), 0x42);
        let b = Tag::video(0, vec![0x37, 1, 0xff, 0xff, 0xfe, 0]);
        assert!(b.is_disposable() && !b.is_keyframe());
        assert_eq!(b.composition_time(), -2);
        assert_eq!(b.with_composition_time(67).composition_time(), 67);
        assert_eq!(b.with_composition_time(-5).composition_time(), -5);
        assert_eq!(
            b.with_composition_time(1 << 24).composition_time(),
            (1 << 23) - 1
        );
        assert_eq!(b.with_composition_time(67).data[5..], b.data[5..]);
        assert_eq!(b.with_composition_time(67).data[..2], b.data[..2]);
        let eos = Tag::video(0, vec![0x17, 2, 0, 0, 0]);
        assert!(eos.is_avc_eos() && !eos.is_keyframe());
        assert_eq!(eos.composition_time(), 0);
        assert_eq!(eos.with_composition_time(5).data, eos.data);
        let hevc_legacy = Tag::video(0, vec![0x1c, 1, 0, 0, 0]);
        assert_eq!(hevc_legacy.video_codec(), Some(12));
        // Enhanced RTMP: IsExHeader | frame type 1 | PacketType 1 (coded frames), "hvc1".
        let ex = Tag::video(0, vec![0x91, b'h', b'v', b'c', b'1', 0, 0, 0]);
        assert!(ex.is_enhanced());
        assert_eq!(ex.video_codec(), Some(VIDEO_CODEC_ENHANCED));
        assert_eq!(ex.fourcc(), Some(*b"hvc1"));
        assert!(ex.is_keyframe() && !ex.is_avc_seq_header());
        let ex_seq = Tag::video(0, vec![0x90, b'a', b'v', b'0', b'1']);
        assert!(!ex_seq.is_keyframe());
        let aac_seq = Tag::audio(0, vec![0xaf, 0, 0x12, 0x10]);
        assert!(aac_seq.is_aac_seq_header() && !aac_seq.is_aac_raw());
        assert_eq!(aac_seq.audio_format(), Some(10));
        let mp3 = Tag::audio(0, vec![0x2f, 0xff]);
        assert_eq!(mp3.audio_format(), Some(2));
        assert!(!mp3.is_aac_seq_header());
        let empty = Tag::video(0, Bytes::new());
        assert_eq!(empty.video_codec(), None);
        assert!(!empty.is_keyframe());
        assert_eq!(key.audio_format(), None);
        assert_eq!(aac_seq.video_codec(), None);
    }
}
