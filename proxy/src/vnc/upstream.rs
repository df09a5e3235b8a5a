//! The target's side of the handshake: TCP, TLS first when the target wants it, the target's
//! RFB version (3.3, 3.7 or 3.8), the strongest security type it offers that the target's
//! configuration allows (VeNCrypt X509Plain > X509Vnc > X509None; inside TLS-first: Plain >
//! VNC authentication > none), TLS with the certificate checked, the gateway's credentials,
//! and the SecurityResult.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trailgate_recorder::record::VncLeg;
use trailgate_rfb::Version;
use trailgate_rfb::handshake::{plain_credentials, security};

use super::io::{self, Io};
use crate::config::{TargetConfig, VncTls};
use crate::session::Verdict;

/// A VNC target as the gateway reaches it: its TLS client configuration, loaded at start-up.
pub struct VncTarget {
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// Why the target leg could not be established: the verdict and a message for client and log.
#[derive(Debug)]
pub struct UpFailure {
    pub verdict: Verdict,
    pub message: String,
}

fn fail(verdict: Verdict, message: String) -> UpFailure {
    UpFailure { verdict, message }
}

impl From<std::io::Error> for UpFailure {
    fn from(e: std::io::Error) -> Self {
        fail(Verdict::Fail, format!("target handshake failed: {e}"))
    }
}

pub struct Upstream {
    pub io: Io,
    pub leg: VncLeg,
}

/// Connects and authenticates to the target within `timeout`.
pub async fn connect(
    target: &TargetConfig,
    rt: &VncTarget,
    timeout: Duration,
) -> Result<Upstream, UpFailure> {
    match tokio::time::timeout(timeout, connect_inner(target, rt)).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            Verdict::Fail,
            format!(
                "target {} did not complete the handshake within {timeout:?}",
                target.name
            ),
        )),
    }
}

async fn tls_connect(
    tcp: TcpStream,
    rt: &VncTarget,
    target: &TargetConfig,
) -> Result<(Io, Option<String>, Option<String>), UpFailure> {
    let Some((cfg, name)) = &rt.tls else {
        return Err(fail(
            Verdict::Fail,
            "no TLS configuration for the target".into(),
        ));
    };
    let tls = TlsConnector::from(cfg.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| {
            let certificate = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)
                    )
                });
            if certificate {
                fail(
                    Verdict::KeyError,
                    format!(
                        "target {} presented a certificate that is not trusted: {e}",
                        target.name
                    ),
                )
            } else {
                fail(
                    Verdict::Fail,
                    format!("TLS to target {} failed: {e}", target.name),
                )
            }
        })?;
    let (v, c) = crate::tls::negotiated(tls.get_ref().1);
    Ok((Box::new(tls), v, c))
}

async fn connect_inner(target: &TargetConfig, rt: &VncTarget) -> Result<Upstream, UpFailure> {
    let tcp = TcpStream::connect(&target.address).await.map_err(|e| {
        fail(
            Verdict::Fail,
            format!(
                "cannot reach target {} ({}): {e}",
                target.name, target.address
            ),
        )
    })?;
    let _ = tcp.set_nodelay(true);
    let mode = target.vnc_tls();
    let mut leg = VncLeg {
        tls_mode: mode.as_str().into(),
        ..VncLeg::default()
    };
    // The raw TCP stream until TLS starts (VeNCrypt switches mid-stream: no byte may sit in a
    // buffer when the TLS handshake begins, so the handshake reads exactly what it needs).
    let mut leg_io = Leg::Tcp(tcp);
    if mode == VncTls::TlsFirst {
        let (s, v, c) = tls_connect(leg_io.tcp()?, rt, target).await?;
        (leg.tls_version, leg.tls_cipher) = (v, c);
        leg_io = Leg::Tls(s);
    }
    macro_rules! s {
        () => {
            leg_io.stream()
        };
    }
    let mut line = [0u8; 12];
    s!().read_exact(&mut line).await?;
    let theirs = Version::parse(&line)
        .map_err(|e| fail(Verdict::Fail, format!("target {}: {e}", target.name)))?;
    let version = theirs.effective();
    s!().write_all(&version.line()).await?;
    leg.rfb_version = version.to_string();

    let has_pw = target.password.is_some();
    let has_user = !target.user.is_empty();
    let offered: Vec<u8> = if version == Version::V3_3 {
        let t = io::read_u32(s!()).await?;
        if t == 0 {
            let why = io::read_reason(s!()).await?;
            return Err(fail(
                Verdict::Fail,
                format!("target {} refused the connection: {why}", target.name),
            ));
        }
        vec![u8::try_from(t).unwrap_or(u8::MAX)]
    } else {
        let n = io::read_u8(s!()).await?;
        if n == 0 {
            let why = io::read_reason(s!()).await?;
            return Err(fail(
                Verdict::Fail,
                format!("target {} refused the connection: {why}", target.name),
            ));
        }
        let mut v = vec![0u8; usize::from(n)];
        s!().read_exact(&mut v).await?;
        v
    };
    // What this target's configuration allows, strongest first.
    let wanted: Vec<u8> = match mode {
        VncTls::Vencrypt => vec![security::VENCRYPT],
        VncTls::TlsFirst => {
            let mut w = Vec::new();
            if has_user && has_pw {
                w.push(security::VENCRYPT);
            }
            if has_pw {
                w.push(security::VNC_AUTH);
            }
            w.push(security::NONE);
            w
        }
        VncTls::None => {
            if has_pw {
                vec![security::VNC_AUTH, security::NONE]
            } else {
                vec![security::NONE]
            }
        }
    };
    let Some(chosen) = wanted.iter().copied().find(|w| offered.contains(w)) else {
        return Err(fail(
            Verdict::Fail,
            format!(
                "target {} offers security types {offered:?}, none of which its configuration \
                 allows (tls = \"{}\", {})",
                target.name,
                mode.as_str(),
                if has_pw {
                    "password set"
                } else {
                    "no password"
                }
            ),
        ));
    };
    if version != Version::V3_3 {
        s!().write_all(&[chosen]).await?;
    }
    let mut sub = None;
    match chosen {
        security::NONE => {}
        security::VNC_AUTH => vnc_auth(s!(), target).await?,
        _ => {
            let picked = vencrypt(s!(), target, mode).await?;
            sub = Some(picked);
            if matches!(
                picked,
                security::X509_NONE | security::X509_VNC | security::X509_PLAIN
            ) {
                let (s, v, c) = tls_connect(leg_io.tcp()?, rt, target).await?;
                (leg.tls_version, leg.tls_cipher) = (v, c);
                leg_io = Leg::Tls(s);
            }
            match picked {
                security::X509_VNC => vnc_auth(s!(), target).await?,
                security::X509_PLAIN | security::PLAIN => {
                    let pw = target.password.as_deref().unwrap_or_default();
                    s!().write_all(&plain_credentials(&target.user, pw)).await?;
                }
                _ => {}
            }
        }
    }
    leg.security = security::name(chosen, sub);
    // RFB 3.3 and 3.7 send no SecurityResult for "none".
    if version == Version::V3_8 || chosen != security::NONE || sub.is_some() {
        let result = io::read_u32(s!()).await?;
        if result != 0 {
            let why = if version == Version::V3_8 {
                io::read_reason(s!()).await.unwrap_or_default()
            } else {
                String::new()
            };
            return Err(fail(
                Verdict::AuthFail,
                format!(
                    "target {} refused the gateway's credentials: {}",
                    target.name,
                    if why.is_empty() {
                        "authentication failed"
                    } else {
                        &why
                    }
                ),
            ));
        }
    }
    let io: Io = match leg_io {
        Leg::Tcp(t) => Box::new(t),
        Leg::Tls(s) => s,
        Leg::Gone(_) => return Err(fail(Verdict::Fail, "no stream".into())),
    };
    Ok(Upstream { io, leg })
}

