//! The VNC bridge: RFB 3.8 with VeNCrypt (TLS) toward the admin's viewer, the target's own
//! RFB version and security toward the VNC server, and one recorded channel (`vnc`) carrying
//! both streams from ClientInit / ServerInit on (no credentials are ever in a trail).
//!
//! - [`service`]: TLS configurations of the listener and of each target ([`VncService`]).
//! - `front`: the client's handshake (TLS-first detection, VeNCrypt, credentials).
//! - `upstream`: the target's handshake (version, security choice, TLS, credentials).
//! - `relay`: the two pumps (client messages framed and filtered; server stream as read).
//! - `io`: byte-level helpers of the handshakes.

mod front;
mod io;
mod relay;
mod service;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;
use trailgate_recorder::record::{VncLeg, VncRecord};
use trailgate_recorder::{ChannelOpen, Direction, Event};
use trailgate_rfb::ServerInit;
use trailgate_rfb::handshake::MAX_NAME;

use crate::auth;
use crate::config::Protocol;
use crate::session::{self, ChannelState, EndCode, Session, Status, Verdict, endpoint};
use front::FrontError;
use io::Io;
use relay::PumpEnd;

use crate::policy::TlsPolicy;
pub use service::{VncService, VncState};

/// How long the other pump gets to finish once one direction has ended (the target closes
/// after the client's side is shut, and its last bytes are still recorded).
const PUMP_DRAIN: Duration = Duration::from_secs(2);

/// Runs one client connection from accept to sealed trail.
pub async fn serve_connection(vnc: Arc<VncService>, tcp: TcpStream, peer: SocketAddr) {
    let gw = vnc.svc.clone();
    let Some(sh) = session::begin(&gw, Protocol::Vnc, peer) else {
        return;
    };
    let span = sh.span.clone();
    async move {
        let _ = tcp.set_nodelay(true);
        let st = vnc.state();
        let timers = tokio::spawn(session::policy_timers(sh.clone(), st.cfg.login_timeout));
        // `run` first: a refusal it is writing when it kills the session still reaches the client.
        tokio::select! {
            biased;
            _ = run(&st, &sh, tcp) => {}
            _ = sh.live.killed() => sh.terminated(&sh.kill_reason()),
        }
        timers.abort();
        session::conclude(&sh).await;
    }
    .instrument(span)
    .await
}

/// Tells the client why it is refused (a failed SecurityResult with the reason), best effort.
async fn refuse(io: &mut Io, why: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), io::security_failed(io, why)).await;
}

