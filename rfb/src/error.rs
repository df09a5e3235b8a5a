//! The crate's one error type.

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RfbError {
    /// The peer sent something RFB does not allow here; the message says what.
    #[error("malformed RFB: {0}")]
    Malformed(String),
    /// A client message type the gateway does not relay.
    #[error("unsupported client message type {0}")]
    UnsupportedMessage(u8),
    /// A length past the gateway's limit.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// An encoding the decoder does not know (a stream that was not filtered by the gateway).
    #[error("unsupported encoding {0}")]
    UnsupportedEncoding(i32),
    /// The framebuffer could not be encoded as PNG (an empty framebuffer, for one).
    #[error("png: {0}")]
    Png(String),
}

pub type Result<T> = std::result::Result<T, RfbError>;