/// The target connection during the handshake: TCP until TLS starts, then TLS.
enum Leg {
    Tcp(TcpStream),
    Tls(Io),
    /// Between `tcp()` and the TLS result; reads as a closed stream.
    Gone(tokio::io::Empty),
}

impl Leg {
    fn stream(&mut self) -> &mut dyn io::Stream {
        match self {
            Leg::Tcp(t) => t,
            Leg::Tls(s) => s.as_mut(),
            Leg::Gone(e) => e,
        }
    }

    /// Takes the TCP stream for a TLS handshake (TLS inside TLS is refused).
    fn tcp(&mut self) -> Result<TcpStream, UpFailure> {
        match std::mem::replace(self, Leg::Gone(tokio::io::empty())) {
            Leg::Tcp(t) => Ok(t),
            _ => Err(fail(Verdict::Fail, "TLS was already established".into())),
        }
    }
}

async fn vnc_auth(s: &mut dyn io::Stream, target: &TargetConfig) -> Result<(), UpFailure> {
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).await?;
    let pw = target.password.as_deref().unwrap_or_default();
    s.write_all(&trailgate_rfb::vncauth::response(&challenge, pw.as_bytes()))
        .await?;
    Ok(())
}

/// VeNCrypt 0.2 as a client: picks the strongest subtype the configuration allows.
async fn vencrypt(
    s: &mut dyn io::Stream,
    target: &TargetConfig,
    mode: VncTls,
) -> Result<u32, UpFailure> {
    let mut v = [0u8; 2];
    s.read_exact(&mut v).await?;
    if v < [0, 2] {
        return Err(fail(
            Verdict::Fail,
            format!(
                "target {} speaks VeNCrypt {}.{} (0.2 needed)",
                target.name, v[0], v[1]
            ),
        ));
    }
    s.write_all(&[0, 2]).await?;
    if io::read_u8(s).await? != 0 {
        return Err(fail(
            Verdict::Fail,
            format!("target {} refused VeNCrypt 0.2", target.name),
        ));
    }
    let n = io::read_u8(s).await?;
    let mut subs = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        subs.push(io::read_u32(s).await?);
    }
    let has_pw = target.password.is_some();
    let has_user = !target.user.is_empty();
    let mut wanted = Vec::new();
    if mode == VncTls::TlsFirst {
        if has_user && has_pw {
            wanted.push(security::PLAIN);
        }
    } else {
        if has_user && has_pw {
            wanted.push(security::X509_PLAIN);
        }
        if has_pw {
            wanted.push(security::X509_VNC);
        }
        wanted.push(security::X509_NONE);
    }
    let Some(picked) = wanted.iter().copied().find(|w| subs.contains(w)) else {
        let names: Vec<String> = subs
            .iter()
            .map(|s| security::name(security::VENCRYPT, Some(*s)))
            .collect();
        return Err(fail(
            Verdict::Fail,
            format!(
                "target {} offers VeNCrypt subtypes [{}], none of which its configuration allows \
                 (X509 subtypes with a certificate; anonymous TLS is not supported)",
                target.name,
                names.join(", ")
            ),
        ));
    };
    s.write_all(&picked.to_be_bytes()).await?;
    if io::read_u8(s).await? != 1 {
        return Err(fail(
            Verdict::Fail,
            format!("target {} refused VeNCrypt subtype {picked}", target.name),
        ));
    }
    Ok(picked)
}
