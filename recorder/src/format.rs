//! The trail format, version 2: pure encoding and decoding, no I/O.
//!
//! A trail is a sequence of zstd frames, so the whole file is one valid zstd stream:
//!
//! ```text
//! [header: skippable 0x184D2A50] ([data: zstd frame] [chain: skippable 0x184D2A51])* [end: 0x184D2A52] [seal: 0x184D2A53]
//! ```
//!
//! See `docs/trail-format.md` for the normative description.

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RecorderError, Result};

pub const FORMAT_VERSION: u16 = 2;
/// Oldest format version readers still accept (v1: record heads and payloads interleaved).
pub const MIN_FORMAT_VERSION: u16 = 1;
pub const HEADER_TAG: &[u8; 8] = b"TGTRAIL\0";
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;
pub const SKIP_HEADER: u32 = 0x184D_2A50;
pub const SKIP_CHAIN: u32 = 0x184D_2A51;
pub const SKIP_END: u32 = 0x184D_2A52;
pub const SKIP_SEAL: u32 = 0x184D_2A53;
/// Bytes of a skippable frame's magic + size prefix.
pub const SKIP_PREFIX: usize = 8;
/// Fixed body sizes: a seal or chain frame of any other size is corrupt, never "torn".
pub const CHAIN_BODY_LEN: usize = 8 + 8 + 4 + 4 + 4 + 8 + 8 + 32 + 64;
/// Portion of the chain body covered by the chain hash (everything before hash and signature).
pub const CHAIN_HASHED_LEN: usize = CHAIN_BODY_LEN - 32 - 64;
pub const SEAL_BODY_LEN: usize = 32 + 32 + 64;
pub const SEAL_FRAME_LEN: usize = SKIP_PREFIX + SEAL_BODY_LEN;
/// Upper bound for header and end frames; anything larger is treated as corrupt.
pub const MAX_META_FRAME: usize = 64 << 20;

const DOMAIN_H0: &[u8] = b"trailgate-trail-v1/header";
const DOMAIN_CHAIN_SIG: &[u8] = b"trailgate-trail-v1/chain";
const DOMAIN_SEAL_SIG: &[u8] = b"trailgate-trail-v1/seal";

// ---------------------------------------------------------------------------------------------
// varints (LEB128)

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Decodes a varint; `Ok(None)` when `buf` ends inside it.
pub fn get_varint(buf: &[u8]) -> Result<Option<(u64, usize)>> {
    let mut v: u64 = 0;
    for (i, b) in buf.iter().enumerate() {
        if i >= 10 {
            return Err(RecorderError::Record("varint longer than 10 bytes".into()));
        }
        v |= u64::from(b & 0x7f)
            .checked_shl(7 * i as u32)
            .ok_or_else(|| RecorderError::Record("varint overflow".into()))?;
        if b & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// records

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Direction {
    #[serde(rename = "c2s")]
    ClientToServer,
    #[serde(rename = "s2c")]
    ServerToClient,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "c2s" => Ok(Direction::ClientToServer),
            "s2c" => Ok(Direction::ServerToClient),
            other => Err(format!("direction must be c2s or s2c, not {other:?}")),
        }
    }
}

/// A network endpoint as recorded (kept as text: it is metadata, not something we connect to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u32,
}

/// What a channel is, recorded when it opens (or is denied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOpen {
    /// `session`, `direct-tcpip`, `forwarded-tcpip`, `x11`, `auth-agent@openssh.com`, `vnc`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<Endpoint>,
    /// Why it was refused, for a denied channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Channel requests and their replies' outcome, as relayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        #[serde(default)]
        width_px: u32,
        #[serde(default)]
        height_px: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        modes: Vec<(u8, u32)>,
    },
    WindowChange {
        cols: u32,
        rows: u32,
        #[serde(default)]
        width_px: u32,
        #[serde(default)]
        height_px: u32,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec {
        command: String,
    },
    Subsystem {
        name: String,
    },
    Signal {
        signal: String,
    },
    ExitStatus {
        status: u32,
    },
    ExitSignal {
        signal: String,
        #[serde(default)]
        core_dumped: bool,
        #[serde(default)]
        message: String,
    },
    X11 {
        single_connection: bool,
        auth_protocol: String,
        screen: u32,
    },
    AgentForward,
    TcpipForward {
        address: String,
        port: u32,
    },
    CancelTcpipForward {
        address: String,
        port: u32,
    },
    /// A request the policy refused or the target failed; `request` names it.
    Refused {
        request: String,
        reason: String,
    },
    Other {
        name: String,
    },
}

