//! TLS material and configurations, shared by every TLS listener (VNC, the control API) and by
//! TLS to targets: PEM loading with errors that name the config key, rustls server and client
//! configurations (aws-lc-rs, TLS 1.2 and 1.3), certificate pinning by SHA-256, and the names of
//! what a handshake negotiated.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::ProxyError;
use crate::policy::TlsPolicy;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The provider restricted to a policy's suites, in the policy's order.
fn provider_for(policy: &TlsPolicy) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(wanted) = &policy.suites {
        let all = std::mem::take(&mut p.cipher_suites);
        p.cipher_suites = wanted
            .iter()
            .filter_map(|w| all.iter().find(|s| s.suite() == *w).copied())
            .collect();
    }
    Arc::new(p)
}

/// rustls' defaults: TLS 1.2 and 1.3, every suite.
pub fn default_policy() -> TlsPolicy {
    crate::policy::TlsSecuritySettings::default()
        .compile("")
        .unwrap_or(TlsPolicy {
            minimum: crate::policy::TlsVersion::Tls12,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            suites: None,
        })
}

/// Reads a PEM certificate chain; `key` names the config key in errors.
pub fn load_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let err = |e: String| ProxyError::Config(format!("{key} {}: {e}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ProxyError::Config(format!("{key} {}: {e}", path.display())))
}

/// A server configuration from PEM files, restricted to a policy's versions and suites.
/// `prefix` is the config section (`api`, `vnc`) that names the keys in errors; `alpn` the
/// protocols to announce (none for VNC). A TLS-1.2-only policy must list a suite for the
/// certificate's key type (ECDHE_RSA for RSA, ECDHE_ECDSA for ECDSA and Ed25519).
pub fn server_config(
    cert: &Path,
    key: &Path,
    prefix: &str,
    alpn: &[&[u8]],
    policy: &TlsPolicy,
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let certs = load_certs(cert, &format!("{prefix}.tls_cert"))?;
    let key = load_key(key, &format!("{prefix}.tls_key"))?;
    let provider = provider_for(policy);
    if let Some(suites) = &policy.suites
        && !policy.versions.contains(&&rustls::version::TLS13)
    {
        let signer = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| ProxyError::Config(format!("{prefix}.tls_key: {e}")))?;
        let rsa = signer.algorithm() == rustls::SignatureAlgorithm::RSA;
        let fits = suites.iter().any(|s| {
            let n = format!("{s:?}");
            if rsa {
                n.contains("_RSA_")
            } else {
                n.contains("_ECDSA_")
            }
        });
        if !fits {
            return Err(ProxyError::Config(format!(
                "{prefix}.client_tls_security_settings.cipher_strength.custom_cipher: no TLS 1.2 suite fits the certificate's {} key (use ECDHE-{}-* suites, or allow TLS 1.3)",
                if rsa { "RSA" } else { "ECDSA/Ed25519" },
                if rsa { "RSA" } else { "ECDSA" },
            )));
        }
    }
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&policy.versions)
        .map_err(|e| ProxyError::Config(format!("{prefix}.client_tls_security_settings: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ProxyError::Config(format!("{prefix}.tls_cert/tls_key: {e}")))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // The gateway's suite order wins over the client's.
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// How a target's certificate is checked.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Chain to one of the CA certificates in this file, and name the target.
    Ca(std::path::PathBuf),
    /// ... the same, loaded.
    Roots(Arc<rustls::RootCertStore>),
    /// The end-entity certificate's SHA-256 is exactly this (signatures are still checked).
    Pinned([u8; 32]),
}

impl ServerTrust {
    /// Reads a CA file once, so configurations built per session need no file access.
    pub fn load(self, key: &str) -> Result<ServerTrust, ProxyError> {
        match self {
            ServerTrust::Ca(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certs(&path, &format!("{key}.ca_file"))? {
                    roots.add(c).map_err(|e| {
                        ProxyError::Config(format!("{key}.ca_file {}: {e}", path.display()))
                    })?;
                }
                Ok(ServerTrust::Roots(Arc::new(roots)))
            }
            other => Ok(other),
        }
    }
}

/// A client configuration toward a target, restricted to a policy's versions and suites.
/// `key` names the target's config key in errors.
pub fn client_config(
    trust: &ServerTrust,
    key: &str,
    policy: &TlsPolicy,
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider_for(policy))
        .with_protocol_versions(&policy.versions)
        .map_err(|e| ProxyError::Config(format!("{key}: {e}")))?;
    let cfg = match trust {
        ServerTrust::Ca(_) => {
            let loaded = trust.clone().load(key)?;
            return client_config(&loaded, key, policy);
        }
        ServerTrust::Roots(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        ServerTrust::Pinned(sha) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: *sha,
                algs: provider().signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Parses `sha256:<64 hex digits>` (colons between bytes allowed, as OpenSSL prints them).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hexpart = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("SHA256:"))
        .ok_or("must start with \"sha256:\"")?
        .replace(':', "");
    let bytes = hex::decode(&hexpart).map_err(|_| "not hex after \"sha256:\"".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "must be 32 bytes (64 hex digits)".to_string())
}

/// `sha256:<hex>` of a DER certificate, as `tls_fingerprint` takes it.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// The IANA-style names of what a connection negotiated: (`TLSv1_3`, `TLS_AES_256_GCM_SHA384`).
pub fn negotiated(conn: &rustls::CommonState) -> (Option<String>, Option<String>) {
    let version = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1_3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1_2".to_string(),
        other => format!("{other:?}"),
    });
    let suite = conn.negotiated_cipher_suite().map(|s| {
        let name = format!("{:?}", s.suite());
        // rustls names TLS 1.3 suites TLS13_*; the IANA name is TLS_*.
        name.strip_prefix("TLS13_")
            .map(|rest| format!("TLS_{rest}"))
            .unwrap_or(name)
    });
    (version, suite)
}

/// Certificate pinning: the target's end-entity certificate must hash to the pinned value; the
/// handshake's signatures are verified as usual, so the peer must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not the pinned {}",
                fingerprint(end_entity.as_ref()),
                format_args!("sha256:{}", hex::encode(self.sha256))
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_spellings() {
        let hexs = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hexs}")).unwrap(),
            [0xab; 32]
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{colons}")).unwrap(),
            [0xab; 32]
        );
        assert!(parse_fingerprint(&hexs).is_err());
        assert!(parse_fingerprint("sha256:abcd").is_err());
    }
}
