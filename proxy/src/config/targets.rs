//! `[[targets]]`: where a target is, how the gateway authenticates there and checks its identity,
//! who may use it, and the policies that govern its sessions.

use std::path::PathBuf;

use serde::Deserialize;

use super::VncTls;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Ssh,
    Vnc,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Ssh, Protocol::Vnc];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Vnc => "vnc",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// host:port of the target.
    pub address: String,
    /// Pinned upstream host key (OpenSSH public key line).
    #[serde(default)]
    pub host_key: Option<String>,
    /// ... or an OpenSSH known_hosts file.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_host_key_check: bool,
    /// Account on the target (SSH: required; VNC: the user name of Plain authentication).
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub allow_users: Vec<String>,
    #[serde(default = "default_policy_name")]
    pub channel_policy: String,
    #[serde(default)]
    pub settings_policy: Option<String>,
    /// VNC: how the leg to the target is secured (default `vencrypt`).
    #[serde(default)]
    pub tls: Option<VncTls>,
    /// VNC: CA certificates (PEM) the target's certificate must chain to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// VNC: ... or the target certificate's SHA-256, `sha256:<hex>`.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
    /// VNC: the name the certificate must carry (default: the host of `address`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

impl TargetConfig {
    pub fn vnc_tls(&self) -> VncTls {
        self.tls.unwrap_or_default()
    }
}

fn default_protocol() -> Protocol {
    Protocol::Ssh
}
fn default_policy_name() -> String {
    "default".into()
}