/// Why and how a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionEnd {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_by: Option<String>,
    /// The session record's `end_reason_code` and `status` (absent in older trails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Data {
        dir: Direction,
        data: Bytes,
    },
    ExtendedData {
        dir: Direction,
        code: u32,
        data: Bytes,
    },
    Open(ChannelOpen),
    Denied(ChannelOpen),
    Request {
        dir: Direction,
        request: Request,
    },
    Eof {
        dir: Direction,
    },
    Close,
    /// A session-level note (channel 0 by convention): authentication, policy decisions.
    Note(serde_json::Value),
    End(SessionEnd),
}

/// One record: an event on a channel at a time (microseconds since session start).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub channel: u32,
    pub time_us: u64,
    pub event: Event,
}

/// Gaps of at least this many microseconds are recorded to the millisecond.
pub const COARSE_DT_FROM_US: u64 = 10_000;
/// Gaps from this many microseconds up to [`COARSE_DT_FROM_US`] are recorded to 100 µs (v2).
pub const FINE_DT_FROM_US: u64 = 1_000;

/// Exact time delta on the wire: `µs << 1` (any value; v1 and v2).
pub fn dt_wire_exact(us: u64) -> u64 {
    us << 1
}

/// Time delta on the wire (format v2), and the delta a reader will reconstruct from it. Gaps
/// under 1 ms stay exact (`µs << 1`); gaps of 1-10 ms are stored to 100 µs (`n << 2 | 1`), longer
/// ones to the millisecond (`ms << 2 | 3`): human-scale pauses (keystrokes, echoes) need no
/// microseconds, and the coarser values compress far better. Relative error stays under 5%.
pub fn dt_wire(us: u64) -> (u64, u64) {
    if us >= COARSE_DT_FROM_US {
        let ms = (us + 500) / 1000;
        ((ms << 2) | 3, ms * 1000)
    } else if us >= FINE_DT_FROM_US {
        let n = (us + 50) / 100;
        ((n << 2) | 1, n * 100)
    } else {
        (us << 1, us)
    }
}

/// Reconstructed delta of a v2 wire time.
pub fn dt_from_wire(w: u64) -> u64 {
    match w & 3 {
        1 => (w >> 2).saturating_mul(100),
        3 => (w >> 2).saturating_mul(1000),
        _ => w >> 1,
    }
}

/// Reconstructed delta of a v1 wire time (`µs << 1`, or `ms << 1 | 1`).
pub fn dt_from_wire_v1(w: u64) -> u64 {
    if w & 1 == 1 {
        (w >> 1).saturating_mul(1000)
    } else {
        w >> 1
    }
}

/// Wire kinds. A record is its kind, channel, time delta ([`dt_wire`]) and a payload of `len`
/// bytes: v2 keeps them in a [`Batch`]'s columns, v1 wrote `kind | channel | dt | len | payload`.
mod kind {
    pub const DATA_C2S: u8 = 1;
    pub const DATA_S2C: u8 = 2;
    pub const EXT_C2S: u8 = 3;
    pub const EXT_S2C: u8 = 4;
    pub const EOF_C2S: u8 = 5;
    pub const EOF_S2C: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const OPEN: u8 = 8;
    pub const DENIED: u8 = 9;
    pub const REQ_C2S: u8 = 10;
    pub const REQ_S2C: u8 = 11;
    pub const NOTE: u8 = 12;
    pub const END: u8 = 13;
}

/// Wire kind of a data record in one direction.
pub fn data_kind(dir: Direction) -> u8 {
    match dir {
        Direction::ClientToServer => kind::DATA_C2S,
        Direction::ServerToClient => kind::DATA_S2C,
    }
}

/// Wire kind of an extended-data record in one direction.
fn ext_kind(dir: Direction) -> u8 {
    match dir {
        Direction::ClientToServer => kind::EXT_C2S,
        Direction::ServerToClient => kind::EXT_S2C,
    }
}

