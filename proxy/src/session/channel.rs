//! One channel of a session as the catalog sees it: its record, byte counters, and whether its
//! close is recorded. Protocol-neutral: a bridge keeps its own per-channel state beside it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use trailgate_recorder::{ChannelOpen, Direction, Endpoint};

use super::{ChannelRecord, now_rfc3339};

pub struct ChannelState {
    pub id: u32,
    record: Mutex<ChannelRecord>,
    c2s: AtomicU64,
    s2c: AtomicU64,
    closed: AtomicBool,
}

impl ChannelState {
    /// A channel opened (`verdict` "accept") or refused; a refused one is closed from the start.
    pub fn new(id: u32, open: &ChannelOpen, verdict: &str) -> ChannelState {
        let addr = |e: &Option<Endpoint>| e.as_ref().map(|e| format!("{}:{}", e.host, e.port));
        ChannelState {
            id,
            record: Mutex::new(ChannelRecord {
                id,
                kind: trailgate_recorder::record::channel_kind(&open.kind, None, None, Some(false)),
                verdict: verdict.into(),
                start_time: now_rfc3339(),
                originator: addr(&open.originator),
                connected: addr(&open.connected),
                ..Default::default()
            }),
            c2s: AtomicU64::new(0),
            s2c: AtomicU64::new(0),
            closed: AtomicBool::new(verdict != "accept"),
        }
    }

    /// The record with live byte counters.
    pub fn record(&self) -> ChannelRecord {
        let mut r = self.record.lock().map(|r| r.clone()).unwrap_or_default();
        r.bytes_client_to_server = self.c2s.load(Ordering::Relaxed);
        r.bytes_server_to_client = self.s2c.load(Ordering::Relaxed);
        r
    }

    pub fn update(&self, f: impl FnOnce(&mut ChannelRecord)) {
        if let Ok(mut r) = self.record.lock() {
            f(&mut r);
        }
    }

    /// The channel's times as its trail recorded them (at the seal).
    pub fn set_times(&self, start: String, end: Option<String>) {
        self.update(|r| {
            r.start_time = start;
            if end.is_some() {
                r.end_time = end;
            }
        });
    }

    pub fn count(&self, dir: Direction, n: usize) {
        let c = match dir {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Marks the channel closed (with its end time); `true` for the first caller only, who
    /// records the close.
    pub fn mark_closed(&self) -> bool {
        if self.closed.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.update(|r| r.end_time = Some(now_rfc3339()));
        true
    }
}
