//! The russh server handler toward the admin's client: every callback, delegating to
//! [`super::login`] (authentication), [`super::start`] (the session after it) and
//! [`super::requests`] (channel opens and requests).

use std::collections::HashMap;
use std::sync::Arc;

use russh::keys::ssh_key::HashAlg;
use russh::server::{self, Auth, Msg};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};
use trailgate_recorder::{ChannelOpen, Direction, Event, Request};

use super::relay::{ChanCtx, endpoint, sig_name};
use crate::auth;
use crate::policy::ChannelKind;
use crate::session::Session;

pub struct SshHandler {
    pub(super) legs: Arc<super::legs::SshLegs>,
    pub(super) ssh: Arc<super::SshService>,
    pub(super) sh: Arc<Session>,
    /// The gateway user and target chosen at authentication.
    pub(super) login: Option<(String, Option<String>)>,
    pub(super) auth_method: Option<&'static str>,
    /// Downstream channel id -> relay context, for requests on session channels.
    pub(super) channels: HashMap<ChannelId, Arc<ChanCtx>>,
    pub(super) failures: usize,
}

pub(super) fn methods() -> MethodSet {
    MethodSet::from(
        &[
            MethodKind::PublicKey,
            MethodKind::Password,
            MethodKind::KeyboardInteractive,
        ][..],
    )
}

