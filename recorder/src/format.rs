//! The trail format, version 1: pure encoding and decoding, no I/O.
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

pub const FORMAT_VERSION: u16 = 1;
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

/// Exact time delta on the wire: `µs << 1`.
pub fn dt_wire_exact(us: u64) -> u64 {
    us << 1
}

/// Time delta on the wire, and the delta a reader will reconstruct from it. Gaps of 10 ms or
/// more are stored as `ms << 1 | 1`: human-scale pauses (keystrokes) need no microseconds, and
/// the coarser value compresses far better. Shorter gaps stay exact.
pub fn dt_wire(us: u64) -> (u64, u64) {
    if us >= COARSE_DT_FROM_US {
        let ms = (us + 500) / 1000;
        ((ms << 1) | 1, ms * 1000)
    } else {
        (us << 1, us)
    }
}

pub fn dt_from_wire(w: u64) -> u64 {
    if w & 1 == 1 {
        (w >> 1).saturating_mul(1000)
    } else {
        w >> 1
    }
}

/// Wire kinds. Every record is `kind u8 | channel varint | dt varint | len varint | payload`,
/// where `dt` is encoded by [`dt_wire`].
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

fn put_head(out: &mut Vec<u8>, k: u8, channel: u32, dt: u64, len: usize) {
    out.push(k);
    put_varint(out, u64::from(channel));
    put_varint(out, dt);
    put_varint(out, len as u64);
}

/// Appends one record. `dt` is the wire form ([`dt_wire`]) of the time since the previous record
/// in this frame (or, for a frame's first record, [`dt_wire_exact`] of its time since the
/// frame's base time for its first record).
pub fn encode_record(out: &mut Vec<u8>, channel: u32, dt: u64, event: &Event) -> Result<()> {
    match event {
        Event::Data { dir, data } => {
            let k = match dir {
                Direction::ClientToServer => kind::DATA_C2S,
                Direction::ServerToClient => kind::DATA_S2C,
            };
            put_head(out, k, channel, dt, data.len());
            out.extend_from_slice(data);
        }
        Event::ExtendedData { dir, code, data } => {
            let k = match dir {
                Direction::ClientToServer => kind::EXT_C2S,
                Direction::ServerToClient => kind::EXT_S2C,
            };
            let mut c = Vec::with_capacity(5);
            put_varint(&mut c, u64::from(*code));
            put_head(out, k, channel, dt, c.len() + data.len());
            out.extend_from_slice(&c);
            out.extend_from_slice(data);
        }
        Event::Eof { dir } => {
            let k = match dir {
                Direction::ClientToServer => kind::EOF_C2S,
                Direction::ServerToClient => kind::EOF_S2C,
            };
            put_head(out, k, channel, dt, 0);
        }
        Event::Close => put_head(out, kind::CLOSE, channel, dt, 0),
        Event::Open(o) => put_json(out, kind::OPEN, channel, dt, o)?,
        Event::Denied(o) => put_json(out, kind::DENIED, channel, dt, o)?,
        Event::Request { dir, request } => {
            let k = match dir {
                Direction::ClientToServer => kind::REQ_C2S,
                Direction::ServerToClient => kind::REQ_S2C,
            };
            put_json(out, k, channel, dt, request)?
        }
        Event::Note(v) => put_json(out, kind::NOTE, channel, dt, v)?,
        Event::End(e) => put_json(out, kind::END, channel, dt, e)?,
    }
    Ok(())
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, k: u8, channel: u32, dt: u64, v: &T) -> Result<()> {
    let body = serde_json::to_vec(v)?;
    put_head(out, k, channel, dt, body.len());
    out.extend_from_slice(&body);
    Ok(())
}

/// Parses one record from the start of `buf` (a slice of a decompressed frame). Returns the
/// record's channel, delta time, event and encoded length; `Ok(None)` if `buf` ends inside it.
pub fn decode_record(buf: &Bytes) -> Result<Option<(u32, u64, Event, usize)>> {
    let Some(&k) = buf.first() else {
        return Ok(None);
    };
    let mut pos = 1;
    let Some((channel, n)) = get_varint(&buf[pos..])? else {
        return Ok(None);
    };
    pos += n;
    let Some((dt_raw, n)) = get_varint(&buf[pos..])? else {
        return Ok(None);
    };
    pos += n;
    let Some((len, n)) = get_varint(&buf[pos..])? else {
        return Ok(None);
    };
    pos += n;
    let channel =
        u32::try_from(channel).map_err(|_| RecorderError::Record("channel id too large".into()))?;
    let len = usize::try_from(len).map_err(|_| RecorderError::Record("record too large".into()))?;
    let end = pos
        .checked_add(len)
        .ok_or_else(|| RecorderError::Record("record too large".into()))?;
    if buf.len() < end {
        return Ok(None);
    }
    let payload = buf.slice(pos..end);
    let dir_of = |c2s: u8| {
        if k == c2s {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    };
    let event = match k {
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
    };
    Ok(Some((channel, dt_from_wire(dt_raw), event, end)))
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
    if version != FORMAT_VERSION {
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
    /// Vendor-style type label: `session shell`, `session exec`, `session subsystem sftp`, ...
    pub fn label(&self) -> String {
        if self.kind == "session" {
            if self.command.is_some() {
                return "session exec".into();
            }
            if let Some(s) = &self.subsystem {
                return format!("session subsystem {s}");
            }
            if self.term.is_some() || self.kind == "session" {
                return "session shell".into();
            }
        }
        self.kind.clone()
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

    #[test]
    fn coarse_deltas_round_to_the_millisecond_and_short_ones_stay_exact() {
        assert_eq!(dt_from_wire(dt_wire(9_999).0), 9_999);
        assert_eq!(dt_wire(10_499), ((10 << 1) | 1, 10_000));
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
        let mut buf = Vec::new();
        for (i, e) in events.iter().enumerate() {
            encode_record(&mut buf, i as u32, dt_wire_exact(i as u64 * 1000), e).unwrap();
        }
        let mut b = Bytes::from(buf);
        for (i, e) in events.iter().enumerate() {
            let (ch, dt, ev, n) = decode_record(&b).unwrap().unwrap();
            assert_eq!((ch, dt, &ev), (i as u32, i as u64 * 1000, e));
            b.advance(n);
        }
        assert!(b.is_empty());
    }
}
