//! Trailgate's trail object storage: sealed trails go to an S3-compatible bucket (the
//! `object_store` crate) after the session ends, and come back through a local cache when an
//! auditor reads them. Trails are always written to the local disk first, so the recorder's
//! crash and live-read guarantees do not depend on the network.
//!
//! Modules:
//! - [`settings`]: `[storage]` as the store needs it (bucket, prefix, endpoint, region,
//!   credentials from the environment or an AWS credentials file).
//! - [`store`]: [`TrailStore`]: streamed upload with SHA-256, verification (size and SHA-256 of
//!   the object as stored), streamed download to a file.
//! - [`uploader`]: the per-node upload queue, kept in the catalog (records with
//!   `trail.storage` `uploading` or `upload_failed`): retries with backoff, the local copy
//!   deleted only after the object verifies, counters for `/metrics`.
//! - [`cache`]: trails read back from the bucket into a bounded local cache (least recently
//!   used first out), so downloads, Range, exports and snapshots work on a file.

pub mod cache;
pub mod settings;
pub mod store;
pub mod uploader;

pub use cache::TrailCache;
pub use settings::S3Settings;
pub use store::{TrailStore, Uploaded};
pub use uploader::{UploadCounters, Uploader};

/// Everything trail storage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage settings: {0}")]
    Settings(String),
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("i/o on {path}: {err}")]
    Io {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("the stored object {key} does not match the trail: {reason}")]
    Mismatch { key: String, reason: String },
    #[error(transparent)]
    Recorder(#[from] trailgate_recorder::RecorderError),
    #[error("the trail of session {0} is in no store this node can read")]
    Unavailable(String),
}

impl StorageError {
    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
