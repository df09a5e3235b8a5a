//! The client's side of the handshake: RFB 3.8 from the gateway, VeNCrypt with X509Plain (TLS
//! with the gateway's certificate, then user name and password), or, for TLS-first clients
//! (recognised by their ClientHello), the whole RFB stream inside TLS with VeNCrypt Plain.
//! Credentials never cross in clear: no plaintext security type is offered.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use trailgate_recorder::record::VncLeg;
use trailgate_rfb::Version;
use trailgate_rfb::handshake::{TLS_HANDSHAKE_BYTE, security};

use super::io::{self, Io};
use crate::config::MAX_LOGIN_NAME;

/// Longest password accepted (a password longer than this is not a password).
const MAX_PASSWORD: usize = 1024;

/// What the client's handshake produced: its stream (TLS from here on), its login and the leg.
pub struct Front {
    pub io: Io,
    pub login: String,
    pub password: String,
    pub leg: VncLeg,
}

/// Why a client's handshake ended without a login.
#[derive(Debug)]
pub enum FrontError {
    /// The client speaks something the gateway refuses (an old RFB version, another security
    /// type); it was told why.
    Refused(String),
    /// The client's TLS is outside the listener's policy (version or suites): refused in the
    /// handshake.
    TlsPolicy(String),
    /// Malformed input, TLS failure or a dropped connection.
    Protocol(String),
}

impl From<std::io::Error> for FrontError {
    fn from(e: std::io::Error) -> Self {
        FrontError::Protocol(e.to_string())
    }
}

/// Runs the handshake up to the credentials (the SecurityResult is the caller's: it depends on
/// the login and the target).
pub async fn handshake(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    detect: Duration,
    heard: &(dyn Fn() + Sync),
) -> Result<Front, FrontError> {
    let acceptor = TlsAcceptor::from(tls);
    // TLS clients speak first; RFB clients wait for the server's version line.
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(detect, tcp.peek(&mut first)).await;
    if matches!(peeked, Ok(Ok(1))) {
        heard();
    }
    let tls_first = matches!(peeked, Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_BYTE);
    let (mut io, (tls_version, tls_cipher), subtype, mode) = if tls_first {
        let (mut io, negotiated) = accept(&acceptor, tcp).await?;
        rfb_version(&mut io).await?;
        vencrypt_offer(&mut io, security::PLAIN).await?;
        (io, negotiated, security::PLAIN, "tls-first")
    } else {
        let mut tcp = tcp;
        // RFB viewers speak after the server: the first byte is heard with their version.
        let mut one = [0u8; 1];
        tcp.write_all(&Version::V3_8.line()).await?;
        if tcp.peek(&mut one).await? == 1 {
            heard();
        }
        rfb_version_reply(&mut tcp).await?;
        vencrypt_offer(&mut tcp, security::X509_PLAIN).await?;
        let (io, negotiated) = accept(&acceptor, tcp).await?;
        (io, negotiated, security::X509_PLAIN, "vencrypt")
    };
    let (login, password) = plain_credentials(&mut io).await?;
    Ok(Front {
        io,
        login,
        password,
        leg: VncLeg {
            rfb_version: Version::V3_8.to_string(),
            security: security::name(security::VENCRYPT, Some(subtype)),
            tls_mode: mode.into(),
            tls_version,
            tls_cipher,
            tls_minimum: None,
        },
    })
}

type Negotiated = (Option<String>, Option<String>);

/// The TLS handshake as server; the stream and what it negotiated.
async fn accept(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<(Io, Negotiated), FrontError> {
    let tls = acceptor.accept(tcp).await.map_err(|e| {
        let policy = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .is_some_and(|e| matches!(e, rustls::Error::PeerIncompatible(_)));
        if policy {
            FrontError::TlsPolicy(format!(
                "TLS handshake refused: the client's TLS is outside the gateway's policy ({e})"
            ))
        } else {
            FrontError::Protocol(format!("TLS handshake: {e}"))
        }
    })?;
    let negotiated = crate::tls::negotiated(tls.get_ref().1);
    Ok((Box::new(tls), negotiated))
}

/// Refuses a connection before any security is negotiated (the VNC service is switched off):
/// RFB clients get the reason as a 3.8 failure; TLS-first clients are closed.
pub async fn refuse_early(mut tcp: TcpStream, why: &str, detect: Duration) {
    let mut first = [0u8; 1];
    if let Ok(Ok(1)) = tokio::time::timeout(detect, tcp.peek(&mut first)).await
        && first[0] == TLS_HANDSHAKE_BYTE
    {
        return;
    }
    let refuse = async {
        tcp.write_all(&Version::V3_8.line()).await?;
        let mut line = [0u8; 12];
        tcp.read_exact(&mut line).await?;
        let mut msg = vec![0u8];
        msg.extend(io::reason(why));
        tcp.write_all(&msg).await?;
        tcp.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), refuse).await;
}

