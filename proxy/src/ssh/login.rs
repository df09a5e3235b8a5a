//! Gateway authentication of the SSH client: credential checks (bounded and throttled through
//! [`crate::admission`]), refused attempts and what of them is kept.

use std::sync::atomic::Ordering;

use russh::server::Auth;

use super::handler::{SshHandler, retry};
use crate::auth;
use crate::config::MAX_LOGIN_NAME;
use crate::registry::KillReason;
use crate::session::Verdict;

impl SshHandler {
    pub(super) fn failed_attempt(&mut self, login: &str, method: &str) -> Auth {
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
    pub(super) fn precheck(&mut self, login: &str, method: &str) -> Option<Auth> {
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

    pub(super) fn accept(&mut self, login: &str, method: &'static str) -> Auth {
        let (u, t) = auth::split_login(login);
        self.login = Some((
            u.to_string(),
            t.filter(|t| !t.is_empty()).map(str::to_string),
        ));
        self.auth_method = Some(method);
        Auth::Accept
    }

    pub(super) async fn check_password(&self, login: &str, password: &str) -> bool {
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
}

/// A real argon2id hash, verified for unknown users so timing does not reveal which users exist.
pub(super) static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password("trailgate-dummy").unwrap_or_default());
