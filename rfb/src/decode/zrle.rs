//! ZRLE (encoding 16, RFC 6143 §7.7.6): zlib-compressed 64x64 tiles, each raw, solid, packed
//! palette, plain RLE or palette RLE. One zlib stream runs through the whole connection, so the
//! [`Decompress`] lives as long as the decoder.

use flate2::{Decompress, FlushDecompress, Status};

use super::Rect;
use super::colours::Colours;
use super::framebuffer::Framebuffer;
use crate::error::{Result, RfbError};
use crate::pixel::PixelFormat;

/// Longest compressed rectangle accepted (and buffered).
pub const MAX_ZRLE_LEN: usize = 64 << 20;

/// How CPIXELs are sent in a pixel format: their length and, when 3 bytes, where they go in
/// the 4-byte pixel.
#[derive(Debug, Clone, Copy)]
struct CPixel {
    len: usize,
    /// For 3-byte cpixels: the wire pixel's first three bytes (else its last three).
    first3: bool,
}

impl CPixel {
    /// 3 bytes when bpp is 32, true colour, depth <= 24 and the colour bits fit in the least or
    /// most significant 3 bytes (RFC 6143 §7.7.6; TigerVNC's and libvncserver's choice when
    /// both fit: the bytes that come first on the wire).
    fn of(pf: &PixelFormat) -> CPixel {
        let max = (u32::from(pf.red_max)
            .checked_shl(u32::from(pf.red_shift))
            .unwrap_or(u32::MAX))
            | (u32::from(pf.green_max)
                .checked_shl(u32::from(pf.green_shift))
                .unwrap_or(u32::MAX))
            | (u32::from(pf.blue_max)
                .checked_shl(u32::from(pf.blue_shift))
                .unwrap_or(u32::MAX));
        let ls = max < 1 << 24;
        let ms = max & 0xff == 0;
        if pf.bits_per_pixel == 32 && pf.true_colour && pf.depth <= 24 && (ls || ms) {
            let first3 = if pf.big_endian { ms } else { ls };
            CPixel { len: 3, first3 }
        } else {
            CPixel {
                len: pf.bytes_per_pixel(),
                first3: false,
            }
        }
    }

    fn rgb(self, c: &Colours, b: &[u8]) -> [u8; 3] {
        if self.len != 3 {
            return c.read(b);
        }
        let mut w = [0u8; 4];
        if self.first3 {
            w[..3].copy_from_slice(b);
        } else {
            w[1..].copy_from_slice(b);
        }
        c.read(&w)
    }
}

/// CPIXEL bytes in a format, and for 3 of them whether they are the wire pixel's first three.
pub(crate) fn cpixel_layout(pf: &PixelFormat) -> (usize, bool) {
    let c = CPixel::of(pf);
    (c.len, c.first3)
}

/// The decompressed data left to parse.
struct Input<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| RfbError::Malformed("ZRLE data ends inside a tile".into()))?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A run length: bytes summed while they are 255, plus one.
    fn run(&mut self) -> Result<usize> {
        let mut n = 1usize;
        loop {
            let b = self.u8()?;
            n += usize::from(b);
            if b != 255 {
                return Ok(n);
            }
        }
    }
}

/// The most decompressed bytes a rectangle can need: per tile a subencoding and a palette of
/// 127, per pixel a cpixel and one run-length byte (plain RLE at its worst). More is a zlib bomb.
fn max_inflated(r: Rect, cp: usize) -> usize {
    let tiles = usize::from(r.w).div_ceil(64) * usize::from(r.h).div_ceil(64);
    tiles * (1 + 127 * cp) + usize::from(r.w) * usize::from(r.h) * (cp + 1)
}

/// Inflates one rectangle's compressed data into `out`, at most `max` bytes.
fn inflate(z: &mut Decompress, data: &[u8], out: &mut Vec<u8>, max: usize) -> Result<()> {
    out.clear();
    let mut pos = 0;
    loop {
        if out.len() == out.capacity() {
            if out.len() >= max {
                return Err(RfbError::Malformed(format!(
                    "ZRLE rectangle inflates past {max} bytes"
                )));
            }
            out.reserve((max - out.len()).min(out.len().max(64 * 1024)));
        }
        let (in0, out0) = (z.total_in(), out.len());
        let st = z
            .decompress_vec(&data[pos..], out, FlushDecompress::Sync)
            .map_err(|e| RfbError::Malformed(format!("ZRLE zlib: {e}")))?;
        pos += (z.total_in() - in0) as usize;
        if out.len() > max {
            return Err(RfbError::Malformed(format!(
                "ZRLE rectangle inflates past {max} bytes"
            )));
        }
        let full = out.len() == out.capacity();
        if st == Status::StreamEnd || (pos >= data.len() && !full) {
            return Ok(());
        }
        if z.total_in() == in0 && out.len() == out0 && !full {
            return Err(RfbError::Malformed(
                "ZRLE zlib stream makes no progress".into(),
            ));
        }
    }
}