/// Version exchange: the gateway speaks 3.8 only. Older clients are told why, in the form their
/// version understands (3.7: an empty type list and a reason; 3.3: type 0 and a reason).
async fn rfb_version<S: io::Stream + ?Sized>(s: &mut S) -> Result<(), FrontError> {
    s.write_all(&Version::V3_8.line()).await?;
    rfb_version_reply(s).await
}

/// The client's version line, after the gateway's.
async fn rfb_version_reply<S: io::Stream + ?Sized>(s: &mut S) -> Result<(), FrontError> {
    let mut line = [0u8; 12];
    s.read_exact(&mut line).await?;
    let v = Version::parse(&line).map_err(|e| FrontError::Protocol(e.to_string()))?;
    let v = v.effective();
    if v == Version::V3_8 {
        return Ok(());
    }
    let why = format!(
        "RFB {v} is not supported by this gateway: use a viewer that speaks RFB 3.8 with VeNCrypt (TLS)"
    );
    let mut msg = if v == Version::V3_7 {
        vec![0u8]
    } else {
        0u32.to_be_bytes().to_vec()
    };
    msg.extend(io::reason(&why));
    s.write_all(&msg).await?;
    s.flush().await?;
    Err(FrontError::Refused(why))
}

/// Offers VeNCrypt (the only security type) with one subtype, and agrees on it.
async fn vencrypt_offer<S: io::Stream + ?Sized>(s: &mut S, subtype: u32) -> Result<(), FrontError> {
    s.write_all(&[1, security::VENCRYPT]).await?;
    let chosen = io::read_u8(s).await?;
    if chosen != security::VENCRYPT {
        let why =
            format!("security type {chosen} was not offered; this gateway requires VeNCrypt (TLS)");
        io::security_failed(s, &why).await?;
        return Err(FrontError::Refused(why));
    }
    s.write_all(&[0, 2]).await?;
    let mut v = [0u8; 2];
    s.read_exact(&mut v).await?;
    if v != [0, 2] {
        s.write_all(&[0xff]).await?;
        return Err(FrontError::Refused(format!(
            "VeNCrypt version {}.{} (the gateway speaks 0.2)",
            v[0], v[1]
        )));
    }
    let mut offer = vec![0u8, 1];
    offer.extend_from_slice(&subtype.to_be_bytes());
    s.write_all(&offer).await?;
    let chosen = io::read_u32(s).await?;
    if chosen != subtype {
        s.write_all(&[0]).await?;
        return Err(FrontError::Refused(format!(
            "VeNCrypt subtype {chosen} was not offered (offered {subtype})"
        )));
    }
    s.write_all(&[1]).await?;
    s.flush().await?;
    Ok(())
}

/// VeNCrypt Plain: u32 lengths, user name, password.
async fn plain_credentials<S: io::Stream + ?Sized>(
    s: &mut S,
) -> Result<(String, String), FrontError> {
    let ulen = io::read_u32(s).await? as usize;
    let plen = io::read_u32(s).await? as usize;
    // A name a little past the limit is read so the refusal can say so; an absurd one is not.
    let user = io::read_bounded(s, ulen, MAX_LOGIN_NAME * 4, "user name").await?;
    let pass = io::read_bounded(s, plen, MAX_PASSWORD, "password").await?;
    Ok((
        String::from_utf8_lossy(&user).into_owned(),
        String::from_utf8_lossy(&pass).into_owned(),
    ))
}
