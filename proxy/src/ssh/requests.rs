//! Channel opens and channel requests relayed to the target, with their policy decisions, and
//! what is recorded of each.

use std::sync::Arc;

use russh::server::{self, Msg};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tracing::Instrument;
use trailgate_recorder::record::channel_kind;
use trailgate_recorder::{ChannelOpen, Direction, Event, Request};

use super::handler::SshHandler;
use super::relay;
use crate::policy::ChannelKind;
use crate::session::Session;

impl SshHandler {
    pub(super) fn policy_allows(&self, kind: &ChannelKind) -> bool {
        self.legs.policy.get().is_some_and(|p| p.allows(kind))
    }

    pub(super) async fn open_relayed<F>(
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
        if !allowed || self.legs.upstream.get().is_none() {
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
                let down_handle = self.legs.down.get().cloned();
                let ctx =
                    relay::start_channel(&sh, id, open, channel, up, reply.accept(), down_handle)
                        .await;
                self.channels.insert(down_id, ctx);
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

    pub(super) async fn relay_request<F>(
        &mut self,
        channel: ChannelId,
        request: Request,
        kind: Option<ChannelKind>,
        session: &mut server::Session,
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
        session: &mut server::Session,
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
        // The record names what was asked, allowed or not (a denied command is in the catalog).
        let named = |r: &mut trailgate_recorder::record::ChannelRecord,
                     command: Option<&str>,
                     subsystem: Option<&str>| {
            r.kind = channel_kind("session", command, subsystem, Some(true));
            r.command = command.map(str::to_string);
            r.subsystem = subsystem.map(str::to_string);
        };
        match &request {
            Request::Exec { command } => ctx.update(|r| named(r, Some(command), None)),
            Request::Subsystem { name } => ctx.update(|r| named(r, None, Some(name))),
            Request::Shell => ctx.update(|r| named(r, None, None)),
            _ => {}
        }
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

pub(super) fn request_name(r: &Request) -> String {
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

/// Records a channel request that was not carried out (policy or target), with why.
pub(super) async fn refused(sh: &Session, channel: u32, request: String, reason: &str) {
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
