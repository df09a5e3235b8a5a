//! Reloading the configuration file on SIGHUP: the new file is loaded and checked completely
//! (syntax, validation, SSH target keys, VNC certificates) before anything is replaced; then
//! users, targets, policies and tokens apply to sessions that start from then on. A file that
//! fails is refused with the reason logged, and the old configuration stays. Both outcomes are
//! audited as configuration changes. Settings that need a restart (listeners, data directory,
//! host keys, recording) are reported as such.

use std::sync::Arc;

use anyhow::Result;
use trailgate_proxy::vnc::VncState;
use trailgate_proxy::{Config, Services, SshService, VncService};
use trailgate_recorder::catalog::{Catalog, ConfigChange};

pub struct Reloader {
    pub path: std::path::PathBuf,
    pub gw: Arc<Services>,
    pub ssh: Arc<SshService>,
    pub vnc: Option<Arc<VncService>>,
    pub catalog: Arc<Catalog>,
}

impl Reloader {
    /// Reloads the file; never fails the gateway.
    pub fn reload(&self) {
        let change = match self.try_reload() {
            Ok(summary) => {
                tracing::info!(path = %self.path.display(), %summary, "configuration reloaded");
                ("reload", summary)
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %format!("{e:#}"), "configuration reload refused; the previous configuration stays in force");
                ("reload-refused", format!("{e:#}"))
            }
        };
        let entry = ConfigChange {
            n: 0,
            time: trailgate_recorder::writer::rfc3339(time::OffsetDateTime::now_utc()),
            by: "SIGHUP".into(),
            action: change.0.into(),
            object: self.path.display().to_string(),
            before: None,
            after: None,
            detail: Some(change.1),
        };
        if let Err(e) = self.catalog.add_config_change(&entry) {
            tracing::error!(error = %e, "could not audit the configuration reload");
        }
    }

    fn try_reload(&self) -> Result<String> {
        let cfg = Config::load(&self.path)?;
        let ssh_targets = SshService::load_targets(&cfg)?;
        let vnc_state = match &self.vnc {
            Some(_) => VncState::load(&cfg)?,
            None => None,
        };
        let old = self.gw.cfg();
        for w in restart_only(&old, &cfg) {
            tracing::warn!("{w} changed in the file: takes effect at restart");
        }
        if self.vnc.is_some() && cfg.vnc.is_none() {
            tracing::warn!("[vnc] removed from the file: the listener stays until restart");
        }
        if self.vnc.is_none() && cfg.vnc.is_some() {
            tracing::warn!("[vnc] added to the file: the listener starts at restart");
        }
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        let summary = format!(
            "{} users, {} targets, {} settings policies, {} API tokens",
            cfg.users.len(),
            cfg.targets.len(),
            cfg.settings_policies.len(),
            cfg.api_tokens.len()
        );
        // Everything loaded: replace it all together.
        self.gw.runtime.replace_config(cfg);
        self.ssh.set_targets(ssh_targets);
        if let (Some(v), Some(s)) = (&self.vnc, vnc_state) {
            v.set_state(s);
        }
        Ok(summary)
    }
}

/// Settings a running gateway cannot change.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let differs = |a: String, b: String| a != b;
    if old.data_dir != new.data_dir {
        out.push("data_dir");
    }
    if old.ssh.listen != new.ssh.listen || old.ssh.host_keys != new.ssh.host_keys {
        out.push("[ssh] listen/host_keys");
    }
    if differs(
        format!("{:?}", old.ssh.ciphers),
        format!("{:?}", new.ssh.ciphers),
    ) || differs(
        format!("{:?}", old.ssh.upstream_ciphers),
        format!("{:?}", new.ssh.upstream_ciphers),
    ) {
        out.push("[ssh] ciphers");
    }
    // The free-space floor is read per session; the rest of [recording] shapes the writers.
    let rec = |c: &Config| {
        let mut r = c.recording.clone();
        r.min_free_space = None;
        format!("{r:?}")
    };
    if differs(rec(old), rec(new)) {
        out.push("[recording] (other than min_free_space)");
    }
    if differs(format!("{:?}", old.limits), format!("{:?}", new.limits)) {
        out.push("[limits]");
    }
    if differs(format!("{:?}", old.api), format!("{:?}", new.api)) {
        out.push("[api]");
    }
    out
}

/// Waits for SIGHUP and reloads, until the gateway shuts down.
pub async fn on_sighup(reloader: Reloader, shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by restart only");
            return;
        }
    };
    let reloader = Arc::new(reloader);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
        }
    }
}
