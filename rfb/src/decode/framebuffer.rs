//! The decoded screen: an RGB framebuffer the encodings paint into, and its PNG encoding.
//!
//! Painting methods take rectangles the decoder has already checked against the size; they
//! still clip, so a bug elsewhere can never index out of bounds.

use crate::error::{Result, RfbError};

/// Most pixels a framebuffer may have (8192 x 8192, 192 MiB of RGB): a trail announcing more
/// is refused rather than allocated.
pub const MAX_PIXELS: usize = 8192 * 8192;

/// The screen as RGB, 3 bytes per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    width: u16,
    height: u16,
    rgb: Vec<u8>,
    /// False for a decoder that only frames messages: sizes are tracked, pixels are not.
    render: bool,
}

impl Framebuffer {
    pub(crate) fn empty(render: bool) -> Framebuffer {
        Framebuffer {
            width: 0,
            height: 0,
            rgb: Vec::new(),
            render,
        }
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// RGB bytes, `3 * width` per row (empty for a framing-only decoder).
    pub fn pixels(&self) -> &[u8] {
        &self.rgb
    }

    /// The pixel at (x, y), if inside and rendered.
    pub fn pixel(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = self.offset(x, y);
        self.rgb.get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }

    /// Changes the size, keeping what overlaps (the rest is black).
    pub(crate) fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let n = usize::from(width) * usize::from(height);
        if n > MAX_PIXELS {
            return Err(RfbError::TooLong {
                what: "framebuffer (pixels)",
                len: n,
                max: MAX_PIXELS,
            });
        }
        if self.render && (width, height) != (self.width, self.height) {
            let mut rgb = vec![0u8; n * 3];
            let w = usize::from(width.min(self.width)) * 3;
            for y in 0..height.min(self.height) {
                let src = self.offset(0, y);
                let dst = usize::from(y) * usize::from(width) * 3;
                rgb[dst..dst + w].copy_from_slice(&self.rgb[src..src + w]);
            }
            self.rgb = rgb;
        }
        self.width = width;
        self.height = height;
        Ok(())
    }

    /// Whether the rectangle lies inside the framebuffer.
    pub(crate) fn contains(&self, x: u16, y: u16, w: u16, h: u16) -> bool {
        u32::from(x) + u32::from(w) <= u32::from(self.width)
            && u32::from(y) + u32::from(h) <= u32::from(self.height)
    }

    fn offset(&self, x: u16, y: u16) -> usize {
        (usize::from(y) * usize::from(self.width) + usize::from(x)) * 3
    }

    /// The rectangle clipped to the framebuffer, or None when nothing is left to paint.
    fn clip(&self, x: u16, y: u16, w: u16, h: u16) -> Option<(u16, u16)> {
        if !self.render || x >= self.width || y >= self.height {
            return None;
        }
        let w = w.min(self.width - x);
        let h = h.min(self.height - y);
        (w > 0 && h > 0).then_some((w, h))
    }

    pub(crate) fn fill(&mut self, x: u16, y: u16, w: u16, h: u16, c: [u8; 3]) {
        let Some((w, h)) = self.clip(x, y, w, h) else {
            return;
        };
        for row in y..y + h {
            let at = self.offset(x, row);
            for p in self.rgb[at..at + usize::from(w) * 3].chunks_exact_mut(3) {
                p.copy_from_slice(&c);
            }
        }
    }

    /// Writes one row of RGB pixels starting at (x, y).
    pub(crate) fn put_row(&mut self, x: u16, y: u16, row: &[u8]) {
        let Some((w, _)) = self.clip(x, y, (row.len() / 3).min(usize::from(u16::MAX)) as u16, 1)
        else {
            return;
        };
        let at = self.offset(x, y);
        let n = usize::from(w) * 3;
        self.rgb[at..at + n].copy_from_slice(&row[..n]);
    }

    /// Writes a `w`-wide block of RGB pixels (rows of `3 * w` bytes) at (x, y).
    pub(crate) fn put_block(&mut self, x: u16, y: u16, w: u16, block: &[u8]) {
        let stride = usize::from(w) * 3;
        if stride == 0 {
            return;
        }
        for (i, row) in block.chunks_exact(stride).enumerate() {
            let Some(row_y) = u16::try_from(i).ok().and_then(|i| y.checked_add(i)) else {
                return;
            };
            self.put_row(x, row_y, row);
        }
    }

    /// CopyRect: copies the `w` x `h` block at (sx, sy) to (x, y); the two may overlap.
    pub(crate) fn copy(&mut self, sx: u16, sy: u16, x: u16, y: u16, w: u16, h: u16) {
        if !self.render || !self.contains(sx, sy, w, h) || !self.contains(x, y, w, h) {
            return;
        }
        let n = usize::from(w) * 3;
        // Rows in the order that never reads a row already overwritten.
        let rows: Box<dyn Iterator<Item = u16>> = if sy < y {
            Box::new((0..h).rev())
        } else {
            Box::new(0..h)
        };
        for r in rows {
            let src = self.offset(sx, sy + r);
            let dst = self.offset(x, y + r);
            self.rgb.copy_within(src..src + n, dst);
        }
    }

    /// The framebuffer as an 8-bit RGB PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let png_err = |e: png::EncodingError| RfbError::Png(e.to_string());
        if !self.render || self.width == 0 || self.height == 0 {
            return Err(RfbError::Png(format!(
                "no pixels to encode ({}x{} framebuffer{})",
                self.width,
                self.height,
                if self.render { "" } else { ", not rendered" }
            )));
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, u32::from(self.width), u32::from(self.height));
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Screens compress well with the fast setting; the default spends several times longer.
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().map_err(png_err)?;
        w.write_image_data(&self.rgb).map_err(png_err)?;
        w.finish().map_err(png_err)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_clip_and_copy_with_overlap() {
        let mut fb = Framebuffer::empty(true);
        fb.resize(4, 3).unwrap();
        fb.fill(0, 0, 4, 1, [1, 1, 1]);
        fb.fill(0, 1, 4, 1, [2, 2, 2]);
        fb.fill(3, 2, 9, 9, [3, 3, 3]); // clipped, not a panic
        assert_eq!(fb.pixel(3, 2), Some([3, 3, 3]));
        fb.copy(0, 0, 0, 1, 4, 2); // overlapping, downwards
        assert_eq!(fb.pixel(0, 1), Some([1, 1, 1]));
        assert_eq!(fb.pixel(0, 2), Some([2, 2, 2]));
        fb.resize(2, 2).unwrap();
        assert_eq!(fb.pixels().len(), 12);
        assert_eq!(fb.pixel(1, 1), Some([1, 1, 1]));
        assert!(fb.resize(u16::MAX, u16::MAX).is_err());
        assert!(fb.to_png().unwrap().starts_with(b"\x89PNG"));
        assert!(Framebuffer::empty(true).to_png().is_err());
    }
}
