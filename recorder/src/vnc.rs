//! VNC trails: the screen at any moment (PNG), an FBS 001.000 export that VNC players replay,
//! a re-encoded replay from any moment for browser players ([`replay`]), and the session
//! summary `info` shows. The VNC channel is the one opened with kind `vnc`; its
//! client-to-server data starts with ClientInit, its server-to-client data with ServerInit.
//! Everything streams record by record through `trailgate_rfb`'s decoder; none loads a trail.
//!
//! A decoding error (a session killed mid-message, a stream the decoder cannot read) does not
//! fail a snapshot: decoding stops there and the screen as decoded so far is what is shown,
//! with the error reported beside it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use trailgate_rfb::{Decoder, ServerInit, fbs};
// The types of this module's results, for callers without their own dependency on the crate.
pub use trailgate_rfb::decode::Counters;
pub use trailgate_rfb::{Framebuffer, PixelFormat};

use crate::error::{RecorderError, Result};
use crate::format::{Direction, Event, Record};
use crate::reader::{Integrity, Item, TrailReader};

/// Server bytes an FBS export holds back while it waits for the first update (to learn the
/// pixel format the stream is in) before it settles for the format known so far.
const FBS_HOLD_LIMIT: usize = 16 << 20;

/// The VNC side of `trailgate trail info`.
#[derive(Debug, Clone, Serialize)]
pub struct VncInfo {
    pub channel: u32,
    pub desktop_name: Option<String>,
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// The server's pixel format (ServerInit).
    pub pixel_format: Option<PixelFormat>,
    /// The format the client asked for, when it differs from the server's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_pixel_format: Option<PixelFormat>,
    /// Key and pointer events, update requests, updates, rectangles, bells, cut texts.
    #[serde(flatten)]
    pub counters: Counters,
    /// The gateway's note on the client leg (RFB version, security, TLS), if recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// The same for the target leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// Where decoding stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
}

/// Follows the VNC channel of a trail's records into a decoder.
pub(crate) struct Scan {
    channel: Option<u32>,
    decoder: Decoder,
    note: Option<Value>,
    error: Option<String>,
}

/// What a record meant to a [`Scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fed {
    Nothing,
    Client,
    Server,
}

impl Scan {
    /// A scan that renders the screen, or one that only counts (for `info`: much cheaper).
    pub(crate) fn new(render: bool) -> Scan {
        Scan {
            channel: None,
            decoder: if render {
                Decoder::new()
            } else {
                Decoder::framing_only()
            },
            note: None,
            error: None,
        }
    }

    pub(crate) fn apply(&mut self, rec: &Record) -> Fed {
        match (&rec.event, self.channel) {
            (Event::Open(o), None) if o.kind == "vnc" => {
                self.channel = Some(rec.channel);
                Fed::Nothing
            }
            (_, Some(ch)) if ch != rec.channel => Fed::Nothing,
            (_, None) => Fed::Nothing,
            (Event::Note(v), _) => {
                if v.get("event").and_then(Value::as_str) == Some("vnc") {
                    self.note = Some(v.clone());
                }
                Fed::Nothing
            }
            (Event::Data { dir, data }, _) => {
                let fed = match dir {
                    Direction::ClientToServer => Fed::Client,
                    Direction::ServerToClient => Fed::Server,
                };
                // After an error the decoder only repeats it; the data still counts as seen.
                if self.error.is_some() {
                    return fed;
                }
                let r = match dir {
                    Direction::ClientToServer => self.decoder.feed_client(data),
                    Direction::ServerToClient => self.decoder.feed_server(data),
                };
                if let Err(e) = r {
                    self.error = Some(format!(
                        "decoding stopped at {:.3} s: {e}",
                        rec.time_us as f64 / 1e6
                    ));
                }
                fed
            }
            _ => Fed::Nothing,
        }
    }

    fn note_field(&self, key: &str) -> Option<Value> {
        self.note
            .as_ref()?
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
    }

