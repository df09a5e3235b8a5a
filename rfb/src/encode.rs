//! Server-to-client message builders: synthetic server streams for tests and tools (the
//! decoder's, the recorder's, FBS files'). They encode simply, not compactly: Raw pixels, and
//! ZRLE with raw or solid tiles.

use flate2::{Compress, FlushCompress};

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
    let mut at = 0;
    loop {
        packed.reserve(plain.len() - at + 64);
        let before = z.total_in();
        // Compressing to a Vec with room cannot fail.
        let _ = z.compress_vec(&plain[at..], &mut packed, FlushCompress::Sync);
        at += (z.total_in() - before) as usize;
        if at >= plain.len() && packed.len() < packed.capacity() {
            break;
        }
    }
    let mut v = rect_header(x, y, w, h, crate::client::encoding::ZRLE).to_vec();
    v.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    v.extend(packed);
    v
}

/// A server's ZRLE zlib stream (one per connection) and the rectangles sent through it.
pub struct ZrleStream(Compress);

impl Default for ZrleStream {
    fn default() -> Self {
        ZrleStream::new()
    }
}

impl ZrleStream {
    pub fn new() -> ZrleStream {
        ZrleStream(Compress::new(flate2::Compression::fast(), true))
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
