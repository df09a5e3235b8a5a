//! Gateway authentication: argon2id password hashes, authorized public keys, and the target
//! selection carried in the SSH user name (`alice@db1`, `alice:db1`, or plain `alice`).

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use russh::keys::ssh_key::PublicKey;

/// Hashes a password as an argon2id PHC string (what `trailgate hash-password` prints).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn check_hash_format(hash: &str) -> Result<(), String> {
    let h = PasswordHash::new(hash)
        .map_err(|e| format!("not a PHC hash string ({e}); use `trailgate hash-password`"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", h.algorithm));
    }
    Ok(())
}

/// Constant-time check of a password against an argon2id hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Parses an OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
pub fn parse_public_key_line(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| format!("not an OpenSSH public key line: {e}"))
}

pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// `alice@db1` / `alice:db1` -> ("alice", Some("db1")); `alice` -> ("alice", None). The last `@`
/// separates, so gateway user names cannot contain one (validated at config load).
pub fn split_login(login: &str) -> (&str, Option<&str>) {
    if let Some((u, t)) = login.split_once('@') {
        return (u, Some(t));
    }
    if let Some((u, t)) = login.split_once(':') {
        return (u, Some(t));
    }
    (login, None)
}

/// What of a login name is stored and logged for a refused attempt: at most 64 bytes (on a
/// character boundary), marked when cut. A client controls the name: it must not fill disks.
pub fn bounded_login(login: &str) -> String {
    const KEEP: usize = 64;
    if login.len() <= KEEP {
        return login.to_string();
    }
    let mut end = KEEP;
    while !login.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &login[..end], login.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("s3cret").unwrap();
        check_hash_format(&h).unwrap();
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cret "));
        assert!(!verify_password("garbage", "x"));
        assert!(check_hash_format("$2b$10$abcdefghijklmnopqrstuv").is_err());
    }

    #[test]
    fn refused_login_names_are_stored_as_a_bounded_prefix() {
        assert_eq!(bounded_login("alice@db1"), "alice@db1");
        let long = "é".repeat(100_000);
        let b = bounded_login(&long);
        assert!(b.len() < 100, "{b}");
        assert!(b.ends_with("...(200000 bytes)"), "{b}");
    }

    #[test]
    fn logins_select_targets() {
        assert_eq!(split_login("alice@db1"), ("alice", Some("db1")));
        assert_eq!(split_login("alice:db1"), ("alice", Some("db1")));
        assert_eq!(split_login("alice"), ("alice", None));
        assert_eq!(split_login("alice@"), ("alice", Some("")));
    }
}
