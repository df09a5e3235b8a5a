//! The server-to-client side of the decoder: a state machine over the byte stream. Every state
//! says how many bytes it needs next ([`Need`]); the feeding loop in `mod.rs` hands it exactly
//! those, buffering only when a chunk ends inside them. So one rectangle part (a Raw row, a
//! Hextile tile, a ZRLE rectangle's compressed data, a batch of RRE subrectangles) is the most
//! ever buffered, and pixels and cut text that need no decoding are skipped, not buffered.

use super::{Decoder, Rect, hextile, rre, zrle};
use crate::client::encoding;
use crate::error::{Result, RfbError};
use crate::handshake::{MAX_NAME, ServerInit, Version};

#[derive(Debug, Clone)]
pub(super) enum Server {
    /// An RFB 3.3 version line and security type None (the FBS preamble).
    Handshake33,
    InitHead,
    InitName {
        head: [u8; 24],
        len: usize,
    },
    /// Between messages: the next type byte.
    Idle,
    UpdateHead,
    /// Inside a FramebufferUpdate: the next rectangle header (`left` rectangles to go).
    Rects {
        left: u16,
    },
    Rect {
        left: u16,
        r: Rect,
        enc: Enc,
    },
    ColourMapHead,
    ColourMap {
        first: usize,
        n: usize,
    },
    CutTextHead,
    /// Bytes to pass over; then the next rectangle (`Some(left)`) or message (`None`).
    Skip {
        n: u64,
        left: Option<u16>,
    },
}

#[derive(Debug, Clone)]
pub(super) enum Enc {
    Raw { row: u16 },
    CopyRect,
    Rre(rre::State),
    Hextile(hextile::State),
    ZrleLen,
    ZrleData { len: usize },
    ExtDesktopHead,
}

