//! Records rebuilt from trails: a session record as far as a trail can tell
//! ([`record_from_trail`]), a whole catalog rebuilt from the trail files ([`Catalog::reindex`]),
//! and the reconciliation at start-up of sessions the last run left marked active.

use std::path::{Path, PathBuf};

use super::Catalog;
use crate::error::Result;
use crate::record::*;

impl Catalog {
    /// Rebuilds session records from the trails under `data_dir/trails` (rejected attempts that
    /// never got a trail exist only in the catalog and are kept). Returns the number indexed.
    pub fn reindex(&self, data_dir: &Path) -> Result<usize> {
        let mut files = Vec::new();
        collect_trails(&data_dir.join("trails"), &mut files);
        let mut recs = Vec::new();
        for f in &files {
            match record_from_trail(f) {
                Ok(r) => recs.push(r),
                Err(e) => {
                    tracing::warn!(path = %f.display(), error = %e, "skipping unreadable trail")
                }
            }
        }
        self.insert_many(&recs)?;
        for r in &recs {
            self.index_files(r);
        }
        Ok(recs.len())
    }

    /// Indexes the files a session's trail holds into the catalog (sessions that may have
    /// transferred some); a failure is logged, and the files stay listable from the trail.
    pub fn index_files(&self, rec: &SessionRecord) {
        let Some(path) = rec.trail.path.as_deref().map(Path::new) else {
            return;
        };
        if !super::may_have_files(rec) {
            return;
        }
        let res = crate::transfers::index(path).and_then(|t| self.set_transfers(&rec.id, &t));
        if let Err(e) = res {
            tracing::warn!(session = %rec.id, error = %e, "indexing the files of a trail failed");
        }
    }
}

fn collect_trails(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_trails(&p, out);
        } else if p.extension().is_some_and(|x| x == "trail") {
            out.push(p);
        }
    }
}

/// A session record as far as a trail can tell.
pub fn record_from_trail(path: &Path) -> Result<SessionRecord> {
    let info = crate::export::info(path)?;
    let m = &info.meta;
    let start_us = crate::reader::TrailReader::open(path)?.header.start_unix_us;
    let end_us = info.end_unix_us;
    let end = info.end.clone();
    let verdict = info
        .verdict
        .as_deref()
        .and_then(Verdict::parse)
        .or(Some(Verdict::Accept));
    // Trails since the end record carries the status say it; older ones are read as before.
    let status = match end.as_ref().and_then(|e| e.status.as_deref()) {
        Some(s) => serde_json::from_value(serde_json::Value::String(s.into()))
            .unwrap_or(Status::Disconnected),
        None => match &info.end_reason {
            Some(r) if r.starts_with("terminated by") => Status::Terminated,
            _ if verdict == Some(Verdict::Accept) => Status::Disconnected,
            _ => Status::Rejected,
        },
    };
    let end_reason_code = match &end {
        Some(e) => e.code.as_deref().and_then(EndCode::parse),
        None => Some(EndCode::GatewayRestarted),
    };
    Ok(SessionRecord {
        id: info.session_id.clone(),
        protocol: info.protocol.clone(),
        active: false,
        status,
        verdict,
        client: m
            .client
            .as_ref()
            .map(|c| ClientAddr {
                ip: c.host.clone(),
                port: c.port as u16,
            })
            .unwrap_or_default(),
        target: TargetRef {
            name: m.target_name.clone(),
            ip: m.target_address.as_ref().map(|a| a.host.clone()),
            port: m.target_address.as_ref().map(|a| a.port as u16),
        },
        user: UserRef {
            name: m.gateway_user.clone(),
            server_username: m.target_user.clone(),
        },
        auth_method: m.auth_method.clone(),
        start_time: info.start_time.clone(),
        start_unix_us: start_us,
        end_time: info.end_time.clone(),
        end_unix_us: end_us,
        duration: Some(info.duration_seconds),
        bytes_client_to_server: info.bytes_client_to_server,
        bytes_server_to_client: info.bytes_server_to_client,
        end_reason: info
            .end_reason
            .clone()
            .or_else(|| Some("gateway restarted".into())),
        end_reason_code,
        terminated_by: end.as_ref().and_then(|e| e.terminated_by.clone()),
        last_activity: end.as_ref().and_then(|e| e.last_activity.clone()),
        files: 0,
        channels: info
            .channels
            .iter()
            .map(|c| {
                let at = |us: u64| crate::writer::rfc3339_us(start_us + us as i64);
                ChannelRecord {
                    id: c.id,
                    kind: c.label.clone(),
                    verdict: if c.stats.denied {
                        "deny".into()
                    } else {
                        "accept".into()
                    },
                    start_time: at(c.stats.start_time_us),
                    end_time: c.stats.end_time_us.map(at),
                    command: c.stats.command.clone(),
                    subsystem: c.stats.subsystem.clone(),
                    originator: c
                        .stats
                        .originator
                        .as_ref()
                        .map(|e| format!("{}:{}", e.host, e.port)),
                    connected: c
                        .stats
                        .connected
                        .as_ref()
                        .map(|e| format!("{}:{}", e.host, e.port)),
                    exit_status: c.stats.exit_status,
                    bytes_client_to_server: c.stats.bytes_client_to_server,
                    bytes_server_to_client: c.stats.bytes_server_to_client,
                }
            })
            .collect(),
        policies: m.policies.clone(),
        trail: TrailRef {
            path: Some(path.display().to_string()),
            url: Some(format!("/api/v1/sessions/{}/trail", info.session_id)),
            size: info.file_bytes,
            integrity: info.integrity.clone(),
            error: info.integrity_detail.clone(),
            storage: Some("local".into()),
            ..Default::default()
        },
        node_id: m.node_id.clone().unwrap_or_default(),
        vnc: info.vnc.as_ref().map(vnc_record),
    })
}

