//! [`ReadBuffered`]: a socket read buffer that exists only while there is data in it.
//!
//! russh reads a packet's length, then its body, then polls again until `EAGAIN`: three
//! `recvfrom` per packet on a bare socket. One read into a buffer serves a whole packet (or
//! many), and a short read tells tokio the socket is drained, so a keystroke costs one
//! `recvfrom` per hop instead of three. A `tokio::io::BufReader` would hold its buffer for the
//! connection's life, though: 256 KiB per leg, two legs per session, thousands of mostly idle
//! sessions. Here the buffer is taken when the socket is readable and given back as soon as it
//! has been read out: an idle connection holds none. It starts at [`SMALL`] and is [`LARGE`]
//! while reads keep filling it (a bulk transfer), which keeps bulk throughput where the fixed
//! buffer had it. Writes pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The buffer of a connection carrying interactive traffic.
pub const SMALL: usize = 16 * 1024;
/// The buffer of a connection moving bulk data (a read filled the small one).
pub const LARGE: usize = 256 * 1024;

pub struct ReadBuffered {
    inner: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    /// The size of the next buffer: [`LARGE`] after a read filled its buffer.
    next: usize,
}

impl ReadBuffered {
    pub fn new(inner: TcpStream) -> ReadBuffered {
        ReadBuffered {
            inner,
            buf: Vec::new(),
            pos: 0,
            next: SMALL,
        }
    }

    /// Whether a buffer is held right now (for tests and memory accounting).
    pub fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }

    fn copy_out(&mut self, out: &mut ReadBuf<'_>) {
        let n = (self.buf.len() - self.pos).min(out.remaining());
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            // Read out: give the memory back. A large buffer is kept while bulk data keeps
            // coming (the next read is likely to fill it again).
            self.pos = 0;
            self.buf.clear();
            if self.next == SMALL || self.buf.capacity() != LARGE {
                self.buf = Vec::new();
            }
        }
    }
}

impl AsyncRead for ReadBuffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.buf.len() {
            this.copy_out(out);
            return Poll::Ready(Ok(()));
        }
        // A read at least as large as the buffer gains nothing from it.
        if out.remaining() >= this.next {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            if this.buf.capacity() < this.next {
                this.buf = Vec::with_capacity(this.next);
            }
            // Into the spare capacity: no zeroing, no unsafe.
            match this.inner.try_read_buf(&mut this.buf) {
                Ok(n) => {
                    let cap = this.buf.capacity();
                    this.next = if n == cap {
                        LARGE
                    } else if n < SMALL / 2 {
                        SMALL
                    } else {
                        this.next
                    };
                    if n == 0 {
                        // EOF: nothing to copy; the caller sees an empty read.
                        this.buf = Vec::new();
                        return Poll::Ready(Ok(()));
                    }
                    this.copy_out(out);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Spurious readiness: nothing held while waiting again.
                    if this.buf.is_empty() {
                        this.buf = Vec::new();
                    }
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ReadBuffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    use tokio::net::TcpListener;

    async fn pair() -> (ReadBuffered, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (ReadBuffered::new(a.unwrap()), b.unwrap().0)
    }

    #[tokio::test]
    async fn small_reads_hold_nothing_between_packets() {
        let (mut r, mut w) = pair().await;
        w.write_all(b"0123456789abcdef").await.unwrap();
        let mut head = [0u8; 4];
        r.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"0123");
        assert!(r.holds_buffer(), "the rest of the packet is buffered");
        let mut body = [0u8; 12];
        r.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"456789abcdef");
        assert!(!r.holds_buffer(), "read out: the buffer is given back");
        drop(w);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn bulk_data_arrives_whole_through_a_large_buffer() {
        let (mut r, mut w) = pair().await;
        let data: Vec<u8> = (0..8 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
        });
        let mut got = Vec::with_capacity(data.len());
        let mut chunk = [0u8; 1500];
        let mut saw_large = false;
        while got.len() < data.len() {
            let n = r.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
            saw_large |= r.buf.capacity() == LARGE;
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert!(saw_large, "a bulk stream switches to the large buffer");
    }
}
