//! The 16-byte RFB pixel format (ServerInit, SetPixelFormat) and pixel-to-RGB conversion.

use serde::Serialize;

use crate::error::{Result, RfbError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// 32 bits per pixel, depth 24, little-endian, red in the low byte (what most viewers ask).
    pub const RGB888: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 0,
        green_shift: 8,
        blue_shift: 16,
    };

    pub fn parse(b: &[u8; 16]) -> Result<PixelFormat> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            // Some servers (x11vnc) send 255 for true: any nonzero value is true.
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
            return Err(RfbError::Malformed(format!(
                "bits-per-pixel {} (must be 8, 16 or 32)",
                pf.bits_per_pixel
            )));
        }
        Ok(pf)
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = self.big_endian as u8;
        b[3] = self.true_colour as u8;
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// A pixel's value from its bytes on the wire (1, 2 or 4 of them, in this format's byte
    /// order); any other length reads as 0.
    pub fn read_pixel(&self, b: &[u8]) -> u32 {
        match *b {
            [a] => u32::from(a),
            [a, c] if self.big_endian => u32::from(u16::from_be_bytes([a, c])),
            [a, c] => u32::from(u16::from_le_bytes([a, c])),
            [a, c, d, e] if self.big_endian => u32::from_be_bytes([a, c, d, e]),
            [a, c, d, e] => u32::from_le_bytes([a, c, d, e]),
            _ => 0,
        }
    }

    /// Appends a pixel's bytes as they go on the wire.
    pub fn write_pixel(&self, v: u32, out: &mut Vec<u8>) {
        match (self.bytes_per_pixel(), self.big_endian) {
            (1, _) => out.push(v as u8),
            (2, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (2, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// The true-colour pixel value nearest to an RGB colour (synthetic streams and tests).
    pub fn pixel_from_rgb(&self, rgb: [u8; 3]) -> u32 {
        let c = |v: u8, max: u16, shift: u8| -> u32 {
            let scaled = (u32::from(v) * u32::from(max) + 127) / 255;
            scaled.checked_shl(u32::from(shift)).unwrap_or(0)
        };
        c(rgb[0], self.red_max, self.red_shift)
            | c(rgb[1], self.green_max, self.green_shift)
            | c(rgb[2], self.blue_max, self.blue_shift)
    }

    /// RGB of a true-colour pixel value, each component scaled to 0..=255.
    pub fn rgb_of(&self, v: u32) -> [u8; 3] {
        let c = |max: u16, shift: u8| -> u8 {
            let raw = v.checked_shr(u32::from(shift)).unwrap_or(0) & u32::from(max);
            scale(raw, max)
        };
        [
            c(self.red_max, self.red_shift),
            c(self.green_max, self.green_shift),
            c(self.blue_max, self.blue_shift),
        ]
    }
}

/// A component of `0..=max` scaled to `0..=255`, rounded.
pub(crate) fn scale(v: u32, max: u16) -> u8 {
    if max == 0 {
        return 0;
    }
    let max = u32::from(max);
    ((v.min(max) * 255 + max / 2) / max) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_trip_in_every_byte_order() {
        let mut bgr565_be = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        };
        for pf in [PixelFormat::RGB888, bgr565_be] {
            let v = pf.pixel_from_rgb([255, 0, 255]);
            let mut b = Vec::new();
            pf.write_pixel(v, &mut b);
            assert_eq!(b.len(), pf.bytes_per_pixel());
            assert_eq!(pf.read_pixel(&b), v);
            assert_eq!(pf.rgb_of(v), [255, 0, 255]);
        }
        bgr565_be.red_shift = 40; // nonsense shifts read as zero, never panic
        assert_eq!(bgr565_be.rgb_of(u32::MAX)[0], 0);
        assert_eq!(bgr565_be.pixel_from_rgb([255, 0, 0]), 0);
    }
}
