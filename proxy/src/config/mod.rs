//! The gateway's TOML configuration: serde structs with defaults, unknown keys refused, and a
//! `validate()` that every load goes through. Errors name the key and the problem.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ProxyError;
use crate::policy::{SettingsPolicy, TlsSecuritySettings};

mod bytes;
mod cluster;
mod limits;
mod redact;
mod retention;
mod targets;
mod vnc;

pub use cluster::{CatalogConfig, ClusterConfig, StorageConfig};
pub use limits::{LimitsConfig, MAX_LOGIN_NAME};
pub use retention::RetentionConfig;
pub use targets::{Protocol, TargetConfig};
pub use vnc::{VncConfig, VncTls};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Trails, catalog and generated keys live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Names this gateway in session records (default: the host name).
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub ssh: SshConfig,
    /// The VNC listener; absent: no VNC.
    #[serde(default)]
    pub vnc: Option<VncConfig>,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Where the session catalog lives (SQLite in `data_dir`, or a shared PostgreSQL).
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Where sealed trails go (object storage) besides this node's disk.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Nodes sharing one catalog: heartbeat, lost-node grace, this node's API address.
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub channel_policies: BTreeMap<String, ChannelPolicyConfig>,
    #[serde(default)]
    pub settings_policies: BTreeMap<String, SettingsPolicy>,
    #[serde(default)]
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub api_tokens: Vec<ApiTokenConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./trailgate-data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    #[serde(default = "default_ssh_listen")]
    pub listen: SocketAddr,
    /// Host key files (OpenSSH format). Default: an ed25519 key generated in data_dir.
    #[serde(default)]
    pub host_keys: Vec<PathBuf>,
    /// Delay before answering a failed authentication (not OpenSSH's first `none` probe).
    #[serde(default = "default_auth_delay", with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// Connecting to and authenticating at a target may take this long.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Unauthenticated connections are closed after this long (from accept).
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// A client that has not sent its SSH version line this long after connecting is closed.
    #[serde(default = "default_banner_timeout", with = "humantime_serde")]
    pub banner_timeout: Duration,
    /// Authentication attempts per connection.
    #[serde(default = "default_max_auth")]
    pub max_auth_attempts: usize,
    /// Banner shown before authentication (e.g. a legal notice that sessions are recorded).
    #[serde(default)]
    pub banner: Option<String>,
    /// Ciphers offered to clients (their order wins). Default: chacha20-poly1305, AES-GCM, AES-CTR.
    #[serde(default)]
    pub ciphers: Option<Vec<String>>,
    /// Ciphers asked of targets, in order. Default: AES-GCM first on CPUs with AES instructions.
    #[serde(default)]
    pub upstream_ciphers: Option<Vec<String>>,
}

