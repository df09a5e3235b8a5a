//! A VNC session re-encoded for browser players: an FBS 001.000 file in one pixel format and one
//! encoding every player decodes, starting at any moment.
//!
//! The recorded stream cannot be handed to a player as it is: its pixel format and encodings are
//! whatever the original viewer negotiated, and its zlib streams (ZRLE, Tight) carry state from
//! the session's start, so it cannot start mid-way. Instead the session is decoded record by
//! record into a framebuffer; the file starts with the screen at `from` as one full update (the
//! key frame), then, at the recorded times, each change re-encoded from the framebuffer as ZRLE
//! in [`PixelFormat::RGB888`] (noVNC's own format), through one fresh zlib stream. Changes a few
//! milliseconds apart go out as one update.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use trailgate_rfb::encode::{self, ZrleStream};
use trailgate_rfb::{Decoder, PixelFormat, ServerInit, decode::Rect, fbs};

use super::{Fed, Scan, not_vnc};
use crate::error::{RecorderError, Result};
use crate::format::Record;
use crate::reader::{Integrity, Item, TrailReader};

/// Changes less than this apart are sent as one update (at the time of the last of them): a
/// big update arrives in many records, and a player gains nothing from each one alone.
const COALESCE_US: u64 = 40_000;

/// Most rectangles in one update before they are sent as their bounding box.
const MAX_RECTS: usize = 64;

/// What [`export_replay`] wrote.
#[derive(Debug, Clone)]
pub struct ReplayExport {
    pub integrity: Integrity,
    /// The key frame's time (µs since the session start): `from`, or the last screen data
    /// when `from` lies beyond it.
    pub start_us: u64,
    /// Updates after the key frame.
    pub updates: u64,
    /// Bytes of the file.
    pub bytes: u64,
    pub decode_error: Option<String>,
}

struct Out<'a> {
    out: &'a mut dyn Write,
    z: ZrleStream,
    buf: Vec<u8>,
    /// The screen size last announced.
    size: Option<(u16, u16)>,
    pending: Vec<Rect>,
    /// First and last record time of the pending changes.
    pending_us: Option<(u64, u64)>,
    updates: u64,
    bytes: u64,
}

impl Out<'_> {
    fn block(&mut self, time_us: u64, data: &[u8]) -> Result<()> {
        let mut b = Vec::with_capacity(data.len() + 8);
        fbs::push_block(&mut b, ms(time_us), data);
        self.out.write_all(&b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// The header, the handshake and the screen as it is now, at `time_us`.
    fn start(&mut self, d: &Decoder, time_us: u64) -> Result<()> {
        let Some(init) = d.server_init() else {
            return Ok(());
        };
        let fb = d.framebuffer();
        let init = ServerInit {
            width: fb.width(),
            height: fb.height(),
            pixel_format: PixelFormat::RGB888,
            name: init.name.clone(),
        };
        self.out.write_all(fbs::MAGIC)?;
        self.bytes += fbs::MAGIC.len() as u64;
        self.block(0, &fbs::handshake(&init))?;
        self.size = Some((fb.width(), fb.height()));
        let all = Rect {
            x: 0,
            y: 0,
            w: fb.width(),
            h: fb.height(),
        };
        self.update(d, &[all], time_us)
    }

    /// One FramebufferUpdate of `rects` (and the size first, if it changed).
    fn update(&mut self, d: &Decoder, rects: &[Rect], time_us: u64) -> Result<()> {
        let fb = d.framebuffer();
        let size = (fb.width(), fb.height());
        let resized = self.size != Some(size);
        let rects: Vec<Rect> = rects.iter().filter_map(|r| clip(r, size)).collect();
        if rects.is_empty() && !resized {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&encode::update_header(
            (rects.len() + usize::from(resized)) as u16,
        ));
        if resized {
            buf.extend_from_slice(&encode::desktop_size(size.0, size.1));
            self.size = Some(size);
        }
        for r in &rects {
            self.z.rect_rgb888(fb, r, &mut buf);
        }
        let r = self.block(time_us, &buf);
        self.buf = buf;
        self.updates += 1;
        r
    }

    /// Sends the changes held back, if any.
    fn flush(&mut self, d: &Decoder) -> Result<()> {
        let Some((_, last)) = self.pending_us.take() else {
            return Ok(());
        };
        let rects = std::mem::take(&mut self.pending);
        self.update(d, &rects, last)
    }

    fn add(&mut self, damage: Vec<Rect>, time_us: u64) {
        if damage.is_empty() {
            return;
        }
        self.pending.extend(damage);
        if self.pending.len() > MAX_RECTS {
            let all = self.pending[1..]
                .iter()
                .fold(self.pending[0], |a, b| a.union(b));
            self.pending = vec![all];
        }
        let first = self.pending_us.map_or(time_us, |(f, _)| f);
        self.pending_us = Some((first, time_us));
    }
}

/// The part of `r` inside a screen of `size` (a resize may have cut it).
fn clip(r: &Rect, (w, h): (u16, u16)) -> Option<Rect> {
    if r.x >= w || r.y >= h {
        return None;
    }
    let r = Rect {
        w: r.w.min(w - r.x),
        h: r.h.min(h - r.y),
        ..*r
    };
    (r.w > 0 && r.h > 0).then_some(r)
}

fn ms(time_us: u64) -> u32 {
    u32::try_from(time_us / 1000).unwrap_or(u32::MAX)
}

/// Records of the trail, one at a time.
struct Records {
    reader: TrailReader,
    batch: std::vec::IntoIter<Record>,
}

impl Records {
    fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.batch.next() {
                return Ok(Some(r));
            }
            match self.reader.next_item()? {
                None => return Ok(None),
                Some(Item::Frame { records, .. } | Item::Partial { records, .. }) => {
                    self.batch = records.into_iter();
                }
                Some(Item::End(_)) => {}
            }
        }
    }
}

