//! Trailgate's recorder: the trail format and everything that writes, reads, verifies and exports
//! session trails. Protocol bridges feed a [`TrailWriter`]; auditors' tools use the reader side.
//!
//! Modules:
//! - [`format`]: the trail format v2 (record batches, header, chain, end and seal frames; v1 records
//!   still decode); pure, no I/O.
//! - [`scan`]: frame boundaries without decompression; pure.
//! - [`fsutil`]: owner-only files and directories, and the disk probe behind `/healthz`.
//! - [`keys`]: the Ed25519 trail-signing key pair.
//! - [`writer`]: [`TrailWriter`], bounded and lossless, compression on the blocking pool.
//! - [`reader`]: [`TrailReader`] for complete, crashed and live trails, with verification.
//! - [`summary`]: per-channel statistics from records.
//! - [`export`]: `cat`, asciicast v2, terminal replay and `info`.
//! - [`commands`]: commands run in an SSH session (typed in terminals, exec), best effort from
//!   the recorded input and echo.
//! - [`transfers`]: files transferred over SFTP, from the trail alone (index and extraction).
//! - [`vnc`]: VNC trails: screen snapshots (PNG), FBS export, the VNC part of `info`.
//! - [`recover`]: crash recovery of unsealed trails.
//! - [`record`]: the session record (catalog row and API shape).
//! - [`catalog`]: the SQLite session catalog.
//!
//! The format is described in `docs/trail-format.md`.

pub mod catalog;
pub mod commands;
pub mod error;
pub mod export;
pub mod format;
pub mod fsutil;
pub mod keys;
pub mod reader;
pub mod record;
pub mod recover;
pub mod scan;
pub mod summary;
pub mod transfers;
pub mod vnc;
pub mod writer;

pub use error::{RecorderError, Result};
pub use format::{
    ChannelOpen, Direction, Endpoint, Event, Record, Request, SessionEnd, SessionMeta,
};
pub use reader::{Integrity, TrailReader, Verification, verify};
pub use writer::{
    Backpressure, TrailSpec, TrailSummary, TrailWriter, WeakTrailWriter, WriterConfig, ZSTD_LEVELS,
    is_zstd_level, trail_path,
};
