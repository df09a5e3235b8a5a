//! Crash recovery: make an unsealed trail's tail whole again, losing nothing that was flushed.
//!
//! The torn last frame is cut off, and the records that were readable in it (flushed zstd blocks)
//! are written back as a complete, chained, signed frame. The trail stays unsealed (it verifies
//! as incomplete: the session's real end was never recorded). A trail cut between its end frame
//! and seal is sealed, since its end frame is whole.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use crate::error::{RecorderError, Result};
use crate::format::*;
use crate::reader::{Integrity, Item, TrailReader};
use crate::writer::ZSTD_LEVELS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The state before recovery.
    pub before: Integrity,
    /// The state after.
    pub after: Integrity,
    pub records_salvaged: u64,
    pub bytes_cut: u64,
}

pub fn recover(path: &Path, key: &SigningKey) -> Result<Recovery> {
    let mut r = TrailReader::open(path)?;
    let mut partial: Vec<Record> = Vec::new();
    while let Some(item) = r.next_item()? {
        if let Item::Partial { records, .. } = item {
            partial.extend(records);
        }
    }
    let before = r.integrity();
    if !matches!(before, Integrity::Incomplete { .. }) {
        return Ok(Recovery {
            after: before.clone(),
            before,
            records_salvaged: 0,
            bytes_cut: 0,
        });
    }
    let len = std::fs::metadata(path)
        .map_err(|e| RecorderError::io(path, e))?
        .len();
    let keep = r.position();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| RecorderError::io(path, e))?;
    file.set_len(keep).map_err(|e| RecorderError::io(path, e))?;
    let mut tail = Vec::new();
    if let Some(end_frame) = r.unsealed_end_frame() {
        let end_hash = sha256(&[end_frame]);
        let head = r.chain_head();
        let signature = key.sign(&Seal::message(&head, &end_hash)).to_bytes();
        tail.extend_from_slice(
            &Seal {
                chain_head: head,
                end_hash,
                signature,
            }
            .encode(),
        );
    } else if !partial.is_empty() {
        let mut raw = Vec::new();
        let mut batch = Batch::default();
        let mut last = 0u64;
        let v1 = r.header.format_version < 2;
        for (i, rec) in partial.iter().enumerate() {
            // Reconstructed times are exact multiples where they were coarsened: exact deltas
            // reproduce them.
            let dt = dt_wire_exact(if i == 0 {
                rec.time_us
            } else {
                rec.time_us - last
            });
            if v1 {
                encode_record_v1(&mut raw, rec.channel, dt, &rec.event)?;
            } else {
                batch.push(rec.channel, dt, &rec.event)?;
            }
            last = rec.time_us;
        }
        batch.encode_into(&mut raw);
        let level = r
            .header
            .zstd_level
            .clamp(*ZSTD_LEVELS.start(), *ZSTD_LEVELS.end());
        let mut c = zstd::bulk::Compressor::new(level).map_err(RecorderError::RawIo)?;
        c.include_checksum(true).map_err(RecorderError::RawIo)?;
        let data = c.compress(&raw).map_err(RecorderError::RawIo)?;
        let mut entry = ChainEntry {
            seq: r.frames(),
            data_offset: keep,
            data_len: data.len() as u32,
            raw_len: raw.len() as u32,
            records: partial.len() as u32,
            first_time_us: partial.first().map_or(0, |r| r.time_us),
            last_time_us: partial.last().map_or(0, |r| r.time_us),
            hash: [0; 32],
            signature: [0; 64],
        };
        let mut h = ChainHasher::new(&r.chain_head());
        h.update(&data);
        entry.hash = h.finish(&entry.hashed_prefix());
        entry.signature = key.sign(&entry.signed_message()).to_bytes();
        tail.extend_from_slice(&data);
        tail.extend_from_slice(&entry.encode());
    }
    if !tail.is_empty() {
        file.write_all_at(&tail, keep)
            .map_err(|e| RecorderError::io(path, e))?;
    }
    (&file).flush().map_err(|e| RecorderError::io(path, e))?;
    file.sync_all().map_err(|e| RecorderError::io(path, e))?;
    let after = crate::reader::verify(path, None)?.integrity;
    Ok(Recovery {
        before,
        after,
        records_salvaged: partial.len() as u64,
        bytes_cut: len - keep,
    })
}
