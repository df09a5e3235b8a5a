//! The decoded screen: an RGB framebuffer the encodings paint into, and its PNG encoding.
//!
//! Painting methods take rectangles the decoder has already checked against the size; they
//! still clip, so a bug elsewhere can never index out of bounds.

use crate::error::{Result, RfbError};

/// Most pixels a framebuffer may have (8192 x 8192, 192 MiB of RGB): a trail announcing more
/// is refused rather than allocated.
pub const MAX_PIXELS: usize = 8192 * 8192;

/// A rectangle of the screen (of a FramebufferUpdate, or damage): x, y, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
}

impl Rect {
    fn right(&self) -> u32 {
        u32::from(self.x) + u32::from(self.w)
    }

    fn bottom(&self) -> u32 {
        u32::from(self.y) + u32::from(self.h)
    }

    /// Whether the two overlap or touch (their union then wastes little).
    fn touches(&self, o: &Rect) -> bool {
        u32::from(self.x) <= o.right()
            && u32::from(o.x) <= self.right()
            && u32::from(self.y) <= o.bottom()
            && u32::from(o.y) <= self.bottom()
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, o: &Rect) -> Rect {
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        // Both lie inside a u16-sized screen, so the sizes fit.
        let w = (self.right().max(o.right()) - u32::from(x)) as u16;
        let h = (self.bottom().max(o.bottom()) - u32::from(y)) as u16;
        Rect { x, y, w, h }
    }
}

/// Most separate damaged rectangles kept before they are merged into their bounding box.
const MAX_DAMAGE_RECTS: usize = 32;

/// What changed since the last [`Framebuffer::take_damage`] (only tracked when asked for: a
/// transcoder re-encodes it, a snapshot does not need it). Never part of equality.
#[derive(Debug, Clone, Default)]
struct Damage {
    on: bool,
    rects: Vec<Rect>,
}

impl PartialEq for Damage {
    fn eq(&self, _: &Damage) -> bool {
        true
    }
}

impl Eq for Damage {}

/// The screen as RGB, 3 bytes per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    width: u16,
    height: u16,
    rgb: Vec<u8>,
    /// False for a decoder that only frames messages: sizes are tracked, pixels are not.
    render: bool,
    damage: Damage,
}

impl Framebuffer {
    pub(crate) fn empty(render: bool) -> Framebuffer {
        Framebuffer {
            width: 0,
            height: 0,
            rgb: Vec::new(),
            render,
            damage: Damage::default(),
        }
    }

    /// Starts (or stops) tracking which rectangles change.
    pub fn track_damage(&mut self, on: bool) {
        self.damage.on = on;
        self.damage.rects.clear();
    }