    /// The summary, or None when the trail has no VNC channel.
    pub(crate) fn finish(self) -> Option<VncInfo> {
        let channel = self.channel?;
        let init = self.decoder.server_init();
        let server_pf = init.map(|i| i.pixel_format);
        let client_pf = self
            .decoder
            .pending_pixel_format()
            .or(self.decoder.pixel_format())
            .filter(|pf| Some(*pf) != server_pf);
        let from_note = |k: &str| self.note_field(k);
        Some(VncInfo {
            channel,
            desktop_name: init
                .map(|i| i.name.clone())
                .or_else(|| from_note("desktop_name").and_then(|v| v.as_str().map(str::to_string))),
            width: init.map(|i| i.width).or_else(|| {
                from_note("width")
                    .and_then(|v| v.as_u64())
                    .map(|w| w as u16)
            }),
            height: init.map(|i| i.height).or_else(|| {
                from_note("height")
                    .and_then(|v| v.as_u64())
                    .map(|h| h as u16)
            }),
            pixel_format: server_pf,
            client_pixel_format: client_pf,
            counters: self.decoder.counters().clone(),
            client: from_note("client"),
            target: from_note("target"),
            decode_error: self.error,
        })
    }
}

fn not_vnc() -> RecorderError {
    RecorderError::NotVnc("no channel was opened with kind \"vnc\"".into())
}

/// Summarises a trail's VNC session (None for a trail without one).
pub fn vnc_info(path: &Path) -> Result<Option<VncInfo>> {
    let mut r = TrailReader::open(path)?;
    let mut scan = Scan::new(false);
    r.for_each_record(|rec| {
        scan.apply(rec);
        Ok(())
    })?;
    Ok(scan.finish())
}

/// The screen at some moment of a VNC session.
#[derive(Debug, Clone)]
pub struct Frame {
    pub framebuffer: Framebuffer,
    /// Time of the last server data decoded (µs since the session start).
    pub time_us: u64,
    /// FramebufferUpdates completed up to then.
    pub updates: u64,
    /// Where decoding stopped early: the frame is the screen as decoded up to there.
    pub decode_error: Option<String>,
    /// Of what was read: a frame before the end stops reading early, so it is not `Sealed`.
    pub integrity: Integrity,
}

impl Frame {
    pub fn to_png(&self) -> Result<Vec<u8>> {
        self.framebuffer
            .to_png()
            .map_err(|e| RecorderError::Vnc(e.to_string()))
    }
}

/// Decodes the session up to `at` (since the session start; None: to the end) and returns the
/// screen as it was then. Reading stops at the first record after `at`.
pub fn frame(path: &Path, at: Option<Duration>) -> Result<Frame> {
    let at_us = at.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut r = TrailReader::open(path)?;
    let mut scan = Scan::new(true);
    let mut time_us = 0;
    'items: while let Some(item) = r.next_item()? {
        let records = match item {
            Item::Frame { records, .. } | Item::Partial { records, .. } => records,
            Item::End(_) => continue,
        };
        for rec in &records {
            if at_us.is_some_and(|at| rec.time_us > at) {
                break 'items;
            }
            if scan.apply(rec) == Fed::Server {
                time_us = rec.time_us;
            }
            // Nothing after a decoding error can change the screen.
            if scan.error.is_some() {
                break 'items;
            }
        }
    }
    if scan.channel.is_none() {
        return Err(not_vnc());
    }
    if scan.decoder.server_init().is_none() {
        return Err(RecorderError::Vnc(match (at, &scan.error) {
            (_, Some(e)) => format!("no screen: {e}"),
            (Some(at), None) => format!("no screen yet at {:.3} s", at.as_secs_f64()),
            (None, None) => "the session never showed a screen (no ServerInit)".into(),
        }));
    }
    Ok(Frame {
        updates: scan.decoder.counters().updates,
        framebuffer: scan.decoder.framebuffer().clone(),
        time_us,
        decode_error: scan.error,
        integrity: r.integrity(),
    })
}

/// PNG of the screen at `at` (see [`frame`]); a decoding error is logged, not returned.
pub fn snapshot(path: &Path, at: Option<Duration>) -> Result<Vec<u8>> {
    let f = frame(path, at)?;
    if let Some(e) = &f.decode_error {
        tracing::warn!(path = %path.display(), error = %e, "VNC snapshot shows the screen decoded before an error");
    }
    f.to_png()
}

/// What [`export_fbs`] wrote.
#[derive(Debug, Clone)]
pub struct FbsExport {
    pub integrity: Integrity,
    /// Blocks after the handshake block.
    pub blocks: u64,
    /// Server bytes in them.
    pub bytes: u64,
    /// The pixel format announced in the synthetic ServerInit.
    pub pixel_format: PixelFormat,
    /// The client switched to another pixel format later: players show what follows wrongly
    /// (FBS carries no client messages).
    pub later_format_change: bool,
    pub decode_error: Option<String>,
}

/// The FBS file being written: held back until its pixel format is known.
struct FbsOut<'a> {
    out: &'a mut dyn Write,
    init_buf: Vec<u8>,
    init: Option<ServerInit>,
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
    announced: Option<PixelFormat>,
    block: Vec<u8>,
    blocks: u64,
    bytes: u64,
}