pub(super) fn retry() -> Auth {
    // Keep every method on offer so the user can try again (russh drops a rejected method otherwise).
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl SshHandler {
    pub fn new(
        sh: Arc<Session>,
        ssh: Arc<super::SshService>,
        legs: Arc<super::legs::SshLegs>,
    ) -> Self {
        SshHandler {
            legs,
            ssh,
            sh,
            login: None,
            auth_method: None,
            channels: HashMap::new(),
            failures: 0,
        }
    }
}

impl server::Handler for SshHandler {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.sh.cfg.ssh.banner.clone())
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "none") {
            return Ok(a);
        }
        // OpenSSH's method probe: not a failure, but a login has begun.
        self.sh
            .auth_tried
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(retry())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "password") {
            return Ok(a);
        }
        if self.check_password(user, password).await {
            return Ok(self.accept(user, "password"));
        }
        Ok(self.failed_attempt(user, "password"))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "publickey") {
            return Ok(a);
        }
        let (name, _) = auth::split_login(user);
        let known = self.sh.cfg.user(name).is_some_and(|u| {
            u.authorized_keys
                .iter()
                .filter_map(|l| auth::parse_public_key_line(l).ok())
                .any(|k| auth::same_key(&k, offer.public_key))
        });
        // An unknown key is a probe, not yet a failure: let the client try its next key or method.
        Ok(if known { Auth::Accept } else { retry() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "publickey") {
            return Ok(a);
        }
        let (name, _) = auth::split_login(user);
        let known = self.sh.cfg.user(name).is_some_and(|u| {
            u.authorized_keys
                .iter()
                .filter_map(|l| auth::parse_public_key_line(l).ok())
                .any(|k| auth::same_key(&k, key.public_key))
        });
        if known {
            tracing::info!(parent: &self.sh.span, fingerprint = %key.public_key.fingerprint(HashAlg::Sha256), "public key accepted");
            return Ok(self.accept(user, "publickey"));
        }
        Ok(self.failed_attempt(user, "publickey"))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "keyboard-interactive") {
            return Ok(a);
        }
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "Trailgate".into(),
                instructions: String::new().into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        let answer = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if self.check_password(user, &answer).await {
            return Ok(self.accept(user, "keyboard-interactive"));
        }
        Ok(self.failed_attempt(user, "keyboard-interactive"))
    }

    async fn auth_succeeded(&mut self, session: &mut server::Session) -> Result<(), Self::Error> {
        // Boxed, here and for channel opens and requests: russh awaits these inside its
        // connection task's future, which is sized for the largest of them for the whole
        // connection (the start of a session holds the upstream connection's handshake).
        Box::pin(self.start_session(session)).await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "session".into(),
            originator: None,
            connected: None,
            reason: None,
        };
        let allowed = self
            .legs
            .policy
            .get()
            .is_some_and(|p| p.allows_any_session());
        let up = self.legs.upstream.get().cloned();
        Box::pin(
            self.open_relayed(channel, reply, open, allowed, async move {
                match up {
                    Some(up) => up.channel_open_session().await,
                    None => Err(russh::Error::Disconnect),
                }
            }),
        )
        .await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "direct-tcpip".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: Some(endpoint(host_to_connect, port_to_connect)),
            reason: None,
        };
        let allowed = self.policy_allows(&ChannelKind::DirectTcpip);
        let up = self.legs.upstream.get().cloned();
        let (h, p, oa, op) = (
            host_to_connect.to_string(),
            port_to_connect,
            originator_address.to_string(),
            originator_port,
        );
        Box::pin(
            self.open_relayed(channel, reply, open, allowed, async move {
                match up {
                    Some(up) => up.channel_open_direct_tcpip(h, p, oa, op).await,
                    None => Err(russh::Error::Disconnect),
                }
            }),
        )
        .await
    }

    async fn channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        // Clients do not open X11 channels toward servers; refuse and record.
        let open = ChannelOpen {
            kind: "x11".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: None,
            reason: None,
        };
        Box::pin(self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        }))
        .await
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "forwarded-tcpip".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: Some(endpoint(host_to_connect, port_to_connect)),
            reason: None,
        };
        Box::pin(self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        }))
        .await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "direct-streamlocal@openssh.com".into(),
            originator: None,
            connected: Some(endpoint(socket_path, 0)),
            reason: None,
        };
        Box::pin(self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        }))
        .await
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let request = Request::Pty {
            term: term.to_string(),
            cols: col_width,
            rows: row_height,
            width_px: pix_width,
            height_px: pix_height,
            modes: modes.iter().map(|(p, v)| (*p as u8, *v)).collect(),
        };
        let term = term.to_string();
        let modes = modes.to_vec();
        Box::pin(
            self.relay_request(channel, request, None, session, move |up| async move {
                up.request_pty(
                    true, &term, col_width, row_height, pix_width, pix_height, &modes,
                )
                .await
            }),
        )
        .await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let request = Request::Env {
            name: name.to_string(),
            value: value.to_string(),
        };
        let (n, v) = (name.to_string(), value.to_string());
        Box::pin(
            self.relay_request(channel, request, None, session, move |up| async move {
                up.set_env(true, n, v).await
            }),
        )
        .await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        Box::pin(self.relay_request(
            channel,
            Request::Shell,
            Some(ChannelKind::SessionShell),
            session,
            |up| async move { up.request_shell(true).await },
        ))
        .await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let raw = data.to_vec();
        Box::pin(self.relay_request(
            channel,
            Request::Exec { command },
            Some(ChannelKind::SessionExec),
            session,
            move |up| async move { up.exec(true, raw).await },
        ))
        .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::SessionSubsystem(Some(name.to_string()));
        let n = name.to_string();
        Box::pin(self.relay_request(
            channel,
            Request::Subsystem {
                name: name.to_string(),
            },
            Some(kind),
            session,
            move |up| async move { up.request_subsystem(true, n).await },
        ))
        .await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        // The cookie is a credential: recorded by protocol name only.
        let request = Request::X11 {
            single_connection,
            auth_protocol: x11_auth_protocol.to_string(),
            screen: x11_screen_number,
        };
        let (p, c) = (x11_auth_protocol.to_string(), x11_auth_cookie.to_string());
        Box::pin(self.relay_request(
            channel,
            request,
            Some(ChannelKind::X11),
            session,
            move |up| async move {
                up.request_x11(true, single_connection, p, c, x11_screen_number)
                    .await
            },
        ))
        .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let Some(ctx) = self.channels.get(&channel).cloned() else {
            return Ok(());
        };
        let request = Request::WindowChange {
            cols: col_width,
            rows: row_height,
            width_px: pix_width,
            height_px: pix_height,
        };
        self.sh
            .rec(
                ctx.id,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request,
                },
            )
            .await;
        if let Some(up) = &ctx.up {
            let _ = up
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let Some(ctx) = self.channels.get(&channel).cloned() else {
            return Ok(());
        };
        self.sh
            .rec(
                ctx.id,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request: Request::Signal {
                        signal: sig_name(&signal),
                    },
                },
            )
            .await;
        if let Some(up) = &ctx.up {
            let _ = up.signal(signal).await;
        }
        Ok(())
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut server::Session,
    ) -> Result<bool, Self::Error> {
        let Some(ctx) = self.channels.get(&channel).cloned() else {
            return Ok(false);
        };
        if !self.policy_allows(&ChannelKind::Agent) {
            self.sh
                .rec(
                    ctx.id,
                    Event::Request {
                        dir: Direction::ClientToServer,
                        request: Request::Refused {
                            request: "auth-agent-req".into(),
                            reason: "denied by channel policy".into(),
                        },
                    },
                )
                .await;
            return Ok(false);
        }
        self.sh
            .rec(
                ctx.id,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request: Request::AgentForward,
                },
            )
            .await;
        let Some(up) = ctx.up.clone() else {
            return Ok(false);
        };
        Ok(ctx
            .request(async move { up.agent_forward(true).await })
            .await)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut server::Session,
    ) -> Result<bool, Self::Error> {
        let request = Request::TcpipForward {
            address: address.to_string(),
            port: *port,
        };
        if !self.policy_allows(&ChannelKind::TcpipForward) {
            self.sh
                .rec(
                    0,
                    Event::Request {
                        dir: Direction::ClientToServer,
                        request: Request::Refused {
                            request: format!("tcpip-forward {address}:{port}"),
                            reason: "denied by channel policy".into(),
                        },
                    },
                )
                .await;
            return Ok(false);
        }
        self.sh
            .rec(
                0,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request,
                },
            )
            .await;
        let Some(up) = self.legs.upstream.get().cloned() else {
            return Ok(false);
        };
        match up.tcpip_forward(address.to_string(), *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                Ok(true)
            }
            Err(e) => {
                tracing::info!(error = %e, "target refused tcpip-forward");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut server::Session,
    ) -> Result<bool, Self::Error> {
        self.sh
            .rec(
                0,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request: Request::CancelTcpipForward {
                        address: address.to_string(),
                        port,
                    },
                },
            )
            .await;
        let Some(up) = self.legs.upstream.get().cloned() else {
            return Ok(false);
        };
        Ok(up
            .cancel_tcpip_forward(address.to_string(), port)
            .await
            .is_ok())
    }
}
