//! TLS settings of one leg (`minimum_tls_version`, `cipher_strength {selection, custom_cipher}`)
//! and what they compile to for rustls: the protocol versions and the cipher suites, in the
//! administrator's order. Suite names are IANA's, and OpenSSL's where they map.
//!
//! rustls speaks TLS 1.2 and 1.3 only: `TLSv1_1` and `TLSv1_0` are accepted (administrators copy
//! them from other gateways) but mean TLS 1.2, with a warning.

use rustls::{CipherSuite, SupportedProtocolVersion};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSecuritySettings {
    #[serde(default)]
    pub minimum_tls_version: TlsVersion,
    #[serde(default)]
    pub cipher_strength: CipherStrength,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1_0")]
    Tls10,
    #[serde(rename = "TLSv1_1")]
    Tls11,
    #[default]
    #[serde(rename = "TLSv1_2")]
    Tls12,
    #[serde(rename = "TLSv1_3")]
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLSv1_0",
            TlsVersion::Tls11 => "TLSv1_1",
            TlsVersion::Tls12 => "TLSv1_2",
            TlsVersion::Tls13 => "TLSv1_3",
        }
    }

    /// What this minimum means with rustls (nothing below 1.2 exists).
    pub fn effective(self) -> TlsVersion {
        self.max(TlsVersion::Tls12)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CipherStrength {
    #[serde(default)]
    pub selection: Selection,
    /// Suite names separated by `:` (or `,` / spaces), or a list; only with `custom`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_list",
        deserialize_with = "de_list"
    )]
    #[schema(value_type = Option<String>)]
    pub custom_cipher: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// rustls' defaults: every suite it has, strongest first.
    #[default]
    Recommended,
    Custom,
}

fn ser_list<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(l) => s.serialize_str(&l.join(":")),
        None => s.serialize_none(),
    }
}

fn de_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        List(Vec<String>),
    }
    Ok(Option::<Form>::deserialize(d)?.map(|f| match f {
        Form::Text(s) => s
            .split([':', ',', ' ', '\t'])
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        Form::List(l) => l,
    }))
}

/// Every suite this build can use: (IANA name, OpenSSL name, rustls suite).
const SUITES: &[(&str, &str, CipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

fn is_tls13(s: CipherSuite) -> bool {
    format!("{s:?}").starts_with("TLS13_")
}

/// The IANA name of a suite (rustls names TLS 1.3 suites `TLS13_*`).
pub fn suite_name(s: CipherSuite) -> String {
    SUITES
        .iter()
        .find(|(_, _, c)| *c == s)
        .map(|(iana, _, _)| iana.to_string())
        .unwrap_or_else(|| format!("{s:?}"))
}

fn lookup(name: &str) -> Option<CipherSuite> {
    let n = name.trim();
    let n13 = n.strip_prefix("TLS13_").map(|r| format!("TLS_{r}"));
    SUITES
        .iter()
        .find(|(iana, ossl, _)| {
            n.eq_ignore_ascii_case(iana)
                || n.eq_ignore_ascii_case(ossl)
                || n13.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(iana))
        })
        .map(|(_, _, c)| *c)
}

/// Settings compiled for rustls.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsPolicy {
    /// The effective minimum (1.2 or 1.3).
    pub minimum: TlsVersion,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// `None`: rustls' defaults.
    pub suites: Option<Vec<CipherSuite>>,
}

impl TlsPolicy {
    /// Whether a negotiated connection (its version and suite, as `tls::negotiated` names them)
    /// satisfies this policy.
    pub fn admits(&self, version: Option<&str>, suite: Option<&str>) -> Result<(), String> {
        let v = match version {
            Some("TLSv1_3") => TlsVersion::Tls13,
            Some("TLSv1_2") => TlsVersion::Tls12,
            other => return Err(format!("TLS version {other:?} is not allowed")),
        };
        if v < self.minimum {
            return Err(format!(
                "TLS version {} is below the policy's minimum {}",
                v.as_str(),
                self.minimum.as_str()
            ));
        }
        if let Some(list) = &self.suites {
            let ok = suite.and_then(lookup).is_some_and(|s| list.contains(&s));
            if !ok {
                return Err(format!(
                    "cipher suite {} is not in the policy's custom_cipher list",
                    suite.unwrap_or("(none)")
                ));
            }
        }
        Ok(())
    }
}

