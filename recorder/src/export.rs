//! Exports of a trail: raw channel bytes (`cat`), asciicast v2, terminal replay, and the `info`
//! document (with the VNC summary of [`crate::vnc`] for VNC trails). All stream record by
//! record; none loads a whole trail.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::error::{RecorderError, Result};
use crate::format::*;
use crate::reader::{Integrity, Item, TrailReader};
use crate::summary::Stats;

/// Writes the bytes of one channel's stream exactly as they crossed the gateway. With no
/// direction, both directions' data are written in the order they were recorded. Extended data
/// (stderr) is included with the server-to-client direction.
pub fn cat(
    path: &Path,
    channel: u32,
    dir: Option<Direction>,
    out: &mut dyn Write,
) -> Result<Integrity> {
    let mut r = TrailReader::open(path)?;
    let mut seen = false;
    let integrity = r.for_each_record(|rec| {
        if rec.channel != channel {
            return Ok(());
        }
        seen = true;
        match &rec.event {
            Event::Data { dir: d, data } if dir.is_none_or(|x| x == *d) => out.write_all(data)?,
            Event::ExtendedData { dir: d, data, .. }
                if dir.is_none_or(|x| x == *d) && dir.is_none() =>
            {
                out.write_all(data)?
            }
            _ => {}
        }
        Ok(())
    })?;
    out.flush()?;
    if !seen {
        return Err(missing_channel(path, channel));
    }
    Ok(integrity)
}

/// The error for a channel that is not in a trail: a corrupt trail says it is corrupt; an intact
/// one lists the channels it has.
pub fn missing_channel(path: &Path, channel: u32) -> RecorderError {
    let i = match info(path) {
        Ok(i) => i,
        Err(e) => return e,
    };
    if i.integrity == "corrupt" {
        let detail = i.integrity_detail.unwrap_or_default();
        return RecorderError::Corrupt {
            offset: 0,
            reason: format!("{detail} (channel {channel} is not in the readable part)"),
        };
    }
    let available = i
        .channels
        .iter()
        .map(|c| format!("{} ({})", c.id, c.label))
        .collect::<Vec<_>>()
        .join(", ");
    RecorderError::NoSuchChannel {
        channel,
        available: if available.is_empty() {
            "none".into()
        } else {
            available
        },
    }
}

/// Checks that `channel` is in the trail (the error lists those that are).
pub fn require_channel(path: &Path, channel: u32) -> Result<()> {
    let i = info(path)?;
    if i.channels.iter().any(|c| c.id == channel) {
        return Ok(());
    }
    Err(missing_channel(path, channel))
}

/// Like [`cat`] but only extended data with the given code (stderr is 1).
pub fn cat_extended(
    path: &Path,
    channel: u32,
    code: u32,
    out: &mut dyn Write,
) -> Result<Integrity> {
    let mut r = TrailReader::open(path)?;
    let integrity = r.for_each_record(|rec| {
        if let (true, Event::ExtendedData { code: c, data, .. }) =
            (rec.channel == channel, &rec.event)
            && *c == code
        {
            out.write_all(data)?;
        }
        Ok(())
    })?;
    Ok(integrity)
}

/// One channel of `info`: `type` is the channel kind (`session-exec`), `channel_type` the
/// SSH channel type (`session`), plus every statistic.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub id: u32,
    pub label: String,
    pub stats: ChannelStats,
}

impl Serialize for ChannelInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.stats).map_err(serde::ser::Error::custom)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("channel_type".into(), json!(self.stats.kind));
            m.insert("type".into(), json!(self.label));
            m.insert("id".into(), json!(self.id));
        }
        v.serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrailInfo {
    pub session_id: String,
    pub protocol: String,
    pub start_time: String,
    pub end_time: Option<String>,
    /// The same in unix microseconds.
    #[serde(skip)]
    pub end_unix_us: Option<i64>,
    pub duration_seconds: f64,
    pub end_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated_by: Option<String>,
    pub verdict: Option<String>,
    /// The session's end record as written (status, last activity, ...).
    #[serde(skip)]
    pub end: Option<crate::format::SessionEnd>,
    pub integrity: String,
    pub integrity_detail: Option<String>,
    pub signing_key_fingerprint: String,
    pub meta: SessionMeta,
    pub records: u64,
    pub frames: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub file_bytes: u64,
    /// The data frames' zstd level, and the fastest one they may drop to while the recorder
    /// was behind (absent: every frame is at `zstd_level`).
    pub zstd_level: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zstd_fast_level: Option<i32>,
    pub channels: Vec<ChannelInfo>,
    /// The VNC session: desktop, size, pixel format, input and update counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vnc: Option<crate::vnc::VncInfo>,
}

