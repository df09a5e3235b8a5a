//! What may change while the gateway runs: the configuration file (replaced whole on SIGHUP),
//! the settings policies created through the control API, and the global VNC options. Sessions
//! take what is current when they start and keep it; nothing here touches running sessions.
//!
//! Settings policies are named by key, per protocol. The file's policies apply to both
//! protocols and are read-only here; API policies belong to the protocol they were created
//! under. A target's policy is resolved when a session starts, so a target may name a policy
//! the API creates later.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::{Config, Protocol};
use crate::error::ProxyError;
use crate::policy::{SettingsPolicy, VncOptions};

/// Where a policy is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// A settings policy as found, with its key and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub key: String,
    pub source: Source,
    pub policy: SettingsPolicy,
}

pub struct Runtime {
    cfg: RwLock<Arc<Config>>,
    api: RwLock<BTreeMap<(Protocol, String), SettingsPolicy>>,
    vnc_options: RwLock<VncOptions>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Runtime {
    pub fn new(cfg: Config) -> Runtime {
        Runtime {
            cfg: RwLock::new(Arc::new(cfg)),
            api: RwLock::new(BTreeMap::new()),
            vnc_options: RwLock::new(VncOptions::default()),
        }
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        read(&self.cfg)
    }

    /// Puts a new (validated) configuration in force for sessions that start from now on.
    pub fn replace_config(&self, cfg: Config) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    /// The policy `key` of `protocol`: the file's first, then the API's.
    pub fn resolve(&self, cfg: &Config, protocol: Protocol, key: &str) -> Option<Resolved> {
        if let Some(p) = cfg.settings_policies.get(key) {
            return Some(Resolved {
                key: key.to_string(),
                source: Source::Config,
                policy: p.clone(),
            });
        }
        let api = self.api.read().unwrap_or_else(|e| e.into_inner());
        api.get(&(protocol, key.to_string())).map(|p| Resolved {
            key: key.to_string(),
            source: Source::Api,
            policy: p.clone(),
        })
    }

    /// Every policy of a protocol, the file's first, by key.
    pub fn list(&self, protocol: Protocol) -> Vec<Resolved> {
        let cfg = self.config();
        let mut out: Vec<Resolved> = cfg
            .settings_policies
            .iter()
            .map(|(k, p)| Resolved {
                key: k.clone(),
                source: Source::Config,
                policy: p.clone(),
            })
            .collect();
        let api = self.api.read().unwrap_or_else(|e| e.into_inner());
        for ((proto, k), p) in api.iter() {
            if *proto == protocol && !cfg.settings_policies.contains_key(k) {
                out.push(Resolved {
                    key: k.clone(),
                    source: Source::Api,
                    policy: p.clone(),
                });
            }
        }
        out
    }

    /// Targets of `protocol` that name policy `key`.
    pub fn users_of(&self, protocol: Protocol, key: &str) -> Vec<String> {
        self.config()
            .targets
            .iter()
            .filter(|t| t.protocol == protocol && t.settings_policy.as_deref() == Some(key))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Checks that the API may create or replace policy `key` (validated, not the file's).
    pub fn check_put(&self, key: &str, policy: &SettingsPolicy) -> Result<(), ProxyError> {
        if key.is_empty()
            || key.len() > 128
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ProxyError::Invalid(
                "key: 1 to 128 characters of letters, digits, '-', '_' and '.'".into(),
            ));
        }
        if self.config().settings_policies.contains_key(key) {
            return Err(ProxyError::Conflict(format!(
                "settings policy {key:?} is defined in the configuration file (read-only here); change it there"
            )));
        }
        policy.validate("body").map_err(ProxyError::Invalid)
    }

    /// Creates or replaces an API policy (after [`Runtime::check_put`] and persisting it);
    /// returns the one it replaced.
    pub fn put(
        &self,
        protocol: Protocol,
        key: &str,
        policy: SettingsPolicy,
    ) -> Option<SettingsPolicy> {
        self.api
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((protocol, key.to_string()), policy)
    }

    /// Checks that the API may delete policy `key`: it exists there and no target names it.
    pub fn check_delete(
        &self,
        protocol: Protocol,
        key: &str,
    ) -> Result<SettingsPolicy, ProxyError> {
        if self.config().settings_policies.contains_key(key) {
            return Err(ProxyError::Conflict(format!(
                "settings policy {key:?} is defined in the configuration file (read-only here)"
            )));
        }
        let current = self
            .api
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(protocol, key.to_string()))
            .cloned()
            .ok_or_else(|| ProxyError::NotFound(format!("settings policy {key:?}")))?;
        let users = self.users_of(protocol, key);
        if !users.is_empty() {
            return Err(ProxyError::Conflict(format!(
                "settings policy {key:?} is used by targets: {}",
                users.join(", ")
            )));
        }
        Ok(current)
    }

    pub fn delete(&self, protocol: Protocol, key: &str) -> Option<SettingsPolicy> {
        self.api
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(protocol, key.to_string()))
    }

    pub fn vnc_options(&self) -> VncOptions {
        read(&self.vnc_options)
    }

    pub fn set_vnc_options(&self, o: VncOptions) {
        *self.vnc_options.write().unwrap_or_else(|e| e.into_inner()) = o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse(
            r#"
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$0z5jA0Z9dGzqy0S1bX0a8H5y8x4S8Q3e7wqfZ0Tt5uU"
[[targets]]
name = "web"
address = "127.0.0.1:22"
user = "u"
password = "p"
insecure_skip_host_key_check = true
settings_policy = "later"
[settings_policies.file]
timeout = 60
"#,
        )
        .unwrap()
    }

    #[test]
    fn file_policies_are_read_only_and_used_ones_cannot_go() {
        let rt = Runtime::new(cfg());
        assert!(
            rt.config()
                .warnings()
                .iter()
                .any(|w| w.contains("\"later\""))
        );
        let p = SettingsPolicy::default();
        assert!(matches!(
            rt.check_put("file", &p),
            Err(ProxyError::Conflict(_))
        ));
        assert!(matches!(
            rt.check_put("bad key", &p),
            Err(ProxyError::Invalid(_))
        ));
        let c = rt.config();
        assert!(rt.resolve(&c, Protocol::Ssh, "later").is_none());
        rt.check_put("later", &p).unwrap();
        rt.put(Protocol::Ssh, "later", p.clone());
        assert_eq!(
            rt.resolve(&c, Protocol::Ssh, "later").unwrap().source,
            Source::Api
        );
        // Another protocol's policies are its own.
        assert!(rt.resolve(&c, Protocol::Vnc, "later").is_none());
        assert!(matches!(
            rt.check_delete(Protocol::Ssh, "later"),
            Err(ProxyError::Conflict(_))
        ));
        assert!(matches!(
            rt.check_delete(Protocol::Ssh, "nope"),
            Err(ProxyError::NotFound(_))
        ));
        let keys: Vec<_> = rt.list(Protocol::Ssh).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["file", "later"]);
    }
}
