//! Pixel values to RGB: the pixel format in effect (true colour through lookup tables) and the
//! colour map of colour-map mode (SetColourMapEntries).

use crate::pixel::{PixelFormat, scale};

/// Colour-map entries a server may set (first-colour and count are both u16).
const MAX_MAP: usize = 2 * 65536;

#[derive(Debug, Clone)]
pub(crate) struct Colours {
    pub(crate) pf: PixelFormat,
    /// Per component, `0..=max` to `0..=255` (at most 64 Ki entries each).
    lut: [Vec<u8>; 3],
    map: Vec<[u8; 3]>,
}

impl Colours {
    pub(crate) fn new(pf: PixelFormat) -> Colours {
        let mut c = Colours {
            pf,
            lut: Default::default(),
            map: Vec::new(),
        };
        c.set_format(pf);
        c
    }

    pub(crate) fn set_format(&mut self, pf: PixelFormat) {
        let table = |max: u16| (0..=u32::from(max)).map(|v| scale(v, max)).collect();
        if self.lut[0].is_empty() || pf != self.pf {
            self.lut = [table(pf.red_max), table(pf.green_max), table(pf.blue_max)];
        }
        self.pf = pf;
    }

    pub(crate) fn bpp(&self) -> usize {
        self.pf.bytes_per_pixel()
    }

    /// Sets colour-map entries from `first`; `entries` holds 6 bytes (u16 red, green, blue) each.
    pub(crate) fn set_entries(&mut self, first: usize, entries: &[u8]) {
        for (i, e) in entries.chunks_exact(6).enumerate() {
            let at = first + i;
            if at >= MAX_MAP {
                break;
            }
            if self.map.len() <= at {
                self.map.resize(at + 1, [0, 0, 0]);
            }
            // 16-bit intensities: the high byte is the 8-bit one.
            self.map[at] = [e[0], e[2], e[4]];
        }
    }

    /// RGB of a pixel value.
    pub(crate) fn rgb(&self, v: u32) -> [u8; 3] {
        if !self.pf.true_colour {
            return self.map.get(v as usize).copied().unwrap_or([0, 0, 0]);
        }
        let pf = &self.pf;
        let c = |lut: &Vec<u8>, max: u16, shift: u8| -> u8 {
            let raw = v.checked_shr(u32::from(shift)).unwrap_or(0) & u32::from(max);
            lut.get(raw as usize).copied().unwrap_or(0)
        };
        [
            c(&self.lut[0], pf.red_max, pf.red_shift),
            c(&self.lut[1], pf.green_max, pf.green_shift),
            c(&self.lut[2], pf.blue_max, pf.blue_shift),
        ]
    }

    /// RGB of a pixel given by its bytes on the wire.
    pub(crate) fn read(&self, b: &[u8]) -> [u8; 3] {
        self.rgb(self.pf.read_pixel(b))
    }

    /// Converts whole wire pixels to RGB, appending 3 bytes per pixel.
    pub(crate) fn convert(&self, pixels: &[u8], out: &mut Vec<u8>) {
        let bpp = self.bpp().max(1);
        out.reserve(pixels.len() / bpp * 3);
        for p in pixels.chunks_exact(bpp) {
            out.extend_from_slice(&self.read(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_colour_and_colour_map() {
        let c = Colours::new(PixelFormat::RGB888);
        assert_eq!(c.read(&[10, 20, 30, 0]), [10, 20, 30]);
        let mut pf = PixelFormat::RGB888;
        pf.bits_per_pixel = 8;
        pf.depth = 8;
        pf.true_colour = false;
        let mut m = Colours::new(pf);
        m.set_entries(2, &[0xff, 0xff, 0x80, 0x00, 0x00, 0x00]);
        assert_eq!(m.read(&[2]), [0xff, 0x80, 0]);
        assert_eq!(m.read(&[3]), [0, 0, 0]); // unset entries are black
    }
}
