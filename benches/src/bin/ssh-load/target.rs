//! The load test's target: one in-process russh server that serves every session, so the target
//! is never the limit (no process or pty per session, as sshd would need). A shell channel echoes
//! what it receives; `exec "source N"` sends N bytes and exits 0; `exec "sink"` discards what it
//! receives and exits 0 at EOF. It accepts any public key: it listens on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::PrivateKey;
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;

pub async fn start(host_key: PrivateKey) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(server::Config {
        keys: vec![host_key],
        auth_rejection_time: std::time::Duration::from_millis(10),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // Small per-connection state: the target should cost little next to the gateway.
        window_size: 1 << 20,
        channel_buffer_size: 16,
        nodelay: true,
        ..Default::default()
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = server::run_stream(config, tcp, Echo::default()).await {
                    let _ = running.await;
                }
            });
        }
    });
    Ok(addr)
}

#[derive(Default)]
struct Echo {
    /// The channel running `sink`, if any.
    sink: Option<ChannelId>,
}

impl server::Handler for Echo {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(data);
        if cmd == "sink" {
            self.sink = Some(channel);
            return session.channel_success(channel);
        }
        let Some(n) = cmd
            .strip_prefix("source ")
            .and_then(|n| n.trim().parse::<u64>().ok())
        else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let h = session.handle();
        tokio::spawn(async move {
            let block = bytes::Bytes::from(vec![b'x'; 32 * 1024]);
            let mut left = n;
            while left > 0 {
                let k = left.min(block.len() as u64) as usize;
                if h.data(channel, block.slice(..k)).await.is_err() {
                    return;
                }
                left -= k as u64;
            }
            let _ = h.exit_status_request(channel, 0).await;
            let _ = h.eof(channel).await;
            let _ = h.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.sink == Some(channel) {
            return Ok(());
        }
        session.data(channel, data.to_vec())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.sink == Some(channel) {
            session.exit_status_request(channel, 0)?;
        }
        session.eof(channel)?;
        session.close(channel)
    }
}
