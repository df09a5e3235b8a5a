//! `trailgate certs dev`: a development CA, a gateway certificate (ECDSA P-256) and a target
//! certificate (RSA 2048, which x11vnc needs) that
//! rustls, TigerVNC (GnuTLS) and OpenSSL all accept (end-entity certificates with
//! `CA:FALSE`, server-auth usage and subjectAltNames). Never for production.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub fn dev(out: &Path, names: &[String]) -> Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Trailgate development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(825);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(out, "ca.pem", &ca_cert.pem(), false)?;
    write(out, "ca.key", &ca_key.serialize_pem(), true)?;
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    sans.extend(names.iter().cloned());
    for (file, cn) in [
        ("gateway", "Trailgate gateway"),
        ("target", "Trailgate test target"),
    ] {
        let mut p = CertificateParams::new(sans.clone())?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(825);
        // The target's key is RSA: x11vnc's TLS (OpenSSL, `-ssl`) takes nothing else.
        let key = if file == "target" {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        } else {
            KeyPair::generate()?
        };
        let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
        write(out, &format!("{file}.pem"), &cert.pem(), false)?;
        write(out, &format!("{file}.key"), &key.serialize_pem(), true)?;
        // x11vnc -ssl and stunnel take key and certificate in one file.
        write(
            out,
            &format!("{file}-combined.pem"),
            &format!("{}{}", key.serialize_pem(), cert.pem()),
            true,
        )?;
        let fp = trailgate_proxy::tls::fingerprint(cert.der());
        println!(
            "{file}: {}/{file}.pem  tls_fingerprint = \"{fp}\"",
            out.display()
        );
    }
    println!("ca: {}/ca.pem (names: {})", out.display(), sans.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, name: &str, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