/// Appends a record's payload to `payloads` and returns its wire kind.
fn put_payload(payloads: &mut Vec<u8>, event: &Event) -> Result<u8> {
    Ok(match event {
        Event::Data { dir, data } => {
            payloads.extend_from_slice(data);
            data_kind(*dir)
        }
        Event::ExtendedData { dir, code, data } => {
            put_varint(payloads, u64::from(*code));
            payloads.extend_from_slice(data);
            ext_kind(*dir)
        }
        Event::Eof { dir } => match dir {
            Direction::ClientToServer => kind::EOF_C2S,
            Direction::ServerToClient => kind::EOF_S2C,
        },
        Event::Close => kind::CLOSE,
        Event::Open(o) => put_json(payloads, kind::OPEN, o)?,
        Event::Denied(o) => put_json(payloads, kind::DENIED, o)?,
        Event::Request { dir, request } => {
            let k = match dir {
                Direction::ClientToServer => kind::REQ_C2S,
                Direction::ServerToClient => kind::REQ_S2C,
            };
            put_json(payloads, k, request)?
        }
        Event::Note(v) => put_json(payloads, kind::NOTE, v)?,
        Event::End(e) => put_json(payloads, kind::END, e)?,
    })
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, k: u8, v: &T) -> Result<u8> {
    serde_json::to_writer(&mut *out, v)?;
    Ok(k)
}

/// Format v1 encoding of one record (`kind | channel | dt | len | payload`), for recovering
/// old trails.
pub fn encode_record_v1(out: &mut Vec<u8>, channel: u32, dt: u64, event: &Event) -> Result<()> {
    let mut p = Vec::new();
    let k = put_payload(&mut p, event)?;
    out.push(k);
    put_varint(out, u64::from(channel));
    put_varint(out, dt);
    put_varint(out, p.len() as u64);
    out.extend_from_slice(&p);
    Ok(())
}

/// A batch of records as format v2 stores them in a data frame, in three columns:
/// `heads_len varint | times_len varint | heads | times | payloads`, where a head is
/// `kind u8 | channel varint | len varint` and a time is the record's `dt` ([`dt_wire`]).
/// Keeping the small, repetitive heads and the times apart from the payloads lets zstd compress
/// each far better than interleaved (keystroke traffic is mostly heads and times). The writer
/// makes one batch per flush or chunk, so a flushed frame always ends on a batch boundary.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) heads: Vec<u8>,
    pub(crate) times: Vec<u8>,
    /// The payload column's own bytes; large data payloads are not copied in (see `shared`),
    /// so its length is an offset into the column, not the column's length. Only appended to
    /// between [`clear`](Self::clear)s: `shared` holds offsets into it.
    pub(crate) payloads: Vec<u8>,
    /// Data payloads of at least [`SHARE_MIN`] bytes, held by reference: `(at, data)` stands
    /// in the column before `payloads[at..]`. A bulk transfer's bytes then go from the SSH
    /// packet to zstd without an intermediate copy into the batch (or the page faults of
    /// growing one).
    shared: Vec<(usize, Bytes)>,
    shared_len: usize,
    pub(crate) records: u32,
}

/// Data payloads this large are referenced by a [`Batch`], not copied into it. The budget
/// charges a record its payload's length, which is what holding it costs as long as the
/// `Bytes` owns exactly its payload: russh 0.65 decodes channel data into an exact-size buffer
/// of its own (ssh-encoding's `Bytes::decode`), never a slice of the packet buffer.
pub const SHARE_MIN: usize = 16 * 1024;

impl Batch {
    /// Appends a record; `dt` as for [`dt_wire`] (the frame's first record: [`dt_wire_exact`] of
    /// its time since session start).
    pub fn push(&mut self, channel: u32, dt: u64, event: &Event) -> Result<()> {
        let before = self.payloads.len() + self.shared_len;
        let k = match event {
            Event::Data { dir, data } if data.len() >= SHARE_MIN => {
                self.share(data);
                data_kind(*dir)
            }
            Event::ExtendedData { dir, code, data } if data.len() >= SHARE_MIN => {
                put_varint(&mut self.payloads, u64::from(*code));
                self.share(data);
                ext_kind(*dir)
            }
            _ => put_payload(&mut self.payloads, event)?,
        };
        let len = self.payloads.len() + self.shared_len - before;
        self.push_head(k, channel, dt, len);
        Ok(())
    }

    /// Appends a data record whose payload is held by reference, not copied (any size; the
    /// writer uses it for payloads of at least [`SHARE_MIN`]).
    pub fn push_shared_data(&mut self, channel: u32, dt: u64, dir: Direction, data: &Bytes) {
        self.share(data);
        self.push_head(data_kind(dir), channel, dt, data.len());
    }

