//! The settings policy: the vendor-shaped object (`timeout`, `inactivity_timeout {enabled,
//! value}`, `max_session`, `preconnect_channel_check`, and TLS settings per leg) that the TOML
//! file and the control API both write, with its validation. Pure data, no I/O.
//!
//! Durations are seconds on the wire (`"timeout": 600`); the TOML file may also write them as
//! human-readable strings (`"15m"`, `"1500ms"`), and keeps its older spellings (`idle_timeout`,
//! `inactivity_timeout = "30m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tls::TlsSecuritySettings;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPolicy {
    /// A display name (the vendor's; no whitespace). The policy is addressed by its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Idle timeout in seconds: no traffic in either direction (keepalives and window adjusts
    /// do not count). Absent or 0: none.
    #[serde(default, alias = "idle_timeout", with = "secs")]
    #[schema(value_type = Option<f64>)]
    pub timeout: Option<Duration>,
    /// No user input (SSH: client-to-server channel data; VNC: key and pointer events).
    #[serde(default)]
    pub inactivity_timeout: Inactivity,
    /// Hard cap on session length, in seconds.
    #[serde(default, with = "secs")]
    #[schema(value_type = Option<f64>)]
    pub max_session: Option<Duration>,
    /// Decide everything that can be decided before the target is contacted.
    #[serde(default)]
    pub preconnect_channel_check: bool,
    /// The client's leg (VNC).
    #[serde(default)]
    pub client_tls_security_settings: TlsSecuritySettings,
    /// The target's leg (VNC).
    #[serde(default)]
    pub server_tls_security_settings: TlsSecuritySettings,
}

/// `inactivity_timeout {enabled, value}`; the TOML file may write just a duration (enabled).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Inactivity {
    pub enabled: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "secs::serialize"
    )]
    #[schema(value_type = Option<f64>)]
    pub value: Option<Duration>,
}

impl<'de> Deserialize<'de> for Inactivity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            enabled: bool,
            #[serde(default, with = "secs")]
            value: Option<Duration>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Table(Table),
            Plain(secs::Value),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected {enabled, value} or a duration (seconds or a string such as \"30m\")",
            )
        })? {
            Form::Table(t) => Ok(Inactivity {
                enabled: t.enabled,
                value: t.value,
            }),
            Form::Plain(v) => {
                let value = v.duration().map_err(serde::de::Error::custom)?;
                Ok(Inactivity {
                    enabled: value.is_some(),
                    value,
                })
            }
        }
    }
}

impl SettingsPolicy {
    /// The idle limit in force, if any.
    pub fn idle(&self) -> Option<Duration> {
        self.timeout.filter(|d| !d.is_zero())
    }

    /// The inactivity limit in force, if any.
    pub fn inactivity(&self) -> Option<Duration> {
        if self.inactivity_timeout.enabled {
            self.inactivity_timeout.value.filter(|d| !d.is_zero())
        } else {
            None
        }
    }

    pub fn max_session(&self) -> Option<Duration> {
        self.max_session.filter(|d| !d.is_zero())
    }

    /// Checks the policy; errors name the field (`at` is where the policy is, e.g.
    /// `settings_policies.strict`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if let Some(n) = &self.name
            && (n.is_empty() || n.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "{at}.name: must be non-empty and contain no whitespace"
            ));
        }
        let inact = &self.inactivity_timeout;
        if inact.enabled {
            let Some(v) = inact.value.filter(|d| !d.is_zero()) else {
                return Err(format!(
                    "{at}.inactivity_timeout.value: required (seconds > 0) when enabled"
                ));
            };
            if let Some(t) = self.idle()
                && v < t
            {
                return Err(format!(
                    "{at}.inactivity_timeout.value: {} s is less than timeout ({} s); it must be greater than or equal to it",
                    v.as_secs_f64(),
                    t.as_secs_f64()
                ));
            }
        }
        self.client_tls_security_settings
            .compile(&format!("{at}.client_tls_security_settings"))?;
        self.server_tls_security_settings
            .compile(&format!("{at}.server_tls_security_settings"))?;
        Ok(())
    }

    /// What an administrator should know about an accepted policy (TLS versions rustls cannot
    /// speak, and what they mean instead).
    pub fn warnings(&self, at: &str) -> Vec<String> {
        let mut w = self
            .client_tls_security_settings
            .warnings(&format!("{at}.client_tls_security_settings"));
        w.extend(
            self.server_tls_security_settings
                .warnings(&format!("{at}.server_tls_security_settings")),
        );
        w
    }
}

