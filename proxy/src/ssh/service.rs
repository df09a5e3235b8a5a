//! The SSH listener's service: host keys, the targets' upstream credentials and host-key
//! expectations, and the russh configurations of both legs, loaded once at start-up on top of
//! the protocol-neutral [`Services`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use russh::keys::ssh_key::{LineEnding, PrivateKey, PublicKey};
use tokio::net::TcpListener;

use super::ciphers;
use crate::config::{Config, Protocol};
use crate::error::ProxyError;
use crate::policy::ChannelPolicy;
use crate::services::Services;

/// Upstream credentials and host-key expectations of one SSH target, loaded once at start-up.
pub struct TargetRuntime {
    pub private_key: Option<Arc<PrivateKey>>,
    pub pinned_key: Option<PublicKey>,
    pub channel_policy: ChannelPolicy,
}

pub struct SshService {
    pub svc: Arc<Services>,
    targets: RwLock<Arc<HashMap<String, Arc<TargetRuntime>>>>,
    pub(crate) ssh_config: Arc<russh::server::Config>,
    pub(crate) upstream_config: Arc<russh::client::Config>,
}

impl SshService {
    /// Loads the host keys (generating one on first start) and checks every SSH target's
    /// credentials, so a bad path fails at start-up rather than at the first login.
    pub fn new(svc: Arc<Services>) -> Result<Arc<SshService>, ProxyError> {
        let cfg = svc.cfg();
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
        let targets = RwLock::new(Arc::new(Self::load_targets(&cfg)?));
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
        let upstream_config = super::upstream::client_config(
            ciphers::resolve(
                "ssh.upstream_ciphers",
                cfg.ssh.upstream_ciphers.as_deref(),
                ciphers::default_upstream(hw_aes),
            )
            .map_err(ProxyError::Config)?,
        );
        tracing::info!(hardware_aes = hw_aes, upstream_ciphers = ?upstream_config.preferred.cipher.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), "upstream cipher preference");
        Ok(Arc::new(SshService {
            svc,
            targets,
            ssh_config: Arc::new(ssh_config),
            upstream_config: Arc::new(upstream_config),
        }))
    }

    /// Loads the configured host keys without generating any (`check-config`).
    pub fn check_host_keys(cfg: &Config) -> Result<usize, ProxyError> {
        for p in &cfg.ssh.host_keys {
            russh::keys::load_secret_key(p, None)
                .map_err(|e| ProxyError::Config(format!("ssh.host_keys: {}: {e}", p.display())))?;
        }
        Ok(cfg.ssh.host_keys.len())
    }

    /// Loads every SSH target's upstream credentials, host-key expectation and channel policy
    /// (at start-up, and for a reload before anything is replaced).
    pub fn load_targets(cfg: &Config) -> Result<HashMap<String, Arc<TargetRuntime>>, ProxyError> {
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
                Arc::new(TargetRuntime {
                    private_key,
                    pinned_key,
                    channel_policy,
                }),
            );
        }
        Ok(targets)
    }

    /// Puts targets loaded by [`SshService::load_targets`] in force for new sessions.
    pub fn set_targets(&self, targets: HashMap<String, Arc<TargetRuntime>>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(targets);
    }

    /// The runtime of an SSH target, as loaded now.
    pub fn target(&self, name: &str) -> Option<Arc<TargetRuntime>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Binds the SSH listener (so callers learn the real port when configured with port 0).
    pub async fn bind(&self) -> Result<TcpListener, ProxyError> {
        let listen = self.svc.cfg().ssh.listen;
        TcpListener::bind(listen)
            .await
            .map_err(|e| ProxyError::io(format!("ssh.listen {listen}"), e))
    }

    /// Accepts SSH connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let ssh = self.clone();
        crate::listener::accept_loop(
            listener,
            "ssh",
            self.svc.shutdown.clone(),
            self.svc.tracker.clone(),
            move |tcp, peer| super::serve_connection(ssh.clone(), tcp, peer),
        )
        .await
    }

    /// `SHA256:... (ssh-ed25519)` of each host key, as OpenSSH clients show them.
    pub fn host_key_fingerprints(&self) -> Vec<String> {
        self.ssh_config
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{} ({})",
                    k.public_key().fingerprint(russh::keys::HashAlg::Sha256),
                    k.algorithm().as_str()
                )
            })
            .collect()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.svc.cfg().ssh.listen
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
