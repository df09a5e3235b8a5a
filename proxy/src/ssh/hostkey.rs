//! Fetching a target's SSH host key (for `trailgate setup`): the key exchange runs far enough to
//! learn the key, which is then refused, so nothing is trusted and no login is attempted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client;
use russh::keys::PublicKey;

use crate::error::ProxyError;

struct Capture(Arc<OnceLock<PublicKey>>);

impl client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let _ = self.0.set(key.public_key().clone());
        Ok(false)
    }
}

/// The host key `addr` (`host:port`) offers.
pub async fn fetch_host_key(addr: &str, timeout: Duration) -> Result<PublicKey, ProxyError> {
    let seen = Arc::new(OnceLock::new());
    let cfg = Arc::new(client::Config::default());
    let up = |reason: String| ProxyError::Upstream {
        target: addr.to_string(),
        reason,
    };
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| up(format!("cannot connect: {e}")))?;
        let _ = client::connect_stream(cfg, tcp, Capture(seen.clone())).await;
        Ok::<_, ProxyError>(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| up(format!("no SSH key exchange within {timeout:?}")))??;
    seen.get()
        .cloned()
        .ok_or_else(|| up("the server offered no host key (is it an SSH server?)".into()))
}
