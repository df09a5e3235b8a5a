/// Errors of the proxy crate: configuration, listeners, upstream connections, recording.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("config: {0}")]
    Config(String),
    #[error("i/o on {what}: {err}")]
    Io {
        what: String,
        // Shown in the message and not a `source`: error chains would print it twice.
        err: std::io::Error,
    },
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error("key: {0}")]
    Key(String),
    #[error("recording: {0}")]
    Recorder(#[from] trailgate_recorder::RecorderError),
    #[error("upstream {target}: {reason}")]
    Upstream { target: String, reason: String },
    #[error("no such session {0}")]
    NoSuchSession(String),
    #[error("session {0} has already ended")]
    SessionEnded(String),
    /// A change that would break something (a policy in use, or defined in the file).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A value a caller sent that does not validate (the message names the field).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl ProxyError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ProxyError::Io {
            what: what.into(),
            err: source,
        }
    }
}
