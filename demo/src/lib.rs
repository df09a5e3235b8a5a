//! The demo target of `trailgate demo`: a small SSH server inside the binary, so a newcomer can
//! record a real session with nothing else set up. It listens on loopback only, accepts exactly
//! one public key (the gateway's), and runs what the client asks as the OS account that started
//! the demo: a login shell in a pty, a command (with or without a pty), or the `sftp` subsystem
//! (OpenSSH's `sftp-server`, when installed). It exists only in demo mode.
//!
//! Modules:
//! - [`pty`]: pseudo-terminals and the processes that run in them.
//! - `channel`: one session channel, from its request to its exit status.

mod channel;
pub mod pty;

use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg};
use russh::{Channel, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running demo target.
pub struct DemoTarget {
    pub addr: SocketAddr,
}

/// Binds a loopback port (any free one) and serves until `shutdown`. `host_key` is the target's
/// own key; `allowed` the one client key it accepts.
pub async fn start(
    host_key: PrivateKey,
    allowed: PublicKey,
    shutdown: CancellationToken,
) -> std::io::Result<DemoTarget> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(server::Config {
        keys: vec![host_key],
        auth_rejection_time: std::time::Duration::from_millis(10),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        ..Default::default()
    });
    let allowed = Arc::new(allowed);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let handler = Conn {
                allowed: allowed.clone(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                match server::run_stream(config, tcp, handler).await {
                    Ok(running) => {
                        if let Err(e) = running.await {
                            tracing::debug!(error = %e, "demo target connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "demo target handshake failed"),
                }
            });
        }
    });
    Ok(DemoTarget { addr })
}

struct Conn {
    allowed: Arc<PublicKey>,
}

fn same(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

impl server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if same(offer.public_key, &self.allowed) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if same(key.public_key, &self.allowed) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(channel::run(channel));
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: russh::ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: russh::ChannelId,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: russh::ChannelId,
        _data: &[u8],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: russh::ChannelId,
        name: &str,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" && channel::sftp_server().is_some() {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn env_request(
        &mut self,
        channel: russh::ChannelId,
        _name: &str,
        _value: &str,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        // Environment from the client is not passed on (as sshd's default AcceptEnv).
        session.channel_failure(channel)
    }
}