/// A replay decoded up to its start, ready to be written: [`Replay::open`] fails (no such
/// trail, no VNC channel, no screen) before anything is written, and knows the start.
pub struct Replay {
    records: Records,
    scan: Scan,
    /// The first record after the start, read but not yet applied.
    held: Option<Record>,
    start_us: u64,
}

impl Replay {
    /// Decodes the session up to `from` (None: its start). A `from` past the last screen
    /// data starts at the last screen.
    pub fn open(path: &Path, from: Option<Duration>) -> Result<Replay> {
        let from_us = from.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut records = Records {
            reader: TrailReader::open(path)?,
            batch: Vec::new().into_iter(),
        };
        let mut scan = Scan::new(true);
        scan.decoder.track_damage(true);
        let mut last_us = 0;
        let mut held = None;
        while let Some(rec) = records.next()? {
            if rec.time_us > from_us && scan.decoder.server_init().is_some() {
                held = Some(rec);
                break;
            }
            if scan.apply(&rec) == Fed::Server {
                last_us = rec.time_us;
            }
            if scan.error.is_some() {
                break;
            }
        }
        if scan.channel.is_none() {
            return Err(not_vnc());
        }
        if scan.decoder.server_init().is_none() {
            return Err(RecorderError::Vnc(match &scan.error {
                Some(e) => format!("no screen: {e}"),
                None => "the session never showed a screen (no ServerInit)".into(),
            }));
        }
        // The key frame holds everything painted so far.
        scan.decoder.take_damage();
        Ok(Replay {
            start_us: if held.is_some() {
                from_us
            } else {
                from_us.min(last_us)
            },
            records,
            scan,
            held,
        })
    }

    /// The key frame's time, µs since the session start.
    pub fn start_us(&self) -> u64 {
        self.start_us
    }

    /// Writes the file: the key frame, then every change to the end of the trail.
    pub fn write_to(mut self, out: &mut dyn Write) -> Result<ReplayExport> {
        let mut o = Out {
            out,
            z: ZrleStream::new(),
            buf: Vec::new(),
            size: None,
            pending: Vec::new(),
            pending_us: None,
            updates: 0,
            bytes: 0,
        };
        o.start(&self.scan.decoder, self.start_us)?;
        let scan = &mut self.scan;
        let mut next = self.held.take();
        while scan.error.is_none()
            && let Some(rec) = next
                .take()
                .map_or_else(|| self.records.next(), |r| Ok(Some(r)))?
        {
            if let Some((first, _)) = o.pending_us
                && rec.time_us >= first + COALESCE_US
            {
                o.flush(&scan.decoder)?;
            }
            if scan.apply(&rec) == Fed::Server {
                let damage = scan.decoder.take_damage();
                o.add(damage, rec.time_us);
            }
        }
        o.flush(&scan.decoder)?;
        o.out.flush()?;
        // Read to the end for the integrity of everything played.
        if scan.error.is_some() {
            while self.records.next()?.is_some() {}
        }
        Ok(ReplayExport {
            integrity: self.records.reader.integrity(),
            start_us: self.start_us,
            updates: o.updates.saturating_sub(1),
            bytes: o.bytes,
            decode_error: self.scan.error,
        })
    }
}

/// [`Replay::open`] then [`Replay::write_to`].
pub fn export_replay(
    path: &Path,
    from: Option<Duration>,
    out: &mut dyn Write,
) -> Result<ReplayExport> {
    Replay::open(path, from)?.write_to(out)
}
