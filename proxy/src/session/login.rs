//! Gateway authentication, the same for every protocol: password checks (bounded and
//! throttled through [`crate::admission`]), refused attempts and what of them is kept.

use std::sync::atomic::Ordering;

use super::{EndCode, Session, Verdict};
use crate::auth;
use crate::config::MAX_LOGIN_NAME;
use crate::registry::KillReason;

/// A real argon2id hash, verified for unknown users so timing does not reveal which users exist.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password("trailgate-dummy").unwrap_or_default());

impl Session {
    /// A refused attempt: counted and logged (the name only as a bounded prefix). When the
    /// source has now failed too often, the session ends.
    pub fn login_failed(&self, login: &str, method: &str) {
        self.auth_tried.store(true, Ordering::Relaxed);
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
        let shown = auth::bounded_login(login);
        tracing::info!(parent: &self.span, login = %shown, method, "gateway authentication failed");
        self.update(|r| {
            let (u, _) = auth::split_login(&shown);
            r.user.name = Some(u.to_string());
        });
        if self.preauth.admission().login_failed(self.preauth.ip()) {
            self.refuse_login("too many failed logins from this address".into());
        }
    }

    /// Checks made before any credential is looked at: a login name past [`MAX_LOGIN_NAME`],
    /// or a source that is locked out, ends the session. `true`: refused.
    pub fn login_refused_early(&self, login: &str, method: &str) -> bool {
        if login.len() > MAX_LOGIN_NAME {
            self.login_failed(login, method);
            self.refuse_login(format!("login name longer than {MAX_LOGIN_NAME} bytes"));
            return true;
        }
        if self.preauth.admission().throttled(self.preauth.ip()) {
            self.auth_tried.store(true, Ordering::Relaxed);
            self.refuse_login("too many failed logins from this address".into());
            return true;
        }
        false
    }

    fn refuse_login(&self, reason: String) {
        self.update(|r| r.verdict = Some(Verdict::GwAuthFail));
        self.live.kill(KillReason {
            reason,
            by: "gateway".into(),
            code: EndCode::GatewayAuthFailed,
        });
    }

    /// Checks a gateway password. argon2 is deliberately slow and big (~19 MiB a check): a
    /// bounded number run at once, off the runtime's workers; waiting attempts hold a few bytes.
    pub async fn check_password(&self, user: &str, password: &str) -> bool {
        let hash = self.cfg.user(user).and_then(|u| u.password_hash.clone());
        let password = password.to_string();
        let Some(_slot) = self.gw.admission.password_check().await else {
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
