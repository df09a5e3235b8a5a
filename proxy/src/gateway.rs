//! The gateway: loaded configuration and keys, the shutdown root, and the SSH accept loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{LineEnding, PrivateKey, PublicKey};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trailgate_recorder::WriterConfig;
use trailgate_recorder::keys::SigningKey;

use crate::admission::Admission;
use crate::config::{Config, Protocol};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::policy::ChannelPolicy;
use crate::registry::{KillReason, Registry};
use crate::session::SessionObserver;
use crate::ssh::ciphers;

/// Upstream credentials and host-key expectations of one SSH target, loaded once at start-up.
pub struct TargetRuntime {
    pub private_key: Option<Arc<PrivateKey>>,
    pub pinned_key: Option<PublicKey>,
    pub channel_policy: ChannelPolicy,
}

/// Everything a session needs from the gateway, shared read-only.
pub struct Gateway {
    pub cfg: Arc<Config>,
    pub registry: Arc<Registry>,
    pub signing_key: Arc<SigningKey>,
    pub observer: Arc<dyn SessionObserver>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub targets: HashMap<String, TargetRuntime>,
    pub writer_cfg: WriterConfig,
    pub node_id: String,
    pub metrics: Arc<Metrics>,
    /// Pre-authentication limits shared by every listener.
    pub admission: Arc<Admission>,
    pub(crate) ssh_config: Arc<russh::server::Config>,
    pub(crate) upstream_config: Arc<russh::client::Config>,
}