async fn run(vnc: &VncState, sh: &Arc<Session>, tcp: TcpStream) {
    if !sh.gw.runtime.vnc_options().service.enabled {
        let why = "the VNC service is switched off on this gateway";
        sh.heard();
        front::refuse_early(tcp, why, vnc.cfg.tls_detect_timeout).await;
        sh.end_with(Status::Rejected, Verdict::Deny, why);
        return;
    }
    let heard = || sh.heard();
    let front =
        match front::handshake(tcp, vnc.tls.clone(), vnc.cfg.tls_detect_timeout, &heard).await {
            Ok(f) => f,
            Err(FrontError::Refused(why)) => {
                tracing::info!(reason = %why, "client refused");
                sh.end_with(Status::Rejected, Verdict::ProtocolError, &why);
                return;
            }
            Err(FrontError::TlsPolicy(why)) => {
                tracing::info!(reason = %why, "client refused");
                sh.end_with(Status::Rejected, Verdict::Deny, &why);
                return;
            }
            Err(FrontError::Protocol(e)) => {
                tracing::info!(error = %e, "client handshake failed");
                sh.note_end(
                    &format!("vnc handshake failed: {e}"),
                    true,
                    0,
                    EndCode::ProtocolError,
                );
                return;
            }
        };
    let front::Front {
        mut io,
        login,
        password,
        leg: client_leg,
    } = front;
    sh.update(|r| r.auth_method = Some("password".into()));
    if sh.login_refused_early(&login, "password") {
        refuse(&mut io, &sh.kill_reason().reason).await;
        return;
    }
    let (user, wanted) = auth::split_login(&login);
    let wanted = wanted.filter(|w| !w.is_empty());
    if !sh.check_password(user, &password).await {
        sh.login_failed(&login, "password");
        sh.end_with(
            Status::Rejected,
            Verdict::GwAuthFail,
            "gateway authentication failed",
        );
        refuse(&mut io, "authentication failed").await;
        return;
    }
    drop(password);
    let target = match session::choose_target(&sh.cfg, user, wanted, Protocol::Vnc) {
        Ok(t) => t,
        Err(msg) => {
            sh.deny(user, wanted, &msg);
            refuse(&mut io, &msg).await;
            return;
        }
    };
    let server_user = (!target.user.is_empty()).then_some(target.user.as_str());
    let policies = match sh.set_target(user, target, server_user, Vec::new()) {
        Ok(p) => p,
        Err(msg) => {
            refuse(&mut io, &msg).await;
            return;
        }
    };
    // The client's TLS was agreed before the login named the target: check it against the
    // target's policy now, before the target is contacted.
    let (client_tls, server_tls) = match tls_policies(sh) {
        Ok(p) => p,
        Err(msg) => {
            sh.deny(user, Some(&target.name), &msg);
            refuse(&mut io, &msg).await;
            return;
        }
    };
    if let Err(why) = client_tls.admits(
        client_leg.tls_version.as_deref(),
        client_leg.tls_cipher.as_deref(),
    ) {
        let msg = format!("client TLS refused by the settings policy: {why}");
        sh.deny(user, Some(&target.name), &msg);
        refuse(&mut io, &msg).await;
        return;
    }
    let rt = match vnc.target(&target.name, &server_tls) {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("target {}: {e}", target.name);
            sh.deny(user, Some(&target.name), &msg);
            refuse(&mut io, &msg).await;
            return;
        }
    };
    let mut up = match upstream::connect(target, &rt, vnc.cfg.connect_timeout).await {
        Ok(u) => u,
        Err(mut f) => {
            if rt.tls.is_some() && server_tls != crate::tls::default_policy() {
                f.message = format!(
                    "{} (the settings policy allows {} and up{})",
                    f.message,
                    server_tls.minimum.as_str(),
                    if server_tls.suites.is_some() {
                        ", custom suites"
                    } else {
                        ""
                    }
                );
            }
            tracing::warn!(target = %target.name, verdict = f.verdict.as_str(), "{}", f.message);
            sh.end_with(Status::Failed, f.verdict, &f.message);
            refuse(&mut io, &f.message).await;
            return;
        }
    };
    if let Err(msg) = sh.open_trail(target, Some("password"), policies).await {
        refuse(&mut io, msg).await;
        return;
    }
    let init = match initialise(&mut io, &mut up.io).await {
        Ok(x) => x,
        Err(e) => {
            tracing::info!(error = %e, "initialisation failed");
            sh.note_end(
                &format!("initialisation failed: {e}"),
                true,
                0,
                EndCode::ConnectionError,
            );
            return;
        }
    };
    let mut client_leg = client_leg;
    let mut target_leg = up.leg;
    // What the client leg demanded: the listener's minimum in the handshake, the target
    // policy's after it.
    let listener_min = vnc
        .cfg
        .client_tls_security_settings
        .compile("vnc")
        .map_or(client_tls.minimum, |p| p.minimum);
    client_leg.tls_minimum = Some(listener_min.max(client_tls.minimum).as_str().into());
    if rt.tls.is_some() {
        target_leg.tls_minimum = Some(server_tls.minimum.as_str().into());
    }
    let ch = record_start(sh, target, &init, client_leg, target_leg).await;
    sh.accept(user, &target.name, Some("password")).await;
    relay(sh, ch, io, up.io).await;
}

/// The compiled TLS settings of the session's policy for the client and target legs (rustls'
/// defaults without a policy).
fn tls_policies(sh: &Session) -> Result<(TlsPolicy, TlsPolicy), String> {
    let Some(r) = sh.settings.get() else {
        return Ok((crate::tls::default_policy(), crate::tls::default_policy()));
    };
    let at = format!("settings policy {}", r.key);
    Ok((
        r.policy
            .client_tls_security_settings
            .compile(&format!("{at}: client_tls_security_settings"))?,
        r.policy
            .server_tls_security_settings
            .compile(&format!("{at}: server_tls_security_settings"))?,
    ))
}