    /// Appends `data` to the payload column by reference.
    fn share(&mut self, data: &Bytes) {
        self.shared.push((self.payloads.len(), data.clone()));
        self.shared_len += data.len();
    }

    /// The payload column in order, as slices of the batch's own bytes and shared payloads.
    pub fn payload_parts(&self) -> impl Iterator<Item = &[u8]> {
        let mut from = 0;
        let tail = self.shared.last().map_or(0, |(at, _)| *at);
        self.shared
            .iter()
            .flat_map(move |(at, data)| {
                let own = &self.payloads[from..*at];
                from = *at;
                [own, &data[..]]
            })
            .chain(std::iter::once(&self.payloads[tail..]))
            .filter(|p| !p.is_empty())
    }

    /// Appends the head and time of a record whose `len` payload bytes were already appended to
    /// `payloads` (the writer merges consecutive small data records in place this way).
    pub fn push_head(&mut self, k: u8, channel: u32, dt: u64, len: usize) {
        self.heads.push(k);
        put_varint(&mut self.heads, u64::from(channel));
        put_varint(&mut self.heads, len as u64);
        put_varint(&mut self.times, dt);
        self.records += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes buffered (columns without the prefix).
    pub fn raw_len(&self) -> usize {
        self.heads.len() + self.times.len() + self.payloads.len() + self.shared_len
    }

    /// The batch's column-length prefix (empty for an empty batch, which encodes to nothing).
    pub fn prefix(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(20);
        self.put_prefix(&mut p);
        p
    }

    fn put_prefix(&self, out: &mut Vec<u8>) {
        if !self.is_empty() {
            put_varint(out, self.heads.len() as u64);
            put_varint(out, self.times.len() as u64);
        }
    }

    pub fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        varint_len(self.heads.len() as u64) + varint_len(self.times.len() as u64) + self.raw_len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        out.reserve(self.encoded_len());
        self.put_prefix(out);
        out.extend_from_slice(&self.heads);
        out.extend_from_slice(&self.times);
        for part in self.payload_parts() {
            out.extend_from_slice(part);
        }
    }

    /// Memory the batch holds: its columns' capacity and the payloads it references.
    #[cfg(test)]
    pub(crate) fn retained(&self) -> usize {
        self.heads.capacity()
            + self.times.capacity()
            + self.payloads.capacity()
            + self.shared.capacity() * std::mem::size_of::<(usize, Bytes)>()
            + self.shared_len
    }

    pub fn clear(&mut self) {
        self.heads.clear();
        self.times.clear();
        self.payloads.clear();
        self.shared.clear();
        self.shared_len = 0;
        self.records = 0;
    }
}

/// `(kind, channel, wire dt, payload len, head len)` of a v1 record.
type HeadV1 = (u8, u32, u64, usize, usize);

/// Parses a v1 record head; `Ok(None)` if `buf` ends inside it.
fn decode_head_v1(buf: &[u8]) -> Result<Option<HeadV1>> {
    let Some(&k) = buf.first() else {
        return Ok(None);
    };
    let mut pos = 1;
    let mut field = || -> Result<Option<u64>> {
        let Some((v, n)) = get_varint(&buf[pos..])? else {
            return Ok(None);
        };
        pos += n;
        Ok(Some(v))
    };
    let (Some(channel), Some(dt), Some(len)) = (field()?, field()?, field()?) else {
        return Ok(None);
    };
    let channel =
        u32::try_from(channel).map_err(|_| RecorderError::Record("channel id too large".into()))?;
    let len = usize::try_from(len).map_err(|_| RecorderError::Record("record too large".into()))?;
    Ok(Some((k, channel, dt, len, pos)))
}

