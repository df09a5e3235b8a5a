//! The gateway's SSH client toward the target: host-key verification, credential injection, and
//! the channels the target opens back (remote forwards, X11, agent).

use std::sync::{Arc, OnceLock};

use russh::client::{self, Msg};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::{Channel, ChannelOpenFailure};
use tracing::Instrument;
use trailgate_recorder::ChannelOpen;

use super::relay::{self, endpoint};
use crate::config::TargetConfig;
use crate::policy::{ChannelKind, ChannelPolicy};
use crate::registry::KillReason;
use crate::session::{EndCode, Session, Verdict};

/// Why connecting to a target failed, with the verdict it earns and the message for the user.
#[derive(Debug)]
pub struct UpstreamFailure {
    pub verdict: Verdict,
    pub message: String,
}

/// What the target's connection needs of the session it serves: the session (for the channels
/// the target opens, and to end it when the target goes away), the client's connection, and the
/// channel policy.
pub struct UpLinks {
    pub session: Arc<Session>,
    pub down: Arc<OnceLock<russh::server::Handle>>,
    pub policy: Arc<OnceLock<ChannelPolicy>>,
}

pub struct UpClient {
    sh: Arc<Session>,
    /// The client's connection and the channel policy (shared with the session's SSH legs).
    down: Arc<OnceLock<russh::server::Handle>>,
    policy: Arc<OnceLock<ChannelPolicy>>,
    target: String,
    addr: (String, u16),
    pinned: Option<PublicKey>,
    known_hosts: Option<std::path::PathBuf>,
    insecure: bool,
    /// Why the target's host key was not accepted (the message for the client and the record).
    key_problem: Arc<OnceLock<String>>,
}

impl UpClient {
    /// Checks the target's host key against the pinned key, the known_hosts file, or nothing
    /// (`insecure_skip_host_key_check`). The error says what is wrong and shows the offered key
    /// as the line `host_key` takes, so an administrator can compare and pin it.
    fn host_key_verdict(&self, key: &PublicKey) -> Result<(), String> {
        let offered = || {
            key.to_openssh()
                .map(|l| format!("`{l}`"))
                .unwrap_or_else(|_| key.fingerprint(HashAlg::Sha256).to_string())
        };
        let t = &self.target;
        if let Some(p) = &self.pinned {
            if crate::auth::same_key(p, key) {
                return Ok(());
            }
            return Err(format!(
                "host key of target {t} does not match the configured host_key; it offered {}",
                offered()
            ));
        }
        if let Some(path) = &self.known_hosts {
            let (host, port) = (&self.addr.0, self.addr.1);
            if !path.exists() {
                return Err(format!(
                    "target {t}: known_hosts file {} does not exist",
                    path.display()
                ));
            }
            let listed =
                russh::keys::known_hosts::known_host_keys_path(host, port, path).map_err(|e| {
                    format!(
                        "target {t}: known_hosts file {} cannot be read: {e}",
                        path.display()
                    )
                })?;
            if listed.is_empty() {
                return Err(format!(
                    "target {t}: known_hosts file {} does not list {} (add the target's key; it offered {})",
                    path.display(),
                    if port == 22 {
                        host.clone()
                    } else {
                        format!("[{host}]:{port}")
                    },
                    offered()
                ));
            }
            if listed.iter().any(|(_, k)| crate::auth::same_key(k, key)) {
                return Ok(());
            }
            let lines = listed
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "host key of target {t} does not match known_hosts file {} (line {lines}); it offered {}",
                path.display(),
                offered()
            ));
        }
        if self.insecure {
            tracing::warn!(target = %t, fingerprint = %key.fingerprint(HashAlg::Sha256), "upstream host key NOT verified (insecure_skip_host_key_check)");
            return Ok(());
        }
        Err(format!(
            "target {t} has no host key configured (host_key or known_hosts)"
        ))
    }
}

impl client::Handler for UpClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = key.public_key();
        match self.host_key_verdict(&key) {
            Ok(()) => Ok(true),
            Err(why) => {
                let _ = self.key_problem.set(why);
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "forwarded-tcpip".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: Some(endpoint(connected_address, connected_port)),
            reason: None,
        };
        let (ca, cp, oa, op) = (
            connected_address.to_string(),
            connected_port,
            originator_address.to_string(),
            originator_port,
        );
        Box::pin(
            self.reverse_open(channel, reply, open, ChannelKind::TcpipForward, move |h| {
                Box::pin(async move { h.channel_open_forwarded_tcpip(ca, cp, oa, op).await })
            }),
        )
        .await
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "x11".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: None,
            reason: None,
        };
        let (oa, op) = (originator_address.to_string(), originator_port);
        Box::pin(
            self.reverse_open(channel, reply, open, ChannelKind::X11, move |h| {
                Box::pin(async move { h.channel_open_x11(oa, op).await })
            }),
        )
        .await
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "auth-agent@openssh.com".into(),
            originator: None,
            connected: None,
            reason: None,
        };
        Box::pin(
            self.reverse_open(channel, reply, open, ChannelKind::Agent, |h| {
                Box::pin(async move { h.channel_open_agent().await })
            }),
        )
        .await
    }

    // A target has no business opening these toward the gateway.
    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (why, code) = match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => (
                format!("target closed the connection: {}", info.message),
                EndCode::TargetDisconnected,
            ),
            client::DisconnectReason::Error(e) => (
                format!("target connection lost: {e}"),
                EndCode::ConnectionError,
            ),
        };
        self.sh.live.kill(KillReason {
            reason: why,
            by: "target".into(),
            code,
        });
        Ok(())
    }
}

