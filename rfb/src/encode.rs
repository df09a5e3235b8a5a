//! Server-to-client message builders: synthetic server streams for tests and tools (the
//! decoder's, the recorder's, FBS files'). They encode simply, not compactly: Raw pixels, and
//! ZRLE with raw or solid tiles.

use flate2::{Compress, FlushCompress};

use crate::decode::{Framebuffer, Rect};
use crate::pixel::PixelFormat;

/// A FramebufferUpdate's header; `n` rectangles follow (0xffff with a LastRect at the end).
pub fn update_header(n: u16) -> [u8; 4] {
    let n = n.to_be_bytes();
    [0, 0, n[0], n[1]]
}

pub fn rect_header(x: u16, y: u16, w: u16, h: u16, encoding: i32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..2].copy_from_slice(&x.to_be_bytes());
    b[2..4].copy_from_slice(&y.to_be_bytes());
    b[4..6].copy_from_slice(&w.to_be_bytes());
    b[6..8].copy_from_slice(&h.to_be_bytes());
    b[8..12].copy_from_slice(&encoding.to_be_bytes());
    b
}

/// Wire pixels of RGB colours in a true-colour format.
pub fn pixels(pf: &PixelFormat, rgb: &[[u8; 3]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rgb.len() * pf.bytes_per_pixel());
    for c in rgb {
        pf.write_pixel(pf.pixel_from_rgb(*c), &mut v);
    }
    v
}

/// A Raw rectangle (header and pixels, `w * h` colours row by row).
pub fn raw_rect(pf: &PixelFormat, x: u16, y: u16, w: u16, h: u16, rgb: &[[u8; 3]]) -> Vec<u8> {
    let mut v = rect_header(x, y, w, h, crate::client::encoding::RAW).to_vec();
    v.extend(pixels(pf, rgb));
    v
}

/// A ZRLE rectangle (header, length, data) through the connection's zlib stream `z`: solid
/// tiles where a tile has one colour, raw tiles elsewhere.
pub fn zrle_rect(
    z: &mut Compress,
    pf: &PixelFormat,
    x: u16,
    y: u16,
    w: u16,
    h: u16,
    rgb: &[[u8; 3]],
) -> Vec<u8> {
    let (cp, first3) = crate::decode::cpixel_layout(pf);
    let cpixel = |c: [u8; 3], out: &mut Vec<u8>| {
        let mut p = Vec::with_capacity(4);
        pf.write_pixel(pf.pixel_from_rgb(c), &mut p);
        match (cp, first3) {
            (3, true) => out.extend_from_slice(&p[..3]),
            (3, false) => out.extend_from_slice(&p[1..]),
            _ => out.extend_from_slice(&p),
        }
    };
    let mut plain = Vec::new();
    for ty in (0..h).step_by(64) {
        for tx in (0..w).step_by(64) {
            let (tw, th) = ((w - tx).min(64), (h - ty).min(64));
            let tile: Vec<[u8; 3]> = (ty..ty + th)
                .flat_map(|r| (tx..tx + tw).map(move |c| (r, c)))
                .map(|(r, c)| rgb[usize::from(r) * usize::from(w) + usize::from(c)])
                .collect();
            if tile.iter().all(|c| *c == tile[0]) {
                plain.push(1);
                cpixel(tile[0], &mut plain);
            } else {
                plain.push(0);
                for c in tile {
                    cpixel(c, &mut plain);
                }
            }
        }
    }
    let mut packed = Vec::with_capacity(plain.len() + 64);
    deflate_sync(z, &plain, &mut packed);
    let mut v = rect_header(x, y, w, h, crate::client::encoding::ZRLE).to_vec();
    v.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    v.extend(packed);
    v
}

/// Compresses `plain` through `z` with a sync flush (a whole rectangle the reader can inflate
/// now), appending to `out`.
fn deflate_sync(z: &mut Compress, plain: &[u8], out: &mut Vec<u8>) {
    let mut at = 0;
    loop {
        out.reserve(plain.len() - at + 64);
        let before = z.total_in();
        // Compressing to a Vec with room cannot fail.
        let _ = z.compress_vec(&plain[at..], out, FlushCompress::Sync);
        at += (z.total_in() - before) as usize;
        if at >= plain.len() && out.len() < out.capacity() {
            break;
        }
    }
}

/// A DesktopSize pseudo-rectangle: the screen is now `w` x `h`.
pub fn desktop_size(w: u16, h: u16) -> [u8; 12] {
    rect_header(0, 0, w, h, crate::client::encoding::DESKTOP_SIZE)
}

/// A server's ZRLE zlib stream (one per connection) and the rectangles sent through it.
pub struct ZrleStream(Compress, Vec<u8>);

impl Default for ZrleStream {
    fn default() -> Self {
        ZrleStream::new()
    }
}

impl ZrleStream {
    pub fn new() -> ZrleStream {
        ZrleStream(Compress::new(flate2::Compression::fast(), true), Vec::new())
    }

    /// A ZRLE rectangle of the framebuffer's pixels in [`PixelFormat::RGB888`], appended to
    /// `out`. That format's compressed pixels are the framebuffer's own RGB bytes, so tiles are
    /// copied, not converted: solid tiles where a tile has one colour, raw tiles elsewhere.
    pub fn rect_rgb888(&mut self, fb: &Framebuffer, r: &Rect, out: &mut Vec<u8>) {
        let plain = &mut self.1;
        plain.clear();
        for ty in (0..r.h).step_by(64) {
            for tx in (0..r.w).step_by(64) {
                let tile = Rect {
                    x: r.x + tx,
                    y: r.y + ty,
                    w: (r.w - tx).min(64),
                    h: (r.h - ty).min(64),
                };
                let first = &fb.row(&tile, 0)[..3];
                let solid =
                    (0..tile.h).all(|y| fb.row(&tile, y).chunks_exact(3).all(|p| p == first));
                if solid {
                    plain.push(1);
                    plain.extend_from_slice(first);
                } else {
                    plain.push(0);
                    for y in 0..tile.h {
                        plain.extend_from_slice(fb.row(&tile, y));
                    }
                }
            }
        }
        out.extend_from_slice(&rect_header(
            r.x,
            r.y,
            r.w,
            r.h,
            crate::client::encoding::ZRLE,
        ));
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        deflate_sync(&mut self.0, plain, out);
        let len = (out.len() - start) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// See [`zrle_rect`].
    pub fn rect(
        &mut self,
        pf: &PixelFormat,
        x: u16,
        y: u16,
        w: u16,
        h: u16,
        rgb: &[[u8; 3]],
    ) -> Vec<u8> {
        zrle_rect(&mut self.0, pf, x, y, w, h, rgb)
    }
}

pub fn bell() -> [u8; 1] {
    [2]
}

pub fn server_cut_text(text: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 0, 0, 0];
    v.extend_from_slice(&(text.len() as u32).to_be_bytes());
    v.extend_from_slice(text);
    v
}

/// SetColourMapEntries from `first`, 16-bit intensities.
pub fn colour_map_entries(first: u16, colours: &[[u16; 3]]) -> Vec<u8> {
    let mut v = vec![1, 0];
    v.extend_from_slice(&first.to_be_bytes());
    v.extend_from_slice(&(colours.len() as u16).to_be_bytes());
    for c in colours {
        for i in c {
            v.extend_from_slice(&i.to_be_bytes());
        }
    }
    v
}
