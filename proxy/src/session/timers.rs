//! The session's clocks: login timeout (from accept), and the settings policy's idle,
//! inactivity and maximum-length timers. Each ends the session with its own reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{EndCode, Session, Verdict};
use crate::registry::KillReason;

/// Idle, inactivity and maximum-length timers of the target's settings policy, plus the login
/// timeout. Each ends the session with its own reason.
pub async fn policy_timers(sh: Arc<Session>, login: Duration) {
    loop {
        let mut next = Duration::from_secs(3600);
        if !sh.authenticated.load(Ordering::Relaxed) {
            let e = sh.start.elapsed();
            if e >= login {
                sh.update(|r| {
                    if r.verdict.is_none() {
                        r.verdict = Some(Verdict::LoginTimeout);
                    }
                });
                sh.live.kill(KillReason {
                    reason: "login timeout".into(),
                    by: "gateway".into(),
                    code: EndCode::LoginTimeout,
                });
                return;
            }
            next = next.min(login - e);
        }
        if let Some(p) = sh.settings.get().map(|r| &r.policy) {
            let (idle, inactive) = sh.last_activity();
            let checks = [
                (p.idle(), idle, "idle timeout", EndCode::IdleTimeout),
                (
                    p.inactivity(),
                    inactive,
                    "inactivity timeout",
                    EndCode::InactivityTimeout,
                ),
                (
                    p.max_session(),
                    sh.start.elapsed(),
                    "maximum session length",
                    EndCode::SessionTimeout,
                ),
            ];
            for (limit, spent, reason, code) in checks {
                if let Some(limit) = limit {
                    if spent >= limit {
                        sh.live.kill(KillReason {
                            reason: reason.into(),
                            by: "policy".into(),
                            code,
                        });
                        return;
                    }
                    next = next.min(limit - spent);
                }
            }
        }
        // Wake at the earliest deadline (activity may have moved it: re-check then), or when the
        // policies become known at authentication.
        tokio::select! {
            _ = tokio::time::sleep(next.max(Duration::from_millis(20))) => {}
            _ = sh.policy_changed.notified() => {}
        }
    }
}
