//! Gateway metrics in the Prometheus text format (served by the control API at `/metrics`).
//!
//! Counters on the data path are plain atomics resolved once at start-up (no label lookup per
//! packet); labels only take values from fixed sets, so a client cannot grow the series count.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::config::Protocol;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    protocol: &'static str,
    verdict: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    protocol: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    r#type: &'static str,
    verdict: &'static str,
}

pub struct Metrics {
    registry: Registry,
    connections_active: Gauge,
    sessions_ended: Family<EndLabels, Counter>,
    session_duration: Histogram,
    channels: Family<ChannelLabels, Counter>,
    /// Relayed bytes by protocol ([`Protocol::ALL`] order), client-to-server then server-to-client.
    relayed: [[Counter; 2]; 2],
    recording_failures: Counter,
    recording_wait: Counter<f64, AtomicU64>,
    recording_fast_frames: Counter,
    unauthenticated: Gauge,
    preauth_refused: Family<ReasonLabels, Counter>,
    probes: Family<ProtocolLabels, Counter>,
    retention: Family<WhatLabels, Counter>,
    login_failures: Counter,
    auth_throttled: Counter,
    catalog_write_failures: Counter,
    trail_uploads: Counter,
    trail_upload_failures: Counter,
    trail_upload_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("trailgate");
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let connections_active = Gauge::default();
        registry.register(
            "connections_active",
            "Client connections open now, from accept to the sealed trail (logins in progress included)",
            connections_active.clone(),
        );
        let sessions_ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "sessions_ended",
            "Connection attempts that ended, by verdict (accept, gw-auth-fail, auth-fail, key-error, deny, fail) and final status",
            sessions_ended.clone(),
        );
        // 1 s .. ~9 h
        let session_duration = Histogram::new(exponential_buckets(1.0, 3.0, 11));
        registry.register(
            "session_duration_seconds",
            "Length of accepted sessions",
            session_duration.clone(),
        );
        let channels = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "channels_opened",
            "Channel opens by type and verdict (accept, deny = refused by policy, fail = refused by the target)",
            channels.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "relayed_bytes",
            "Channel payload bytes relayed (and recorded), by direction",
            bytes.clone(),
        );
        let relayed = Protocol::ALL.map(|p| {
            ["c2s", "s2c"].map(|direction| {
                bytes
                    .get_or_create(&DirectionLabels {
                        protocol: p.as_str(),
                        direction,
                    })
                    .clone()
            })
        });
        let recording_failures = Counter::default();
        registry.register(
            "recording_failures",
            "Sessions whose trail could not be written (each is logged and marked failed in the catalog)",
            recording_failures.clone(),
        );
        let recording_wait = Counter::<f64, AtomicU64>::default();
        registry.register(
            "recording_wait_seconds",
            "Time ended sessions spent waiting for their trail writer (budget full: the disk or the compressor's CPU paced the traffic)",
            recording_wait.clone(),
        );
        let recording_fast_frames = Counter::default();
        registry.register(
            "recording_fast_frames",
            "Trail frames of ended sessions compressed below recording.zstd_level because the compressor was short of CPU (bigger trails instead of slower sessions)",
            recording_fast_frames.clone(),
        );
        let unauthenticated = Gauge::default();
        registry.register(
            "unauthenticated_connections",
            "Connections open now that have not authenticated (capped by limits.max_unauthenticated)",
            unauthenticated.clone(),
        );
        let preauth_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "preauth_refused",
            "Connections refused at accept, by the limit that refused them (max_unauthenticated, max_unauthenticated_per_source, failed_login_throttle)",
            preauth_refused.clone(),
        );
        let probes = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "probe_connections",
            "Connections closed without a byte from the client (health checks, port scans): counted here, not stored as sessions",
            probes.clone(),
        );
        let retention = Family::<WhatLabels, Counter>::default();
        registry.register(
            "retention_deleted",
            "Trails and session records deleted by [retention] (what: trail, record)",
            retention.clone(),
        );
        let login_failures = Counter::default();
        registry.register(
            "login_failures",
            "Failed gateway authentication attempts (password, key, keyboard-interactive)",
            login_failures.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "auth_throttled",
            "Source addresses locked out after limits.failed_logins_per_source failed logins",
            auth_throttled.clone(),
        );
        let catalog_write_failures = Counter::default();
        registry.register(
            "catalog_write_failures",
            "Failed catalog write attempts (each is retried until it succeeds)",
            catalog_write_failures.clone(),
        );
        let trail_uploads = Counter::default();
        registry.register(
            "trail_uploads",
            "Trails stored in object storage and verified",
            trail_uploads.clone(),
        );
        let trail_upload_failures = Counter::default();
        registry.register(
            "trail_upload_failures",
            "Failed trail upload attempts (each is retried until it succeeds)",
            trail_upload_failures.clone(),
        );
        let trail_upload_bytes = Counter::default();
        registry.register(
            "trail_upload_bytes",
            "Bytes of trails stored in object storage",
            trail_upload_bytes.clone(),
        );
        Metrics {
            registry,
            trail_uploads,
            trail_upload_failures,
            trail_upload_bytes,
            unauthenticated,
            preauth_refused,
            probes,
            retention,
            login_failures,
            auth_throttled,
            catalog_write_failures,
            recording_wait,
            recording_fast_frames,
            connections_active,
            sessions_ended,
            session_duration,
            channels,
            relayed,
            recording_failures,
        }
    }

    pub fn connection_opened(&self) {
        self.connections_active.inc();
    }

    /// Deletions by retention.
    pub fn retention_deleted(&self, trails: usize, records: usize) {
        self.retention
            .get_or_create(&WhatLabels { what: "trail" })
            .inc_by(trails as u64);
        self.retention
            .get_or_create(&WhatLabels { what: "record" })
            .inc_by(records as u64);
    }

    /// A connection ended without a byte from its client (instead of `connection_ended`).
    pub fn probe(&self, protocol: Protocol) {
        self.connections_active.dec();
        self.probes
            .get_or_create(&ProtocolLabels {
                protocol: protocol.as_str(),
            })
            .inc();
    }

    /// One call per connection, when its final record is known.
    pub fn connection_ended(
        &self,
        protocol: Protocol,
        verdict: &'static str,
        status: &'static str,
        seconds: f64,
    ) {
        self.connections_active.dec();
        self.sessions_ended
            .get_or_create(&EndLabels {
                protocol: protocol.as_str(),
                verdict,
                status,
            })
            .inc();
        if verdict == "accept" {
            self.session_duration.observe(seconds);
        }
    }

    pub fn channel(&self, kind: &str, verdict: &str) {
        self.channels
            .get_or_create(&ChannelLabels {
                r#type: channel_type_label(kind),
                verdict: match verdict {
                    "accept" => "accept",
                    "deny" => "deny",
                    _ => "fail",
                },
            })
            .inc();
    }

    #[inline]
    pub fn relayed(&self, protocol: Protocol, from_client: bool, n: usize) {
        let p = protocol as usize;
        self.relayed[p][usize::from(!from_client)].inc_by(n as u64);
    }

    pub fn unauthenticated(&self, delta: i64) {
        self.unauthenticated.inc_by(delta);
    }

    pub fn preauth_refused(&self, reason: &'static str) {
        self.preauth_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    pub fn auth_throttled(&self) {
        self.auth_throttled.inc();
    }

    /// Brings the catalog's failed-write count (kept by the catalog itself) into the exposition.
    pub fn catalog_write_failures(&self, total: u64) {
        let seen = self.catalog_write_failures.get();
        if total > seen {
            self.catalog_write_failures.inc_by(total - seen);
        }
    }

    /// Trail uploads to object storage: totals so far (synced at each scrape).
    pub fn trail_uploads(&self, uploaded: u64, failed: u64, bytes: u64) {
        for (c, total) in [
            (&self.trail_uploads, uploaded),
            (&self.trail_upload_failures, failed),
            (&self.trail_upload_bytes, bytes),
        ] {
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
    }

    pub fn recording_failed(&self) {
        self.recording_failures.inc();
    }

    /// Once per session, at its end: how long its traffic waited for the recorder, and how many
    /// of its frames the recorder compressed faster to catch up.
    pub fn recording_paced(&self, bp: &trailgate_recorder::Backpressure) {
        if !bp.waited.is_zero() {
            self.recording_wait.inc_by(bp.waited.as_secs_f64());
        }
        self.recording_fast_frames.inc_by(bp.fast_frames);
    }

    /// The exposition text (`text/plain; version=0.0.4`, or OpenMetrics without the content type).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Channel types come from the peer: named as in policies and records
/// ([`channel_kind`](trailgate_recorder::record::channel_kind)); anything outside the known set
/// is counted as `other`.
fn channel_type_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "session",
        "direct-tcpip",
        "forwarded-tcpip",
        "x11",
        "agent",
        "direct-streamlocal",
        "forwarded-streamlocal",
        "vnc",
    ];
    let name = trailgate_recorder::record::channel_kind(kind, None, None, Some(false));
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_bounded_labels() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_ended(Protocol::Ssh, "accept", "disconnected", 12.0);
        m.channel("session", "accept");
        m.channel("evil-\"type\"\n", "deny");
        m.relayed(Protocol::Ssh, true, 10);
        m.relayed(Protocol::Ssh, false, 5);
        m.recording_paced(&trailgate_recorder::Backpressure {
            waited: std::time::Duration::from_millis(1500),
            waits: 3,
            fast_frames: 7,
        });
        let text = m.encode();
        for want in [
            "trailgate_connections_active 1",
            "trailgate_sessions_ended_total{protocol=\"ssh\",verdict=\"accept\",status=\"disconnected\"} 1",
            "trailgate_channels_opened_total{type=\"session\",verdict=\"accept\"} 1",
            "trailgate_channels_opened_total{type=\"other\",verdict=\"deny\"} 1",
            "trailgate_relayed_bytes_total{protocol=\"ssh\",direction=\"c2s\"} 10",
            "trailgate_relayed_bytes_total{protocol=\"ssh\",direction=\"s2c\"} 5",
            "trailgate_recording_failures_total 0",
            "trailgate_session_duration_seconds_count 1",
            "trailgate_recording_wait_seconds_total 1.5",
            "trailgate_recording_fast_frames_total 7",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("evil"));
    }
}
