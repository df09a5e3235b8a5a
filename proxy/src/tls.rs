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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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

/// A server configuration from PEM files. `prefix` is the config section (`api`, `vnc`) that
/// names the keys in errors; `alpn` the protocols to announce (none for VNC).
pub fn server_config(
    cert: &Path,
    key: &Path,
    prefix: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let certs = load_certs(cert, &format!("{prefix}.tls_cert"))?;
    let key = load_key(key, &format!("{prefix}.tls_key"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Config(format!("{prefix}: {e}")))?
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
    /// The end-entity certificate's SHA-256 is exactly this (signatures are still checked).
    Pinned([u8; 32]),
}

/// A client configuration toward a target. `key` names the target's config key in errors.
pub fn client_config(trust: &ServerTrust, key: &str) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Config(format!("{key}: {e}")))?;
    let cfg = match trust {
        ServerTrust::Ca(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(path, &format!("{key}.ca_file"))? {
                roots.add(c).map_err(|e| {
                    ProxyError::Config(format!("{key}.ca_file {}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
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
        assert_eq!(parse_fingerprint(&format!("sha256:{hexs}")).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&format!("SHA256:{colons}")).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint(&hexs).is_err());
        assert!(parse_fingerprint("sha256:abcd").is_err());
    }
}