impl FbsOut<'_> {
    fn server_data(&mut self, ms: u32, data: &[u8]) -> Result<()> {
        let data = if self.init.is_none() {
            // The original ServerInit is replaced by the synthetic one: find where it ends.
            self.init_buf.extend_from_slice(data);
            let parsed = ServerInit::parse(&self.init_buf)
                .map_err(|e| RecorderError::Vnc(format!("ServerInit: {e}")))?;
            let Some((init, n)) = parsed else {
                return Ok(());
            };
            self.init = Some(init);
            let rest = self.init_buf.split_off(n);
            self.init_buf = Vec::new();
            rest
        } else {
            data.to_vec()
        };
        if data.is_empty() {
            return Ok(());
        }
        if self.announced.is_some() {
            return self.write_block(ms, &data);
        }
        self.held_bytes += data.len();
        self.held.push((ms, data));
        Ok(())
    }

    fn write_block(&mut self, ms: u32, data: &[u8]) -> Result<()> {
        self.block.clear();
        fbs::push_block(&mut self.block, ms, data);
        self.out.write_all(&self.block)?;
        self.blocks += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Writes the header announcing `pf`, then what was held back.
    fn announce(&mut self, pf: PixelFormat) -> Result<()> {
        let Some(init) = &self.init else {
            return Ok(());
        };
        let init = ServerInit {
            pixel_format: pf,
            ..init.clone()
        };
        self.out.write_all(&fbs::header(&init))?;
        self.announced = Some(pf);
        for (ms, data) in std::mem::take(&mut self.held) {
            self.write_block(ms, &data)?;
        }
        self.held_bytes = 0;
        Ok(())
    }
}

/// The format the stream is in: that of its first update, else the one the client asked for,
/// else the server's.
fn stream_format(d: &Decoder) -> Option<PixelFormat> {
    d.first_update_pixel_format()
        .or(d.pending_pixel_format())
        .or(d.pixel_format())
}

/// Writes the VNC session as an FBS 001.000 file: a synthetic RFB 3.3 handshake without
/// authentication whose ServerInit announces the pixel format the stream is in, then the
/// server's stream after its ServerInit, one block per recorded chunk, timed in milliseconds
/// since the session start.
pub fn export_fbs(path: &Path, out: &mut dyn Write) -> Result<FbsExport> {
    let mut r = TrailReader::open(path)?;
    let mut scan = Scan::new(false);
    let mut f = FbsOut {
        out,
        init_buf: Vec::new(),
        init: None,
        held: Vec::new(),
        held_bytes: 0,
        announced: None,
        block: Vec::new(),
        blocks: 0,
        bytes: 0,
    };
    let integrity = r.for_each_record(|rec| {
        if scan.apply(rec) != Fed::Server {
            return Ok(());
        }
        if let Event::Data { data, .. } = &rec.event {
            let ms = u32::try_from(rec.time_us / 1000).unwrap_or(u32::MAX);
            f.server_data(ms, data)?;
        }
        let d = &scan.decoder;
        let known = d.first_update_pixel_format().is_some() || scan.error.is_some();
        let ready = f.announced.is_none() && f.init.is_some();
        if ready
            && (known || f.held_bytes > FBS_HOLD_LIMIT)
            && let Some(pf) = stream_format(d)
        {
            f.announce(pf)?;
        }
        Ok(())
    })?;
    if scan.channel.is_none() {
        return Err(not_vnc());
    }
    if f.init.is_none() {
        return Err(RecorderError::Vnc(
            "the session never showed a screen (no ServerInit)".into(),
        ));
    }
    if f.announced.is_none() {
        let pf = stream_format(&scan.decoder)
            .or(f.init.as_ref().map(|i| i.pixel_format))
            .unwrap_or(PixelFormat::RGB888);
        f.announce(pf)?;
    }
    f.out.flush()?;
    let pixel_format = f.announced.unwrap_or(PixelFormat::RGB888);
    let last = scan
        .decoder
        .pending_pixel_format()
        .or(scan.decoder.pixel_format());
    Ok(FbsExport {
        integrity,
        blocks: f.blocks,
        bytes: f.bytes,
        pixel_format,
        later_format_change: last.is_some_and(|pf| pf != pixel_format),
        decode_error: scan.error,
    })
}

pub mod replay;
pub use replay::{Replay, ReplayExport, export_replay};

#[cfg(test)]
mod tests;
