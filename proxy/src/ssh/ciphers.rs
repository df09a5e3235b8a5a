//! SSH cipher lists: config names to russh's, and the defaults of each leg. Pure (no I/O).
//!
//! The client leg's cipher is the client's choice among those we offer (SSH lets the client's
//! order win). The upstream leg is ours to choose: on a CPU with AES and carry-less multiply
//! instructions AES-GCM costs a fraction of chacha20-poly1305 per byte, and the gateway pays
//! the upstream cipher twice per relayed byte (its own side and the target's sshd), so it
//! prefers AES-GCM there; without those instructions chacha20-poly1305 is both faster and
//! constant-time, so it comes first.

use std::borrow::Cow;

use russh::cipher::{self, Name};

/// Offered to clients when `ssh.ciphers` is not set (russh's default order plus aes128-gcm), and
/// also everything `ssh.ciphers` / `ssh.upstream_ciphers` may name: the AEAD and CTR ciphers.
/// CBC modes, 3DES and "none" are refused (weak, or not a cipher at all).
pub const DEFAULT_CLIENT_LEG: &[Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];
const ALLOWED: &[Name] = DEFAULT_CLIENT_LEG;

const AES_FIRST: &[Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Whether this CPU has the instructions that make AES-GCM cheap.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The upstream order when `ssh.upstream_ciphers` is not set.
pub fn default_upstream(hardware_aes: bool) -> &'static [Name] {
    if hardware_aes {
        AES_FIRST
    } else {
        DEFAULT_CLIENT_LEG
    }
}

/// Config names to russh names, in the given order. The error names the entry and lists the
/// names that are accepted.
pub fn parse(names: &[String]) -> Result<Vec<Name>, String> {
    if names.is_empty() {
        return Err("must name at least one cipher".into());
    }
    let mut out: Vec<Name> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let Some(found) = ALLOWED.iter().find(|a| a.as_ref() == n.as_str()) else {
            let known: Vec<&str> = ALLOWED.iter().map(|a| a.as_ref()).collect();
            return Err(format!(
                "[{i}]: unknown or refused cipher {n:?} (known: {})",
                known.join(", ")
            ));
        };
        if out.contains(found) {
            return Err(format!("[{i}]: {n:?} is listed twice"));
        }
        out.push(*found);
    }
    Ok(out)
}

/// The list for one leg (`key` names it in errors): the configured names, or the default.
pub fn resolve(
    key: &str,
    configured: Option<&[String]>,
    default: &'static [Name],
) -> Result<Cow<'static, [Name]>, String> {
    match configured {
        Some(names) => parse(names)
            .map(Cow::Owned)
            .map_err(|m| format!("{key}{m}")),
        None => Ok(Cow::Borrowed(default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_in_order_and_names_the_bad_entry() {
        let got = parse(&s(&[
            "aes128-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
        ]))
        .unwrap();
        assert_eq!(got, vec![cipher::AES_128_GCM, cipher::CHACHA20_POLY1305]);
        let e = parse(&s(&["aes128-gcm@openssh.com", "aes128-cbc"])).unwrap_err();
        assert!(
            e.starts_with("[1]: unknown or refused cipher \"aes128-cbc\""),
            "{e}"
        );
        assert!(e.contains("chacha20-poly1305@openssh.com"), "{e}");
        assert!(parse(&s(&["none"])).is_err());
        assert!(parse(&[]).unwrap_err().contains("at least one"));
        assert!(
            parse(&s(&["aes256-ctr", "aes256-ctr"]))
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn upstream_default_follows_the_cpu() {
        assert_eq!(default_upstream(true)[0], cipher::AES_128_GCM);
        assert_eq!(default_upstream(false)[0], cipher::CHACHA20_POLY1305);
        // Both orders keep every allowed cipher, so any target that speaks one of them connects.
        for order in [default_upstream(true), default_upstream(false)] {
            assert_eq!(order.len(), ALLOWED.len());
            assert!(ALLOWED.iter().all(|a| order.contains(a)));
        }
    }
}