impl Gateway {
    /// Loads keys (generating the host key and trail-signing key on first start) and checks every
    /// target's credentials, so a bad path fails at start-up rather than at the first login.
    pub fn new(
        cfg: Config,
        observer: Arc<dyn SessionObserver>,
    ) -> Result<Arc<Gateway>, ProxyError> {
        trailgate_recorder::fsutil::private_dir_all(&cfg.data_dir)
            .map_err(|e| ProxyError::Config(format!("data_dir: {e}")))?;
        let signing_key = Arc::new(trailgate_recorder::keys::load_or_generate(
            &cfg.signing_key_path(),
        )?);
        let mut host_keys = Vec::new();
        if cfg.ssh.host_keys.is_empty() {
            host_keys.push(load_or_generate_host_key(
                &cfg.data_dir.join("keys/ssh_host_ed25519_key"),
            )?);
        }
        for p in &cfg.ssh.host_keys {
            host_keys.push(
                russh::keys::load_secret_key(p, None).map_err(|e| {
                    ProxyError::Config(format!("ssh.host_keys: {}: {e}", p.display()))
                })?,
            );
        }
        let mut targets = HashMap::new();
        for t in cfg.targets.iter().filter(|t| t.protocol == Protocol::Ssh) {
            let private_key = match &t.private_key {
                Some(p) => Some(Arc::new(russh::keys::load_secret_key(p, None).map_err(
                    |e| {
                        ProxyError::Config(format!(
                            "targets ({}).private_key: {}: {e}",
                            t.name,
                            p.display()
                        ))
                    },
                )?)),
                None => None,
            };
            let pinned_key = t
                .host_key
                .as_deref()
                .map(crate::auth::parse_public_key_line)
                .transpose()
                .map_err(ProxyError::Config)?;
            let channel_policy = match cfg.channel_policies.get(&t.channel_policy) {
                Some(p) => {
                    ChannelPolicy::from_allow(&t.channel_policy, p.allow.iter().map(String::as_str))
                }
                None => ChannelPolicy::builtin_default(),
            };
            targets.insert(
                t.name.clone(),
                TargetRuntime {
                    private_key,
                    pinned_key,
                    channel_policy,
                },
            );
        }
        let ssh_config = russh::server::Config {
            server_id: russh::SshId::Standard(
                format!("SSH-2.0-Trailgate_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            keys: host_keys,
            auth_rejection_time: cfg.ssh.auth_failure_delay,
            // OpenSSH's first `none` probe is not a failure: answer it at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            max_auth_attempts: cfg.ssh.max_auth_attempts,
            // Idle policy lives in the gateway (it counts real activity, not keepalives).
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            // Room for uploads to stream without waiting for window adjusts; the channel queue
            // (64 packets of at most 32 KiB) bounds what a session buffers before backpressure.
            window_size: 8 << 20,
            channel_buffer_size: 64,
            preferred: russh::Preferred {
                cipher: ciphers::resolve(
                    "ssh.ciphers",
                    cfg.ssh.ciphers.as_deref(),
                    ciphers::DEFAULT_CLIENT_LEG,
                )
                .map_err(ProxyError::Config)?,
                ..Default::default()
            },
            ..Default::default()
        };
        let hw_aes = ciphers::hardware_aes();
        let upstream_config = crate::ssh::upstream::client_config(
            ciphers::resolve(
                "ssh.upstream_ciphers",
                cfg.ssh.upstream_ciphers.as_deref(),
                ciphers::default_upstream(hw_aes),
            )
            .map_err(ProxyError::Config)?,
        );
        tracing::info!(hardware_aes = hw_aes, upstream_ciphers = ?upstream_config.preferred.cipher.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), "upstream cipher preference");
        let writer_cfg = WriterConfig {
            flush_interval: cfg.recording.flush_interval,
            zstd_level: cfg.recording.zstd_level,
            zstd_fast_level: cfg.recording.zstd_fast_level,
            fsync: cfg.recording.fsync,
            ..WriterConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        Ok(Arc::new(Gateway {
            node_id: cfg.node_id(),
            admission: Admission::new(cfg.limits.clone(), metrics.clone()),
            metrics,
            cfg: Arc::new(cfg),
            registry: Registry::new(),
            signing_key,
            observer,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            targets,
            writer_cfg,
            ssh_config: Arc::new(ssh_config),
            upstream_config: Arc::new(upstream_config),
        }))
    }

    /// Binds the SSH listener (so callers learn the real port when configured with port 0).
    pub async fn bind_ssh(&self) -> Result<TcpListener, ProxyError> {
        TcpListener::bind(self.cfg.ssh.listen)
            .await
            .map_err(|e| ProxyError::io(format!("ssh.listen {}", self.cfg.ssh.listen), e))
    }

    /// Accepts SSH connections until shutdown.
    pub async fn serve_ssh(self: Arc<Self>, listener: TcpListener) {
        let gw = self.clone();
        crate::listener::accept_loop(
            listener,
            "ssh",
            self.shutdown.clone(),
            self.tracker.clone(),
            move |tcp, peer| crate::ssh::serve_connection(gw.clone(), tcp, peer),
        )
        .await
    }

    /// Stops accepting, terminates every live session with a reason, and waits for their trails to
    /// be sealed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.registry.kill_all(KillReason {
            reason: "gateway shutting down".into(),
            by: "gateway".into(),
        });
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the shutdown grace period");
        }
    }

    pub fn ssh_listen_addr(&self) -> SocketAddr {
        self.cfg.ssh.listen
    }
}

fn load_or_generate_host_key(path: &Path) -> Result<PrivateKey, ProxyError> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .map_err(|e| ProxyError::Key(format!("{}: {e}", path.display())));
    }
    if let Some(dir) = path.parent() {
        trailgate_recorder::fsutil::private_dir_all(dir)
            .map_err(|e| ProxyError::Key(e.to_string()))?;
    }
    let key = PrivateKey::random(
        &mut russh::keys::key::safe_rng(),
        russh::keys::Algorithm::Ed25519,
    )
    .map_err(|e| ProxyError::Key(e.to_string()))?;
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|e| ProxyError::Key(format!("{}: {e}", path.display())))?;
    if let Ok(line) = key.public_key().to_openssh() {
        let _ = std::fs::write(path.with_extension("pub"), format!("{line}\n"));
    }
    tracing::info!(path = %path.display(), "generated ssh host key");
    Ok(key)
}