/// The session record's VNC part from what the trail holds (its note and its streams).
fn vnc_record(v: &crate::vnc::VncInfo) -> VncRecord {
    // Over the defaults, so a note without some field still gives the others.
    let leg = |l: &Option<serde_json::Value>| {
        let mut base = serde_json::to_value(VncLeg::default()).unwrap_or_default();
        if let (Some(b), Some(serde_json::Value::Object(n))) = (base.as_object_mut(), l) {
            b.extend(n.clone());
        }
        serde_json::from_value::<VncLeg>(base).unwrap_or_default()
    };
    VncRecord {
        desktop_name: v.desktop_name.clone().unwrap_or_default(),
        width: v.width.unwrap_or(0),
        height: v.height.unwrap_or(0),
        pixel_format: v
            .pixel_format
            .and_then(|pf| serde_json::to_value(pf).ok())
            .unwrap_or_default(),
        client: leg(&v.client),
        target: leg(&v.target),
    }
}

impl Catalog {
    /// At start-up: sessions this node's last run left marked active (crash, kill -9) are closed
    /// with end reason `gateway restarted`, and their trails recovered (torn tail repaired, left
    /// unsealed so they verify as incomplete). Sessions another node marked lost while this one
    /// was away keep that end reason and get their trails recovered the same way. Returns how
    /// many sessions were reconciled. `storage`: the state their trails start in (`local`, or
    /// `uploading` with object storage).
    pub fn reconcile_after_restart(
        &self,
        key: &ed25519_dalek::SigningKey,
        node: &str,
        storage: &str,
    ) -> Result<usize> {
        let stale = self.active_on(node)?;
        let lost = self.lost_unrecovered(node)?;
        let now = time::OffsetDateTime::now_utc();
        let mut fixed = Vec::new();
        for mut rec in stale.into_iter().chain(lost) {
            let was_lost = !rec.active;
            if let Some(path) = rec.trail.path.clone().map(PathBuf::from) {
                match crate::recover::recover(&path, key) {
                    Ok(rep) => {
                        tracing::warn!(session = %rec.id, before = rep.before.label(), after = rep.after.label(),
                            salvaged = rep.records_salvaged, cut = rep.bytes_cut, "recovered the trail of a session left open by the last run");
                        if let Ok(from_trail) = record_from_trail(&path) {
                            rec.bytes_client_to_server = from_trail.bytes_client_to_server;
                            rec.bytes_server_to_client = from_trail.bytes_server_to_client;
                            rec.channels = from_trail.channels;
                            rec.duration = from_trail.duration;
                            rec.end_unix_us =
                                rec.duration.map(|d| rec.start_unix_us + (d * 1e6) as i64);
                            rec.trail.size = from_trail.trail.size;
                        }
                        rec.trail.integrity = rep.after.label().into();
                    }
                    Err(e) => {
                        tracing::error!(session = %rec.id, error = %e, "trail of a session left open could not be recovered");
                        rec.trail.integrity = "failed".into();
                        rec.trail.error = Some(crate::fsutil::redact_data_dir(
                            &e.to_string(),
                            &self.data_dir,
                        ));
                    }
                }
            }
            rec.active = false;
            if rec.trail.path.is_some() {
                rec.trail.storage = Some(storage.into());
            }
            if rec.end_unix_us.is_none() {
                rec.end_unix_us = Some((now.unix_timestamp_nanos() / 1000) as i64);
            }
            rec.end_time = rec
                .end_unix_us
                .and_then(|us| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
                })
                .map(crate::writer::rfc3339);
            if !was_lost {
                rec.end_reason = Some("gateway restarted".into());
                rec.end_reason_code = Some(EndCode::GatewayRestarted);
            }
            rec.status = if rec.verdict == Some(Verdict::Accept) {
                Status::Disconnected
            } else {
                Status::Rejected
            };
            fixed.push(rec);
        }
        self.insert_many(&fixed)?;
        for r in &fixed {
            self.index_files(r);
        }
        Ok(fixed.len())
    }
}