    /// The rectangles painted since the last call (clipped, possibly overlapping), and forgets
    /// them. Empty unless [`track_damage`](Self::track_damage) is on.
    pub fn take_damage(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.damage.rects)
    }

    /// The RGB bytes of one row of a rectangle (which must lie inside).
    pub fn row(&self, r: &Rect, y: u16) -> &[u8] {
        let at = self.offset(r.x, r.y + y);
        &self.rgb[at..at + usize::from(r.w) * 3]
    }

    fn damaged(&mut self, x: u16, y: u16, w: u16, h: u16) {
        if !self.damage.on {
            return;
        }
        let r = Rect { x, y, w, h };
        let rects = &mut self.damage.rects;
        // Rows painted one by one, tiles side by side: grow the last rectangle.
        if let Some(last) = rects.last_mut()
            && last.touches(&r)
        {
            *last = last.union(&r);
            return;
        }
        rects.push(r);
        if rects.len() > MAX_DAMAGE_RECTS {
            let all = rects.iter().skip(1).fold(rects[0], |a, b| a.union(b));
            rects.clear();
            rects.push(all);
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
        if self.damage.on {
            self.damage.rects.clear();
            self.damaged(0, 0, width, height);
        }
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
        self.damaged(x, y, w, h);
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
        self.damaged(x, y, w, 1);
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
        self.damaged(x, y, w, h);
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

    /// The screen scaled down to at most `width` pixels wide, keeping its aspect (a thumbnail):
    /// each pixel is the average of the block it covers. A narrower screen is returned as is.
    pub fn scaled_to_width(&self, width: u16) -> Framebuffer {
        if !self.render || width == 0 || width >= self.width {
            return self.clone();
        }
        let (sw, sh) = (usize::from(self.width), usize::from(self.height));
        let dw = usize::from(width);
        let dh = (sh * dw).div_ceil(sw).max(1);
        let mut rgb = vec![0u8; dw * dh * 3];
        for dy in 0..dh {
            let (y0, y1) = (dy * sh / dh, ((dy + 1) * sh / dh).max(dy * sh / dh + 1));
            for dx in 0..dw {
                let (x0, x1) = (dx * sw / dw, ((dx + 1) * sw / dw).max(dx * sw / dw + 1));
                let mut sum = [0u32; 3];
                for y in y0..y1 {
                    let row = &self.rgb[(y * sw + x0) * 3..(y * sw + x1) * 3];
                    for p in row.chunks_exact(3) {
                        for c in 0..3 {
                            sum[c] += u32::from(p[c]);
                        }
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                let at = (dy * dw + dx) * 3;
                for c in 0..3 {
                    rgb[at + c] = (sum[c] / n) as u8;
                }
            }
        }
        Framebuffer {
            width,
            // At most the source's height, so it fits.
            height: dh as u16,
            rgb,
            render: true,
            damage: Damage::default(),
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

    #[test]
    fn damage_merges_neighbours_and_caps_the_list() {
        let mut fb = Framebuffer::empty(true);
        fb.resize(100, 100).unwrap();
        assert!(fb.take_damage().is_empty(), "off by default");
        fb.track_damage(true);
        for y in 10..20 {
            fb.put_row(5, y, &[9; 30]);
        }
        fb.fill(80, 80, 5, 5, [1, 2, 3]);
        let d = fb.take_damage();
        assert_eq!(
            d,
            [
                Rect {
                    x: 5,
                    y: 10,
                    w: 10,
                    h: 10
                },
                Rect {
                    x: 80,
                    y: 80,
                    w: 5,
                    h: 5
                }
            ]
        );
        assert!(fb.take_damage().is_empty());
        for i in 0..40u16 {
            fb.fill(i * 2, i * 2, 1, 1, [0, 0, 0]);
        }
        let d = fb.take_damage();
        assert!(d.len() <= MAX_DAMAGE_RECTS);
        let all = d.iter().skip(1).fold(d[0], |a, b| a.union(b));
        assert_eq!(
            all,
            Rect {
                x: 0,
                y: 0,
                w: 79,
                h: 79
            }
        );
        fb.resize(50, 40).unwrap();
        assert_eq!(
            fb.take_damage(),
            [Rect {
                x: 0,
                y: 0,
                w: 50,
                h: 40
            }]
        );
        assert_eq!(
            fb.row(
                &Rect {
                    x: 5,
                    y: 10,
                    w: 2,
                    h: 1
                },
                0
            ),
            &[9; 6]
        );
    }

    #[test]
    fn thumbnails_average_blocks_and_keep_the_aspect() {
        let mut fb = Framebuffer::empty(true);
        fb.resize(9, 5).unwrap();
        fb.fill(0, 0, 9, 5, [200, 100, 0]);
        fb.fill(0, 0, 3, 2, [0, 0, 90]);
        let t = fb.scaled_to_width(3);
        assert_eq!((t.width(), t.height()), (3, 2));
        // The top-left block is 3 x 2 or 3 x 3 source pixels: mostly blue.
        let p = t.pixel(0, 0).unwrap();
        assert!(p[2] >= 60 && p[0] <= 70, "{p:?}");
        assert_eq!(t.pixel(2, 1), Some([200, 100, 0]));
        assert_eq!(fb.scaled_to_width(20).width(), 9, "never scaled up");
        assert!(t.to_png().is_ok());
    }
}
