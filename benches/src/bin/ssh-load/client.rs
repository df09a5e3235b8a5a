//! One load-test client session: a russh connection with public-key login, a shell channel with
//! a pty (what an admin's `ssh` opens), keystrokes timed to their echo, and bulk downloads over an
//! exec channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use russh::client::{self, Handle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{Channel, ChannelMsg};

/// Accepts any host key: the harness generated both ends on loopback.
pub struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: None,
        nodelay: true,
        window_size: 1 << 20,
        channel_buffer_size: 16,
        ..Default::default()
    })
}

pub struct Session {
    handle: Handle<Trusting>,
    shell: Channel<Msg>,
}

async fn connect(
    addr: SocketAddr,
    user: &str,
    key: &Arc<PrivateKey>,
    cfg: &Arc<client::Config>,
) -> Result<Handle<Trusting>> {
    let mut h = client::connect(cfg.clone(), addr, Trusting)
        .await
        .context("ssh handshake")?;
    let auth = h
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), None))
        .await
        .context("authentication")?;
    if !auth.success() {
        bail!("public key refused for {user}");
    }
    Ok(h)
}

/// Waits for the answer to a request sent with `want_reply`.
async fn reply(ch: &mut Channel<Msg>, what: &str) -> Result<()> {
    loop {
        match ch.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => bail!("{what} refused"),
            Some(ChannelMsg::WindowAdjusted { .. }) => {}
            Some(other) => bail!("{what}: unexpected {other:?}"),
            None => bail!("{what}: channel closed"),
        }
    }
}

impl Session {
    /// Logs in and opens a shell with a pty; returns when the shell is granted end to end.
    pub async fn open(
        addr: SocketAddr,
        user: &str,
        key: &Arc<PrivateKey>,
        cfg: &Arc<client::Config>,
    ) -> Result<Session> {
        let handle = connect(addr, user, key, cfg).await?;
        let mut shell = handle
            .channel_open_session()
            .await
            .context("session channel")?;
        shell
            .request_pty(true, "xterm", 80, 24, 0, 0, &[])
            .await
            .context("pty")?;
        reply(&mut shell, "pty").await?;
        shell.request_shell(true).await.context("shell")?;
        reply(&mut shell, "shell").await?;
        Ok(Session { handle, shell })
    }

    /// Sends one key and waits for its echo: the round trip.
    pub async fn keystroke(&mut self, key: u8) -> Result<Duration> {
        let t = Instant::now();
        self.shell.data(&[key][..]).await.context("send key")?;
        loop {
            match self.shell.wait().await {
                Some(ChannelMsg::Data { data }) if data.contains(&key) => return Ok(t.elapsed()),
                Some(ChannelMsg::Data { .. } | ChannelMsg::WindowAdjusted { .. }) => {}
                Some(other) => bail!("waiting for the echo: unexpected {other:?}"),
                None => bail!("waiting for the echo: channel closed"),
            }
        }
    }

    /// Downloads `bytes` from the target's `source` over a new exec channel; bytes received.
    pub async fn download(&self, bytes: u64) -> Result<u64> {
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .context("exec channel")?;
        ch.exec(true, format!("source {bytes}")).await?;
        let mut got = 0u64;
        let mut status = None;
        while let Some(m) = ch.wait().await {
            match m {
                ChannelMsg::Data { data } => got += data.len() as u64,
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if got != bytes || status != Some(0) {
            bail!("download: {got} of {bytes} bytes, exit status {status:?}");
        }
        Ok(got)
    }

    /// Ends the session as a client would: EOF, then disconnect.
    pub async fn close(self) -> Result<()> {
        let _ = self.shell.eof().await;
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "bye", "en")
            .await
            .context("disconnect")?;
        Ok(())
    }
}
