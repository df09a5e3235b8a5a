//! `TrailReader`: reads complete, crashed and still-being-written trails, verifying as it goes.
//!
//! The reader walks frames with positioned reads (no whole-file buffering), checks every chain link
//! and checkpoint signature, and yields records frame by frame. A trail that ends inside a frame
//! yields the flushed part of that frame as unverified records; a live trail can be polled again to
//! continue where it stopped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};

use crate::error::{RecorderError, Result};
use crate::format::*;
use crate::keys;
use crate::scan::{FrameKind, Scan, scan_frame};

/// The integrity verdict on a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Sealed, every frame and the seal verified.
    Sealed,
    /// Intact but not sealed (crashed session, or still being written).
    Incomplete { reason: String },
    /// Tampered or corrupt at `offset`.
    Corrupt { offset: u64, reason: String },
}

impl Integrity {
    pub fn label(&self) -> &'static str {
        match self {
            Integrity::Sealed => "sealed",
            Integrity::Incomplete { .. } => "incomplete",
            Integrity::Corrupt { .. } => "corrupt",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Item {
    /// A verified data frame. `records` excludes those already yielded as `Partial`.
    Frame {
        entry: ChainEntry,
        records: Vec<Record>,
    },
    /// Records from a frame that is not (yet) finished: flushed, readable, not yet verifiable.
    Partial {
        offset: u64,
        records: Vec<Record>,
    },
    End(Box<EndSummary>),
}

pub struct TrailReader {
    file: File,
    path: PathBuf,
    pub header: TrailHeader,
    key: VerifyingKey,
    pos: u64,
    chain_head: [u8; 32],
    seq: u64,
    /// Trail claims a seal (found at its end when opened): nothing may be torn then.
    claims_seal: bool,
    /// Records of the frame at `pos` already yielded as partial.
    partial_yielded: usize,
    partial_raw: usize,
    end: Option<EndSummary>,
    end_frame: Option<Vec<u8>>,
    done: bool,
    integrity: Option<Integrity>,
    pub frames_verified: u64,
    pub records_verified: u64,
    pub records_unverified: u64,
}

enum Read {
    Complete(FrameKind, Vec<u8>),
    Torn(Option<FrameKind>, Vec<u8>),
    Invalid(String),
}

impl TrailReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| RecorderError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| RecorderError::io(path, e))?
            .len();
        let mut r = TrailReader {
            file,
            path: path.to_owned(),
            header: TrailHeader {
                format_version: 0,
                session_id: String::new(),
                protocol: String::new(),
                start_time: String::new(),
                start_unix_us: 0,
                meta: SessionMeta::default(),
                signing: SigningInfo {
                    algorithm: String::new(),
                    public_key: String::new(),
                    fingerprint: String::new(),
                },
                zstd_level: 0,
                zstd_fast_level: None,
            },
            key: VerifyingKey::from_bytes(&[0u8; 32])
                .map_err(|e| RecorderError::NotATrail(e.to_string()))?,
            pos: 0,
            chain_head: [0; 32],
            seq: 0,
            claims_seal: false,
            partial_yielded: 0,
            partial_raw: 0,
            end: None,
            end_frame: None,
            done: false,
            integrity: None,
            frames_verified: 0,
            records_verified: 0,
            records_unverified: 0,
        };
        match r.read_frame(0)? {
            Read::Complete(FrameKind::Header, bytes) => {
                r.header = decode_header_body(&bytes[SKIP_PREFIX..]).map_err(|e| {
                    RecorderError::Corrupt {
                        offset: 0,
                        reason: format!("its header does not decode: {e}"),
                    }
                })?;
                r.key = keys::verifying_key_from_info(&r.header.signing)?;
                r.chain_head = header_hash(&bytes);
                r.pos = bytes.len() as u64;
            }
            Read::Torn(Some(FrameKind::Header) | None, _) => {
                return Err(RecorderError::NotATrail(
                    "file ends inside the header (empty or cut-off trail)".into(),
                ));
            }
            _ => {
                return Err(RecorderError::NotATrail(
                    "no trail header at offset 0".into(),
                ));
            }
        }
        if len >= r.pos + SEAL_FRAME_LEN as u64 {
            let mut tail = [0u8; SKIP_PREFIX];
            r.file
                .read_exact_at(&mut tail, len - SEAL_FRAME_LEN as u64)
                .map_err(|e| RecorderError::io(path, e))?;
            r.claims_seal = tail[..4] == SKIP_SEAL.to_le_bytes()
                && tail[4..] == (SEAL_BODY_LEN as u32).to_le_bytes();
        }
        Ok(r)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Final verdict once `next_item` has returned `None`.
    pub fn integrity(&self) -> Integrity {
        self.integrity.clone().unwrap_or(Integrity::Incomplete {
            reason: "not read to the end".into(),
        })
    }

