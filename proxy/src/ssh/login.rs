//! Gateway authentication of the SSH client, on the neutral checks of
//! [`crate::session::Session`] (bounded password checks, throttling, refused names).

use russh::server::Auth;

use super::handler::{SshHandler, retry};
use crate::auth;

impl SshHandler {
    pub(super) fn failed_attempt(&mut self, login: &str, method: &str) -> Auth {
        self.failures += 1;
        self.sh.login_failed(login, method);
        retry()
    }

    /// Checks done before any credential is looked at (name length, a locked-out source).
    pub(super) fn precheck(&mut self, login: &str, method: &str) -> Option<Auth> {
        if self.sh.login_refused_early(login, method) {
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
        self.sh.check_password(user, password).await
    }
}
