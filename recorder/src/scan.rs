//! Frame boundaries without decompression: pure functions over byte slices.
//!
//! zstd frames carry no total length, so the block headers are walked (RFC 8878 section 3.1).
//! Skippable frames of the trail carry their length; chain and seal frames have fixed lengths, so a
//! wrong length there is corruption, never a torn write.

use crate::format::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Header,
    Data,
    Chain,
    End,
    Seal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A whole frame of `len` bytes starts the buffer.
    Complete { kind: FrameKind, len: usize },
    /// The buffer ends inside the frame; at least `need` bytes are needed to make progress.
    NeedMore {
        kind: Option<FrameKind>,
        need: usize,
    },
    /// Not a frame this format allows here.
    Invalid(String),
}

fn le24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

/// Where the next frame in `buf` ends.
pub fn scan_frame(buf: &[u8]) -> Scan {
    if buf.len() < 4 {
        // Let a partial magic still be checked against what it could become.
        let could_be = [ZSTD_MAGIC, SKIP_HEADER, SKIP_CHAIN, SKIP_END, SKIP_SEAL]
            .iter()
            .any(|m| m.to_le_bytes()[..buf.len()] == *buf);
        return if could_be {
            Scan::NeedMore {
                kind: None,
                need: 4,
            }
        } else {
            Scan::Invalid("unknown frame magic".into())
        };
    }
    let magic = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = match magic {
        ZSTD_MAGIC => return scan_zstd(buf),
        SKIP_HEADER => FrameKind::Header,
        SKIP_CHAIN => FrameKind::Chain,
        SKIP_END => FrameKind::End,
        SKIP_SEAL => FrameKind::Seal,
        other => return Scan::Invalid(format!("unknown frame magic {other:#010x}")),
    };
    if buf.len() < SKIP_PREFIX {
        return Scan::NeedMore {
            kind: Some(kind),
            need: SKIP_PREFIX,
        };
    }
    let size = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let ok = match kind {
        FrameKind::Chain => size == CHAIN_BODY_LEN,
        FrameKind::Seal => size == SEAL_BODY_LEN,
        _ => size <= MAX_META_FRAME,
    };
    if !ok {
        return Scan::Invalid(format!("{kind:?} frame with impossible length {size}"));
    }
    let len = SKIP_PREFIX + size;
    if buf.len() < len {
        Scan::NeedMore {
            kind: Some(kind),
            need: len,
        }
    } else {
        Scan::Complete { kind, len }
    }
}

fn scan_zstd(buf: &[u8]) -> Scan {
    let more = |need| Scan::NeedMore {
        kind: Some(FrameKind::Data),
        need,
    };
    let Some(&fhd) = buf.get(4) else {
        return more(5);
    };
    if fhd & 0x08 != 0 {
        return Scan::Invalid("zstd frame header reserved bit set".into());
    }
    let single_segment = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut pos = 5 + usize::from(!single_segment) + dict_len + fcs_len;
    loop {
        if buf.len() < pos + 3 {
            return more(pos + 3);
        }
        let bh = le24(&buf[pos..]);
        let last = bh & 1 != 0;
        let btype = (bh >> 1) & 3;
        let bsize = (bh >> 3) as usize;
        if bsize > 128 * 1024 {
            return Scan::Invalid("zstd block larger than 128 KiB".into());
        }
        pos += 3 + match btype {
            0 | 2 => bsize,
            1 => 1,
            _ => return Scan::Invalid("zstd reserved block type".into()),
        };
        if last {
            break;
        }
        if buf.len() < pos {
            return more(pos);
        }
    }
    if checksum {
        pos += 4;
    }
    if buf.len() < pos {
        more(pos)
    } else {
        Scan::Complete {
            kind: FrameKind::Data,
            len: pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_frames_are_delimited_exactly() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        let frame = zstd::encode_all(&data[..], 3).unwrap();
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(
            scan_frame(&two),
            Scan::Complete {
                kind: FrameKind::Data,
                len: frame.len()
            }
        );
        for cut in 0..frame.len() {
            match scan_frame(&frame[..cut]) {
                Scan::NeedMore { need, .. } => assert!(need > cut),
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn fixed_length_frames_reject_wrong_sizes() {
        let mut seal = skippable(SKIP_SEAL, &[0u8; SEAL_BODY_LEN]);
        assert!(matches!(
            scan_frame(&seal),
            Scan::Complete {
                kind: FrameKind::Seal,
                ..
            }
        ));
        seal[4] ^= 1;
        assert!(matches!(scan_frame(&seal), Scan::Invalid(_)));
        assert!(matches!(scan_frame(&[0x00, 0x01]), Scan::Invalid(_)));
    }
}