/// Decodes one ZRLE rectangle from its compressed bytes.
pub(crate) fn decode(
    z: &mut Decompress,
    inflated: &mut Vec<u8>,
    data: &[u8],
    r: Rect,
    c: &Colours,
    fb: &mut Framebuffer,
) -> Result<()> {
    let cp = CPixel::of(&c.pf);
    inflate(z, data, inflated, max_inflated(r, cp.len))?;
    let mut inp = Input { b: inflated, at: 0 };
    let mut tile = Vec::with_capacity(64 * 64 * 3);
    let mut palette: Vec<[u8; 3]> = Vec::with_capacity(127);
    for ty in (0..r.h).step_by(64) {
        for tx in (0..r.w).step_by(64) {
            let (tw, th) = ((r.w - tx).min(64), (r.h - ty).min(64));
            let n = usize::from(tw) * usize::from(th);
            tile.clear();
            let sub = inp.u8()?;
            match sub {
                0 => {
                    for p in inp.take(n * cp.len)?.chunks_exact(cp.len) {
                        tile.extend_from_slice(&cp.rgb(c, p));
                    }
                }
                1 => {
                    let p = cp.rgb(c, inp.take(cp.len)?);
                    fb.fill(r.x + tx, r.y + ty, tw, th, p);
                    continue;
                }
                2..=16 => {
                    read_palette(&mut inp, cp, c, usize::from(sub), &mut palette)?;
                    let bits = match sub {
                        2 => 1,
                        3 | 4 => 2,
                        _ => 4,
                    };
                    let row_bytes = (usize::from(tw) * bits).div_ceil(8);
                    for _ in 0..th {
                        let row = inp.take(row_bytes)?;
                        for x in 0..usize::from(tw) {
                            let bit = x * bits;
                            let i = (row[bit / 8] >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                            tile.extend_from_slice(palette_entry(&palette, i)?);
                        }
                    }
                }
                128 => {
                    while tile.len() < n * 3 {
                        let p = cp.rgb(c, inp.take(cp.len)?);
                        let run = inp.run()?;
                        push_run(&mut tile, p, run, n)?;
                    }
                }
                130..=255 => {
                    read_palette(&mut inp, cp, c, usize::from(sub - 128), &mut palette)?;
                    while tile.len() < n * 3 {
                        let i = inp.u8()?;
                        let run = if i & 128 != 0 { inp.run()? } else { 1 };
                        push_run(&mut tile, *palette_entry(&palette, i & 127)?, run, n)?;
                    }
                }
                other => {
                    return Err(RfbError::Malformed(format!(
                        "ZRLE subencoding {other} is not defined"
                    )));
                }
            }
            fb.put_block(r.x + tx, r.y + ty, tw, &tile);
        }
    }
    Ok(())
}

fn read_palette(
    inp: &mut Input<'_>,
    cp: CPixel,
    c: &Colours,
    n: usize,
    out: &mut Vec<[u8; 3]>,
) -> Result<()> {
    out.clear();
    for p in inp.take(n * cp.len)?.chunks_exact(cp.len) {
        out.push(cp.rgb(c, p));
    }
    Ok(())
}

fn palette_entry(palette: &[[u8; 3]], i: u8) -> Result<&[u8; 3]> {
    palette.get(usize::from(i)).ok_or_else(|| {
        RfbError::Malformed(format!(
            "ZRLE palette index {i} of a {}-colour palette",
            palette.len()
        ))
    })
}

fn push_run(tile: &mut Vec<u8>, p: [u8; 3], run: usize, n: usize) -> Result<()> {
    if tile.len() / 3 + run > n {
        return Err(RfbError::Malformed(
            "ZRLE run past the end of its tile".into(),
        ));
    }
    for _ in 0..run {
        tile.extend_from_slice(&p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpixel_rules() {
        let mut pf = PixelFormat::RGB888;
        assert_eq!(CPixel::of(&pf).len, 3);
        assert!(CPixel::of(&pf).first3);
        pf.big_endian = true; // still fits the low bytes, which now come last
        assert!(!CPixel::of(&pf).first3);
        (pf.red_shift, pf.blue_shift) = (24, 0); // bits in the top and the low byte
        assert_eq!(CPixel::of(&pf).len, 4);
        let mut hi = PixelFormat::RGB888;
        (hi.red_shift, hi.green_shift, hi.blue_shift) = (24, 16, 8);
        assert!(!CPixel::of(&hi).first3); // little-endian, top bytes: the last three
        hi.depth = 32;
        assert_eq!(CPixel::of(&hi).len, 4);
        hi.depth = 24;
        hi.true_colour = false;
        assert_eq!(CPixel::of(&hi).len, 4);
    }
}