impl TlsSecuritySettings {
    /// Compiles the settings; errors name the field (`at` is the settings' path) and list what
    /// is supported.
    pub fn compile(&self, at: &str) -> Result<TlsPolicy, String> {
        let minimum = self.minimum_tls_version.effective();
        let suites = match (
            self.cipher_strength.selection,
            &self.cipher_strength.custom_cipher,
        ) {
            (Selection::Recommended, None) => None,
            (Selection::Recommended, Some(_)) => {
                return Err(format!(
                    "{at}.cipher_strength.custom_cipher: only with selection = \"custom\""
                ));
            }
            (Selection::Custom, None) => {
                return Err(format!(
                    "{at}.cipher_strength.custom_cipher: required with selection = \"custom\"; supported: {}",
                    supported_names()
                ));
            }
            (Selection::Custom, Some(names)) => {
                let mut out = Vec::new();
                for n in names {
                    let s = lookup(n).ok_or_else(|| {
                        format!(
                            "{at}.cipher_strength.custom_cipher: unknown or unsupported suite {n:?}; supported: {}",
                            supported_names()
                        )
                    })?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                if out.is_empty() {
                    return Err(format!(
                        "{at}.cipher_strength.custom_cipher: empty; supported: {}",
                        supported_names()
                    ));
                }
                Some(out)
            }
        };
        let has13 = suites
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| is_tls13(*s)));
        let has12 = suites
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| !is_tls13(*s)));
        let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
        if has13 {
            versions.push(&rustls::version::TLS13);
        }
        if minimum <= TlsVersion::Tls12 && has12 {
            versions.push(&rustls::version::TLS12);
        }
        if versions.is_empty() {
            return Err(format!(
                "{at}.cipher_strength.custom_cipher: no suite in the list can be used with minimum_tls_version {} (TLS 1.3 suites: TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)",
                minimum.as_str()
            ));
        }
        // Only TLS 1.3 suites listed: 1.2 is off whatever the minimum says.
        let minimum = if has12 { minimum } else { TlsVersion::Tls13 };
        Ok(TlsPolicy {
            minimum,
            versions,
            suites,
        })
    }

    pub fn warnings(&self, at: &str) -> Vec<String> {
        let mut w = Vec::new();
        let v = self.minimum_tls_version;
        if v < TlsVersion::Tls12 {
            w.push(format!(
                "{at}.minimum_tls_version: {} means TLSv1_2 (TLS 1.0 and 1.1 are not supported)",
                v.as_str()
            ));
        }
        if let Ok(p) = self.compile(at)
            && p.minimum > v.effective()
        {
            w.push(format!(
                "{at}: only TLS 1.3 suites are listed, so the minimum is TLSv1_3"
            ));
        }
        w
    }
}

fn supported_names() -> String {
    SUITES
        .iter()
        .map(|(iana, ossl, _)| {
            if iana == ossl {
                iana.to_string()
            } else {
                format!("{iana} ({ossl})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(min: &str, custom: Option<&str>) -> TlsSecuritySettings {
        let mut v = serde_json::json!({"minimum_tls_version": min});
        if let Some(c) = custom {
            v["cipher_strength"] = serde_json::json!({"selection": "custom", "custom_cipher": c});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn versions_and_suites_compile() {
        let p = settings("TLSv1_3", None).compile("x").unwrap();
        assert_eq!(p.versions.len(), 1);
        assert_eq!(p.minimum, TlsVersion::Tls13);
        let p = settings("TLSv1_0", None).compile("x").unwrap();
        assert_eq!(p.versions.len(), 2);
        assert_eq!(p.minimum, TlsVersion::Tls12);
        assert!(settings("TLSv1_0", None).warnings("x")[0].contains("means TLSv1_2"));
        let p = settings(
            "TLSv1_2",
            Some("ECDHE-RSA-AES128-GCM-SHA256:TLS13_AES_128_GCM_SHA256"),
        )
        .compile("x")
        .unwrap();
        assert_eq!(
            p.suites.unwrap(),
            vec![
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_128_GCM_SHA256
            ]
        );
        // Only 1.3 suites: 1.3 only, and said so.
        let s = settings("TLSv1_2", Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(s.compile("x").unwrap().minimum, TlsVersion::Tls13);
        assert!(
            s.warnings("x")
                .iter()
                .any(|w| w.contains("only TLS 1.3 suites"))
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_supported_list() {
        let e = settings("TLSv1_2", Some("ALL:!aNULL"))
            .compile("p.client")
            .unwrap_err();
        assert!(e.contains("p.client.cipher_strength.custom_cipher"), "{e}");
        assert!(
            e.contains("\"ALL\"") && e.contains("ECDHE-RSA-AES128-GCM-SHA256"),
            "{e}"
        );
        let e = settings("TLSv1_3", Some("ECDHE-RSA-AES128-GCM-SHA256"))
            .compile("p")
            .unwrap_err();
        assert!(e.contains("no suite"), "{e}");
        let e = serde_json::from_value::<TlsSecuritySettings>(
            serde_json::json!({"minimum_tls_version": "TLSv1_4"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("TLSv1_4"), "{e}");
    }

    #[test]
    fn admits_checks_version_and_suite() {
        let p = settings("TLSv1_3", None).compile("x").unwrap();
        assert!(
            p.admits(Some("TLSv1_3"), Some("TLS_AES_256_GCM_SHA384"))
                .is_ok()
        );
        assert!(
            p.admits(
                Some("TLSv1_2"),
                Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
            )
            .is_err()
        );
        let p = settings(
            "TLSv1_2",
            Some("TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"),
        )
        .compile("x")
        .unwrap();
        assert!(
            p.admits(Some("TLSv1_3"), Some("TLS_AES_128_GCM_SHA256"))
                .is_ok()
        );
        let e = p
            .admits(Some("TLSv1_3"), Some("TLS_AES_256_GCM_SHA384"))
            .unwrap_err();
        assert!(e.contains("custom_cipher"), "{e}");
    }
}
