//! `[vnc]` (the VNC listener: address, TLS certificate, timeouts) and the VNC-specific keys of
//! `[[targets]]` (how the gateway secures and authenticates the leg to a VNC server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Protocol, TargetConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VncConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The gateway's certificate chain and key (PEM), for VeNCrypt X509Plain and TLS-first.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Unauthenticated connections are closed after this long (from accept).
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Connecting to, securing and authenticating at a target may take this long.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long the gateway waits for a TLS-first client's ClientHello before it speaks RFB
    /// first (RFB clients wait for the server's version line; TLS clients speak first).
    #[serde(default = "default_detect", with = "humantime_serde")]
    pub tls_detect_timeout: Duration,
    /// TLS versions and suites viewers must use (the handshake comes before the login names a
    /// target, so this is the listener's; a target's settings policy is checked after login).
    #[serde(default)]
    pub client_tls_security_settings: crate::policy::TlsSecuritySettings,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5999))
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_detect() -> Duration {
    Duration::from_millis(150)
}

impl VncConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.login_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("vnc.login_timeout and vnc.connect_timeout: must be above zero".into());
        }
        if self.tls_detect_timeout.is_zero() || self.tls_detect_timeout > Duration::from_secs(5) {
            return Err("vnc.tls_detect_timeout: must be above zero and at most 5s".into());
        }
        Ok(())
    }
}

/// How the gateway reaches a VNC target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VncTls {
    /// RFB, then VeNCrypt with an X509 subtype (TLS with a certificate) inside it.
    #[default]
    Vencrypt,
    /// TLS from the first byte, RFB inside (x11vnc `-ssl`, stunnel).
    TlsFirst,
    /// No TLS: VNC authentication or none, in clear. Must be chosen explicitly; warned at start.
    None,
}

impl VncTls {
    pub fn as_str(self) -> &'static str {
        match self {
            VncTls::Vencrypt => "vencrypt",
            VncTls::TlsFirst => "tls-first",
            VncTls::None => "none",
        }
    }
}

/// The checks of `[[targets]]` entries that depend on the protocol.
pub(super) fn validate_target(at: &str, t: &TargetConfig) -> Result<(), String> {
    let vnc_keys = [
        ("tls", t.tls.is_some()),
        ("ca_file", t.ca_file.is_some()),
        ("tls_fingerprint", t.tls_fingerprint.is_some()),
        ("tls_server_name", t.tls_server_name.is_some()),
    ];
    let ssh_keys = [
        ("host_key", t.host_key.is_some()),
        ("known_hosts", t.known_hosts.is_some()),
        ("private_key", t.private_key.is_some()),
        (
            "insecure_skip_host_key_check",
            t.insecure_skip_host_key_check,
        ),
    ];
    let (wrong, proto) = match t.protocol {
        Protocol::Ssh => (vnc_keys, "vnc"),
        Protocol::Vnc => (ssh_keys, "ssh"),
    };
    if let Some((k, _)) = wrong.iter().find(|(_, set)| *set) {
        return Err(format!(
            "{at}.{k}: applies to protocol = \"{proto}\" targets only"
        ));
    }
    if t.protocol == Protocol::Ssh {
        if t.user.is_empty() {
            return Err(format!("{at}.user: the account on the target is required"));
        }
        return Ok(());
    }
    let tls = t.tls.unwrap_or_default();
    match (tls, &t.ca_file, &t.tls_fingerprint) {
        (VncTls::None, None, None) => {}
        (VncTls::None, _, _) => {
            return Err(format!(
                "{at}: ca_file and tls_fingerprint need tls = \"vencrypt\" or \"tls-first\""
            ));
        }
        (_, None, None) => {
            return Err(format!(
                "{at}: no way to check the target's certificate: set ca_file or tls_fingerprint \
                 (\"sha256:<hex>\", see `openssl x509 -fingerprint -sha256`)"
            ));
        }
        (_, Some(_), Some(_)) => {
            return Err(format!("{at}: set ca_file or tls_fingerprint, not both"));
        }
        (_, None, Some(fp)) => {
            crate::tls::parse_fingerprint(fp).map_err(|m| format!("{at}.tls_fingerprint: {m}"))?;
        }
        (_, Some(_), None) => {}
    }
    if !t.user.is_empty() && t.password.is_none() {
        return Err(format!(
            "{at}.user: needs password (Plain authentication sends both)"
        ));
    }
    Ok(())
}
