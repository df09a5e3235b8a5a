//! A session, whatever its protocol: its record, trail, counters, policies, channels, and its
//! end (one place seals the trail and publishes the final record). The bridge's connection
//! task, handler and pumps share it through an `Arc`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trailgate_recorder::writer::{rfc3339, rfc3339_us};
use trailgate_recorder::{Event, SessionEnd, TrailWriter};

use super::ChannelState;
use crate::admission::PreAuth;
use crate::config::{Config, OnFailure, Protocol};
use crate::registry::{KillReason, LiveSession};
use crate::runtime::Resolved;
use crate::services::Services;
use crate::session::*;

pub struct Session {
    pub id: SessionId,
    pub protocol: Protocol,
    /// The session's tracing span: work done in russh's tasks and in the pumps enters it.
    pub span: tracing::Span,
    pub gw: Arc<Services>,
    /// The configuration in force when the session started; it keeps it to the end.
    pub cfg: Arc<Config>,
    pub live: Arc<LiveSession>,
    pub start: Instant,
    pub start_wall: OffsetDateTime,
    record: Mutex<SessionRecord>,
    pub trail: OnceLock<TrailWriter>,
    trail_failed: AtomicBool,
    /// The settings policy the session started with (none: no timers, default TLS).
    pub settings: OnceLock<Resolved>,
    pub authenticated: AtomicBool,
    /// Wakes the policy timers when the session's policies become known.
    pub policy_changed: tokio::sync::Notify,
    pub bytes_c2s: AtomicU64,
    pub bytes_s2c: AtomicU64,
    /// Microseconds since `start` of the last channel data in either direction / from the client.
    last_activity: AtomicU64,
    last_client: AtomicU64,
    next_channel: AtomicU32,
    pub channels: Mutex<BTreeMap<u32, Arc<ChannelState>>>,
    ended: AtomicBool,
    /// Set just before the trail is sealed: a record after it is a bug, not a recording failure.
    sealing: AtomicBool,
    /// The channel pumps: the trail is sealed only after every one of them has finished, so
    /// their last records (EOF, exit status, close) are in it whichever leg closed first.
    pub pumps: TaskTracker,
    /// Tells the pumps to stop waiting on their peers (the session is ending).
    pub closing: CancellationToken,
    /// Closes the client's connection (see [`crate::stream::Closable`]).
    pub conn: CancellationToken,
    /// The connection's pre-authentication slot, released at authentication.
    pub preauth: PreAuth,
    /// Authentication attempts that failed, and whether any was made.
    pub auth_failures: AtomicU32,
    pub auth_tried: AtomicBool,
    /// The client has sent at least one byte (see [`Session::heard`]).
    heard: AtomicBool,
}

impl Session {
    /// The client sent its first byte: from now on this connection is a session, and its
    /// record is published (before, it may be a health check or a port scan).
    pub fn heard(&self) {
        if !self.heard.swap(true, Ordering::AcqRel) {
            self.publish();
        }
    }

    pub fn was_heard(&self) -> bool {
        self.heard.load(Ordering::Acquire)
    }

