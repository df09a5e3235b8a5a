//! Pre-authentication limits, protocol-neutral (every listener goes through them):
//! - how many unauthenticated connections may be open at once, overall and per source address
//!   (OpenSSH's `MaxStartups` and `PerSourceMaxStartups`); the excess is refused at accept;
//! - how many password checks run at once (an argon2id check holds ~19 MiB for its duration, so
//!   unbounded checks turn a burst of attempts into gigabytes);
//! - per-source throttling of failed logins: past `failed_logins_per_source` failures within
//!   `failed_login_window`, a source is refused for `failed_login_lockout`.
//!
//! Memory is bounded: one map entry per source with an unauthenticated connection (at most
//! `max_unauthenticated`), and at most [`MAX_TRACKED_SOURCES`] failure windows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::LimitsConfig;
use crate::metrics::Metrics;

/// Failure windows kept at most; beyond it the oldest-expiring are pruned first.
pub const MAX_TRACKED_SOURCES: usize = 65_536;

/// Why a connection or attempt was refused before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_unauthenticated` connections are already logging in.
    Unauthenticated,
    /// `limits.max_unauthenticated_per_source` from this address are already logging in.
    PerSource,
    /// This address failed too many logins recently.
    Throttled,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "max_unauthenticated",
            Refusal::PerSource => "max_unauthenticated_per_source",
            Refusal::Throttled => "failed_login_throttle",
        }
    }
}

struct FailWindow {
    since: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

pub struct Admission {
    cfg: LimitsConfig,
    metrics: Arc<Metrics>,
    total: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    failures: Mutex<HashMap<IpAddr, FailWindow>>,
    checks: Semaphore,
}

impl Admission {
    pub fn new(cfg: LimitsConfig, metrics: Arc<Metrics>) -> Arc<Admission> {
        let checks = match cfg.password_checks {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Arc::new(Admission {
            cfg,
            metrics,
            total: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            checks: Semaphore::new(checks),
        })
    }

    /// Admits a new connection from `ip` as unauthenticated, or refuses it. The returned guard
    /// holds the slot until [`PreAuth::authenticated`] or drop.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PreAuth, Refusal> {
        if self.throttled(ip) {
            return Err(self.refused(Refusal::Throttled));
        }
        let mut per = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = per.get(&ip).copied().unwrap_or(0);
        if n >= self.cfg.max_unauthenticated_per_source {
            return Err(self.refused(Refusal::PerSource));
        }
        if self.total.load(Ordering::Relaxed) >= self.cfg.max_unauthenticated {
            return Err(self.refused(Refusal::Unauthenticated));
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        *per.entry(ip).or_insert(0) += 1;
        self.metrics.unauthenticated(1);
        Ok(PreAuth {
            adm: self.clone(),
            ip,
            held: AtomicBool::new(true),
        })
    }

    fn refused(&self, r: Refusal) -> Refusal {
        self.metrics.preauth_refused(r.as_str());
        r
    }

    fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        self.metrics.unauthenticated(-1);
        let mut per = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&ip);
            }
        }
    }

    /// Unauthenticated connections open now.
    pub fn unauthenticated(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether `ip` is locked out after too many failed logins.
    pub fn throttled(&self, ip: IpAddr) -> bool {
        if self.cfg.failed_logins_per_source == 0 {
            return false;
        }
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(&ip)
            .and_then(|w| w.blocked_until)
            .is_some_and(|t| Instant::now() < t)
    }

    /// Counts a failed login from `ip`; `true` when this failure starts a lockout.
    pub fn login_failed(&self, ip: IpAddr) -> bool {
        self.metrics.login_failed();
        let limit = self.cfg.failed_logins_per_source;
        if limit == 0 {
            return false;
        }
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_TRACKED_SOURCES && !f.contains_key(&ip) {
            self.prune(&mut f, now);
        }
        let w = f.entry(ip).or_insert(FailWindow {
            since: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(w.since) > self.cfg.failed_login_window {
            w.since = now;
            w.failures = 0;
        }
        w.failures += 1;
        if w.failures >= limit && w.blocked_until.is_none_or(|t| t <= now) {
            w.blocked_until = Some(now + self.cfg.failed_login_lockout);
            w.failures = 0;
            w.since = now;
            self.metrics.auth_throttled();
            tracing::warn!(source = %ip, failures = limit, lockout = ?self.cfg.failed_login_lockout,
                "too many failed logins from this address: refusing it for the lockout");
            return true;
        }
        false
    }

    fn prune(&self, f: &mut HashMap<IpAddr, FailWindow>, now: Instant) {
        let window = self.cfg.failed_login_window;
        f.retain(|_, w| {
            w.blocked_until.is_some_and(|t| t > now) || now.duration_since(w.since) <= window
        });
        if f.len() >= MAX_TRACKED_SOURCES {
            // Still full of live windows: forget the half that started longest ago.
            let mut starts: Vec<Instant> = f.values().map(|w| w.since).collect();
            starts.sort_unstable();
            let cut = starts[starts.len() / 2];
            f.retain(|_, w| w.since > cut || w.blocked_until.is_some());
        }
    }

    /// Waits for a password-check slot (there are `limits.password_checks` of them).
    pub async fn password_check(&self) -> Option<SemaphorePermit<'_>> {
        self.checks.acquire().await.ok()
    }
}

/// An unauthenticated connection's slot; released when it authenticates or ends.
pub struct PreAuth {
    adm: Arc<Admission>,
    ip: IpAddr,
    held: AtomicBool,
}

impl PreAuth {
    /// The connection authenticated: it no longer counts against the pre-authentication caps.
    pub fn authenticated(&self) {
        if self.held.swap(false, Ordering::Relaxed) {
            self.adm.release(self.ip);
        }
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.adm
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.authenticated();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn adm(total: usize, per: usize, fails: u32) -> Arc<Admission> {
        Admission::new(
            LimitsConfig {
                max_unauthenticated: total,
                max_unauthenticated_per_source: per,
                failed_logins_per_source: fails,
                failed_login_window: Duration::from_secs(60),
                failed_login_lockout: Duration::from_secs(60),
                ..LimitsConfig::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_per_source_cap_refuses_the_excess_and_frees_on_authentication() {
        let a = adm(10, 2, 0);
        let g1 = a.admit(A).unwrap();
        let _g2 = a.admit(A).unwrap();
        assert_eq!(a.admit(A).err(), Some(Refusal::PerSource));
        let _b = a.admit(B).unwrap();
        g1.authenticated();
        let _g3 = a.admit(A).unwrap();
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn the_overall_cap_refuses_the_excess_and_frees_on_drop() {
        let a = adm(2, 5, 0);
        let g1 = a.admit(A).unwrap();
        let _g2 = a.admit(B).unwrap();
        assert_eq!(a.admit(A).err(), Some(Refusal::Unauthenticated));
        drop(g1);
        assert!(a.admit(A).is_ok());
    }

    #[test]
    fn failed_logins_lock_a_source_out_but_not_others() {
        let a = adm(10, 10, 3);
        assert!(!a.login_failed(A));
        assert!(!a.login_failed(A));
        assert!(a.login_failed(A));
        assert!(a.throttled(A));
        assert_eq!(a.admit(A).err(), Some(Refusal::Throttled));
        assert!(!a.throttled(B));
        assert!(a.admit(B).is_ok());
    }

    #[test]
    fn throttling_off_never_locks_out() {
        let a = adm(10, 10, 0);
        for _ in 0..100 {
            assert!(!a.login_failed(A));
        }
        assert!(!a.throttled(A));
    }
}
