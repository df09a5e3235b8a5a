//! FBS 001.000, the recording format of rfbproxy that VNC players (noVNC's test player,
//! vncrec-style tools) replay: the magic line `FBS 001.000\n`, then blocks of server-to-client
//! bytes, each `[u32 BE length][data, zero-padded to a multiple of 4][u32 BE milliseconds since
//! the start]`.
//!
//! Trailgate's files start with a synthetic RFB 3.3 handshake without authentication (version
//! line, security type None, a ServerInit in the pixel format the stream is really in), so no
//! credential is ever in a recording, then the server's messages as recorded. Pure: builders
//! return bytes, readers take them.

use crate::decode::Decoder;
use crate::error::{Result, RfbError};
use crate::handshake::{ServerInit, Version};

pub const MAGIC: &[u8; 12] = b"FBS 001.000\n";

/// The synthetic handshake a player reads first: `RFB 003.003\n`, security type None (u32 1),
/// then `init`.
pub fn handshake(init: &ServerInit) -> Vec<u8> {
    let mut v = Version::V3_3.line().to_vec();
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&init.to_bytes());
    v
}

/// The start of a file: the magic line and the handshake as a block at 0 ms.
pub fn header(init: &ServerInit) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    push_block(&mut v, 0, &handshake(init));
    v
}

/// Appends one block.
pub fn push_block(out: &mut Vec<u8>, ms: u32, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + data.len().next_multiple_of(4) - data.len(), 0);
    out.extend_from_slice(&ms.to_be_bytes());
}

/// The blocks of a file, in order: `(milliseconds, data)`.
pub struct Blocks<'a> {
    b: &'a [u8],
    at: usize,
}

/// Checks the magic line and iterates over the blocks after it.
pub fn blocks(file: &[u8]) -> Result<Blocks<'_>> {
    if !file.starts_with(MAGIC) {
        return Err(RfbError::Malformed("not an FBS 001.000 file".into()));
    }
    Ok(Blocks {
        b: file,
        at: MAGIC.len(),
    })
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Result<(u32, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.b[self.at..];
        if rest.is_empty() {
            return None;
        }
        let u32_at = |i: usize| {
            rest.get(i..i + 4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let parsed = u32_at(0).and_then(|len| {
            let len = len as usize;
            let padded = len.checked_next_multiple_of(4)?;
            let ms = u32_at(4usize.checked_add(padded)?)?;
            Some((ms, &rest[4..4 + len], 8 + padded))
        });
        match parsed {
            Some((ms, data, n)) => {
                self.at += n;
                Some(Ok((ms, data)))
            }
            None => {
                // Stop for good: a torn block is the end of what can be read.
                self.at = self.b.len();
                Some(Err(RfbError::Malformed(format!(
                    "FBS block at offset {} is cut short",
                    self.b.len() - rest.len()
                ))))
            }
        }
    }
}

/// Every block of a file, copied.
pub fn read_blocks(file: &[u8]) -> Result<Vec<(u32, Vec<u8>)>> {
    blocks(file)?
        .map(|b| b.map(|(ms, d)| (ms, d.to_vec())))
        .collect()
}

/// Decodes a whole file (handshake included) and returns the decoder at its end.
pub fn replay(file: &[u8]) -> Result<Decoder> {
    let mut d = Decoder::with_rfb33_handshake();
    for b in blocks(file)? {
        d.feed_server(b?.1)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use crate::pixel::PixelFormat;

    #[test]
    fn blocks_round_trip_with_padding_and_replay() {
        let init = ServerInit {
            width: 4,
            height: 2,
            pixel_format: PixelFormat::RGB888,
            name: "fbs".into(),
        };
        let mut f = header(&init);
        let mut update = encode::update_header(1).to_vec();
        update.extend(encode::raw_rect(
            &init.pixel_format,
            1,
            0,
            2,
            2,
            &[[9, 8, 7]; 4],
        ));
        push_block(&mut f, 40, &update[..5]);
        push_block(&mut f, 41, &update[5..]);
        push_block(&mut f, 1500, &encode::bell());
        assert_eq!(f.len() % 4, 0);
        let b = read_blocks(&f).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].1, handshake(&init));
        assert_eq!((b[1].0, &b[1].1[..]), (40, &update[..5]));
        assert_eq!(b[3], (1500, vec![2]));
        let d = replay(&f).unwrap();
        assert_eq!(d.server_init(), Some(&init));
        assert_eq!(d.framebuffer().pixel(2, 1), Some([9, 8, 7]));
        assert_eq!(d.framebuffer().pixel(0, 1), Some([0, 0, 0]));
        assert_eq!((d.counters().updates, d.counters().bells), (1, 1));
    }

    #[test]
    fn torn_and_foreign_files_are_errors() {
        assert!(blocks(b"FBS 002.000\n").is_err());
        let mut f = MAGIC.to_vec();
        push_block(&mut f, 7, b"abcdef");
        for cut in MAGIC.len() + 1..f.len() {
            let r: Vec<_> = blocks(&f[..cut]).unwrap().collect();
            assert_eq!(r.len(), 1);
            assert!(r[0].is_err(), "cut at {cut}");
        }
        // A length near u32::MAX is a torn block, not an overflow.
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0]);
        assert!(blocks(&f).unwrap().next().unwrap().is_err());
        // A handshake with authentication is not an FBS preamble.
        let mut f = MAGIC.to_vec();
        let mut h = b"RFB 003.003\n".to_vec();
        h.extend_from_slice(&2u32.to_be_bytes());
        push_block(&mut f, 0, &h);
        assert!(replay(&f).is_err());
    }
}
