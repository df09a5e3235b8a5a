//! [`Closable`]: a byte stream the gateway can close from outside, whoever is reading it.
//!
//! russh runs each connection in a task of its own and offers no way to abort it: a client that
//! stalls mid-handshake, or stops reading after a kill, would keep its socket (and file
//! descriptor) open. Wrapped in a `Closable`, the connection's next read or write fails as soon
//! as its token is cancelled, which ends russh's task and drops the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Closable<S> {
    inner: S,
    token: CancellationToken,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Called once, at the first byte the peer sends.
    first_read: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl<S> Closable<S> {
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Closable {
            inner,
            closed: Box::pin(token.clone().cancelled_owned()),
            token,
            first_read: None,
        }
    }

    /// Calls `f` when the first byte arrives from the peer (a connection that never sends one
    /// is a probe, not a session).
    pub fn on_first_read(mut self, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.first_read = Some(Box::new(f));
        self
    }

    fn aborted() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the gateway")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Closable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Err(Self::aborted()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if let Some(f) = self.first_read.take() {
                    f();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Only a read that waits needs to be woken by the token.
                if self.closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Self::aborted()));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Err(Self::aborted()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => {
                if self.closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Self::aborted()));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_waiting_read_fails_when_the_token_is_cancelled() {
        let (a, _b) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut s = Closable::new(a, token.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            s.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        token.cancel();
        let r = reader.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn data_passes_until_cancelled() {
        let (a, mut b) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut s = Closable::new(a, token.clone());
        s.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        token.cancel();
        assert!(s.write_all(b"x").await.is_err());
    }
}