fn decode_event(k: u8, payload: Bytes) -> Result<Event> {
    let dir_of = |c2s: u8| {
        if k == c2s {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    };
    Ok(match k {
        kind::DATA_C2S | kind::DATA_S2C => Event::Data {
            dir: dir_of(kind::DATA_C2S),
            data: payload,
        },
        kind::EXT_C2S | kind::EXT_S2C => {
            let (code, n) = get_varint(&payload)?
                .ok_or_else(|| RecorderError::Record("extended data without code".into()))?;
            let code = u32::try_from(code)
                .map_err(|_| RecorderError::Record("bad extended data code".into()))?;
            Event::ExtendedData {
                dir: dir_of(kind::EXT_C2S),
                code,
                data: payload.slice(n..),
            }
        }
        kind::EOF_C2S | kind::EOF_S2C => Event::Eof {
            dir: dir_of(kind::EOF_C2S),
        },
        kind::CLOSE => Event::Close,
        kind::OPEN => Event::Open(serde_json::from_slice(&payload)?),
        kind::DENIED => Event::Denied(serde_json::from_slice(&payload)?),
        kind::REQ_C2S | kind::REQ_S2C => Event::Request {
            dir: dir_of(kind::REQ_C2S),
            request: serde_json::from_slice(&payload)?,
        },
        kind::NOTE => Event::Note(serde_json::from_slice(&payload)?),
        kind::END => Event::End(serde_json::from_slice(&payload)?),
        other => {
            return Err(RecorderError::Record(format!(
                "unknown record kind {other}"
            )));
        }
    })
}

/// Format v1 (records with heads and payloads interleaved): parses one record from the start of
/// `buf`. Returns channel, delta time, event and encoded length; `Ok(None)` if `buf` ends inside.
pub fn decode_record_v1(buf: &Bytes) -> Result<Option<(u32, u64, Event, usize)>> {
    let Some((k, channel, dt_raw, len, pos)) = decode_head_v1(buf)? else {
        return Ok(None);
    };
    let end = pos
        .checked_add(len)
        .ok_or_else(|| RecorderError::Record("record too large".into()))?;
    if buf.len() < end {
        return Ok(None);
    }
    let event = decode_event(k, buf.slice(pos..end))?;
    Ok(Some((channel, dt_from_wire_v1(dt_raw), event, end)))
}

/// A parsed record with its time still a delta: `(channel, dt µs, event)`.
pub type DeltaRecord = (u32, u64, Event);

/// Parses the batches of one data frame's raw bytes (format v2) into records with delta times
/// (the first one's "delta" is its time since session start). Returns the records and the count
/// of trailing bytes that do not form a whole batch; of a cut-off batch, the records whose
/// payloads are complete are returned, so every prefix of a frame yields a prefix of its records.
pub fn parse_batches(raw: &Bytes) -> Result<(Vec<DeltaRecord>, usize)> {
    let bad = |m: &str| RecorderError::Record(m.to_string());
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < raw.len() {
        let Some((heads_len, n1)) = get_varint(&raw[pos..])? else {
            break;
        };
        let Some((times_len, n2)) = get_varint(&raw[pos + n1..])? else {
            break;
        };
        let heads_start = pos + n1 + n2;
        let (Ok(heads_len), Ok(times_len)) =
            (usize::try_from(heads_len), usize::try_from(times_len))
        else {
            return Err(bad("batch too large"));
        };
        let Some(times_start) = heads_start.checked_add(heads_len) else {
            return Err(bad("batch too large"));
        };
        let Some(pay) = times_start.checked_add(times_len) else {
            return Err(bad("batch too large"));
        };
        if pay > raw.len() {
            break;
        }
        if heads_len == 0 {
            return Err(bad("empty batch"));
        }
        let (heads, times) = (&raw[heads_start..times_start], &raw[times_start..pay]);
        let (mut h, mut tm, mut p) = (0, 0, pay);
        let mut whole = true;
        while h < heads.len() {
            let k = heads[h];
            let col_end = || bad("batch columns end inside a record");
            let (channel, n) = get_varint(&heads[h + 1..])?.ok_or_else(col_end)?;
            let (len, m) = get_varint(&heads[h + 1 + n..])?.ok_or_else(col_end)?;
            let (dt, d) = get_varint(&times[tm..])?.ok_or_else(col_end)?;
            h += 1 + n + m;
            tm += d;
            let channel = u32::try_from(channel).map_err(|_| bad("channel id too large"))?;
            let Some(end) = usize::try_from(len)
                .ok()
                .and_then(|l| p.checked_add(l))
                .filter(|&e| e <= raw.len())
            else {
                whole = false;
                break;
            };
            out.push((
                channel,
                dt_from_wire(dt),
                decode_event(k, raw.slice(p..end))?,
            ));
            p = end;
        }
        if !whole {
            break;
        }
        if tm != times.len() {
            return Err(bad("batch times and heads disagree"));
        }
        pos = p;
    }
    Ok((out, raw.len() - pos))
}

/// Payload bytes a record carries for accounting (data and extended data only).
pub fn data_len(event: &Event) -> Option<(Direction, usize)> {
    match event {
        Event::Data { dir, data } | Event::ExtendedData { dir, data, .. } => {
            Some((*dir, data.len()))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// header

/// Session metadata carried in the header, so a trail is understood without any database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_address: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningInfo {
    pub algorithm: String,
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailHeader {
    pub format_version: u16,
    pub session_id: String,
    /// `ssh` or `vnc`.
    pub protocol: String,
    /// RFC 3339 with microseconds, UTC.
    pub start_time: String,
    pub start_unix_us: i64,
    pub meta: SessionMeta,
    pub signing: SigningInfo,
    pub zstd_level: i32,
    /// The fastest level a frame may have been written at while the compressor was behind
    /// (absent: every frame is at `zstd_level`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd_fast_level: Option<i32>,
}

pub fn skippable(magic: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SKIP_PREFIX + body.len());
    v.extend_from_slice(&magic.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

pub fn encode_header(h: &TrailHeader) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(HEADER_TAG);
    body.extend_from_slice(&h.format_version.to_le_bytes());
    serde_json::to_writer(&mut body, h)?;
    Ok(skippable(SKIP_HEADER, &body))
}

pub fn decode_header_body(body: &[u8]) -> Result<TrailHeader> {
    if body.len() < 10 || &body[..8] != HEADER_TAG {
        return Err(RecorderError::NotATrail("header tag missing".into()));
    }
    let version = u16::from_le_bytes([body[8], body[9]]);
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(RecorderError::UnsupportedVersion(version));
    }
    Ok(serde_json::from_slice(&body[10..])?)
}

/// h0: the chain's starting point, binding the header (and so the signing key) to every frame.
pub fn header_hash(header_frame: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN_H0);
    h.update(header_frame);
    h.finalize().into()
}

// ---------------------------------------------------------------------------------------------
// chain

/// Follows every data frame: where the frame is, what it holds, and the chain hash through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    pub seq: u64,
    pub data_offset: u64,
    pub data_len: u32,
    pub raw_len: u32,
    pub records: u32,
    pub first_time_us: u64,
    pub last_time_us: u64,
    #[serde(serialize_with = "ser_hex")]
    pub hash: [u8; 32],
    #[serde(skip)]
    pub signature: [u8; 64],
}

fn ser_hex<S: serde::Serializer>(v: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl ChainEntry {
    pub fn hashed_prefix(&self) -> [u8; CHAIN_HASHED_LEN] {
        let mut b = [0u8; CHAIN_HASHED_LEN];
        let mut w = &mut b[..];
        for part in [
            &self.seq.to_le_bytes()[..],
            &self.data_offset.to_le_bytes(),
            &self.data_len.to_le_bytes(),
            &self.raw_len.to_le_bytes(),
            &self.records.to_le_bytes(),
            &self.first_time_us.to_le_bytes(),
            &self.last_time_us.to_le_bytes(),
        ] {
            w[..part.len()].copy_from_slice(part);
            w = &mut w[part.len()..];
        }
        b
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(CHAIN_BODY_LEN);
        body.extend_from_slice(&self.hashed_prefix());
        body.extend_from_slice(&self.hash);
        body.extend_from_slice(&self.signature);
        skippable(SKIP_CHAIN, &body)
    }

    pub fn decode_body(body: &[u8]) -> Result<Self> {
        if body.len() != CHAIN_BODY_LEN {
            return Err(RecorderError::Record(format!(
                "chain frame body of {} bytes",
                body.len()
            )));
        }
        let mut b = body;
        let e = ChainEntry {
            seq: b.get_u64_le(),
            data_offset: b.get_u64_le(),
            data_len: b.get_u32_le(),
            raw_len: b.get_u32_le(),
            records: b.get_u32_le(),
            first_time_us: b.get_u64_le(),
            last_time_us: b.get_u64_le(),
            hash: b[..32]
                .try_into()
                .map_err(|_| RecorderError::Record("chain hash".into()))?,
            signature: b[32..96]
                .try_into()
                .map_err(|_| RecorderError::Record("chain signature".into()))?,
        };
        Ok(e)
    }

    /// The message a chain entry's checkpoint signature covers.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN_CHAIN_SIG.len() + 32);
        m.extend_from_slice(DOMAIN_CHAIN_SIG);
        m.extend_from_slice(&self.hash);
        m
    }
}

/// Streaming chain hash over one data frame: `H(prev || frame bytes || chain prefix)`.
pub struct ChainHasher(Sha256);

impl ChainHasher {
    pub fn new(prev: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(prev);
        ChainHasher(h)
    }
    pub fn update(&mut self, frame_bytes: &[u8]) {
        self.0.update(frame_bytes);
    }
    pub fn finish(mut self, entry_prefix: &[u8]) -> [u8; 32] {
        self.0.update(entry_prefix);
        self.0.finalize().into()
    }
}

// ---------------------------------------------------------------------------------------------
// end and seal

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub denied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// A shell was requested (absent in older trails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    pub start_time_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_us: Option<u64>,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
}