/// Reads the whole trail (verifying it) and describes it.
pub fn info(path: &Path) -> Result<TrailInfo> {
    let mut r = TrailReader::open(path)?;
    let mut stats = Stats::default();
    // Framing only: counting updates must not cost what rendering them would.
    let mut vnc = crate::vnc::Scan::new(false);
    let integrity = r.for_each_record(|rec| {
        stats.apply_record(rec);
        vnc.apply(rec);
        Ok(())
    })?;
    let h = r.header.clone();
    let end_us = if integrity == Integrity::Sealed {
        r.end_summary().map(|e| e.end_unix_us)
    } else if stats.end.is_some() {
        Some(h.start_unix_us + stats.last_time_us as i64)
    } else {
        None
    };
    let end_time = end_us.and_then(|us| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .ok()
            .map(crate::writer::rfc3339)
    });
    let detail = match &integrity {
        Integrity::Sealed => None,
        Integrity::Incomplete { reason } => Some(reason.clone()),
        Integrity::Corrupt { offset, reason } => Some(format!("at offset {offset}: {reason}")),
    };
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(TrailInfo {
        session_id: h.session_id,
        protocol: h.protocol,
        start_time: h.start_time,
        end_time,
        end_unix_us: end_us,
        // A sealed trail's end frame says when it ended; else its last record does.
        duration_seconds: match r.end_summary() {
            Some(e) if integrity == Integrity::Sealed => e.duration_us as f64 / 1e6,
            _ => stats.last_time_us as f64 / 1e6,
        },
        end_reason: stats.end.as_ref().map(|e| e.reason.clone()),
        end_reason_code: stats.end.as_ref().and_then(|e| e.code.clone()),
        terminated_by: stats.end.as_ref().and_then(|e| e.terminated_by.clone()),
        verdict: stats.end.as_ref().and_then(|e| e.verdict.clone()),
        end: stats.end.clone(),
        integrity: integrity.label().into(),
        integrity_detail: detail,
        signing_key_fingerprint: h.signing.fingerprint,
        meta: h.meta,
        records: stats.records,
        frames: r.frames_verified,
        bytes_client_to_server: stats.bytes_client_to_server,
        bytes_server_to_client: stats.bytes_server_to_client,
        file_bytes,
        zstd_level: h.zstd_level,
        zstd_fast_level: h.zstd_fast_level,
        channels: stats
            .channels
            .into_values()
            .map(|c| ChannelInfo {
                id: c.id,
                label: c.label(),
                stats: c,
            })
            .collect(),
        vnc: vnc.finish(),
    })
}

/// The terminal channel to export or play when none is named: the first session channel with a
/// pty, else the first session channel.
pub fn default_terminal_channel(path: &Path) -> Result<u32> {
    let i = info(path)?;
    i.channels
        .iter()
        .find(|c| c.stats.kind == "session" && c.stats.term.is_some())
        .or_else(|| i.channels.iter().find(|c| c.stats.kind == "session"))
        .map(|c| c.id)
        .ok_or_else(|| RecorderError::Record("trail has no terminal channel".into()))
}

/// Incremental UTF-8 decoding: output split across records must not turn into replacement
/// characters at the split.
#[derive(Default)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, data: &[u8]) -> String {
        self.carry.extend_from_slice(data);
        let valid_upto = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.carry.len(),
        };
        let rest = self.carry.split_off(valid_upto);
        let s = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry = rest;
        s
    }
}

