//! The russh server handler toward the admin's client: gateway authentication, target selection,
//! the upstream connection, channel opens and channel requests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use russh::keys::ssh_key::HashAlg;
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, Sig};
use tracing::Instrument;
use trailgate_recorder::{
    ChannelOpen, Direction, Event, Request, SessionMeta, TrailSpec, TrailWriter,
};

use super::relay::{self, ChanCtx, endpoint, sig_name};
use super::shared::Shared;
use super::upstream;
use crate::auth;
use crate::config::MAX_LOGIN_NAME;
use crate::registry::KillReason;
use crate::policy::ChannelKind;
use crate::session::{Status, TargetRef, UserRef, Verdict};

pub struct SshHandler {
    sh: Arc<Shared>,
    /// The gateway user and target chosen at authentication.
    login: Option<(String, Option<String>)>,
    auth_method: Option<&'static str>,
    /// Downstream channel id -> relay context, for requests on session channels.
    channels: HashMap<ChannelId, Arc<ChanCtx>>,
    failures: usize,
}

fn methods() -> MethodSet {
    MethodSet::from(
        &[
            MethodKind::PublicKey,
            MethodKind::Password,
            MethodKind::KeyboardInteractive,
        ][..],
    )
}

fn retry() -> Auth {
    // Keep every method on offer so the user can try again (russh drops a rejected method otherwise).
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl SshHandler {
    pub fn new(sh: Arc<Shared>) -> Self {
        SshHandler {
            sh,
            login: None,
            auth_method: None,
            channels: HashMap::new(),
            failures: 0,
        }
    }

    fn failed_attempt(&mut self, login: &str, method: &str) -> Auth {
        self.failures += 1;
        let sh = &self.sh;
        sh.auth_tried.store(true, Ordering::Relaxed);
        sh.auth_failures.fetch_add(1, Ordering::Relaxed);
        // A refused name is stored and logged only as a bounded prefix.
        let shown = auth::bounded_login(login);
        tracing::info!(parent: &sh.span, login = %shown, method, "gateway authentication failed");
        sh.update(|r| {
            let (u, _) = auth::split_login(&shown);
            r.user.name = Some(u.to_string());
        });
        if sh.preauth.admission().login_failed(sh.preauth.ip()) {
            sh.update(|r| r.verdict = Some(Verdict::GwAuthFail));
            sh.live.kill(KillReason {
                reason: "too many failed logins from this address".into(),
                by: "gateway".into(),
            });
        }
        retry()
    }

    /// Checks done before any credential is looked at: a login name past
    /// [`MAX_LOGIN_NAME`] ends the connection, and so does a source that is locked out.
    fn precheck(&mut self, login: &str, method: &str) -> Option<Auth> {
        let sh = self.sh.clone();
        if login.len() > MAX_LOGIN_NAME {
            let a = self.failed_attempt(login, method);
            sh.update(|r| r.verdict = Some(Verdict::GwAuthFail));
            sh.live.kill(KillReason {
                reason: format!("login name longer than {MAX_LOGIN_NAME} bytes"),
                by: "gateway".into(),
            });
            return Some(a);
        }
        if sh.preauth.admission().throttled(sh.preauth.ip()) {
            sh.auth_tried.store(true, Ordering::Relaxed);
            sh.update(|r| r.verdict = Some(Verdict::GwAuthFail));
            sh.live.kill(KillReason {
                reason: "too many failed logins from this address".into(),
                by: "gateway".into(),
            });
            return Some(retry());
        }
        None
    }

    fn accept(&mut self, login: &str, method: &'static str) -> Auth {
        let (u, t) = auth::split_login(login);
        self.login = Some((
            u.to_string(),
            t.filter(|t| !t.is_empty()).map(str::to_string),
        ));
        self.auth_method = Some(method);
        Auth::Accept
    }

    async fn check_password(&self, login: &str, password: &str) -> bool {
        let (user, _) = auth::split_login(login);
        let hash = self
            .sh
            .gw
            .cfg
            .user(user)
            .and_then(|u| u.password_hash.clone());
        let password = password.to_string();
        // argon2 is deliberately slow and big (~19 MiB a check): a bounded number at once, off
        // the runtime's workers. Waiting attempts hold a few bytes each.
        let Some(_slot) = self.sh.gw.admission.password_check().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || match hash {
            Some(h) => auth::verify_password(&h, &password),
            None => {
                // Same work for unknown users, so timing does not reveal which users exist.
                let _ = auth::verify_password(&DUMMY_HASH, &password);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    async fn start_session(&mut self, session: &mut Session) -> Result<(), russh::Error> {
        let span = self.sh.span.clone();
        self.start_session_inner(session).instrument(span).await
    }

    /// After gateway authentication: pick the target, connect upstream, open the trail. Failures
    /// disconnect the client with a message that says what went wrong.
    async fn start_session_inner(&mut self, session: &mut Session) -> Result<(), russh::Error> {
        let sh = self.sh.clone();
        let gw = sh.gw.clone();
        let Some((user, wanted)) = self.login.clone() else {
            return Ok(());
        };
        let allowed: Vec<&crate::config::TargetConfig> = gw
            .cfg
            .targets_for(&user)
            .into_iter()
            .filter(|t| t.protocol == crate::config::Protocol::Ssh)
            .collect();
        let names = allowed
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        sh.update(|r| {
            r.user = UserRef {
                name: Some(user.clone()),
                server_username: None,
            };
            r.auth_method = self.auth_method.map(str::to_string);
        });
        let target = match &wanted {
            Some(w) => allowed.iter().find(|t| &t.name == w).copied(),
            None if allowed.len() == 1 => allowed.first().copied(),
            None => None,
        };
        let Some(target) = target else {
            let msg = match &wanted {
                Some(w) => {
                    format!("target {w:?} is not available to {user}; targets you may use: {names}")
                }
                None => format!("choose a target as {user}@TARGET; targets you may use: {names}"),
            };
            sh.update(|r| r.target.name = wanted.clone());
            sh.end_with(Status::Rejected, Some(Verdict::Deny), &msg);
            tracing::info!(%user, target = ?wanted, "target denied");
            session.disconnect(Disconnect::ByApplication, &msg, "en")?;
            return Ok(());
        };
        let (host, port) = crate::util::split_host_port(&target.address).unwrap_or_default();
        sh.update(|r| {
            r.target = TargetRef {
                name: Some(target.name.clone()),
                ip: Some(host.clone()),
                port: Some(port),
            };
            r.user.server_username = Some(target.user.clone());
        });
        let Some(rt) = gw.targets.get(&target.name) else {
            return Ok(());
        };
        let _ = sh.policy.set(rt.channel_policy.clone());
        let settings = target
            .settings_policy
            .as_ref()
            .and_then(|p| gw.cfg.settings_policies.get(p))
            .cloned()
            .unwrap_or_default();
        let _ = sh.settings.set(settings);
        let mut policies = vec![format!("channel:{}", rt.channel_policy.name)];
        if let Some(p) = &target.settings_policy {
            policies.push(format!("settings:{p}"));
        }
        sh.update(|r| r.policies = policies.clone());

        let slot = Arc::new(OnceLock::new());
        let _ = slot.set(sh.clone());
        let up = upstream::connect(
            slot,
            target,
            rt.private_key.clone(),
            rt.pinned_key.clone(),
            gw.upstream_config.clone(),
            gw.cfg.ssh.connect_timeout,
        )
        .await;
        let up = match up {
            Ok(h) => h,
            Err(f) => {
                tracing::warn!(target = %target.name, verdict = f.verdict.as_str(), "{}", f.message);
                sh.end_with(Status::Failed, Some(f.verdict), &f.message);
                session.disconnect(Disconnect::ByApplication, &f.message, "en")?;
                return Ok(());
            }
        };
        let _ = sh.upstream.set(Arc::new(up));

        let spec = TrailSpec {
            session_id: sh.id.clone(),
            protocol: "ssh".into(),
            meta: SessionMeta {
                client: Some(endpoint(
                    &sh.snapshot().client.ip,
                    u32::from(sh.snapshot().client.port),
                )),
                target_name: Some(target.name.clone()),
                target_address: Some(endpoint(&host, u32::from(port))),
                gateway_user: Some(user.clone()),
                target_user: Some(target.user.clone()),
                auth_method: self.auth_method.map(str::to_string),
                policies,
                node_id: Some(gw.node_id.clone()),
            },
            start: sh.start_wall,
        };
        match TrailWriter::create(
            &gw.cfg.data_dir,
            spec,
            gw.signing_key.clone(),
            gw.writer_cfg.clone(),
        )
        .await
        {
            Ok(w) => {
                let path = w.path().display().to_string();
                sh.live.set_trail(&w);
                let _ = sh.trail.set(w);
                sh.update(|r| {
                    r.trail.path = Some(path);
                    r.trail.integrity = "recording".into();
                });
            }
            Err(e) => {
                let err = format!("cannot create trail: {e}");
                if gw.cfg.recording.on_failure == crate::config::OnFailure::Terminate {
                    // Refused before it began: the record says why (the details stay on the
                    // server; the client is told no paths).
                    tracing::error!(error = %err, "recording unavailable: session refused");
                    gw.metrics.recording_failed();
                    sh.update(|r| {
                        r.trail.integrity = "failed".into();
                        r.trail.error = Some(err.clone());
                    });
                    sh.end_with(Status::Failed, Some(Verdict::Fail), "recording unavailable");
                    session.disconnect(
                        Disconnect::ByApplication,
                        "recording unavailable; session refused",
                        "en",
                    )?;
                    return Ok(());
                }
                sh.recording_failed(&err);
            }
        }
        sh.update(|r| {
            r.verdict = Some(Verdict::Accept);
            r.status = Status::Connected;
        });
        sh.authenticated.store(true, Ordering::Relaxed);
        sh.preauth.authenticated();
        sh.policy_changed.notify_one();
        sh.rec(0, Event::Note(serde_json::json!({"event": "authenticated", "method": self.auth_method, "user": user, "target": target.name})))
            .await;
        tracing::info!(%user, target = %target.name, method = ?self.auth_method, "session accepted");
        sh.publish();
        Ok(())
    }

    fn policy_allows(&self, kind: &ChannelKind) -> bool {
        self.sh.policy.get().is_some_and(|p| p.allows(kind))
    }

    async fn open_relayed<F>(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        open: ChannelOpen,
        allowed: bool,
        open_up: F,
    ) -> Result<(), russh::Error>
    where
        F: std::future::Future<Output = Result<Channel<russh::client::Msg>, russh::Error>>,
    {
        let span = self.sh.span.clone();
        self.open_relayed_inner(channel, reply, open, allowed, open_up)
            .instrument(span)
            .await
    }

    /// Opens the same channel at the target, then accepts the client's; or refuses and records it.
    async fn open_relayed_inner<F>(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        open: ChannelOpen,
        allowed: bool,
        open_up: F,
    ) -> Result<(), russh::Error>
    where
        F: std::future::Future<Output = Result<Channel<russh::client::Msg>, russh::Error>>,
    {
        let sh = self.sh.clone();
        let id = sh.alloc_channel();
        if !allowed || sh.upstream.get().is_none() {
            tracing::info!(kind = %open.kind, "channel denied by policy");
            relay::refuse(
                &sh,
                id,
                open,
                "deny",
                "denied by channel policy".to_string(),
            )
            .await;
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        match open_up.await {
            Ok(up) => {
                let down_id = channel.id();
                let (up_read, up_write) = up.split();
                let up_write = Arc::new(up_write);
                let ctx = ChanCtx::new(id, &open, "accept", Some(up_write.clone()));
                relay::register(&sh, &ctx, open, false).await;
                self.channels.insert(down_id, ctx.clone());
                // Confirm the open before any data can be written to the channel: data sent on an
                // unconfirmed channel would be dropped (a service that speaks first would lose its banner).
                reply.accept().await;
                relay::spawn_pumps(&sh, ctx, channel, up_read, up_write);
            }
            Err(e) => {
                relay::refuse(&sh, id, open, "fail", format!("target refused: {e}")).await;
                let reason = match e {
                    russh::Error::ChannelOpenFailure(f) => f,
                    _ => ChannelOpenFailure::ConnectFailed,
                };
                reply.reject(reason).await;
            }
        }
        Ok(())
    }

    async fn relay_request<F>(
        &mut self,
        channel: ChannelId,
        request: Request,
        kind: Option<ChannelKind>,
        session: &mut Session,
        send: impl FnOnce(Arc<russh::ChannelWriteHalf<russh::client::Msg>>) -> F,
    ) -> Result<(), russh::Error>
    where
        F: std::future::Future<Output = Result<(), russh::Error>>,
    {
        let span = self.sh.span.clone();
        self.relay_request_inner(channel, request, kind, session, send)
            .instrument(span)
            .await
    }

    /// Relays a want-reply request on a session channel and answers the client with the target's
    /// reply. `kind`: the policy decision this request needs, if any.
    async fn relay_request_inner<F>(
        &mut self,
        channel: ChannelId,
        request: Request,
        kind: Option<ChannelKind>,
        session: &mut Session,
        send: impl FnOnce(Arc<russh::ChannelWriteHalf<russh::client::Msg>>) -> F,
    ) -> Result<(), russh::Error>
    where
        F: std::future::Future<Output = Result<(), russh::Error>>,
    {
        let Some(ctx) = self.channels.get(&channel).cloned() else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        // What the client asked is recorded whether or not it is allowed.
        self.sh
            .rec(
                ctx.id,
                Event::Request {
                    dir: Direction::ClientToServer,
                    request: request.clone(),
                },
            )
            .await;
        if let Some(k) = &kind
            && !self.policy_allows(k)
        {
            let name = request_name(&request);
            tracing::info!(request = %name, "request denied by channel policy");
            ctx.update(|r| r.verdict = "deny".into());
            refused(&self.sh, ctx.id, name, "denied by channel policy").await;
            session.channel_failure(channel)?;
            return Ok(());
        }
        match &request {
            Request::Exec { command } => ctx.update(|r| {
                r.kind = "session exec".into();
                r.command = Some(command.clone());
            }),
            Request::Subsystem { name } => ctx.update(|r| {
                r.kind = format!("session subsystem {name}");
                r.subsystem = Some(name.clone());
            }),
            Request::Shell => ctx.update(|r| r.kind = "session shell".into()),
            _ => {}
        }
        let Some(up) = ctx.up.clone() else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let ok = ctx.request(send(up)).await;
        if ok {
            session.channel_success(channel)?;
        } else {
            refused(&self.sh, ctx.id, request_name(&request), "target refused").await;
            session.channel_failure(channel)?;
        }
        self.sh.publish();
        Ok(())
    }
}

fn request_name(r: &Request) -> String {
    match r {
        Request::Exec { command } => format!("exec {command}"),
        Request::Shell => "shell".into(),
        Request::Subsystem { name } => format!("subsystem {name}"),
        Request::Pty { .. } => "pty-req".into(),
        Request::Env { name, .. } => format!("env {name}"),
        Request::X11 { .. } => "x11-req".into(),
        Request::AgentForward => "auth-agent-req".into(),
        Request::TcpipForward { .. } => "tcpip-forward".into(),
        other => format!("{other:?}"),
    }
}

/// A real argon2id hash, verified for unknown users so timing does not reveal which users exist.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password("trailgate-dummy").unwrap_or_default());

impl server::Handler for SshHandler {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.sh.gw.cfg.ssh.banner.clone())
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if let Some(a) = self.precheck(user, "none") {
            return Ok(a);
        }
        // OpenSSH's method probe: not a failure, but a login has begun.
        self.sh.auth_tried.store(true, std::sync::atomic::Ordering::Relaxed);
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
        let known = self.sh.gw.cfg.user(name).is_some_and(|u| {
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
        let known = self.sh.gw.cfg.user(name).is_some_and(|u| {
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

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.start_session(session).await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "session".into(),
            originator: None,
            connected: None,
            reason: None,
        };
        let allowed = self.sh.policy.get().is_some_and(|p| p.allows_any_session());
        let up = self.sh.upstream.get().cloned();
        self.open_relayed(channel, reply, open, allowed, async move {
            match up {
                Some(up) => up.channel_open_session().await,
                None => Err(russh::Error::Disconnect),
            }
        })
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
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "direct-tcpip".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: Some(endpoint(host_to_connect, port_to_connect)),
            reason: None,
        };
        let allowed = self.policy_allows(&ChannelKind::DirectTcpip);
        let up = self.sh.upstream.get().cloned();
        let (h, p, oa, op) = (
            host_to_connect.to_string(),
            port_to_connect,
            originator_address.to_string(),
            originator_port,
        );
        self.open_relayed(channel, reply, open, allowed, async move {
            match up {
                Some(up) => up.channel_open_direct_tcpip(h, p, oa, op).await,
                None => Err(russh::Error::Disconnect),
            }
        })
        .await
    }

    async fn channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Clients do not open X11 channels toward servers; refuse and record.
        let open = ChannelOpen {
            kind: "x11".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: None,
            reason: None,
        };
        self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        })
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
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: "forwarded-tcpip".into(),
            originator: Some(endpoint(originator_address, originator_port)),
            connected: Some(endpoint(host_to_connect, port_to_connect)),
            reason: None,
        };
        self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        })
        .await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = ChannelOpen {
            kind: format!("direct-streamlocal {socket_path}"),
            originator: None,
            connected: None,
            reason: None,
        };
        self.open_relayed(channel, reply, open, false, async {
            Err(russh::Error::Disconnect)
        })
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
        session: &mut Session,
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
        self.relay_request(channel, request, None, session, move |up| async move {
            up.request_pty(
                true, &term, col_width, row_height, pix_width, pix_height, &modes,
            )
            .await
        })
        .await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = Request::Env {
            name: name.to_string(),
            value: value.to_string(),
        };
        let (n, v) = (name.to_string(), value.to_string());
        self.relay_request(channel, request, None, session, move |up| async move {
            up.set_env(true, n, v).await
        })
        .await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.relay_request(
            channel,
            Request::Shell,
            Some(ChannelKind::SessionShell),
            session,
            |up| async move { up.request_shell(true).await },
        )
        .await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let raw = data.to_vec();
        self.relay_request(
            channel,
            Request::Exec { command },
            Some(ChannelKind::SessionExec),
            session,
            move |up| async move { up.exec(true, raw).await },
        )
        .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::SessionSubsystem(Some(name.to_string()));
        let n = name.to_string();
        self.relay_request(
            channel,
            Request::Subsystem {
                name: name.to_string(),
            },
            Some(kind),
            session,
            move |up| async move { up.request_subsystem(true, n).await },
        )
        .await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The cookie is a credential: recorded by protocol name only.
        let request = Request::X11 {
            single_connection,
            auth_protocol: x11_auth_protocol.to_string(),
            screen: x11_screen_number,
        };
        let (p, c) = (x11_auth_protocol.to_string(), x11_auth_cookie.to_string());
        self.relay_request(
            channel,
            request,
            Some(ChannelKind::X11),
            session,
            move |up| async move {
                up.request_x11(true, single_connection, p, c, x11_screen_number)
                    .await
            },
        )
        .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
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
        _session: &mut Session,
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
        _session: &mut Session,
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
        _session: &mut Session,
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
        let Some(up) = self.sh.upstream.get().cloned() else {
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
        _session: &mut Session,
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
        let Some(up) = self.sh.upstream.get().cloned() else {
            return Ok(false);
        };
        Ok(up
            .cancel_tcpip_forward(address.to_string(), port)
            .await
            .is_ok())
    }
}

/// Records a channel request that was not carried out (policy or target), with why.
async fn refused(sh: &Shared, channel: u32, request: String, reason: &str) {
    sh.rec(
        channel,
        Event::Request {
            dir: Direction::ServerToClient,
            request: Request::Refused {
                request,
                reason: reason.into(),
            },
        },
    )
    .await;
}