    /// Offset where reading stopped: after the last verified frame, at the start of a torn tail.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn chain_head(&self) -> [u8; 32] {
        self.chain_head
    }

    /// Number of verified data frames (the next frame's sequence number).
    pub fn frames(&self) -> u64 {
        self.seq
    }

    /// An end frame that was read but not (yet) followed by its seal.
    pub fn unsealed_end_frame(&self) -> Option<&[u8]> {
        if self.integrity == Some(Integrity::Sealed) {
            None
        } else {
            self.end_frame.as_deref()
        }
    }

    pub fn end_summary(&self) -> Option<&EndSummary> {
        self.end.as_ref()
    }

    pub fn is_sealed(&self) -> bool {
        self.integrity == Some(Integrity::Sealed)
    }

    fn corrupt(&mut self, offset: u64, reason: impl Into<String>) -> Result<Option<Item>> {
        self.integrity = Some(Integrity::Corrupt {
            offset,
            reason: reason.into(),
        });
        self.done = true;
        Ok(None)
    }

    fn incomplete(&mut self, reason: impl Into<String>) -> Result<Option<Item>> {
        if self.claims_seal {
            // A trail that ends in a seal has nothing torn: a cut inside it is tampering.
            let pos = self.pos;
            return self.corrupt(pos, format!("sealed trail is broken: {}", reason.into()));
        }
        self.integrity = Some(Integrity::Incomplete {
            reason: reason.into(),
        });
        Ok(None)
    }

    fn read_frame(&self, offset: u64) -> Result<Read> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut have = 0usize;
        loop {
            let n = self
                .file
                .read_at(&mut buf[have..], offset + have as u64)
                .map_err(|e| RecorderError::io(&self.path, e))?;
            have += n;
            match scan_frame(&buf[..have]) {
                Scan::Complete { kind, len } => {
                    buf.truncate(len);
                    return Ok(Read::Complete(kind, buf));
                }
                Scan::Invalid(reason) => return Ok(Read::Invalid(reason)),
                Scan::NeedMore { kind, need } => {
                    if n == 0 {
                        buf.truncate(have);
                        return Ok(Read::Torn(kind, buf));
                    }
                    if buf.len() < need {
                        buf.resize(need.max(buf.len() * 2).min(need + 256 * 1024), 0);
                    }
                }
            }
        }
    }

    /// Next item, or `None` at the end of what is (currently) there. For a live trail, call again
    /// later to continue; [`integrity`](Self::integrity) tells why it stopped.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let at = self.pos;
        let read = self.read_frame(at)?;
        match read {
            Read::Invalid(reason) => self.corrupt(at, reason),
            Read::Torn(None, b) if b.is_empty() => {
                let reason = if self.end_frame.is_some() {
                    format!(
                        "end frame without a seal: {} frames, {} records verified",
                        self.frames_verified, self.records_verified
                    )
                } else {
                    format!(
                        "no seal yet (still being written, or its gateway stopped before sealing): {} frames, {} records verified",
                        self.frames_verified, self.records_verified
                    )
                };
                self.incomplete(reason)
            }
            Read::Torn(Some(FrameKind::Data), bytes) if self.end_frame.is_none() => self.partial(
                at,
                &bytes,
                "last frame still being written (or cut off by a crash)",
            ),
            Read::Torn(kind, _) => {
                let what = kind.map_or("frame".to_string(), |k| format!("{k:?} frame"));
                self.incomplete(format!(
                    "{what} cut off at offset {at}: {} frames, {} records verified",
                    self.frames_verified, self.records_verified
                ))
            }
            Read::Complete(FrameKind::Data, data) => {
                if self.end_frame.is_some() {
                    return self.corrupt(at, "data after the end frame");
                }
                let chain_at = at + data.len() as u64;
                match self.read_frame(chain_at)? {
                    Read::Complete(FrameKind::Chain, chain) => {
                        self.verified_frame(at, &data, &chain)
                    }
                    Read::Torn(None | Some(FrameKind::Chain), _) => {
                        self.partial(at, &data, "data frame without its chain entry")
                    }
                    Read::Invalid(r) => self.corrupt(chain_at, r),
                    _ => self.corrupt(chain_at, "data frame not followed by its chain entry"),
                }
            }
            Read::Complete(FrameKind::End, bytes) => {
                if self.end_frame.is_some() {
                    return self.corrupt(at, "second end frame");
                }
                let summary: EndSummary = match serde_json::from_slice(&bytes[SKIP_PREFIX..]) {
                    Ok(s) => s,
                    Err(e) => return self.corrupt(at, format!("end frame: {e}")),
                };
                if summary.frames != self.seq || summary.records != self.records_verified {
                    return self.corrupt(at, "end frame counts do not match the chain");
                }
                self.pos += bytes.len() as u64;
                self.end_frame = Some(bytes);
                self.end = Some(summary.clone());
                Ok(Some(Item::End(Box::new(summary))))
            }
            Read::Complete(FrameKind::Seal, bytes) => {
                let Some(end_frame) = self.end_frame.take() else {
                    return self.corrupt(at, "seal without an end frame");
                };
                let seal = match Seal::decode_body(&bytes[SKIP_PREFIX..]) {
                    Ok(s) => s,
                    Err(e) => return self.corrupt(at, e.to_string()),
                };
                if seal.chain_head != self.chain_head {
                    return self.corrupt(at, "seal does not match the chain head");
                }
                if seal.end_hash != sha256(&[&end_frame]) {
                    return self.corrupt(at, "seal does not match the end frame");
                }
                let sig = Signature::from_bytes(&seal.signature);
                if self
                    .key
                    .verify_strict(&Seal::message(&seal.chain_head, &seal.end_hash), &sig)
                    .is_err()
                {
                    return self.corrupt(at, "seal signature invalid");
                }
                let len = self
                    .file
                    .metadata()
                    .map_err(|e| RecorderError::io(&self.path, e))?
                    .len();
                let after = at + bytes.len() as u64;
                if len != after {
                    return self.corrupt(
                        after,
                        format!("{} bytes after the seal", len.saturating_sub(after)),
                    );
                }
                self.pos = after;
                self.integrity = Some(Integrity::Sealed);
                self.done = true;
                Ok(None)
            }
            Read::Complete(FrameKind::Chain, _) => {
                self.corrupt(at, "chain entry without a data frame")
            }
            Read::Complete(FrameKind::Header, _) => self.corrupt(at, "second header"),
        }
    }

    fn verified_frame(&mut self, at: u64, data: &[u8], chain: &[u8]) -> Result<Option<Item>> {
        let chain_at = at + data.len() as u64;
        let entry = match ChainEntry::decode_body(&chain[SKIP_PREFIX..]) {
            Ok(e) => e,
            Err(e) => return self.corrupt(chain_at, e.to_string()),
        };
        if entry.seq != self.seq || entry.data_offset != at || entry.data_len as usize != data.len()
        {
            return self.corrupt(
                chain_at,
                format!(
                    "chain entry {} does not describe frame {} at {at}",
                    entry.seq, self.seq
                ),
            );
        }
        let mut h = ChainHasher::new(&self.chain_head);
        h.update(data);
        if h.finish(&entry.hashed_prefix()) != entry.hash {
            return self.corrupt(at, format!("frame {} fails its chain hash", entry.seq));
        }
        if self
            .key
            .verify_strict(
                &entry.signed_message(),
                &Signature::from_bytes(&entry.signature),
            )
            .is_err()
        {
            return self.corrupt(
                chain_at,
                format!("frame {} checkpoint signature invalid", entry.seq),
            );
        }
        let raw = match decompress(data, true) {
            Ok(r) => r,
            Err(e) => return self.corrupt(at, format!("frame {}: {e}", entry.seq)),
        };
        if raw.len() != entry.raw_len as usize {
            return self.corrupt(at, "frame length differs from its chain entry");
        }
        let (records, rest) = match parse_records(Bytes::from(raw), self.header.format_version) {
            Ok(r) => r,
            Err(e) => return self.corrupt(at, e.to_string()),
        };
        if rest != 0 || records.len() != entry.records as usize {
            return self.corrupt(at, "frame records differ from its chain entry");
        }
        if records.first().map(|r| r.time_us) != Some(entry.first_time_us)
            || records.last().map(|r| r.time_us) != Some(entry.last_time_us)
        {
            return self.corrupt(at, "frame times differ from its chain entry");
        }
        self.chain_head = entry.hash;
        self.seq += 1;
        self.frames_verified += 1;
        self.records_verified += records.len() as u64;
        let skip = std::mem::take(&mut self.partial_yielded).min(records.len());
        self.records_unverified -= skip as u64;
        self.partial_raw = 0;
        self.pos = chain_at + chain.len() as u64;
        let records = records.into_iter().skip(skip).collect();
        Ok(Some(Item::Frame { entry, records }))
    }

    /// The unfinished frame at the end: yield its flushed, not yet yielded records.
    fn partial(&mut self, at: u64, bytes: &[u8], why: &str) -> Result<Option<Item>> {
        let reason = format!(
            "{why} at offset {at}: {} frames, {} records verified",
            self.frames_verified, self.records_verified
        );
        if self.claims_seal {
            return self.incomplete(reason);
        }
        let raw = decompress(bytes, false).unwrap_or_default();
        if raw.len() <= self.partial_raw {
            return self.incomplete(reason);
        }
        self.partial_raw = raw.len();
        let (records, _) = match parse_records(Bytes::from(raw), self.header.format_version) {
            Ok(r) => r,
            Err(_) => return self.incomplete(reason),
        };
        let fresh: Vec<Record> = records.into_iter().skip(self.partial_yielded).collect();
        if fresh.is_empty() {
            return self.incomplete(reason);
        }
        self.partial_yielded += fresh.len();
        self.records_unverified += fresh.len() as u64;
        // Stay at `at`: the next call re-reads this frame and continues where this stopped.
        self.integrity = Some(Integrity::Incomplete { reason });
        Ok(Some(Item::Partial {
            offset: at,
            records: fresh,
        }))
    }

    /// Iterates over every record (verified and partial), calling `f`; stops at the end of what is
    /// there and returns the integrity verdict.
    pub fn for_each_record(
        &mut self,
        mut f: impl FnMut(&Record) -> Result<()>,
    ) -> Result<Integrity> {
        while let Some(item) = self.next_item()? {
            match item {
                Item::Frame { records, .. } | Item::Partial { records, .. } => {
                    for r in &records {
                        f(r)?;
                    }
                }
                Item::End(_) => {}
            }
        }
        Ok(self.integrity())
    }
}