fn default_ssh_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2222))
}
fn default_auth_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_banner_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_auth() -> usize {
    6
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            listen: default_ssh_listen(),
            host_keys: Vec::new(),
            auth_failure_delay: default_auth_delay(),
            connect_timeout: default_connect_timeout(),
            login_timeout: default_login_timeout(),
            banner_timeout: default_banner_timeout(),
            max_auth_attempts: default_max_auth(),
            banner: None,
            ciphers: None,
            upstream_ciphers: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Fail closed: a session whose recording fails is terminated.
    Terminate,
    /// Keep the session running, marked as unrecorded in its record.
    Continue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    #[serde(default = "default_level")]
    pub zstd_level: i32,
    /// The fastest level frames drop to while a session waits for a CPU-starved compressor.
    #[serde(default = "default_fast_level")]
    pub zstd_fast_level: i32,
    #[serde(default = "default_on_failure")]
    pub on_failure: OnFailure,
    /// Trail-signing private key (PKCS#8 PEM). Default: data_dir/keys/trail-signing.key, generated.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// fdatasync every finished frame and every seal.
    #[serde(default = "yes")]
    pub fsync: bool,
    /// New sessions are refused (or, with `on_failure = "continue"`, go unrecorded) while the
    /// trail storage has less free space than this (`"1GiB"`), before the disk is full.
    #[serde(default, deserialize_with = "bytes::opt_size")]
    pub min_free_space: Option<u64>,
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_level() -> i32 {
    3
}
fn default_fast_level() -> i32 {
    -3
}
fn default_on_failure() -> OnFailure {
    OnFailure::Terminate
}
fn yes() -> bool {
    true
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            flush_interval: default_flush(),
            zstd_level: default_level(),
            zstd_fast_level: default_fast_level(),
            on_failure: default_on_failure(),
            signing_key: None,
            fsync: true,
            min_free_space: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// argon2id PHC string, as printed by `trailgate hash-password`.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// OpenSSH public key lines.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPolicyConfig {
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Connections open at once; more are closed at accept.
    #[serde(default = "default_api_connections")]
    pub max_connections: usize,
    /// A client must complete the TLS handshake, and send each request's headers, within this.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// TLS versions and suites the API's HTTPS accepts.
    #[serde(default)]
    pub client_tls_security_settings: TlsSecuritySettings,
}

fn default_api_connections() -> usize {
    256
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8022))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Auditor,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    pub name: String,
    /// Hex of sha256(token): the token itself is never stored.
    pub token_sha256: String,
    pub role: Role,
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths are taken relative to the
    /// directory the file is in, so a config means the same thing from any working directory.
    pub fn load(path: &Path) -> Result<Config, ProxyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProxyError::Config(format!("{}: {e}", path.display())))?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ProxyError::Config(m) => ProxyError::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths(&base);
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ProxyError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ProxyError::Config(redact::parse_error(text, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        self.ssh.host_keys.iter_mut().for_each(fix);
        if let Some(p) = &mut self.recording.signing_key {
            fix(p);
        }
        for t in &mut self.targets {
            if let Some(p) = &mut t.private_key {
                fix(p);
            }
            if let Some(p) = &mut t.known_hosts {
                fix(p);
            }
            if let Some(p) = &mut t.ca_file {
                fix(p);
            }
        }
        if let Some(v) = &mut self.vnc {
            fix(&mut v.tls_cert);
            fix(&mut v.tls_key);
        }
        if let Some(p) = &mut self.storage.credentials_file {
            fix(p);
        }
        if let Some(p) = &mut self.catalog.password_file {
            fix(p);
        }
        if let Some(api) = &mut self.api {
            if let Some(p) = &mut api.tls_cert {
                fix(p);
            }
            if let Some(p) = &mut api.tls_key {
                fix(p);
            }
        }
    }

    /// Every rule a config must meet; the message names the key.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let err = |m: String| Err(ProxyError::Config(m));
        let levels = trailgate_recorder::ZSTD_LEVELS;
        for (key, level) in [
            ("zstd_level", self.recording.zstd_level),
            ("zstd_fast_level", self.recording.zstd_fast_level),
        ] {
            if !trailgate_recorder::is_zstd_level(level) {
                return err(format!(
                    "recording.{key}: {level} is not a level: use 1 to {} (zstd -N), or -1 to {} \
                     (zstd --fast=N)",
                    levels.end(),
                    levels.start()
                ));
            }
        }
        self.limits.validate().map_err(ProxyError::Config)?;
        cluster::validate(&self.catalog, &self.storage, &self.cluster)
            .map_err(ProxyError::Config)?;
        if let Some(v) = &self.vnc {
            v.validate().map_err(ProxyError::Config)?;
        }
        if self.ssh.login_timeout.is_zero() {
            return err("ssh.login_timeout: must be above zero".into());
        }
        if self.ssh.banner_timeout.is_zero() || self.ssh.banner_timeout > self.ssh.login_timeout {
            return err(format!(
                "ssh.banner_timeout: must be above zero and at most ssh.login_timeout ({:?})",
                self.ssh.login_timeout
            ));
        }
        if self.recording.flush_interval < Duration::from_millis(10)
            || self.recording.flush_interval > Duration::from_secs(60)
        {
            return err("recording.flush_interval: must be between 10ms and 60s".into());
        }
        for (key, list) in [
            ("ssh.ciphers", &self.ssh.ciphers),
            ("ssh.upstream_ciphers", &self.ssh.upstream_ciphers),
        ] {
            // Only the names are checked here; the gateway picks each leg's default.
            crate::ssh::ciphers::resolve(key, list.as_deref(), &[]).map_err(ProxyError::Config)?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("users[{i}] ({})", u.name);
            if u.name.is_empty()
                || u.name.len() > MAX_LOGIN_NAME
                || u.name.contains(['@', ':'])
                || u.name.chars().any(char::is_whitespace)
            {
                return err(format!(
                    "{at}.name: must be 1 to {MAX_LOGIN_NAME} bytes without '@', ':' or spaces"
                ));
            }
            if !seen.insert(u.name.as_str()) {
                return err(format!("{at}.name: duplicate user"));
            }
            if u.password_hash.is_none() && u.authorized_keys.is_empty() {
                return err(format!("{at}: needs password_hash or authorized_keys"));
            }
            if let Some(h) = &u.password_hash {
                crate::auth::check_hash_format(h)
                    .map_err(|m| ProxyError::Config(format!("{at}.password_hash: {m}")))?;
            }
            for (k, line) in u.authorized_keys.iter().enumerate() {
                crate::auth::parse_public_key_line(line)
                    .map_err(|m| ProxyError::Config(format!("{at}.authorized_keys[{k}]: {m}")))?;
            }
        }
        let mut tseen = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = format!("targets[{i}] ({})", t.name);
            if t.name.is_empty() || t.name.contains(['@', ':']) {
                return err(format!("{at}.name: must be non-empty without '@' or ':'"));
            }
            if !tseen.insert(t.name.as_str()) {
                return err(format!("{at}.name: duplicate target"));
            }
            if crate::util::split_host_port(&t.address).is_none() {
                return err(format!("{at}.address: {:?} is not host:port", t.address));
            }
            vnc::validate_target(&at, t).map_err(ProxyError::Config)?;
            if t.protocol == Protocol::Ssh {
                match (&t.host_key, &t.known_hosts, t.insecure_skip_host_key_check) {
                    (None, None, false) => {
                        return err(format!(
                            "{at}: no upstream host-key source: set host_key or known_hosts (or insecure_skip_host_key_check = true)"
                        ));
                    }
                    (Some(_), Some(_), _) => {
                        return err(format!("{at}: set host_key or known_hosts, not both"));
                    }
                    _ => {}
                }
                if let Some(k) = &t.host_key {
                    crate::auth::parse_public_key_line(k)
                        .map_err(|m| ProxyError::Config(format!("{at}.host_key: {m}")))?;
                }
                if t.private_key.is_none() && t.password.is_none() {
                    return err(format!(
                        "{at}: needs private_key or password for the target account"
                    ));
                }
            }
            for u in &t.allow_users {
                if !self.users.iter().any(|x| &x.name == u) {
                    return err(format!("{at}.allow_users: no user named {u:?}"));
                }
            }
            if t.channel_policy != "default"
                && !self.channel_policies.contains_key(&t.channel_policy)
            {
                return err(format!(
                    "{at}.channel_policy: no [channel_policies.{}]",
                    t.channel_policy
                ));
            }
        }
        for (name, p) in &self.channel_policies {
            for (k, a) in p.allow.iter().enumerate() {
                if crate::policy::ChannelKind::parse_allow(a).is_none() {
                    return err(format!(
                        "channel_policies.{name}.allow[{k}]: unknown channel kind {a:?}; known: {}",
                        crate::policy::channel::CHANNEL_KINDS.join(", ")
                    ));
                }
            }
        }
        for (name, p) in &self.settings_policies {
            p.validate(&format!("settings_policies.{name}"))
                .map_err(ProxyError::Config)?;
        }
        self.retention.validate().map_err(ProxyError::Config)?;
        if let Some(v) = &self.vnc {
            v.client_tls_security_settings
                .compile("vnc.client_tls_security_settings")
                .map_err(ProxyError::Config)?;
        }
        if let Some(api) = &self.api {
            api.client_tls_security_settings
                .compile("api.client_tls_security_settings")
                .map_err(ProxyError::Config)?;
        }
        let mut tok = std::collections::HashSet::new();
        for (i, t) in self.api_tokens.iter().enumerate() {
            let at = format!("api_tokens[{i}] ({})", t.name);
            if t.token_sha256.len() != 64 || hex::decode(&t.token_sha256).is_err() {
                return err(format!(
                    "{at}.token_sha256: must be 64 hex digits (sha256 of the token)"
                ));
            }
            if !tok.insert(t.token_sha256.to_ascii_lowercase()) {
                return err(format!("{at}.token_sha256: duplicate token"));
            }
        }
        if let Some(api) = &self.api
            && api.tls_cert.is_some() != api.tls_key.is_some()
        {
            return err("api: tls_cert and tls_key go together".into());
        }
        if let Some(api) = &self.api {
            if api.max_connections == 0 {
                return err("api.max_connections: must be at least 1".into());
            }
            if api.header_read_timeout.is_zero() {
                return err("api.header_read_timeout: must be above zero".into());
            }
        }
        Ok(())
    }

    /// What a valid configuration should still tell its administrator: targets naming settings
    /// policies the file does not define (the control API may create them; until then those
    /// targets refuse sessions), and TLS settings that mean something else than they say.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if let Some(p) = &t.settings_policy
                && !self.settings_policies.contains_key(p)
            {
                w.push(format!(
                    "targets[{i}] ({}).settings_policy: {p:?} is not in this file; sessions to this target are refused unless the control API defines it",
                    t.name
                ));
            }
        }
        for (name, p) in &self.settings_policies {
            w.extend(p.warnings(&format!("settings_policies.{name}")));
        }
        if let Some(v) = &self.vnc {
            w.extend(
                v.client_tls_security_settings
                    .warnings("vnc.client_tls_security_settings"),
            );
        }
        if let Some(api) = &self.api {
            w.extend(
                api.client_tls_security_settings
                    .warnings("api.client_tls_security_settings"),
            );
        }
        w
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Targets a user may use (a target without allow_users is open to every gateway user).
    pub fn targets_for(&self, user: &str) -> Vec<&TargetConfig> {
        self.targets
            .iter()
            .filter(|t| t.allow_users.is_empty() || t.allow_users.iter().any(|u| u == user))
            .collect()
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.recording
            .signing_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys/trail-signing.key"))
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "trailgate".into())
        })
    }
}

#[cfg(test)]
mod tests;
