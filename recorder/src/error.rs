use std::path::PathBuf;

/// Everything the recorder can fail with. Callers (the gateway) decide what a failure means for the
/// session; the recorder never swallows one.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("i/o on {path}: {err}")]
    Io {
        path: PathBuf,
        // Shown in the message and not a `source`: error chains would print it twice.
        err: std::io::Error,
    },
    #[error("i/o: {0}")]
    RawIo(#[from] std::io::Error),
    #[error("zstd: {0}")]
    Zstd(String),
    #[error("not a trail file: {0}")]
    NotATrail(String),
    #[error("unsupported trail format version {0}")]
    UnsupportedVersion(u16),
    #[error("malformed trail at offset {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("malformed record: {0}")]
    Record(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("recording failed: {0}")]
    WriterFailed(String),
    #[error("trail writer is closed")]
    Closed,
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("no channel {channel} in this trail; its channels: {available}")]
    NoSuchChannel { channel: u32, available: String },
    /// The trail is damaged before the part asked for could be read.
    #[error("the trail is corrupt at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// A VNC tool on a trail with no VNC channel (an SSH session, for one).
    #[error("not a VNC trail: {0}")]
    NotVnc(String),
    /// A VNC trail that cannot give what was asked (no screen yet at that time, for one).
    #[error("vnc: {0}")]
    Vnc(String),
}

impl RecorderError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RecorderError::Io {
            path: path.into(),
            err: source,
        }
    }
}

pub type Result<T, E = RecorderError> = std::result::Result<T, E>;
