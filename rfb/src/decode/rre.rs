//! RRE (encoding 2): a background colour for the whole rectangle, then solid subrectangles.

use super::Rect;
use super::colours::Colours;
use super::framebuffer::Framebuffer;
use crate::error::{Result, RfbError};

/// Subrectangles decoded per step: bounds the bytes buffered, whatever the count says.
const BATCH: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Subrectangle count and background pixel.
    Head,
    Subrects {
        left: u32,
    },
}

impl State {
    pub(crate) fn need(self, bpp: usize) -> usize {
        match self {
            State::Head => 4 + bpp,
            State::Subrects { left } => left.min(BATCH) as usize * (bpp + 8),
        }
    }

    /// Decodes what [`need`](Self::need) asked for; `None` when the rectangle is done.
    pub(crate) fn step(
        self,
        r: Rect,
        c: &Colours,
        fb: &mut Framebuffer,
        b: &[u8],
    ) -> Result<Option<State>> {
        let bpp = c.bpp();
        match self {
            State::Head => {
                let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                fb.fill(r.x, r.y, r.w, r.h, c.read(&b[4..4 + bpp]));
                Ok((n > 0).then_some(State::Subrects { left: n }))
            }
            State::Subrects { left } => {
                let mut done = 0u32;
                for s in b.chunks_exact(bpp + 8) {
                    let v = |i: usize| u16::from_be_bytes([s[bpp + i], s[bpp + i + 1]]);
                    let (x, y, w, h) = (v(0), v(2), v(4), v(6));
                    if u32::from(x) + u32::from(w) > u32::from(r.w)
                        || u32::from(y) + u32::from(h) > u32::from(r.h)
                    {
                        return Err(RfbError::Malformed(format!(
                            "RRE subrectangle {w}x{h}+{x}+{y} outside its {}x{} rectangle",
                            r.w, r.h
                        )));
                    }
                    fb.fill(r.x + x, r.y + y, w, h, c.read(&s[..bpp]));
                    done += 1;
                }
                let left = left - done;
                Ok((left > 0).then_some(State::Subrects { left }))
            }
        }
    }
}
