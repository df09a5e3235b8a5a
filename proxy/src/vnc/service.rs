//! What the VNC bridge loads once: the gateway's TLS server configuration and, per VNC target,
//! the TLS client configuration that checks its certificate. Loading fails with the key that
//! is wrong, so `check-config` and `serve` refuse the same files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpListener;

use super::upstream::VncTarget;
use crate::config::{Protocol, VncConfig, VncTls};
use crate::error::ProxyError;
use crate::services::Services;
use crate::tls::{ServerTrust, client_config, parse_fingerprint, server_config};

pub struct VncService {
    pub svc: Arc<Services>,
    pub cfg: VncConfig,
    pub tls: Arc<rustls::ServerConfig>,
    pub targets: HashMap<String, VncTarget>,
}

impl VncService {
    /// `None` when the configuration has no `[vnc]` section.
    pub fn new(svc: Arc<Services>) -> Result<Option<Arc<VncService>>, ProxyError> {
        let Some(cfg) = svc.cfg.vnc.clone() else {
            return Ok(None);
        };
        let tls = server_config(&cfg.tls_cert, &cfg.tls_key, "vnc", &[])?;
        let mut targets = HashMap::new();
        for (i, t) in svc.cfg.targets.iter().enumerate() {
            if t.protocol != Protocol::Vnc {
                continue;
            }
            let at = format!("targets[{i}] ({})", t.name);
            let tls = match t.vnc_tls() {
                VncTls::None => {
                    tracing::warn!(target = %t.name, "tls = \"none\": the leg to this VNC target is not encrypted");
                    None
                }
                _ => {
                    let trust = match (&t.ca_file, &t.tls_fingerprint) {
                        (Some(ca), _) => ServerTrust::Ca(ca.clone()),
                        (None, Some(fp)) => ServerTrust::Pinned(
                            parse_fingerprint(fp)
                                .map_err(|m| ProxyError::Config(format!("{at}.tls_fingerprint: {m}")))?,
                        ),
                        (None, None) => {
                            return Err(ProxyError::Config(format!("{at}: set ca_file or tls_fingerprint")));
                        }
                    };
                    let host = t.tls_server_name.clone().unwrap_or_else(|| {
                        crate::util::split_host_port(&t.address).map(|(h, _)| h).unwrap_or_default()
                    });
                    let name = ServerName::try_from(host.clone()).map_err(|e| {
                        ProxyError::Config(format!("{at}.tls_server_name: {host:?}: {e}"))
                    })?;
                    Some((client_config(&trust, &at)?, name))
                }
            };
            targets.insert(t.name.clone(), VncTarget { tls });
        }
        Ok(Some(Arc::new(VncService {
            svc,
            cfg,
            tls,
            targets,
        })))
    }

    pub async fn bind(&self) -> Result<TcpListener, ProxyError> {
        let listen = self.cfg.listen;
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

    pub fn listen_addr(&self) -> SocketAddr {
        self.cfg.listen
    }
}
