//! After gateway authentication: target choice, policies, the upstream connection and the
//! trail. Failures disconnect the client with a message that says what went wrong.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use russh::Disconnect;
use russh::server;
use tracing::Instrument;
use trailgate_recorder::{Event, SessionMeta, TrailSpec, TrailWriter};

use super::handler::SshHandler;
use super::relay::endpoint;
use super::upstream;
use crate::session::{Status, TargetRef, UserRef, Verdict};

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
        let Some(rt) = self.ssh.targets.get(&target.name) else {
            return Ok(());
        };
        let _ = self.legs.policy.set(rt.channel_policy.clone());
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
        let _ = self.legs.upstream.set(Arc::new(up));

        let spec = TrailSpec {
            session_id: sh.id.to_string(),
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
        sh.accepted_now();
        sh.authenticated.store(true, Ordering::Relaxed);
        sh.preauth.authenticated();
        sh.policy_changed.notify_one();
        sh.rec(0, Event::Note(serde_json::json!({"event": "authenticated", "method": self.auth_method, "user": user, "target": target.name})))
            .await;
        tracing::info!(%user, target = %target.name, method = ?self.auth_method, "session accepted");
        sh.publish();
        Ok(())
    }
}
