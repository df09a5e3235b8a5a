//! Starting a session once its user is authenticated, the same for every protocol: the target
//! choice (`user@target`, or the one target the user may use), the settings policy, the trail,
//! and the acceptance that starts the policy clocks.

use std::sync::atomic::Ordering;

use trailgate_recorder::{Endpoint, Event, SessionMeta, TrailSpec, TrailWriter};

use super::{EndCode, Session, Status, TargetRef, UserRef, Verdict};
use crate::config::{Config, OnFailure, Protocol, TargetConfig};

/// The target a user asked for (or the only one of this protocol they may use). The error is
/// the message for the client: it lists the targets the user may use.
pub fn choose_target<'a>(
    cfg: &'a Config,
    user: &str,
    wanted: Option<&str>,
    protocol: Protocol,
) -> Result<&'a TargetConfig, String> {
    let allowed: Vec<&TargetConfig> = cfg
        .targets_for(user)
        .into_iter()
        .filter(|t| t.protocol == protocol)
        .collect();
    let target = match wanted {
        Some(w) => allowed.iter().find(|t| t.name == w).copied(),
        None if allowed.len() == 1 => allowed.first().copied(),
        None => None,
    };
    target.ok_or_else(|| {
        let names = allowed
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match wanted {
            Some(w) => {
                format!("target {w:?} is not available to {user}; targets you may use: {names}")
            }
            None => format!("choose a target as {user}@TARGET; targets you may use: {names}"),
        }
    })
}

pub fn endpoint(host: &str, port: u32) -> Endpoint {
    Endpoint {
        host: host.to_string(),
        port,
    }
}

impl Session {
    /// Records who logged in and the target chosen, and resolves the target's settings policy
    /// (as it is now: later changes do not reach this session). Returns the names of the
    /// policies in force (for the record and the trail). A target naming a policy that does not
    /// exist refuses the session (fail closed): `Err` is the message for the client, and the
    /// session has ended with verdict `deny`.
    pub fn set_target(
        &self,
        user: &str,
        target: &TargetConfig,
        server_user: Option<&str>,
        mut policies: Vec<String>,
    ) -> Result<Vec<String>, String> {
        let (host, port) = crate::util::split_host_port(&target.address).unwrap_or_default();
        let resolved = match &target.settings_policy {
            Some(key) => match self.gw.runtime.resolve(&self.cfg, self.protocol, key) {
                Some(r) => Some(r),
                None => {
                    let msg = format!(
                        "target {} names settings policy {key:?}, which does not exist; session refused",
                        target.name
                    );
                    self.deny(user, Some(&target.name), &msg);
                    return Err(msg);
                }
            },
            None => None,
        };
        if let Some(r) = resolved {
            policies.push(format!("settings:{}", r.key));
            let _ = self.settings.set(r);
        }
        self.update(|r| {
            r.user = UserRef {
                name: Some(user.to_string()),
                server_username: server_user.map(str::to_string),
            };
            r.target = TargetRef {
                name: Some(target.name.clone()),
                ip: Some(host),
                port: Some(port),
            };
            r.policies = policies.clone();
        });
        Ok(policies)
    }

    /// The settings policy's preconnect decision, made before the target is contacted: with
    /// `preconnect_channel_check`, a session that could not use anything (`usable` is false:
    /// its channel policy permits nothing) is refused here. `Err` is the message for the
    /// client; the session has ended with verdict `deny`.
    pub fn preconnect(
        &self,
        user: &str,
        target: &str,
        usable: Result<(), String>,
    ) -> Result<(), String> {
        let check = self
            .settings
            .get()
            .is_some_and(|r| r.policy.preconnect_channel_check);
        if !check {
            return Ok(());
        }
        if let Err(why) = usable {
            let msg = format!("refused before connecting to {target}: {why}");
            self.deny(user, Some(target), &msg);
            return Err(msg);
        }
        Ok(())
    }