/// After both SecurityResults: the client's ClientInit goes to the target, the target's
/// ServerInit to the client. Returns both as they crossed.
async fn initialise(
    client: &mut Io,
    target: &mut Io,
) -> std::io::Result<(u8, ServerInit, Vec<u8>)> {
    client.write_all(&0u32.to_be_bytes()).await?;
    client.flush().await?;
    let shared = io::read_u8(client).await?;
    target.write_all(&[shared]).await?;
    target.flush().await?;
    let mut raw = vec![0u8; 24];
    target.read_exact(&mut raw).await?;
    let name_len = u32::from_be_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
    raw.extend(io::read_bounded(target, name_len, MAX_NAME, "desktop name").await?);
    let si = match ServerInit::parse(&raw) {
        Ok(Some((si, _))) => si,
        Ok(None) => return Err(io::invalid("short ServerInit")),
        Err(e) => return Err(io::invalid(format!("target's ServerInit: {e}"))),
    };
    client.write_all(&raw).await?;
    client.flush().await?;
    Ok((shared, si, raw))
}

/// Opens the `vnc` channel in the trail and the record: what each leg negotiated, the desktop,
/// and the initialisation messages (the first bytes of each direction).
async fn record_start(
    sh: &Arc<Session>,
    target: &crate::config::TargetConfig,
    (shared, si, raw): &(u8, ServerInit, Vec<u8>),
    client_leg: VncLeg,
    target_leg: VncLeg,
) -> Arc<ChannelState> {
    let id = sh.alloc_channel();
    let rec = sh.snapshot();
    let (host, port) = crate::util::split_host_port(&target.address).unwrap_or_default();
    let open = ChannelOpen {
        kind: "vnc".into(),
        originator: Some(endpoint(&rec.client.ip, u32::from(rec.client.port))),
        connected: Some(endpoint(&host, u32::from(port))),
        reason: None,
    };
    let ch = Arc::new(ChannelState::new(id, &open, "accept"));
    if let Ok(mut chs) = sh.channels.lock() {
        chs.insert(id, ch.clone());
    }
    sh.gw.metrics.channel("vnc", "accept");
    let vnc = VncRecord {
        desktop_name: si.name.clone(),
        width: si.width,
        height: si.height,
        pixel_format: serde_json::to_value(si.pixel_format).unwrap_or_default(),
        client: client_leg,
        target: target_leg,
    };
    let mut note = serde_json::to_value(&vnc).unwrap_or_default();
    note["event"] = "vnc".into();
    sh.update(|r| r.vnc = Some(vnc));
    sh.rec(id, Event::Open(open)).await;
    sh.rec(id, Event::Note(note)).await;
    let c2s = bytes::Bytes::copy_from_slice(&[*shared]);
    sh.rec_data(id, Direction::ClientToServer, &c2s).await;
    ch.count(Direction::ClientToServer, 1);
    sh.rec_data(
        id,
        Direction::ServerToClient,
        &bytes::Bytes::copy_from_slice(raw),
    )
    .await;
    ch.count(Direction::ServerToClient, raw.len());
    sh.traffic(true, 1, false);
    sh.traffic(false, raw.len(), false);
    ch
}

/// Relays until one side ends; the other then gets [`PUMP_DRAIN`] to finish.
async fn relay(sh: &Arc<Session>, ch: Arc<ChannelState>, client: Io, target: Io) {
    let (crd, cwr) = tokio::io::split(client);
    let (trd, twr) = tokio::io::split(target);
    let c2s = relay::client_to_target(sh.clone(), ch.clone(), crd, twr);
    let s2c = relay::target_to_client(sh.clone(), ch, trd, cwr);
    tokio::pin!(c2s, s2c);
    let (from_client, end) = tokio::select! {
        e = &mut c2s => (true, e),
        e = &mut s2c => (false, e),
    };
    let (reason, code) = match (&end, from_client) {
        (PumpEnd::Eof, true) => (
            "client disconnected".to_string(),
            EndCode::ClientDisconnected,
        ),
        (PumpEnd::Eof, false) => (
            "target closed the connection".to_string(),
            EndCode::TargetDisconnected,
        ),
        (PumpEnd::Io(e), true) => (
            format!("client connection error: {e}"),
            EndCode::ConnectionError,
        ),
        (PumpEnd::Io(e), false) => (
            format!("target connection error: {e}"),
            EndCode::ConnectionError,
        ),
        (PumpEnd::Protocol(e), _) => {
            tracing::warn!(error = %e, "malformed client message: session ended");
            (
                format!("malformed client message: {e}"),
                EndCode::ProtocolError,
            )
        }
    };
    if matches!(end, PumpEnd::Eof) {
        let other = async {
            if from_client {
                (&mut s2c).await
            } else {
                (&mut c2s).await
            }
        };
        let _ = tokio::time::timeout(PUMP_DRAIN, other).await;
    }
    sh.note_end(&reason, matches!(end, PumpEnd::Protocol(_)), 0, code);
}
