//! What a stream's sequence headers say: the picture size from the H.264
//! SPS (in the FLV AVC sequence header) and the sample rate and channels
//! from the AAC AudioSpecificConfig. Pure parsing of bytes a publisher
//! controls: every read is bounds-checked, bad input gives None.

/// Reads bits MSB first from an RBSP (emulation-prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn from_nal(nal: &[u8]) -> Bits {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Exp-Golomb unsigned.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            (k / 2 + 1) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// Picture size from an FLV AVC sequence header (AVCDecoderConfigurationRecord).
pub(crate) fn avc_size(body: &[u8]) -> Option<(u32, u32)> {
    // FLV video header (5 bytes), then the record: version, profile,
    // compat, level, lengthSize, numSPS (6 bytes), then SPS length + SPS.
    let rec = body.get(5..)?;
    if rec.len() < 8 || rec[5] & 0x1f == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([rec[6], rec[7]]));
    let sps = rec.get(8..8 + len)?;
    sps_size(sps)
}

fn skip_scaling_list(b: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + b.se()? + 256) % 256;
        }
        last = if next == 0 { last } else { next };
    }
    Some(())
}

/// Width and height (cropped) from an H.264 SPS NAL unit (header byte
/// included).
pub(crate) fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits::from_nal(nal.get(1..)?);
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags + level
    b.ue()?; // sps id
    let mut chroma_format = 1;
    let mut separate_planes = 0;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = b.ue()?;
        if chroma_format == 3 {
            separate_planes = b.bit()?;
        }
        b.ue()?; // luma bit depth
        b.ue()?; // chroma bit depth
        b.bit()?; // transform bypass
        if b.bit()? == 1 {
            let n = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..n {
                if b.bit()? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2 max frame num
    let poc_type = b.ue()?;
    if poc_type == 0 {
        b.ue()?;
    } else if poc_type == 1 {
        b.bit()?;
        b.se()?;
        b.se()?;
        let n = b.ue()?;
        if n > 255 {
            return None;
        }
        for _ in 0..n {
            b.se()?;
        }
    }
    b.ue()?; // max ref frames
    b.bit()?; // gaps allowed
    let w_mbs = b.ue()? + 1;
    let h_map = b.ue()? + 1;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?; // mb adaptive frame field
    }
    b.bit()?; // direct 8x8 inference
    let mut w = w_mbs.checked_mul(16)?;
    let mut h = h_map.checked_mul(16)?.checked_mul(2 - frame_mbs_only)?;
    if b.bit()? == 1 {
        let (l, r, t, bo) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        let array_type = if separate_planes == 1 {
            0
        } else {
            chroma_format
        };
        let (cx, cy) = match array_type {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        w = w.checked_sub((l + r).checked_mul(cx)?)?;
        h = h.checked_sub((t + bo).checked_mul(cy)?)?;
    }
    Some((w, h))
}

/// Sample rate and channels from an FLV AAC sequence header
/// (AudioSpecificConfig after the 2-byte FLV audio header).
pub(crate) fn aac_config(body: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let mut b = Bits {
        data: body.get(2..)?.to_vec(),
        pos: 0,
    };
    let mut object = b.bits(5)?;
    if object == 31 {
        object = 32 + b.bits(6)?;
    }
    let _ = object;
    let idx = b.bits(4)?;
    let rate = if idx == 15 {
        b.bits(24)?
    } else {
        *RATES.get(idx as usize)?
    };
    let channels = b.bits(4)? as u8;
    Some((rate, channels))
}