pub(super) enum Need {
    Bytes(usize),
    Skip(u64),
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl Decoder {
    /// What the current state needs; never zero bytes (states that would need none are left
    /// as soon as they are entered).
    pub(super) fn need(&self) -> Need {
        let bpp = self.colours.bpp();
        Need::Bytes(match &self.server {
            Server::Handshake33 => 16,
            Server::InitHead => 24,
            Server::InitName { len, .. } => *len,
            Server::Idle => 1,
            Server::UpdateHead => 3,
            Server::Rects { .. } => 12,
            Server::Rect { r, enc, .. } => match enc {
                Enc::Raw { .. } => usize::from(r.w) * bpp,
                Enc::CopyRect | Enc::ZrleLen | Enc::ExtDesktopHead => 4,
                Enc::Rre(s) => s.need(bpp),
                Enc::Hextile(s) => s.need(*r, bpp),
                Enc::ZrleData { len } => *len,
            },
            Server::ColourMapHead => 5,
            Server::ColourMap { n, .. } => 6 * n,
            Server::CutTextHead => 7,
            Server::Skip { n, .. } => return Need::Skip(*n),
        })
    }

    /// `n` skipped bytes passed.
    pub(super) fn skipped(&mut self, k: u64) {
        if let Server::Skip { n, left } = &mut self.server {
            *n -= k;
            if *n == 0 {
                let left = *left;
                self.after_skip(left);
            }
        }
    }

    fn skip_then(&mut self, n: u64, left: Option<u16>) {
        if n == 0 {
            self.after_skip(left);
        } else {
            self.server = Server::Skip { n, left };
        }
    }

    fn after_skip(&mut self, left: Option<u16>) {
        match left {
            Some(left) => self.end_rect(left),
            None => self.server = Server::Idle,
        }
    }

    /// A rectangle is done; `left` more follow in this update.
    fn end_rect(&mut self, left: u16) {
        if left == 0 {
            self.end_update();
        } else {
            self.server = Server::Rects { left };
        }
    }

    fn end_update(&mut self) {
        self.counters.updates += 1;
        self.server = Server::Idle;
    }

    /// Consumes exactly the bytes [`need`](Self::need) asked for.
    pub(super) fn step(&mut self, b: &[u8]) -> Result<()> {
        match std::mem::replace(&mut self.server, Server::Idle) {
            Server::Handshake33 => {
                let mut v = [0u8; 12];
                v.copy_from_slice(&b[..12]);
                Version::parse(&v)?;
                let security = u32_at(b, 12);
                if security != 1 {
                    return Err(RfbError::Malformed(format!(
                        "RFB 3.3 security type {security}, expected 1 (None)"
                    )));
                }
                self.server = Server::InitHead;
            }
            Server::InitHead => {
                let len = u32_at(b, 20) as usize;
                if len > MAX_NAME {
                    return Err(RfbError::TooLong {
                        what: "desktop name",
                        len,
                        max: MAX_NAME,
                    });
                }
                let mut head = [0u8; 24];
                head.copy_from_slice(b);
                if len == 0 {
                    self.apply_server_init(&head)?;
                } else {
                    self.server = Server::InitName { head, len };
                }
            }
            Server::InitName { head, .. } => {
                let mut all = head.to_vec();
                all.extend_from_slice(b);
                self.apply_server_init(&all)?;
            }
            Server::Idle => match b[0] {
                0 => {
                    // A format the client asked for applies from the next update on: one
                    // already under way when it asked is still in the old format.
                    if let Some(pf) = self.pending_pf.take() {
                        self.colours.set_format(pf);
                    }
                    self.first_update_pf.get_or_insert(self.colours.pf);
                    self.server = Server::UpdateHead;
                }
                1 => self.server = Server::ColourMapHead,
                2 => {
                    self.counters.bells += 1;
                }
                3 => self.server = Server::CutTextHead,
                t => {
                    return Err(RfbError::Malformed(format!(
                        "unknown server message type {t}"
                    )));
                }
            },
            Server::UpdateHead => self.end_rect(u16_at(b, 1)),
            Server::Rects { left } => {
                let r = Rect {
                    x: u16_at(b, 0),
                    y: u16_at(b, 2),
                    w: u16_at(b, 4),
                    h: u16_at(b, 6),
                };
                self.begin_rect(left - 1, r, u32_at(b, 8) as i32)?;
            }
            Server::Rect { left, r, enc } => self.rect_step(left, r, enc, b)?,
            Server::ColourMapHead => {
                let (first, n) = (usize::from(u16_at(b, 1)), usize::from(u16_at(b, 3)));
                if n > 0 {
                    self.server = Server::ColourMap { first, n };
                }
            }
            Server::ColourMap { first, .. } => self.colours.set_entries(first, b),
            Server::CutTextHead => {
                self.counters.cut_texts += 1;
                self.skip_then(u64::from(u32_at(b, 3)), None);
            }
            Server::Skip { .. } => {}
        }
        Ok(())
    }

    fn apply_server_init(&mut self, b: &[u8]) -> Result<()> {
        let (si, _) =
            ServerInit::parse(b)?.ok_or_else(|| RfbError::Malformed("short ServerInit".into()))?;
        self.fb.resize(si.width, si.height)?;
        self.colours.set_format(si.pixel_format);
        self.init = Some(si);
        Ok(())
    }

    fn check_inside(&self, r: Rect, what: &str) -> Result<()> {
        if self.fb.contains(r.x, r.y, r.w, r.h) {
            return Ok(());
        }
        Err(RfbError::Malformed(format!(
            "{what} rectangle {}x{}+{}+{} outside the {}x{} framebuffer",
            r.w,
            r.h,
            r.x,
            r.y,
            self.fb.width(),
            self.fb.height()
        )))
    }

    fn begin_rect(&mut self, left: u16, r: Rect, enc: i32) -> Result<()> {
        let bpp = self.colours.bpp() as u64;
        let area = u64::from(r.w) * u64::from(r.h);
        let rect = |enc| Server::Rect { left, r, enc };
        if enc != encoding::LAST_RECT {
            self.counters.rects += 1;
        }
        match enc {
            encoding::RAW => {
                self.check_inside(r, "Raw")?;
                if area == 0 {
                    self.end_rect(left);
                } else if self.render {
                    self.server = rect(Enc::Raw { row: 0 });
                } else {
                    self.skip_then(area * bpp, Some(left));
                }
            }
            encoding::COPY_RECT => {
                self.check_inside(r, "CopyRect")?;
                self.server = rect(Enc::CopyRect);
            }
            encoding::RRE => {
                self.check_inside(r, "RRE")?;
                self.server = rect(Enc::Rre(rre::State::Head));
            }
            encoding::HEXTILE => {
                self.check_inside(r, "Hextile")?;
                if area == 0 {
                    self.end_rect(left);
                } else {
                    self.server = rect(Enc::Hextile(hextile::State::new()));
                }
            }
            encoding::ZRLE => {
                self.check_inside(r, "ZRLE")?;
                self.server = rect(Enc::ZrleLen);
            }
            // The cursor's shape: not part of the framebuffer. Position is the hot spot.
            encoding::CURSOR => {
                let mask = u64::from(r.w).div_ceil(8) * u64::from(r.h);
                self.skip_then(area * bpp + mask, Some(left));
            }
            encoding::DESKTOP_SIZE => {
                self.fb.resize(r.w, r.h)?;
                self.end_rect(left);
            }
            encoding::EXTENDED_DESKTOP_SIZE => {
                // x is the reason (1: the client's request), y the status: a refused request
                // repeats the size in effect, as TigerVNC's viewer reads it.
                if !(r.x == 1 && r.y != 0) {
                    self.fb.resize(r.w, r.h)?;
                }
                self.server = rect(Enc::ExtDesktopHead);
            }
            encoding::LAST_RECT => self.end_update(),
            other => return Err(RfbError::UnsupportedEncoding(other)),
        }
        Ok(())
    }

    fn rect_step(&mut self, left: u16, r: Rect, enc: Enc, b: &[u8]) -> Result<()> {
        let next = |enc| Server::Rect { left, r, enc };
        match enc {
            Enc::Raw { row } => {
                self.scratch.clear();
                self.colours.convert(b, &mut self.scratch);
                self.fb.put_row(r.x, r.y + row, &self.scratch);
                if row + 1 < r.h {
                    self.server = next(Enc::Raw { row: row + 1 });
                } else {
                    self.end_rect(left);
                }
            }
            Enc::CopyRect => {
                let (sx, sy) = (u16_at(b, 0), u16_at(b, 2));
                self.check_inside(Rect { x: sx, y: sy, ..r }, "CopyRect source")?;
                self.fb.copy(sx, sy, r.x, r.y, r.w, r.h);
                self.end_rect(left);
            }
            Enc::Rre(s) => match s.step(r, &self.colours, &mut self.fb, b)? {
                Some(s) => self.server = next(Enc::Rre(s)),
                None => self.end_rect(left),
            },
            Enc::Hextile(s) => {
                match s.step(r, &self.colours, &mut self.fb, b, &mut self.scratch)? {
                    Some(s) => self.server = next(Enc::Hextile(s)),
                    None => self.end_rect(left),
                }
            }
            Enc::ZrleLen => {
                let len = u32_at(b, 0) as usize;
                if len > zrle::MAX_ZRLE_LEN {
                    return Err(RfbError::TooLong {
                        what: "ZRLE rectangle",
                        len,
                        max: zrle::MAX_ZRLE_LEN,
                    });
                }
                if len == 0 {
                    if r.w > 0 && r.h > 0 {
                        return Err(RfbError::Malformed("empty ZRLE data".into()));
                    }
                    self.end_rect(left);
                } else if self.render {
                    self.server = next(Enc::ZrleData { len });
                } else {
                    self.skip_then(len as u64, Some(left));
                }
            }
            Enc::ZrleData { .. } => {
                zrle::decode(
                    &mut self.zlib,
                    &mut self.inflated,
                    b,
                    r,
                    &self.colours,
                    &mut self.fb,
                )?;
                // A huge rectangle's buffer is not kept for the small ones that follow.
                if self.inflated.capacity() > 4 << 20 {
                    self.inflated = Vec::new();
                }
                self.end_rect(left);
            }
            Enc::ExtDesktopHead => self.skip_then(16 * u64::from(b[0]), Some(left)),
        }
        Ok(())
    }
}