    pub fn new(
        gw: Arc<Services>,
        protocol: Protocol,
        id: SessionId,
        span: tracing::Span,
        peer: SocketAddr,
        preauth: PreAuth,
    ) -> Arc<Self> {
        let start_wall = OffsetDateTime::now_utc();
        let record = SessionRecord {
            id: id.to_string(),
            protocol: protocol.as_str().into(),
            active: true,
            status: Status::Connected,
            verdict: None,
            client: ClientAddr {
                ip: peer.ip().to_string(),
                port: peer.port(),
            },
            target: TargetRef::default(),
            user: UserRef::default(),
            auth_method: None,
            start_time: rfc3339(start_wall),
            start_unix_us: (start_wall.unix_timestamp_nanos() / 1000) as i64,
            end_time: None,
            end_unix_us: None,
            duration: None,
            bytes_client_to_server: 0,
            bytes_server_to_client: 0,
            end_reason: None,
            end_reason_code: None,
            terminated_by: None,
            last_activity: None,
            files: 0,
            channels: Vec::new(),
            policies: Vec::new(),
            trail: TrailRef {
                path: None,
                url: None,
                size: 0,
                integrity: "none".into(),
                ..Default::default()
            },
            node_id: gw.node_id.clone(),
            vnc: None,
        };
        let sh = Arc::new(Session {
            live: LiveSession::new(id.to_string()),
            span,
            id,
            protocol,
            cfg: gw.cfg(),
            gw,
            start: Instant::now(),
            start_wall,
            record: Mutex::new(record),
            trail: OnceLock::new(),
            trail_failed: AtomicBool::new(false),
            settings: OnceLock::new(),
            authenticated: AtomicBool::new(false),
            policy_changed: tokio::sync::Notify::new(),
            bytes_c2s: AtomicU64::new(0),
            bytes_s2c: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            last_client: AtomicU64::new(0),
            next_channel: AtomicU32::new(1),
            channels: Mutex::new(BTreeMap::new()),
            ended: AtomicBool::new(false),
            sealing: AtomicBool::new(false),
            pumps: TaskTracker::new(),
            closing: CancellationToken::new(),
            conn: CancellationToken::new(),
            preauth,
            auth_failures: AtomicU32::new(0),
            auth_tried: AtomicBool::new(false),
            heard: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&sh);
        sh.live
            .set_live_view(Box::new(move || weak.upgrade().map(|s| s.snapshot())));
        sh
    }

    /// Why the session was killed (a generic reason if it was not).
    pub fn kill_reason(&self) -> KillReason {
        self.live.kill_reason().unwrap_or(KillReason {
            reason: "terminated".into(),
            by: "gateway".into(),
            code: EndCode::GatewayShutdown,
        })
    }

    pub fn elapsed_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Trail channel ids: 0 is the session itself, channels count from 1 in opening order.
    pub fn alloc_channel(&self) -> u32 {
        self.next_channel.fetch_add(1, Ordering::Relaxed)
    }

    pub fn update(&self, f: impl FnOnce(&mut SessionRecord)) {
        if let Ok(mut r) = self.record.lock() {
            f(&mut r);
        }
    }

    /// Current record with live counters, sent to the observer and the registry.
    pub fn snapshot(&self) -> SessionRecord {
        let mut rec = self
            .record
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        rec.bytes_client_to_server = self.bytes_c2s.load(Ordering::Relaxed);
        rec.bytes_server_to_client = self.bytes_s2c.load(Ordering::Relaxed);
        if let Ok(chs) = self.channels.lock() {
            rec.channels = chs.values().map(|c| c.record()).collect();
        }
        if rec.active {
            rec.duration = Some(self.start.elapsed().as_secs_f64());
        }
        if rec.verdict == Some(Verdict::Accept) {
            let us = self.start_unix_us() + self.last_client.load(Ordering::Relaxed) as i64;
            rec.last_activity = Some(trailgate_recorder::writer::rfc3339_us(us));
        }
        rec
    }

    fn start_unix_us(&self) -> i64 {
        (self.start_wall.unix_timestamp_nanos() / 1000) as i64
    }

    /// Shows the record live and, once the client has been heard, in the catalog.
    pub fn publish(&self) -> SessionRecord {
        self.publish_with(|_| {})
    }

    /// Publishes the final record, with what the observer adds to one (the trail's storage).
    pub fn publish_final(&self) -> SessionRecord {
        self.publish_with(|r| self.gw.observer.finalize(r))
    }

    fn publish_with(&self, f: impl FnOnce(&mut SessionRecord)) -> SessionRecord {
        let mut rec = self.snapshot();
        f(&mut rec);
        self.live.set_snapshot(&rec);
        if self.was_heard() {
            self.gw.observer.session_changed(&rec);
        }
        rec
    }

    /// The session was accepted: idle and inactivity are counted from now, not from the
    /// connection's accept (a slow login is not idleness).
    pub fn accepted_now(&self) {
        let t = self.elapsed_us();
        self.last_activity.store(t, Ordering::Relaxed);
        self.last_client.store(t, Ordering::Relaxed);
    }

    /// Channel data relayed; all of a client's data is user input (SSH).
    pub fn data_activity(&self, from_client: bool, n: usize) {
        self.traffic(from_client, n, from_client);
    }

    /// Data relayed: any traffic counts as activity (idle timeout); only `user_input` (SSH:
    /// client data; VNC: key and pointer events) keeps the inactivity timeout away.
    pub fn traffic(&self, from_client: bool, n: usize, user_input: bool) {
        let t = self.elapsed_us();
        self.last_activity.store(t, Ordering::Relaxed);
        if user_input {
            self.last_client.store(t, Ordering::Relaxed);
        }
        if from_client {
            self.bytes_c2s.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            self.bytes_s2c.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.gw.metrics.relayed(self.protocol, from_client, n);
    }

    /// Records an event. A recording failure is never silent: it is logged, shown in the session
    /// record, and (with `on_failure = "terminate"`) ends the session.
    pub async fn rec(&self, channel: u32, event: Event) {
        if let Some(t) = self.recording()
            && let Err(e) = t.record(channel, event).await
        {
            self.record_error(&e.to_string());
        }
    }

    /// As [`rec`](Self::rec) for channel data the caller passes on afterwards.
    pub async fn rec_data(
        &self,
        channel: u32,
        dir: trailgate_recorder::Direction,
        data: &bytes::Bytes,
    ) {
        if let Some(t) = self.recording()
            && let Err(e) = t.record_data(channel, dir, data).await
        {
            self.record_error(&e.to_string());
        }
    }

    /// A record was refused by the writer. After the seal that is a late record (every pump has
    /// ended by then, so this is a bug to fix, and loudly logged), not a failure of the trail.
    fn record_error(&self, err: &str) {
        if self.sealing.load(Ordering::Acquire) {
            tracing::error!(error = %err, "a record arrived after the trail was sealed");
            return;
        }
        self.recording_failed(err);
    }

    /// The trail writer, while the session has one that has not failed.
    fn recording(&self) -> Option<&TrailWriter> {
        self.trail
            .get()
            .filter(|_| !self.trail_failed.load(Ordering::Relaxed))
    }

    pub fn recording_failed(&self, err: &str) {
        if self.trail_failed.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::error!(error = %err, "recording failed");
        self.gw.metrics.recording_failed();
        self.update(|r| {
            r.trail.integrity = "failed".into();
            r.trail.error = Some(trailgate_recorder::fsutil::redact_data_dir(
                err,
                &self.cfg.data_dir,
            ));
        });
        if self.cfg.recording.on_failure == OnFailure::Terminate {
            // The client sees the kill reason: the details (paths, errno) stay in the log and the
            // record's `trail.error`.
            self.live.kill(KillReason {
                reason: "recording failed".into(),
                by: "recorder".into(),
                code: EndCode::RecordingFailed,
            });
        } else {
            tracing::warn!("on_failure = continue: the session goes on UNRECORDED");
        }
        self.publish();
    }

    /// Sets the end of a session that never got going (rejected, failed); the code follows
    /// from the verdict ([`EndCode::for_verdict`]).
    pub fn end_with(&self, status: Status, verdict: Verdict, reason: &str) {
        self.end_with_code(status, verdict, reason, EndCode::for_verdict(verdict));
    }

    pub fn end_with_code(&self, status: Status, verdict: Verdict, reason: &str, code: EndCode) {
        self.update(|r| {
            r.status = status;
            r.verdict = Some(verdict);
            if r.end_reason.is_none() {
                r.end_reason = Some(reason.to_string());
                r.end_reason_code = Some(code);
            }
        });
    }

    /// The connection ended on its own (`error`: with a protocol or I/O error); keeps an earlier,
    /// more specific reason. A connection that never authenticated gets the verdict that says
    /// why: too many attempts, failed logins, or a protocol error before any login was tried.
    /// `max_auth_attempts`: the bridge's limit of failed attempts per connection (0: none).
    /// `code`: how an established session ended (client or target closed, connection error).
    pub fn note_end(&self, reason: &str, error: bool, max_auth_attempts: usize, code: EndCode) {
        let authed = self.authenticated.load(Ordering::Relaxed);
        let failures = self.auth_failures.load(Ordering::Relaxed) as usize;
        let tried = self.auth_tried.load(Ordering::Relaxed);
        let max = max_auth_attempts;
        self.update(|r| {
            if r.verdict.is_none() {
                let (verdict, why) = if max > 0 && failures >= max {
                    (
                        Verdict::GwAuthFail,
                        "too many authentication attempts".to_string(),
                    )
                } else if tried {
                    (
                        Verdict::GwAuthFail,
                        format!("{reason} before authenticating"),
                    )
                } else if error {
                    (Verdict::ProtocolError, reason.to_string())
                } else {
                    (
                        Verdict::GwAuthFail,
                        format!("{reason} before authenticating"),
                    )
                };
                r.verdict = Some(verdict);
                r.status = Status::Rejected;
                if r.end_reason.is_none() {
                    r.end_reason = Some(why);
                    r.end_reason_code = Some(EndCode::for_verdict(verdict));
                }
                return;
            }
            if r.end_reason.is_none() {
                r.end_reason = Some(reason.to_string());
                r.end_reason_code = Some(code);
            }
            if r.verdict == Some(Verdict::Accept) && authed {
                r.status = Status::Disconnected;
            }
        });
    }

    pub fn terminated(&self, k: &KillReason) {
        self.update(|r| {
            let was_accepted = r.verdict == Some(Verdict::Accept);
            r.end_reason = Some(format!("terminated by {}: {}", k.by, k.reason));
            r.end_reason_code = Some(k.code);
            // A target that closed the connection is a side of the session, not a terminator.
            r.terminated_by = (k.by != "target").then(|| k.by.clone());
            r.status = if was_accepted {
                Status::Terminated
            } else {
                Status::Rejected
            };
            if r.verdict.is_none() {
                r.verdict = Some(Verdict::Deny);
            }
        });
    }

    /// Seals the trail with the session's end and fills in the final record fields.
    pub async fn finish_trail(&self) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let channels: Vec<Arc<ChannelState>> = self
            .channels
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for c in channels {
            if c.mark_closed() {
                self.rec(c.id, Event::Close).await;
            }
        }
        // The final status goes into the trail's end record with the rest, so a record rebuilt
        // from the trail is this one.
        self.update(|r| {
            if r.status == Status::Connected {
                r.status = if r.verdict == Some(Verdict::Accept) {
                    Status::Disconnected
                } else {
                    Status::Rejected
                };
            }
        });
        self.sealing.store(true, Ordering::Release);
        let rec = self.snapshot();
        let end = SessionEnd {
            reason: rec.end_reason.clone().unwrap_or_else(|| "ended".into()),
            verdict: rec.verdict.map(|v| v.as_str().to_string()),
            terminated_by: rec.terminated_by.clone(),
            code: rec.end_reason_code.map(|c| c.as_str().to_string()),
            status: Some(rec.status.as_str().to_string()),
            last_activity: rec.last_activity.clone(),
        };
        let mut sealed = None;
        let mut trail_update = None;
        if let Some(t) = self.trail.get() {
            match t.finish(end).await {
                Ok(s) => {
                    trail_update = Some((s.file_bytes, "sealed".to_string(), None));
                    sealed = Some(s.end);
                }
                Err(e) => {
                    tracing::error!(error = %e, "sealing the trail failed");
                    trail_update = Some((
                        std::fs::metadata(t.path()).map(|m| m.len()).unwrap_or(0),
                        "failed".into(),
                        Some(trailgate_recorder::fsutil::redact_data_dir(
                            &e.to_string(),
                            &self.cfg.data_dir,
                        )),
                    ));
                }
            }
        }
        let end_wall = OffsetDateTime::now_utc();
        let start_us = self.start_unix_us();
        self.update(|r| {
            r.active = false;
            r.end_time = Some(rfc3339(end_wall));
            r.end_unix_us = Some((end_wall.unix_timestamp_nanos() / 1000) as i64);
            r.duration = Some(self.start.elapsed().as_secs_f64());
            if let Some((size, integ, err)) = trail_update {
                r.trail.size = size;
                if r.trail.integrity != "failed" {
                    r.trail.integrity = integ;
                }
                if err.is_some() {
                    r.trail.error = err;
                }
            }
        });
        // A sealed trail is the record's source of truth: its end time, and each channel's times
        // and byte counts as recorded (so a rebuild from the trail gives this record exactly).
        if let Some(end) = sealed {
            self.update(|r| {
                r.end_time = Some(end.end_time.clone());
                r.end_unix_us = Some(end.end_unix_us);
                r.duration = Some(end.duration_us as f64 / 1e6);
            });
            if let Ok(chs) = self.channels.lock() {
                for st in &end.channels {
                    if let Some(c) = chs.get(&st.id) {
                        c.set_times(
                            rfc3339_us(start_us + st.start_time_us as i64),
                            st.end_time_us.map(|t| rfc3339_us(start_us + t as i64)),
                        );
                    }
                }
            }
        }
    }

    pub fn last_activity(&self) -> (Duration, Duration) {
        let now = self.elapsed_us();
        (
            Duration::from_micros(now.saturating_sub(self.last_activity.load(Ordering::Relaxed))),
            Duration::from_micros(now.saturating_sub(self.last_client.load(Ordering::Relaxed))),
        )
    }
}
