//! Hextile (encoding 5): 16x16 tiles, each raw or a background with optional subrectangles.
//! Tiles are self-delimiting, so they are decoded one (part) at a time as bytes arrive.

use super::Rect;
use super::colours::Colours;
use super::framebuffer::Framebuffer;
use crate::error::{Result, RfbError};

const RAW: u8 = 1;
const BACKGROUND: u8 = 2;
const FOREGROUND: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const SUBRECTS_COLOURED: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The subencoding byte.
    Head,
    /// The raw tile's pixels.
    Raw,
    /// Background, foreground and subrectangle count, as `sub` says.
    Colours {
        sub: u8,
    },
    Subrects {
        coloured: bool,
        n: u8,
    },
}

/// Where the decoder is in a Hextile rectangle. Background and foreground carry over from tile
/// to tile, as the encoding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    tile: u32,
    bg: [u8; 3],
    fg: [u8; 3],
    phase: Phase,
}

/// The tile `t` of `r`: position and size.
fn tile(r: Rect, t: u32) -> (u16, u16, u16, u16) {
    let across = u32::from(r.w).div_ceil(16).max(1);
    let tx = (t % across * 16) as u16;
    let ty = (t / across * 16) as u16;
    (r.x + tx, r.y + ty, (r.w - tx).min(16), (r.h - ty).min(16))
}

fn tiles(r: Rect) -> u32 {
    u32::from(r.w).div_ceil(16) * u32::from(r.h).div_ceil(16)
}

impl State {
    pub(crate) fn new() -> State {
        State {
            tile: 0,
            bg: [0; 3],
            fg: [0; 3],
            phase: Phase::Head,
        }
    }

    pub(crate) fn need(&self, r: Rect, bpp: usize) -> usize {
        let (_, _, tw, th) = tile(r, self.tile);
        match self.phase {
            Phase::Head => 1,
            Phase::Raw => usize::from(tw) * usize::from(th) * bpp,
            Phase::Colours { sub } => colours_len(sub, bpp),
            Phase::Subrects { coloured, n } => {
                usize::from(n) * (2 + if coloured { bpp } else { 0 })
            }
        }
    }

    /// Decodes what [`need`](Self::need) asked for; `None` when the rectangle is done.
    pub(crate) fn step(
        mut self,
        r: Rect,
        c: &Colours,
        fb: &mut Framebuffer,
        b: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<Option<State>> {
        let bpp = c.bpp();
        let (x, y, tw, th) = tile(r, self.tile);
        match self.phase {
            Phase::Head => {
                let sub = b[0];
                if sub & RAW != 0 {
                    self.phase = Phase::Raw;
                    return Ok(Some(self));
                }
                if colours_len(sub, bpp) > 0 {
                    self.phase = Phase::Colours { sub };
                    return Ok(Some(self));
                }
                fb.fill(x, y, tw, th, self.bg);
            }
            Phase::Raw => {
                scratch.clear();
                c.convert(b, scratch);
                fb.put_block(x, y, tw, scratch);
            }
            Phase::Colours { sub } => {
                let mut at = 0;
                if sub & BACKGROUND != 0 {
                    self.bg = c.read(&b[..bpp]);
                    at += bpp;
                }
                if sub & FOREGROUND != 0 {
                    self.fg = c.read(&b[at..at + bpp]);
                    at += bpp;
                }
                fb.fill(x, y, tw, th, self.bg);
                if sub & ANY_SUBRECTS != 0 && b[at] > 0 {
                    self.phase = Phase::Subrects {
                        coloured: sub & SUBRECTS_COLOURED != 0,
                        n: b[at],
                    };
                    return Ok(Some(self));
                }
            }
            Phase::Subrects { coloured, .. } => {
                let size = 2 + if coloured { bpp } else { 0 };
                for s in b.chunks_exact(size) {
                    let (colour, geo) = if coloured {
                        (c.read(&s[..bpp]), &s[bpp..])
                    } else {
                        (self.fg, s)
                    };
                    let (sx, sy) = (u16::from(geo[0] >> 4), u16::from(geo[0] & 15));
                    let (sw, sh) = (u16::from(geo[1] >> 4) + 1, u16::from(geo[1] & 15) + 1);
                    if sx + sw > tw || sy + sh > th {
                        return Err(RfbError::Malformed(format!(
                            "Hextile subrectangle {sw}x{sh}+{sx}+{sy} outside its {tw}x{th} tile"
                        )));
                    }
                    fb.fill(x + sx, y + sy, sw, sh, colour);
                }
            }
        }
        self.tile += 1;
        self.phase = Phase::Head;
        Ok((self.tile < tiles(r)).then_some(self))
    }
}

fn colours_len(sub: u8, bpp: usize) -> usize {
    let mut n = 0;
    if sub & BACKGROUND != 0 {
        n += bpp;
    }
    if sub & FOREGROUND != 0 {
        n += bpp;
    }
    if sub & ANY_SUBRECTS != 0 {
        n += 1;
    }
    n
}