impl ChannelStats {
    /// The channel's kind, named as everywhere else (see [`crate::record::channel_kind`]).
    pub fn label(&self) -> String {
        crate::record::channel_kind(
            &self.kind,
            self.command.as_deref(),
            self.subsystem.as_deref(),
            self.shell,
        )
    }
}

/// Seek index entry: a data frame's offset and first timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub offset: u64,
    pub time_us: u64,
    pub first_record: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndSummary {
    pub end_time: String,
    pub end_unix_us: i64,
    pub duration_us: u64,
    pub end: SessionEnd,
    pub records: u64,
    pub frames: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub channels: Vec<ChannelStats>,
    pub index: Vec<IndexEntry>,
}

pub fn encode_end(e: &EndSummary) -> Result<Vec<u8>> {
    Ok(skippable(SKIP_END, &serde_json::to_vec(e)?))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub chain_head: [u8; 32],
    pub end_hash: [u8; 32],
    pub signature: [u8; 64],
}

impl Seal {
    pub fn message(chain_head: &[u8; 32], end_hash: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN_SEAL_SIG.len() + 64);
        m.extend_from_slice(DOMAIN_SEAL_SIG);
        m.extend_from_slice(chain_head);
        m.extend_from_slice(end_hash);
        m
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(SEAL_BODY_LEN);
        body.extend_from_slice(&self.chain_head);
        body.extend_from_slice(&self.end_hash);
        body.extend_from_slice(&self.signature);
        skippable(SKIP_SEAL, &body)
    }
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        if body.len() != SEAL_BODY_LEN {
            return Err(RecorderError::Record(format!(
                "seal body of {} bytes",
                body.len()
            )));
        }
        let bad = |_| RecorderError::Record("seal".into());
        Ok(Seal {
            chain_head: body[..32].try_into().map_err(bad)?,
            end_hash: body[32..64].try_into().map_err(bad)?,
            signature: body[64..].try_into().map_err(bad)?,
        })
    }
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large payloads are held by reference; the batch must encode exactly as if every payload
    /// had been copied into the column, in record order, and parse back to the same records.
    #[test]
    fn shared_large_payloads_encode_in_record_order() {
        let big = |n: usize, seed: u8| {
            Bytes::from(
                (0..n)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect::<Vec<_>>(),
            )
        };
        let events = vec![
            Event::Data {
                dir: Direction::ServerToClient,
                data: big(SHARE_MIN, 1),
            },
            Event::Data {
                dir: Direction::ClientToServer,
                data: Bytes::from_static(b"ls\r"),
            },
            Event::ExtendedData {
                dir: Direction::ServerToClient,
                code: 1,
                data: big(SHARE_MIN + 7, 2),
            },
            Event::ExtendedData {
                dir: Direction::ServerToClient,
                code: 1,
                data: Bytes::from_static(b"warning"),
            },
            Event::Data {
                dir: Direction::ServerToClient,
                data: big(SHARE_MIN - 1, 3),
            },
            Event::Data {
                dir: Direction::ServerToClient,
                data: big(40_000, 4),
            },
            Event::Data {
                dir: Direction::ServerToClient,
                data: big(70_000, 5),
            },
            Event::Eof {
                dir: Direction::ServerToClient,
            },
        ];
        let mut batch = Batch::default();
        let mut copied = Vec::new();
        for (i, e) in events.iter().enumerate() {
            batch.push(7, i as u64, e).unwrap();
            put_payload(&mut copied, e).unwrap();
        }
        assert_eq!(
            batch.payloads.len(),
            copied.len() - (SHARE_MIN + SHARE_MIN + 7 + 40_000 + 70_000)
        );
        let column: Vec<u8> = batch.payload_parts().flatten().copied().collect();
        assert_eq!(column, copied, "payload column");
        assert_eq!(
            batch.raw_len(),
            batch.heads.len() + batch.times.len() + copied.len()
        );
        let mut enc = Vec::new();
        batch.encode_into(&mut enc);
        assert_eq!(enc.len(), batch.encoded_len());
        let (records, rest) = parse_batches(&Bytes::from(enc)).unwrap();
        assert_eq!(rest, 0);
        let got: Vec<Event> = records
            .into_iter()
            .map(|(ch, _, e)| {
                assert_eq!(ch, 7);
                e
            })
            .collect();
        assert_eq!(got, events);
        batch.clear();
        assert_eq!(
            (
                batch.raw_len(),
                batch.encoded_len(),
                batch.payload_parts().count()
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn coarse_deltas_round_to_the_millisecond_and_short_ones_stay_exact() {
        assert_eq!(dt_from_wire(dt_wire(999).0), 999);
        assert_eq!(dt_wire(9_949), ((99 << 2) | 1, 9_900));
        assert_eq!(dt_from_wire(dt_wire(1_050).0), 1_100);
        assert_eq!(dt_wire(10_499), ((10 << 2) | 3, 10_000));
        assert_eq!(dt_from_wire_v1((10 << 1) | 1), 10_000);
        assert_eq!(dt_from_wire(dt_wire(150_501).0), 151_000);
        assert_eq!(dt_from_wire(dt_wire_exact(123_456_789)), 123_456_789);
    }

    #[test]
    fn varint_roundtrip_and_truncation() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint_len(v), b.len());
            assert_eq!(get_varint(&b).unwrap(), Some((v, b.len())));
            assert_eq!(get_varint(&b[..b.len() - 1]).unwrap(), None);
        }
        assert!(get_varint(&[0xff; 11]).is_err());
    }

    #[test]
    fn record_roundtrip_all_kinds() {
        let events = vec![
            Event::Data {
                dir: Direction::ClientToServer,
                data: Bytes::from_static(b"ls\r"),
            },
            Event::Data {
                dir: Direction::ServerToClient,
                data: Bytes::from(vec![0u8; 70000]),
            },
            Event::ExtendedData {
                dir: Direction::ServerToClient,
                code: 1,
                data: Bytes::from_static(b"err"),
            },
            Event::Open(ChannelOpen {
                kind: "direct-tcpip".into(),
                originator: Some(Endpoint {
                    host: "127.0.0.1".into(),
                    port: 5,
                }),
                connected: None,
                reason: None,
            }),
            Event::Request {
                dir: Direction::ClientToServer,
                request: Request::Exec {
                    command: "id".into(),
                },
            },
            Event::Request {
                dir: Direction::ServerToClient,
                request: Request::ExitStatus { status: 3 },
            },
            Event::Eof {
                dir: Direction::ServerToClient,
            },
            Event::Close,
            Event::End(SessionEnd {
                reason: "client disconnected".into(),
                ..Default::default()
            }),
        ];
        let mut batch = Batch::default();
        for (i, e) in events.iter().enumerate() {
            batch
                .push(i as u32, dt_wire_exact(i as u64 * 1000), e)
                .unwrap();
        }
        let mut buf = Vec::new();
        batch.encode_into(&mut buf);
        assert_eq!(buf.len(), batch.encoded_len());
        // Two batches back to back, then every cut: whole records only, always a prefix.
        buf.extend_from_slice(&buf.clone());
        let full = Bytes::from(buf);
        let (recs, rest) = parse_batches(&full).unwrap();
        assert_eq!(rest, 0);
        assert_eq!(recs.len(), 2 * events.len());
        for (i, (ch, dt, ev)) in recs.iter().enumerate() {
            let j = i % events.len();
            assert_eq!((*ch, *dt, ev), (j as u32, j as u64 * 1000, &events[j]));
        }
        for cut in 0..full.len() {
            let (part, rest) = parse_batches(&full.slice(..cut)).unwrap();
            assert!(part.len() < recs.len());
            assert_eq!(&recs[..part.len()], &part[..]);
            assert!(rest > 0 || cut == 0 || cut == batch.encoded_len());
        }
    }

    #[test]
    fn v1_records_still_decode() {
        // kind 2 (data s2c), channel 3, dt 5 µs exact, 2 bytes.
        let b = Bytes::from_static(&[2, 3, 10, 2, b'h', b'i']);
        let (ch, dt, ev, n) = decode_record_v1(&b).unwrap().unwrap();
        assert_eq!((ch, dt, n), (3, 5, 6));
        assert_eq!(
            ev,
            Event::Data {
                dir: Direction::ServerToClient,
                data: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(decode_record_v1(&b.slice(..5)).unwrap(), None);
    }
}
