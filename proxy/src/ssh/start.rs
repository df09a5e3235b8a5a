//! After gateway authentication: target choice, policies, the upstream connection and the
//! trail. Failures disconnect the client with a message that says what went wrong.

use std::sync::Arc;

use russh::Disconnect;
use russh::server;
use tracing::Instrument;

use super::handler::SshHandler;
use super::upstream;
use crate::config::Protocol;
use crate::session::{self, Status};

impl SshHandler {
    pub(super) async fn start_session(
        &mut self,
        session: &mut server::Session,
    ) -> Result<(), russh::Error> {
        let span = self.sh.span.clone();
        self.start_session_inner(session).instrument(span).await
    }

    /// After gateway authentication: pick the target, connect upstream, open the trail. Failures
    /// disconnect the client with a message that says what went wrong.
    async fn start_session_inner(
        &mut self,
        session: &mut server::Session,
    ) -> Result<(), russh::Error> {
        let sh = self.sh.clone();
        let Some((user, wanted)) = self.login.clone() else {
            return Ok(());
        };
        sh.update(|r| r.auth_method = self.auth_method.map(str::to_string));
        let target = match session::choose_target(&sh.cfg, &user, wanted.as_deref(), Protocol::Ssh)
        {
            Ok(t) => t,
            Err(msg) => {
                sh.deny(&user, wanted.as_deref(), &msg);
                session.disconnect(Disconnect::ByApplication, &msg, "en")?;
                return Ok(());
            }
        };
        let Some(rt) = self.ssh.target(&target.name) else {
            // The configuration was reloaded between login and here.
            let msg = format!("target {} is not available; try again", target.name);
            sh.deny(&user, Some(&target.name), &msg);
            session.disconnect(Disconnect::ByApplication, &msg, "en")?;
            return Ok(());
        };
        let _ = self.legs.policy.set(rt.channel_policy.clone());
        let policies = match sh.set_target(
            &user,
            target,
            Some(&target.user),
            vec![format!("channel:{}", rt.channel_policy.name)],
        ) {
            Ok(p) => p,
            Err(msg) => {
                session.disconnect(Disconnect::ByApplication, &msg, "en")?;
                return Ok(());
            }
        };
        let usable = if rt.channel_policy.allows_anything() {
            Ok(())
        } else {
            Err(format!(
                "channel policy {:?} permits no channel",
                rt.channel_policy.name
            ))
        };
        if let Err(msg) = sh.preconnect(&user, &target.name, usable) {
            session.disconnect(Disconnect::ByApplication, &msg, "en")?;
            return Ok(());
        }

        let links = upstream::UpLinks {
            session: sh.clone(),
            down: self.legs.down.clone(),
            policy: self.legs.policy.clone(),
        };
        let up = upstream::connect(
            links,
            target,
            rt.private_key.clone(),
            rt.pinned_key.clone(),
            self.ssh.upstream_config.clone(),
            sh.cfg.ssh.connect_timeout,
        )
        .await;
        let up = match up {
            Ok(h) => h,
            Err(f) => {
                tracing::warn!(target = %target.name, verdict = f.verdict.as_str(), "{}", f.message);
                sh.end_with(Status::Failed, f.verdict, &f.message);
                session.disconnect(Disconnect::ByApplication, &f.message, "en")?;
                return Ok(());
            }
        };
        let _ = self.legs.upstream.set(Arc::new(up));
        if let Err(msg) = sh.open_trail(target, self.auth_method, policies).await {
            session.disconnect(Disconnect::ByApplication, msg, "en")?;
            return Ok(());
        }
        sh.accept(&user, &target.name, self.auth_method).await;
        Ok(())
    }
}
