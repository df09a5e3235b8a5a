//! Byte-level helpers of the VNC handshakes: one stream type for plain and TLS legs, exact
//! reads with bounded lengths, and RFB's length-prefixed reason strings.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A leg of a VNC session: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub type Io = Box<dyn Stream>;

/// Longest reason string read from a target (its text goes to logs and records).
const MAX_REASON: usize = 4096;

pub async fn read_u8<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(b[0])
}

pub async fn read_u32<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await?;
    Ok(u32::from_be_bytes(b))
}

/// Reads `len` bytes when `len <= max`; a longer length is a protocol error.
pub async fn read_bounded<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    len: usize,
    max: usize,
    what: &str,
) -> std::io::Result<Vec<u8>> {
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} of {len} bytes (at most {max})"),
        ));
    }
    let mut v = vec![0u8; len];
    s.read_exact(&mut v).await?;
    Ok(v)
}

/// A reason string (u32 length, text), as a target sends it.
pub async fn read_reason<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> std::io::Result<String> {
    let len = read_u32(s).await? as usize;
    // A longer text is cut, not refused: it is only shown.
    let v = read_bounded(s, len.min(MAX_REASON), MAX_REASON, "reason").await?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// A reason string as the gateway sends it.
pub fn reason(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + text.len());
    v.extend_from_slice(&(text.len() as u32).to_be_bytes());
    v.extend_from_slice(text.as_bytes());
    v
}

/// A failed SecurityResult with its reason (RFB 3.8), written and flushed.
pub async fn security_failed<S: AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    text: &str,
) -> std::io::Result<()> {
    let mut v = 1u32.to_be_bytes().to_vec();
    v.extend(reason(text));
    s.write_all(&v).await?;
    s.flush().await
}

pub fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}
