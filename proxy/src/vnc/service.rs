//! What the VNC bridge loads: the gateway's TLS server configuration (restricted by
//! `[vnc] client_tls_security_settings`) and, per VNC target, how its certificate is checked.
//! Loading fails with the key that is wrong, so `check-config`, `serve` and a reload refuse the
//! same files. A reload replaces all of it at once for connections accepted afterwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::pki_types::ServerName;
use tokio::net::TcpListener;

use super::upstream::VncTarget;
use crate::config::{Config, Protocol, VncConfig, VncTls};
use crate::error::ProxyError;
use crate::policy::TlsPolicy;
use crate::services::Services;
use crate::tls::{ServerTrust, client_config, parse_fingerprint, server_config};

pub struct VncService {
    pub svc: Arc<Services>,
    listen: SocketAddr,
    state: RwLock<Arc<VncState>>,
}

/// The VNC listener's loaded configuration.
pub struct VncState {
    pub cfg: VncConfig,
    pub tls: Arc<rustls::ServerConfig>,
    targets: HashMap<String, TargetTls>,
}

/// How one target's certificate is checked (loaded once), and the name it must carry.
struct TargetTls {
    trust: ServerTrust,
    name: ServerName<'static>,
    at: String,
}

impl VncState {
    /// Loads `[vnc]` and the VNC targets of `cfg`; `None` when there is no `[vnc]` section.
    pub fn load(cfg: &Config) -> Result<Option<VncState>, ProxyError> {
        let Some(vcfg) = cfg.vnc.clone() else {
            return Ok(None);
        };
        let policy = vcfg
            .client_tls_security_settings
            .compile("vnc.client_tls_security_settings")
            .map_err(ProxyError::Config)?;
        let tls = server_config(&vcfg.tls_cert, &vcfg.tls_key, "vnc", &[], &policy)?;
        let mut targets = HashMap::new();
        for (i, t) in cfg.targets.iter().enumerate() {
            if t.protocol != Protocol::Vnc || t.vnc_tls() == VncTls::None {
                continue;
            }
            let at = format!("targets[{i}] ({})", t.name);
            let trust = match (&t.ca_file, &t.tls_fingerprint) {
                (Some(ca), _) => ServerTrust::Ca(ca.clone()).load(&at)?,
                (None, Some(fp)) => ServerTrust::Pinned(
                    parse_fingerprint(fp)
                        .map_err(|m| ProxyError::Config(format!("{at}.tls_fingerprint: {m}")))?,
                ),
                (None, None) => {
                    return Err(ProxyError::Config(format!(
                        "{at}: set ca_file or tls_fingerprint"
                    )));
                }
            };
            let host = t.tls_server_name.clone().unwrap_or_else(|| {
                crate::util::split_host_port(&t.address)
                    .map(|(h, _)| h)
                    .unwrap_or_default()
            });
            let name = ServerName::try_from(host.clone())
                .map_err(|e| ProxyError::Config(format!("{at}.tls_server_name: {host:?}: {e}")))?;
            // Built once here so a configuration rustls refuses fails at load, not at login.
            client_config(&trust, &at, &crate::tls::default_policy())?;
            targets.insert(t.name.clone(), TargetTls { trust, name, at });
        }
        Ok(Some(VncState {
            cfg: vcfg,
            tls,
            targets,
        }))
    }

    /// The target leg's TLS for one session under the target's policy (`None`: plain TCP).
    pub fn target(&self, name: &str, policy: &TlsPolicy) -> Result<VncTarget, ProxyError> {
        let tls = match self.targets.get(name) {
            Some(t) => Some((client_config(&t.trust, &t.at, policy)?, t.name.clone())),
            None => None,
        };
        Ok(VncTarget { tls })
    }
}

impl VncService {
    /// `None` when the configuration has no `[vnc]` section.
    pub fn new(svc: Arc<Services>) -> Result<Option<Arc<VncService>>, ProxyError> {
        let cfg = svc.cfg();
        let Some(state) = VncState::load(&cfg)? else {
            return Ok(None);
        };
        for t in cfg.targets.iter().filter(|t| t.protocol == Protocol::Vnc) {
            if t.vnc_tls() == VncTls::None {
                tracing::warn!(target = %t.name, "tls = \"none\": the leg to this VNC target is not encrypted");
            }
        }
        Ok(Some(Arc::new(VncService {
            svc,
            listen: state.cfg.listen,
            state: RwLock::new(Arc::new(state)),
        })))
    }

    /// The loaded configuration now (a connection keeps the one it was accepted with).
    pub fn state(&self) -> Arc<VncState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a state loaded by [`VncState::load`] in force for new connections. The listening
    /// address is the one the service was started with.
    pub fn set_state(&self, state: VncState) {
        if state.cfg.listen != self.listen {
            tracing::warn!(configured = %state.cfg.listen, listening = %self.listen, "vnc.listen changed: takes effect at restart");
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    pub async fn bind(&self) -> Result<TcpListener, ProxyError> {
        let listen = self.listen;
        TcpListener::bind(listen)
            .await
            .map_err(|e| ProxyError::io(format!("vnc.listen {listen}"), e))
    }

    /// Accepts VNC connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let vnc = self.clone();
        crate::listener::accept_loop(
            listener,
            "vnc",
            self.svc.shutdown.clone(),
            self.svc.tracker.clone(),
            move |tcp, peer| super::serve_connection(vnc.clone(), tcp, peer),
        )
        .await
    }

    /// `sha256:...` of the gateway's VNC certificate (what viewers are asked to trust).
    pub fn certificate_fingerprint(&self) -> Option<String> {
        let st = self.state();
        crate::tls::load_certs(&st.cfg.tls_cert, "vnc.tls_cert")
            .ok()?
            .first()
            .map(|c| crate::tls::fingerprint(c.as_ref()))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}
