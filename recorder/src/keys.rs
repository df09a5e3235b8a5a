//! The gateway's trail-signing key pair (Ed25519): generation, storage, loading, fingerprints.
//!
//! Private key: PKCS#8 PEM, mode 0600. Public key: SPKI PEM; `verify --key` also accepts the bare
//! base64 of the 32 raw bytes (as printed in a trail's header).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
    spki::der::pem::LineEnding,
};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use crate::error::{RecorderError, Result};
use crate::format::SigningInfo;

/// `SHA256:<base64>` of the raw public key, in the style of OpenSSH fingerprints.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(crate::format::sha256(&[key.as_bytes()]))
    )
}

pub fn signing_info(key: &VerifyingKey) -> SigningInfo {
    SigningInfo {
        algorithm: "ed25519".into(),
        public_key: STANDARD.encode(key.as_bytes()),
        fingerprint: fingerprint(key),
    }
}

pub fn verifying_key_from_info(info: &SigningInfo) -> Result<VerifyingKey> {
    if info.algorithm != "ed25519" {
        return Err(RecorderError::NotATrail(format!(
            "unsupported signing algorithm {}",
            info.algorithm
        )));
    }
    parse_raw_public(&info.public_key)
        .ok_or_else(|| RecorderError::NotATrail("header carries an invalid public key".into()))
}

fn parse_raw_public(b64: &str) -> Option<VerifyingKey> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let arr: [u8; 32] = raw.try_into().ok()?;
    VerifyingKey::from_bytes(&arr).ok()
}

pub fn public_key_path(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// Generates a key pair at `path` (and `path.pub`); refuses to overwrite an existing key.
pub fn generate(path: &Path) -> Result<SigningKey> {
    let key_err = |reason: String| RecorderError::Key {
        path: path.to_owned(),
        reason,
    };
    if path.exists() {
        return Err(key_err(
            "already exists; refusing to overwrite a signing key".into(),
        ));
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::private_dir_all(dir)?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_err(e.to_string()))?;
    write_private(path, pem.as_bytes())?;
    let pubpem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| key_err(e.to_string()))?;
    let pub_path = public_key_path(path);
    std::fs::write(&pub_path, pubpem).map_err(|e| RecorderError::io(&pub_path, e))?;
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| RecorderError::io(path, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| RecorderError::io(path, e))
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| RecorderError::io(path, e))
}

pub fn load(path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path).map_err(|e| RecorderError::io(path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| RecorderError::Key {
        path: path.to_owned(),
        reason: format!("not a PKCS#8 Ed25519 private key: {e}"),
    })
}

/// Loads the key, generating it on first start.
pub fn load_or_generate(path: &Path) -> Result<SigningKey> {
    if path.exists() {
        load(path)
    } else {
        generate(path)
    }
}

/// Reads a public key given to `verify --key`: SPKI PEM file, or base64 of the raw key (inline or
/// in a file).
pub fn load_public(arg: &str) -> Result<VerifyingKey> {
    let text = match std::fs::read_to_string(arg) {
        Ok(t) => t,
        Err(_) => arg.to_owned(),
    };
    if text.contains("BEGIN PUBLIC KEY") {
        return VerifyingKey::from_public_key_pem(&text).map_err(|e| RecorderError::Key {
            path: arg.into(),
            reason: format!("not an Ed25519 public key: {e}"),
        });
    }
    parse_raw_public(&text).ok_or_else(|| RecorderError::Key {
        path: arg.into(),
        reason: "expected an SPKI PEM file or base64 of a raw Ed25519 public key".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_read_public() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/trail-signing.key");
        let k = generate(&p).unwrap();
        assert!(generate(&p).is_err(), "never overwrite");
        assert_eq!(load(&p).unwrap().to_bytes(), k.to_bytes());
        let pubk = load_public(public_key_path(&p).to_str().unwrap()).unwrap();
        assert_eq!(pubk, k.verifying_key());
        let inline = signing_info(&pubk).public_key;
        assert_eq!(load_public(&inline).unwrap(), pubk);
    }
}