/// Decompresses one zstd frame. With `complete`, anything short of a whole, checksummed frame is
/// an error; without, it returns whatever the flushed blocks give.
pub fn decompress(frame: &[u8], complete: bool) -> std::result::Result<Vec<u8>, String> {
    let mut d = DCtx::create();
    let mut out: Vec<u8> = Vec::with_capacity(frame.len() * 4 + 1024);
    let mut input = InBuffer::around(frame);
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        if out.len() > 64 << 20 {
            return Err("frame decompresses to more than 64 MiB".into());
        }
        let pos = out.len();
        let mut ob = OutBuffer::around_pos(&mut out, pos);
        let hint = d
            .decompress_stream(&mut ob, &mut input)
            .map_err(|c| zstd::zstd_safe::get_error_name(c).to_string())?;
        let produced = ob.pos() > pos;
        if hint == 0 {
            if input.pos() != frame.len() {
                return Err("bytes after the zstd frame".into());
            }
            return Ok(out);
        }
        if input.pos() == frame.len() && !produced {
            return if complete {
                Err("zstd frame incomplete".into())
            } else {
                Ok(out)
            };
        }
    }
}

/// Parses the records of one data frame's raw bytes in the trail's format `version`; returns them
/// with absolute times and the count of trailing bytes that do not form a whole record (v1) or
/// batch (v2).
pub fn parse_records(raw: Bytes, version: u16) -> Result<(Vec<Record>, usize)> {
    let (deltas, rest) = if version >= 2 {
        parse_batches(&raw)?
    } else {
        let mut v = Vec::new();
        let mut pos = 0;
        while let Some((channel, dt, event, n)) = decode_record_v1(&raw.slice(pos..))? {
            v.push((channel, dt, event));
            pos += n;
        }
        (v, raw.len() - pos)
    };
    let mut out = Vec::with_capacity(deltas.len());
    let mut t = 0u64;
    for (i, (channel, dt, event)) in deltas.into_iter().enumerate() {
        t = if i == 0 {
            dt
        } else {
            t.checked_add(dt)
                .ok_or_else(|| RecorderError::Record("time overflow".into()))?
        };
        out.push(Record {
            channel,
            time_us: t,
            event,
        });
    }
    Ok((out, rest))
}

/// Verification report for `trailgate trail verify`.
#[derive(Debug, Clone)]
pub struct Verification {
    pub integrity: Integrity,
    pub frames_verified: u64,
    pub records_verified: u64,
    pub records_unverified: u64,
    pub key_fingerprint: String,
    /// With an expected key: does the trail's own key match it?
    pub key_matches: Option<bool>,
}

pub fn verify(path: &Path, expected: Option<&VerifyingKey>) -> Result<Verification> {
    let mut r = TrailReader::open(path)?;
    let integrity = r.for_each_record(|_| Ok(()))?;
    Ok(Verification {
        integrity,
        frames_verified: r.frames_verified,
        records_verified: r.records_verified,
        records_unverified: r.records_unverified,
        key_fingerprint: keys::fingerprint(r.verifying_key()),
        key_matches: expected.map(|k| k == r.verifying_key()),
    })
}