/// Durations as seconds (integer or fractional) or, when reading, human-readable strings.
pub(crate) mod secs {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        Int(u64),
        Float(f64),
        Text(String),
    }

    impl Value {
        pub fn duration(self) -> Result<Option<Duration>, String> {
            match self {
                Value::Int(0) => Ok(None),
                Value::Int(n) => Ok(Some(Duration::from_secs(n))),
                Value::Float(f) if (0.0..1e12).contains(&f) => {
                    Ok(Some(Duration::from_secs_f64(f)).filter(|d| !d.is_zero()))
                }
                Value::Float(f) => Err(format!("{f} is not a duration in seconds")),
                Value::Text(s) => humantime::parse_duration(&s)
                    .map(|d| Some(d).filter(|d| !d.is_zero()))
                    .map_err(|e| format!("{s:?}: {e} (seconds, or a string such as \"15m\")")),
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None => Ok(None),
            Some(v) => v.duration().map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(d) if d.subsec_nanos() == 0 => s.serialize_u64(d.as_secs()),
            Some(d) => s.serialize_f64(d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: serde_json::Value) -> Result<SettingsPolicy, String> {
        let p: SettingsPolicy = serde_json::from_value(v).map_err(|e| e.to_string())?;
        p.validate("p").map(|_| p)
    }

    #[test]
    fn vendor_shape_round_trips() {
        let v = serde_json::json!({
            "name": "strict",
            "timeout": 600,
            "inactivity_timeout": {"enabled": true, "value": 900},
            "preconnect_channel_check": true,
            "client_tls_security_settings": {
                "cipher_strength": {"selection": "recommended"},
                "minimum_tls_version": "TLSv1_3"
            },
            "server_tls_security_settings": {
                "cipher_strength": {"selection": "custom", "custom_cipher": "TLS_AES_256_GCM_SHA384:ECDHE-RSA-AES128-GCM-SHA256"},
                "minimum_tls_version": "TLSv1_2"
            }
        });
        let p = json(v.clone()).unwrap();
        assert_eq!(p.idle(), Some(Duration::from_secs(600)));
        assert_eq!(p.inactivity(), Some(Duration::from_secs(900)));
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["timeout"], 600);
        assert_eq!(back["inactivity_timeout"]["value"], 900);
        assert_eq!(
            back["server_tls_security_settings"]["cipher_strength"]["custom_cipher"],
            "TLS_AES_256_GCM_SHA384:ECDHE-RSA-AES128-GCM-SHA256"
        );
        assert_eq!(json(back).unwrap(), p);
    }

    #[test]
    fn inactivity_below_timeout_is_refused_with_the_field() {
        let e = json(serde_json::json!({"timeout": 600, "inactivity_timeout": {"enabled": true, "value": 60}}))
            .unwrap_err();
        assert!(e.contains("p.inactivity_timeout.value"), "{e}");
        let e = json(serde_json::json!({"inactivity_timeout": {"enabled": true}})).unwrap_err();
        assert!(e.contains("required"), "{e}");
        // Disabled: the value is not checked.
        json(serde_json::json!({"timeout": 600, "inactivity_timeout": {"enabled": false, "value": 1}}))
            .unwrap();
    }

    #[test]
    fn toml_keeps_human_durations_and_old_names() {
        let p: SettingsPolicy = toml::from_str(
            "idle_timeout = \"1s\"\ninactivity_timeout = \"1500ms\"\nmax_session = \"8h\"\n",
        )
        .unwrap();
        p.validate("p").unwrap();
        assert_eq!(p.idle(), Some(Duration::from_secs(1)));
        assert_eq!(p.inactivity(), Some(Duration::from_millis(1500)));
        assert_eq!(p.max_session(), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(
            serde_json::to_value(&p).unwrap()["inactivity_timeout"]["value"],
            1.5
        );
        let e = toml::from_str::<SettingsPolicy>("timeout = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
        let e = toml::from_str::<SettingsPolicy>("tiemout = 3").unwrap_err();
        assert!(e.to_string().contains("tiemout"), "{e}");
    }
}