/// asciicast v2: header line, then `[time, "o"|"i"|"r", data]` events, one JSON value per line.
pub fn asciicast(
    path: &Path,
    channel: Option<u32>,
    input: bool,
    out: &mut dyn Write,
) -> Result<Integrity> {
    let channel = match channel {
        Some(c) => {
            require_channel(path, c)?;
            c
        }
        None => default_terminal_channel(path)?,
    };
    let mut r = TrailReader::open(path)?;
    let mut header_written = false;
    let mut base = None::<u64>;
    let mut size = (80u32, 24u32);
    let mut term = None::<String>;
    let mut o = Utf8Stream::default();
    let mut i = Utf8Stream::default();
    let start_unix = r.header.start_unix_us / 1_000_000;
    let title = format!(
        "{} {}",
        r.header.meta.gateway_user.clone().unwrap_or_default(),
        r.header.meta.target_name.clone().unwrap_or_default()
    );
    let write_header = |out: &mut dyn Write,
                        size: (u32, u32),
                        term: &Option<String>,
                        t0: u64|
     -> Result<()> {
        let mut h = json!({"version": 2, "width": size.0, "height": size.1, "timestamp": start_unix + (t0 / 1_000_000) as i64, "title": title.trim()});
        if let Some(t) = term {
            h["env"] = json!({"TERM": t});
        }
        writeln!(out, "{h}")?;
        Ok(())
    };
    let integrity = loop {
        let Some(item) = r.next_item()? else {
            break r.integrity();
        };
        let records = match item {
            Item::Frame { records, .. } | Item::Partial { records, .. } => records,
            Item::End(_) => continue,
        };
        for rec in records.iter().filter(|r| r.channel == channel) {
            let t0 = *base.get_or_insert(rec.time_us);
            let ts = (rec.time_us - t0) as f64 / 1e6;
            let ev = match &rec.event {
                Event::Request {
                    request:
                        Request::Pty {
                            term: t,
                            cols,
                            rows,
                            ..
                        },
                    ..
                } if !header_written => {
                    // A pty of 0x0 (clients that do not know their size) plays as 80x24.
                    size = if *cols == 0 || *rows == 0 {
                        (80, 24)
                    } else {
                        (*cols, *rows)
                    };
                    term = Some(t.clone());
                    None
                }
                Event::Request {
                    request: Request::WindowChange { cols, rows, .. },
                    ..
                } => Some(json!([ts, "r", format!("{cols}x{rows}")])),
                Event::Data {
                    dir: Direction::ServerToClient,
                    data,
                }
                | Event::ExtendedData {
                    dir: Direction::ServerToClient,
                    data,
                    ..
                } => Some(json!([ts, "o", o.push(data)])),
                Event::Data {
                    dir: Direction::ClientToServer,
                    data,
                } if input => Some(json!([ts, "i", i.push(data)])),
                _ => None,
            };
            if let Some(ev) = ev {
                if !header_written {
                    write_header(out, size, &term, t0)?;
                    header_written = true;
                }
                writeln!(out, "{ev}")?;
            }
        }
    };
    if !header_written {
        write_header(out, size, &term, base.unwrap_or(0))?;
    }
    out.flush()?;
    Ok(integrity)
}

/// Replays a terminal channel's output with its original timing (scaled by `speed`, pauses capped
/// at `idle_limit`). `sleep` is injected so the pacing is testable without waiting.
pub fn play(
    path: &Path,
    channel: Option<u32>,
    speed: f64,
    idle_limit: Option<Duration>,
    out: &mut dyn Write,
    sleep: &mut dyn FnMut(Duration),
) -> Result<Integrity> {
    let channel = match channel {
        Some(c) => {
            require_channel(path, c)?;
            c
        }
        None => default_terminal_channel(path)?,
    };
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut r = TrailReader::open(path)?;
    let mut last = None::<u64>;
    r.for_each_record(|rec| {
        if rec.channel != channel {
            return Ok(());
        }
        if let Event::Data {
            dir: Direction::ServerToClient,
            data,
        }
        | Event::ExtendedData {
            dir: Direction::ServerToClient,
            data,
            ..
        } = &rec.event
        {
            if let Some(prev) = last {
                let mut gap = Duration::from_micros(rec.time_us - prev);
                if let Some(limit) = idle_limit {
                    gap = gap.min(limit);
                }
                let gap = gap.div_f64(speed);
                if !gap.is_zero() {
                    sleep(gap);
                }
            }
            last = Some(rec.time_us);
            out.write_all(data)?;
            out.flush()?;
        }
        Ok(())
    })
}