    /// Refuses the session before it starts: record, verdict and log say why.
    pub fn deny(&self, user: &str, wanted: Option<&str>, msg: &str) {
        self.update(|r| {
            r.user.name = Some(user.to_string());
            r.target.name = wanted.map(str::to_string);
        });
        self.end_with(Status::Rejected, Verdict::Deny, msg);
        tracing::info!(%user, target = ?wanted, reason = %msg, "session denied");
    }

    /// Opens the session's trail. `Err` carries the message for the client when recording is
    /// unavailable and the gateway fails closed (`on_failure = "terminate"`); the session has
    /// then ended (verdict `fail`). With `continue`, the session goes on unrecorded.
    pub async fn open_trail(
        &self,
        target: &TargetConfig,
        auth_method: Option<&str>,
        policies: Vec<String>,
    ) -> Result<(), &'static str> {
        let gw = &self.gw;
        let rec = self.snapshot();
        let (host, port) = crate::util::split_host_port(&target.address).unwrap_or_default();
        let spec = TrailSpec {
            session_id: self.id.to_string(),
            protocol: self.protocol.as_str().into(),
            meta: SessionMeta {
                client: Some(endpoint(&rec.client.ip, u32::from(rec.client.port))),
                target_name: Some(target.name.clone()),
                target_address: Some(endpoint(&host, u32::from(port))),
                gateway_user: rec.user.name.clone(),
                target_user: rec.user.server_username.clone(),
                auth_method: auth_method.map(str::to_string),
                policies,
                node_id: Some(gw.node_id.clone()),
            },
            start: self.start_wall,
        };
        let floor = trailgate_recorder::fsutil::check_free_space(
            &self.cfg.data_dir.join("trails"),
            self.cfg.recording.min_free_space,
        );
        let created = match floor {
            // Below the floor: as if the disk were full, before it is.
            Err(why) => Err(trailgate_recorder::RecorderError::WriterFailed(why)),
            Ok(()) => {
                TrailWriter::create(
                    &self.cfg.data_dir,
                    spec,
                    gw.signing_key.clone(),
                    gw.writer_cfg.clone(),
                )
                .await
            }
        };
        match created {
            Ok(w) => {
                let path = w.path().display().to_string();
                self.live.set_trail(&w);
                let _ = self.trail.set(w);
                self.update(|r| {
                    r.trail.path = Some(path);
                    r.trail.url = Some(format!("/api/v1/sessions/{}/trail", r.id));
                    r.trail.integrity = "recording".into();
                });
                Ok(())
            }
            Err(e) => {
                let err = format!("cannot create trail: {e}");
                if self.cfg.recording.on_failure == OnFailure::Terminate {
                    // Refused before it began: the record says why (the details stay on the
                    // server; the client is told no paths).
                    tracing::error!(error = %err, "recording unavailable: session refused");
                    gw.metrics.recording_failed();
                    self.update(|r| {
                        r.trail.integrity = "failed".into();
                        r.trail.error = Some(trailgate_recorder::fsutil::redact_data_dir(
                            &err,
                            &self.cfg.data_dir,
                        ));
                    });
                    self.end_with_code(
                        Status::Failed,
                        Verdict::Fail,
                        "recording unavailable",
                        EndCode::RecordingFailed,
                    );
                    return Err("recording unavailable; session refused");
                }
                self.recording_failed(&err);
                Ok(())
            }
        }
    }

    /// The session is accepted: verdict, policy clocks from now, the pre-authentication slot
    /// released, the authentication note in the trail, the record published.
    pub async fn accept(&self, user: &str, target: &str, method: Option<&str>) {
        self.update(|r| {
            r.verdict = Some(Verdict::Accept);
            r.status = Status::Connected;
        });
        self.accepted_now();
        self.authenticated.store(true, Ordering::Relaxed);
        self.preauth.authenticated();
        self.policy_changed.notify_one();
        self.rec(
            0,
            Event::Note(serde_json::json!({"event": "authenticated", "method": method, "user": user, "target": target})),
        )
        .await;
        tracing::info!(%user, %target, method = ?method, "session accepted");
        self.publish();
    }
}
