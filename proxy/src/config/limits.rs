//! `[limits]`: pre-authentication limits of every listener (see [`crate::admission`]).

use std::time::Duration;

use serde::Deserialize;

/// Longest login name accepted (OpenSSH's limit in effect); longer ones are refused.
pub const MAX_LOGIN_NAME: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Unauthenticated connections open at once, all sources (OpenSSH `MaxStartups`).
    pub max_unauthenticated: usize,
    /// Unauthenticated connections open at once from one address (`PerSourceMaxStartups`).
    pub max_unauthenticated_per_source: usize,
    /// Password checks (argon2id, ~19 MiB each) running at once; 0: one per CPU.
    pub password_checks: usize,
    /// Failed logins from one address within `failed_login_window` that lock it out; 0: off.
    pub failed_logins_per_source: u32,
    #[serde(with = "humantime_serde")]
    pub failed_login_window: Duration,
    /// How long a locked-out address is refused.
    #[serde(with = "humantime_serde")]
    pub failed_login_lockout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_unauthenticated: 256,
            max_unauthenticated_per_source: 32,
            password_checks: 0,
            failed_logins_per_source: 20,
            failed_login_window: Duration::from_secs(60),
            failed_login_lockout: Duration::from_secs(60),
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_unauthenticated == 0 {
            return Err("limits.max_unauthenticated: must be at least 1".into());
        }
        if self.max_unauthenticated_per_source == 0 {
            return Err("limits.max_unauthenticated_per_source: must be at least 1".into());
        }
        if self.max_unauthenticated_per_source > self.max_unauthenticated {
            return Err(format!(
                "limits.max_unauthenticated_per_source: {} is more than max_unauthenticated ({})",
                self.max_unauthenticated_per_source, self.max_unauthenticated
            ));
        }
        if self.failed_logins_per_source > 0
            && (self.failed_login_window.is_zero() || self.failed_login_lockout.is_zero())
        {
            return Err(
                "limits.failed_login_window / failed_login_lockout: must be above zero while \
                 failed_logins_per_source is set"
                    .into(),
            );
        }
        Ok(())
    }
}
