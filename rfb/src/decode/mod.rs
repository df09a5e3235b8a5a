//! A streaming decoder of a recorded VNC session: it follows the client's stream (for the
//! pixel format it asked for and to count user input) and decodes the server's into a
//! framebuffer. Bytes may arrive in any chunks; partial messages wait for the next call.
//!
//! Encodings: Raw, CopyRect, RRE, Hextile, ZRLE, and the pseudo-encodings the gateway lets
//! through (Cursor, DesktopSize, ExtendedDesktopSize, LastRect). Pixel formats: 8, 16 and 32
//! bits per pixel, true colour in either byte order, or colour-map mode.
//!
//! The first error (malformed data, an unknown encoding, a rectangle outside the framebuffer,
//! an oversized length) stops the decoder: every later call returns it, and what was decoded
//! before stays readable.

mod colours;
mod framebuffer;
mod hextile;
mod rre;
mod server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_stream;
mod zrle;

use flate2::Decompress;
use serde::Serialize;

use crate::client::{self, ClientMessage};
use crate::error::{Result, RfbError};
use crate::handshake::ServerInit;
use crate::pixel::PixelFormat;
use colours::Colours;
pub use framebuffer::{Framebuffer, MAX_PIXELS, Rect};
use server::{Need, Server};
pub use zrle::MAX_ZRLE_LEN;
pub(crate) use zrle::cpixel_layout;

/// What the decoder has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Client: KeyEvent messages (presses and releases).
    pub key_events: u64,
    /// Client: PointerEvent messages.
    pub pointer_events: u64,
    /// Client: FramebufferUpdateRequest messages.
    pub update_requests: u64,
    /// Client: ClientCutText messages.
    pub client_cut_texts: u64,
    /// Server: FramebufferUpdate messages completed.
    pub updates: u64,
    /// Server: rectangles begun, pseudo-rectangles included (LastRect markers not).
    pub rects: u64,
    /// Server: Bell messages.
    pub bells: u64,
    /// Server: ServerCutText messages.
    pub cut_texts: u64,
}

/// The longest client message buffered whole (SetEncodings at its limit); a ClientCutText's
/// text is skipped, not buffered.
const MAX_CLIENT_FRAME: usize = 4 + 4 * client::MAX_ENCODINGS;

pub struct Decoder {
    server: Server,
    /// Server bytes of the current step, when a chunk ended inside them.
    sbuf: Vec<u8>,
    init: Option<ServerInit>,
    fb: Framebuffer,
    colours: Colours,
    /// Set by the client's SetPixelFormat; in effect from the next FramebufferUpdate.
    pending_pf: Option<PixelFormat>,
    first_update_pf: Option<PixelFormat>,
    zlib: Decompress,
    inflated: Vec<u8>,
    scratch: Vec<u8>,
    render: bool,
    client_init_seen: bool,
    cbuf: Vec<u8>,
    /// Client bytes to pass over (a ClientCutText's text).
    cskip: u64,
    counters: Counters,
    failed: Option<RfbError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder of a session's streams as the gateway records them: the client's from its
    /// ClientInit, the server's from its ServerInit.
    pub fn new() -> Decoder {
        Decoder::build(true, Server::InitHead)
    }

    /// Like [`new`](Self::new) but only frames the messages: counters and sizes without
    /// pixels, at a fraction of the cost (no zlib, no pixel conversion).
    pub fn framing_only() -> Decoder {
        Decoder::build(false, Server::InitHead)
    }

    /// A decoder whose server stream starts with an RFB 3.3 version line and the security type
    /// None before the ServerInit, as in FBS files.
    pub fn with_rfb33_handshake() -> Decoder {
        Decoder::build(true, Server::Handshake33)
    }

    fn build(render: bool, server: Server) -> Decoder {
        Decoder {
            server,
            sbuf: Vec::new(),
            init: None,
            fb: Framebuffer::empty(render),
            colours: Colours::new(PixelFormat::RGB888),
            pending_pf: None,
            first_update_pf: None,
            zlib: Decompress::new(true),
            inflated: Vec::new(),
            scratch: Vec::new(),
            render,
            client_init_seen: false,
            cbuf: Vec::new(),
            cskip: 0,
            counters: Counters::default(),
            failed: None,
        }
    }

    /// Starts tracking what the stream paints, for [`take_damage`](Self::take_damage).
    pub fn track_damage(&mut self, on: bool) {
        self.fb.track_damage(on);
    }

    /// The screen rectangles painted since the last call (see [`Framebuffer::take_damage`]).
    pub fn take_damage(&mut self) -> Vec<Rect> {
        self.fb.take_damage()
    }

    pub fn server_init(&self) -> Option<&ServerInit> {
        self.init.as_ref()
    }