type DownOpen = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Channel<russh::server::Msg>, russh::Error>> + Send>,
>;

impl UpClient {
    /// A channel the target opens (remote forward, X11, agent): open the matching channel toward
    /// the client first, then accept upstream, so neither side sees data before both exist.
    /// Its callers box it: russh awaits them inside the upstream connection's task, whose
    /// future would otherwise be sized for it for the connection's life.
    async fn reverse_open(
        &mut self,
        channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        open: ChannelOpen,
        kind: ChannelKind,
        open_down: impl FnOnce(russh::server::Handle) -> DownOpen + Send + 'static,
    ) -> Result<(), russh::Error> {
        let sh = self.sh.clone();
        let id = sh.alloc_channel();
        let allowed = self.policy.get().is_some_and(|p| p.allows(&kind));
        let down_handle = self.down.get().cloned();
        let (Some(h), true) = (down_handle, allowed) else {
            relay::refuse(
                &sh,
                id,
                open,
                "deny",
                "denied by channel policy".to_string(),
            )
            .await;
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        // Opening toward the client waits for its confirmation; do it off this connection's loop
        // so the target connection keeps flowing meanwhile.
        let sh2 = sh.clone();
        let span = sh.span.clone();
        sh.pumps.spawn(
            async move {
                match open_down(h.clone()).await {
                    Ok(down) => {
                        relay::start_channel(
                            &sh2,
                            id,
                            open,
                            down,
                            channel,
                            reply.accept(),
                            Some(h),
                        )
                        .await;
                    }
                    Err(e) => {
                        relay::refuse(&sh2, id, open, "fail", format!("client refused: {e}")).await;
                        reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }
}

/// The russh client settings of every upstream connection.
pub fn client_config(ciphers: std::borrow::Cow<'static, [russh::cipher::Name]>) -> client::Config {
    // Bulk transfers: a window of 8 MiB and 64 KiB packets from the target halve the packets
    // (and task hand-offs) per MiB against russh's 2 MiB / 32 KiB; the channel queue stays
    // bounded at 32 packets (2 MiB) before backpressure reaches the socket.
    client::Config {
        window_size: 8 << 20,
        maximum_packet_size: 65535,
        channel_buffer_size: 32,
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(30)),
        nodelay: true,
        preferred: russh::Preferred {
            cipher: ciphers,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Connects to the target, verifies its host key and logs in with the target's credentials.
pub async fn connect(
    links: UpLinks,
    target: &TargetConfig,
    key: Option<Arc<russh::keys::PrivateKey>>,
    pinned: Option<PublicKey>,
    cfg: Arc<client::Config>,
    timeout: std::time::Duration,
) -> Result<client::Handle<UpClient>, UpstreamFailure> {
    let fail = |verdict, message: String| UpstreamFailure { verdict, message };
    let (host, port) = crate::util::split_host_port(&target.address).ok_or_else(|| {
        fail(
            Verdict::Fail,
            format!("target {} has an invalid address", target.name),
        )
    })?;
    let key_problem = Arc::new(OnceLock::new());
    let handler = UpClient {
        sh: links.session,
        down: links.down,
        policy: links.policy,
        target: target.name.clone(),
        addr: (host.clone(), port),
        pinned,
        known_hosts: target.known_hosts.clone(),
        insecure: target.insecure_skip_host_key_check,
        key_problem: key_problem.clone(),
    };
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| {
                fail(
                    Verdict::Fail,
                    format!(
                        "target {} ({}) unreachable: {e}",
                        target.name, target.address
                    ),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let mut h = client::connect_stream(cfg, super::read_buffered(tcp), handler)
            .await
            .map_err(|e| {
                if let Some(why) = key_problem.get() {
                    fail(Verdict::KeyError, why.clone())
                } else {
                    fail(
                        Verdict::Fail,
                        format!("target {}: ssh handshake failed: {e}", target.name),
                    )
                }
            })?;
        let authed = if let Some(k) = key {
            let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
            h.authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(k, hash))
                .await
        } else if let Some(pw) = &target.password {
            h.authenticate_password(&target.user, pw).await
        } else {
            return Err(fail(
                Verdict::AuthFail,
                format!("target {} has no credentials configured", target.name),
            ));
        };
        match authed {
            Ok(r) if r.success() => Ok(h),
            Ok(_) => Err(fail(
                Verdict::AuthFail,
                format!(
                    "target {} refused the gateway's credentials for {}",
                    target.name, target.user
                ),
            )),
            Err(e) => Err(fail(
                Verdict::AuthFail,
                format!("target {} authentication error: {e}", target.name),
            )),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            Verdict::Fail,
            format!("target {} did not answer within {:?}", target.name, timeout),
        )),
    }
}