    pub fn framebuffer(&self) -> &Framebuffer {
        &self.fb
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The pixel format the server's messages are decoded in (None before the ServerInit).
    pub fn pixel_format(&self) -> Option<PixelFormat> {
        self.init.as_ref().map(|_| self.colours.pf)
    }

    /// The format the client asked for that is not in effect yet (no update since).
    pub fn pending_pixel_format(&self) -> Option<PixelFormat> {
        self.pending_pf
    }

    /// The pixel format the first FramebufferUpdate came in.
    pub fn first_update_pixel_format(&self) -> Option<PixelFormat> {
        self.first_update_pf
    }

    /// The error that stopped the decoder, if one did.
    pub fn error(&self) -> Option<&RfbError> {
        self.failed.as_ref()
    }

    /// Whether the server stream is between messages (not inside an update or other message).
    pub fn at_message_boundary(&self) -> bool {
        matches!(self.server, Server::Idle) && self.sbuf.is_empty()
    }

    fn check(&self) -> Result<()> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// The next bytes of the server's stream.
    pub fn feed_server(&mut self, data: &[u8]) -> Result<()> {
        self.check()?;
        let r = self.feed_server_inner(data);
        self.fail(r)
    }

    fn feed_server_inner(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            match self.need() {
                Need::Skip(n) => {
                    let k = n.min(data.len() as u64);
                    data = &data[k as usize..];
                    self.skipped(k);
                }
                Need::Bytes(n) if self.sbuf.is_empty() && data.len() >= n => {
                    let (now, rest) = data.split_at(n);
                    data = rest;
                    self.step(now)?;
                }
                Need::Bytes(n) => {
                    let k = (n - self.sbuf.len()).min(data.len());
                    self.sbuf.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    if self.sbuf.len() == n {
                        let mut buf = std::mem::take(&mut self.sbuf);
                        let r = self.step(&buf);
                        // Kept for the next partial step unless it was a big one.
                        if buf.capacity() <= 1 << 20 {
                            buf.clear();
                            self.sbuf = buf;
                        }
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next bytes of the client's stream, starting with its 1-byte ClientInit.
    pub fn feed_client(&mut self, data: &[u8]) -> Result<()> {
        self.check()?;
        let r = self.feed_client_inner(data);
        self.fail(r)
    }

    fn feed_client_inner(&mut self, mut data: &[u8]) -> Result<()> {
        if !self.client_init_seen && !data.is_empty() {
            self.client_init_seen = true;
            data = &data[1..];
        }
        loop {
            if self.cskip > 0 {
                let k = self.cskip.min(data.len() as u64);
                self.cskip -= k;
                data = &data[k as usize..];
            }
            if data.is_empty() {
                return Ok(());
            }
            if self.cbuf.is_empty() {
                match self.client_message(data)? {
                    Some(n) => data = &data[n..],
                    None => {
                        self.cbuf.extend_from_slice(data);
                        return Ok(());
                    }
                }
                continue;
            }
            // A message begun in an earlier chunk: complete it from this one.
            let old = self.cbuf.len();
            let k = data.len().min(MAX_CLIENT_FRAME.saturating_sub(old));
            self.cbuf.extend_from_slice(&data[..k]);
            let buf = std::mem::take(&mut self.cbuf);
            match self.client_message(&buf)? {
                Some(n) => {
                    data = &data[n.saturating_sub(old).min(data.len())..];
                    self.cbuf = buf;
                    self.cbuf.clear();
                }
                None if buf.len() >= MAX_CLIENT_FRAME => {
                    return Err(RfbError::Malformed(
                        "client message too long to frame".into(),
                    ));
                }
                None => {
                    self.cbuf = buf;
                    return Ok(());
                }
            }
        }
    }

    /// Frames and applies one client message at the start of `b`; its length, or None while
    /// incomplete.
    fn client_message(&mut self, b: &[u8]) -> Result<Option<usize>> {
        // ClientCutText: the header is enough; the text is skipped as it comes.
        if b[0] == 6 {
            if b.len() < 8 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            if len as i32 >= 0 {
                self.counters.client_cut_texts += 1;
                self.cskip = u64::from(len);
                return Ok(Some(8));
            }
            // Negative: the extended clipboard, which `next_message` refuses.
        }
        let Some((m, n)) = client::next_message(b)? else {
            return Ok(None);
        };
        let c = &mut self.counters;
        match m {
            ClientMessage::SetPixelFormat(pf) => self.pending_pf = Some(pf),
            ClientMessage::FramebufferUpdateRequest { .. } => c.update_requests += 1,
            ClientMessage::KeyEvent { .. } => c.key_events += 1,
            ClientMessage::PointerEvent { .. } => c.pointer_events += 1,
            ClientMessage::SetEncodings(_)
            | ClientMessage::ClientCutText { .. }
            | ClientMessage::SetDesktopSize { .. } => {}
        }
        Ok(Some(n))
    }
}
