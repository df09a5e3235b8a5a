//! `TrailWriter`: the lossless, bounded, asynchronous trail writer.
//!
//! Protocol code calls [`TrailWriter::record`], which encodes the record straight into the
//! trail's current batch under a short lock (no per-record message or allocation) and waits only
//! when the per-trail byte budget is used up (bounded: when the disk cannot keep up, the session
//! slows down; nothing is dropped). One writer task per trail hands finished batches to tokio's
//! blocking pool, where they are compressed, hashed, signed and written, one job in flight while
//! the next batch fills; fdatasync runs beside it. Flush and frame timers apply to the records'
//! own timestamps as well as to the clock, so a replay cuts frames where the live session did.
//! A compressor short of CPU steps its zstd level down a frame at a time while the session waits
//! for it (down to `zstd_fast_level`), and back up as it keeps up: bigger trails, not slower
//! sessions (see [`WriterConfig::zstd_fast_level`]).
//!
//! Memory per open trail: the byte budget (default 4 MiB, held only while data is in flight or the
//! compressor is behind), and a zstd context while a frame is open (about 1 MiB at level 3 with
//! `window_log` 17 and 14-bit tables; see docs/performance.md). A frame without records for
//! `frame_idle_close` is finished and its context freed, so idle sessions cost a few KiB.

use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::{Mutex, MutexGuard};

use ed25519_dalek::{Signer, SigningKey};
use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};
use zstd::zstd_safe::{self, CCtx, CParameter, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};

use crate::error::{RecorderError, Result};
use crate::format::*;
use crate::keys;
use crate::summary::Stats;

/// Tuning of one trail writer. Defaults suit interactive and bulk SSH sessions alike.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Upper bound on what a crash or a live reader can miss.
    pub flush_interval: Duration,
    pub zstd_level: i32,
    /// The fastest level the writer steps down to, a frame at a time, while the session's
    /// records wait for a compressor that is short of CPU (not of disk); it steps back up to
    /// `zstd_level` as the compressor keeps up. Equal to `zstd_level` (or above it): never.
    pub zstd_fast_level: i32,
    /// A data frame is finished after this many raw bytes (seek granularity).
    pub frame_max_raw: usize,
    /// ... or when it has been open this long while data keeps coming.
    pub frame_max_age: Duration,
    /// ... or when no record arrived for this long; its zstd context is then freed.
    pub frame_idle_close: Duration,
    /// Bytes of records in flight between the session and the writer task.
    pub queue_bytes: usize,
    /// Raw bytes gathered before they are handed to the compressor.
    pub chunk_bytes: usize,
    pub window_log: u32,
    /// zstd match-finder tables: smaller than level 3's defaults (17/16) to cut per-session memory
    /// by a third at no measurable ratio cost on frames of 256 KiB.
    pub hash_log: u32,
    pub chain_log: u32,
    /// Consecutive small data records on one channel and direction closer than this are merged.
    pub coalesce_us: u64,
    /// fdatasync at the seal, at a finished frame (at most once per `fsync_min_interval`), and at
    /// a flush when the last sync is older than `fsync_max_interval` (frames of a quiet session
    /// can stay open for minutes).
    pub fsync: bool,
    pub fsync_max_interval: Duration,
    /// Frames ending sooner than this after the last sync are not synced on their own.
    pub fsync_min_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            flush_interval: Duration::from_secs(1),
            zstd_level: 3,
            zstd_fast_level: -3,
            frame_max_raw: 1024 * 1024,
            frame_max_age: Duration::from_secs(600),
            frame_idle_close: Duration::from_secs(60),
            // Four 1 MiB frames: a bulk session keeps streaming while a frame compresses and
            // syncs (1 MiB measurably stalled downloads).
            queue_bytes: 4 * 1024 * 1024,
            chunk_bytes: 256 * 1024,
            window_log: 17,
            hash_log: 14,
            chain_log: 14,
            coalesce_us: 2_000,
            fsync: true,
            fsync_max_interval: Duration::from_secs(60),
            fsync_min_interval: Duration::from_secs(1),
        }
    }
}

/// What a sealed trail ended as.
#[derive(Debug, Clone)]
pub struct TrailSummary {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub end: EndSummary,
    pub chain_head: [u8; 32],
}

/// `<data_dir>/trails/YYYY/MM/DD/<session-id>.trail`
pub fn trail_path(data_dir: &Path, start: OffsetDateTime, session_id: &str) -> PathBuf {
    data_dir
        .join("trails")
        .join(format!("{:04}", start.year()))
        .join(format!("{:02}", u8::from(start.month())))
        .join(format!("{:02}", start.day()))
        .join(format!("{session_id}.trail"))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// RFC 3339 of a wall-clock time in unix microseconds.
pub fn rfc3339_us(unix_us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_us) * 1000)
        .map(rfc3339)
        .unwrap_or_default()
}

/// Budget charged per record on top of its payload (its head and bookkeeping).
const RECORD_OVERHEAD: usize = 16;
/// Batches up to this size are encoded when sealed into one packed buffer (see [`Body`]).
const SMALL_BATCH: usize = 16 * 1024;
/// Largest packed buffer kept for reuse between jobs (a live session needs a few KiB; a replay
/// of hours of keystrokes grows it to megabytes once).
const PACKED_KEEP: usize = 256 * 1024;

/// A compression job writes out its output and gives the budget back to the session every this
/// many bytes of input: the budget then counts what is not yet in the file, and a bulk session
/// refills it while the rest of a large job still compresses.
const RELEASE_STEP: usize = 256 * 1024;

/// Data records at least this large are never merged with their neighbours.
const COALESCE_MAX: usize = 16 * 1024;

/// The writer's policies in record time (microseconds since session start).
#[derive(Clone, Copy)]
struct Policy {
    flush_us: u64,
    max_age_us: u64,
    idle_us: u64,
    coalesce_us: u64,
    frame_max_raw: usize,
    chunk_bytes: usize,
    budget_max: usize,
}

impl Policy {
    /// Emptied batches an active session keeps for reuse while the compressor is behind: as
    /// many as its budget can have in flight, so a session that keeps the compressor busy stops
    /// allocating (and faulting in) fresh ones, within what the budget allowed anyway. Once the
    /// compressor has caught up it keeps two, and a quiet session none.
    fn spares(&self) -> usize {
        (self.budget_max / self.chunk_bytes).clamp(2, 64)
    }

    fn new(cfg: &WriterConfig) -> Self {
        let us = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        Policy {
            flush_us: us(cfg.flush_interval).max(1),
            max_age_us: us(cfg.frame_max_age).max(1),
            idle_us: us(cfg.frame_idle_close).max(1),
            coalesce_us: cfg.coalesce_us,
            frame_max_raw: cfg.frame_max_raw.max(1),
            chunk_bytes: cfg.chunk_bytes.max(1),
            budget_max: cfg.queue_bytes.max(RECORD_OVERHEAD * 4),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Continue,
    Flush,
    End { free_context: bool },
}

/// A frame's accounting, handed to the sink with the batch that ends it.
#[derive(Clone, Copy)]
struct FrameMeta {
    raw_len: u64,
    records: u32,
    first_t: u64,
    last_t: u64,
    first_record: u64,
}

/// A batch handed from the sessions to the writer task, in order.
struct Ready {
    body: Body,
    op: Op,
    /// Set when `op` is `End`.
    meta: Option<FrameMeta>,
    /// Budget it holds until it is on disk.
    cost: usize,
}

/// What a ready batch holds. Small batches (a keystroke session's once-a-second flushes) are
/// encoded at once into one shared buffer, so a backlog of thousands of them costs a few buffer
/// doublings instead of three growing vectors each; large ones travel as they are and are fed to
/// the compressor column by column, without a copy.
enum Body {
    /// The next `n` bytes of the packed buffer handed over with the batch.
    Packed(usize),
    Batch(Batch),
}

/// A data record still open for merging: its payload is already in the batch, its head is
/// written when the next record does not continue it.
struct OpenData {
    channel: u32,
    dir: Direction,
    wire_dt: u64,
    start: usize,
    last_t: u64,
}

/// Everything sessions and the writer task share, under one short-held lock. Sessions encode
/// their records straight into the current batch (no per-record message or allocation); the
/// writer task only wakes when a batch is ready or a timer is due.
struct State {
    batch: Batch,
    /// Record time of the first record not yet covered by a flush: it may be in the current
    /// batch or already with the compressor (a full chunk is handed over without a flush), and
    /// the flush interval runs from it either way.
    unflushed_since: Option<u64>,
    /// A flush fell due while the writer task was behind: it seals when it takes the batches.
    flush_deferred: bool,
    batch_cost: usize,
    open: Option<OpenData>,
    frame: Option<FrameMeta>,
    ready: Vec<Ready>,
    /// Budget in use: the current batch, the ready ones and those being compressed.
    queued: usize,
    stats: Stats,
    last_t: u64,
    spare: Vec<Batch>,
    /// Small batches sealed since the writer task last took them, encoded back to back.
    packed: Vec<u8>,
    /// An emptied packed buffer back from the blocking pool, for reuse.
    spare_packed: Vec<u8>,
    /// The last seal closed the frame because the session went quiet (or finished).
    quiet: bool,
    finish: Option<(u64, oneshot::Sender<Result<TrailSummary>>)>,
    /// No more records: finished or every handle dropped.
    closed: bool,
    abandoned: bool,
    /// The writer task has exited.
    task_gone: bool,
    /// Batches handed to the writer task so far, and how many of them are in the file: what
    /// [`TrailWriter::flush`] waits on.
    sealed: u64,
    written: u64,
}

impl State {
    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            let len = self.batch.payloads.len() - o.start;
            self.batch
                .push_head(data_kind(o.dir), o.channel, o.wire_dt, len);
        }
    }

    /// Wire delta of a record at `t` in the open frame (opening one if needed) and the time a
    /// reader will reconstruct: the first record of a frame carries its absolute time so every
    /// frame decodes alone; later ones the delta, coarsened for human-scale gaps. Times are kept
    /// as the reader will see them so rounding never accumulates.
    fn frame_dt(&mut self, t: u64) -> (u64, u64) {
        let records = self.stats.records;
        let f = self.frame.get_or_insert(FrameMeta {
            raw_len: 0,
            records: 0,
            first_t: t,
            last_t: t,
            first_record: records,
        });
        let (wire, t) = if f.records == 0 {
            (dt_wire_exact(t), t)
        } else {
            let (w, d) = dt_wire(t.saturating_sub(f.last_t));
            (w, f.last_t + d)
        };
        f.records += 1;
        f.last_t = t;
        (wire, t)
    }

    /// Hands the current batch to the writer task with `op`. Returns whether anything was handed.
    fn seal(&mut self, op: Op) -> bool {
        self.close_open();
        let ending = matches!(op, Op::End { .. });
        if self.batch.is_empty() {
            // An empty batch still ends an open frame, or flushes what earlier chunks left in
            // the compressor.
            let needed = match op {
                Op::Continue => false,
                Op::Flush => self.unflushed_since.is_some(),
                Op::End { .. } => self.frame.is_some(),
            };
            if !needed {
                return false;
            }
        }
        if op != Op::Continue {
            self.unflushed_since = None;
            self.flush_deferred = false;
        }
        let idle = matches!(op, Op::End { free_context: true });
        self.quiet = idle;
        if idle {
            // The session went quiet: give back the buffers a bulk transfer may have grown.
            self.spare.clear();
            self.spare_packed = Vec::new();
        }
        let len = self.batch.encoded_len();
        let body = if len <= SMALL_BATCH {
            self.batch.encode_into(&mut self.packed);
            if idle {
                self.batch = Batch::default();
            } else {
                self.batch.clear();
            }
            Body::Packed(len)
        } else {
            let fresh = self.spare.pop().unwrap_or_default();
            Body::Batch(std::mem::replace(&mut self.batch, fresh))
        };
        let len = len as u64;
        let meta = if ending {
            self.frame.take().map(|mut f| {
                f.raw_len += len;
                f
            })
        } else {
            if let Some(f) = &mut self.frame {
                f.raw_len += len;
            }
            None
        };
        self.ready.push(Ready {
            body,
            op,
            meta,
            cost: std::mem::take(&mut self.batch_cost),
        });
        self.sealed += 1;
        true
    }

    /// Applies the time policies as of `now` (record time): frame idle or too old, batch due for
    /// a flush. Sessions call it with each record's time, the writer task with the clock, so a
    /// replay at any speed cuts frames where a live session would.
    ///
    /// A session does not seal a batch for a flush while the writer task has not yet taken the
    /// batches before it: the writer is behind, so sealing now would not put the records in the
    /// file any sooner, and the records keep going into the current batch instead. Batches then
    /// stay large while the writer catches up (each one costs the compressor a block of its
    /// own, with its own column heads), and the writer seals the merged batch when it takes the
    /// others. A live session's writer takes each batch as it is sealed: nothing changes there.
    fn time_policy(&mut self, p: &Policy, now: u64, by_session: bool) -> bool {
        let mut sealed = false;
        if let Some(f) = &self.frame {
            if now.saturating_sub(f.last_t) >= p.idle_us {
                sealed |= self.seal(Op::End { free_context: true });
            } else if now.saturating_sub(f.first_t) >= p.max_age_us {
                sealed |= self.seal(Op::End {
                    free_context: false,
                });
            }
        }
        if self
            .unflushed_since
            .is_some_and(|f| now.saturating_sub(f) >= p.flush_us)
        {
            if by_session && !self.ready.is_empty() {
                self.flush_deferred = true;
            } else {
                sealed |= self.seal(Op::Flush);
            }
        }
        sealed
    }

    /// When the writer task must next look at the clock (record time), if ever.
    fn next_deadline(&self, p: &Policy) -> Option<u64> {
        let flush = self.unflushed_since.map(|f| f.saturating_add(p.flush_us));
        let frame = self.frame.map(|f| {
            f.last_t
                .saturating_add(p.idle_us)
                .min(f.first_t.saturating_add(p.max_age_us))
        });
        match (flush, frame) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Encodes one record into the current batch. Returns whether the writer task must wake.
    fn push(
        &mut self,
        p: &Policy,
        channel: u32,
        t: u64,
        rec: Rec<'_>,
        cost: usize,
    ) -> Result<bool> {
        let t = t.max(self.last_t);
        let mut wake = self.time_policy(p, t, true);
        if self.unflushed_since.is_none() {
            self.unflushed_since = Some(t);
            // The task arms its flush timer.
            wake = true;
        }
        match rec {
            Rec::Data { dir, data } if data.len() < COALESCE_MAX => {
                let batch_len = self.batch.payloads.len();
                let merge = self.open.as_ref().is_some_and(|o| {
                    o.channel == channel
                        && o.dir == dir
                        && t - o.last_t <= p.coalesce_us
                        && batch_len - o.start + data.len() <= COALESCE_MAX
                });
                if let Some(o) = self.open.as_mut().filter(|_| merge) {
                    o.last_t = t;
                    let at = self.frame.map_or(t, |f| f.last_t);
                    self.stats.add_data_bytes(channel, at, dir, data.len());
                } else {
                    self.close_open();
                    let (wire_dt, at) = self.frame_dt(t);
                    self.stats.apply_data(channel, at, dir, data.len());
                    self.open = Some(OpenData {
                        channel,
                        dir,
                        wire_dt,
                        start: batch_len,
                        last_t: t,
                    });
                }
                self.batch.payloads.extend_from_slice(data);
            }
            Rec::Data { dir, data } => {
                // Large: the batch holds it by reference (one more reference, no copy).
                self.close_open();
                let (wire_dt, at) = self.frame_dt(t);
                self.batch.push_shared_data(channel, wire_dt, dir, data);
                self.stats.apply_data(channel, at, dir, data.len());
            }
            Rec::Event(event) => {
                self.close_open();
                let (wire_dt, at) = self.frame_dt(t);
                self.batch.push(channel, wire_dt, event)?;
                self.stats.apply(channel, at, event);
            }
        }
        self.last_t = t;
        self.batch_cost += cost;
        self.queued += cost;
        let batch_raw = self.batch.raw_len();
        let frame_raw = self.frame.map_or(0, |f| f.raw_len as usize) + batch_raw;
        if frame_raw >= p.frame_max_raw {
            wake |= self.seal(Op::End {
                free_context: false,
            });
        } else if batch_raw >= p.chunk_bytes {
            wake |= self.seal(Op::Continue);
        }
        Ok(wake)
    }
}

/// A record as a session hands it over: data by reference (small payloads are copied into the
/// batch, so the caller's buffer is not even reference-counted), anything else as an event.
#[derive(Clone, Copy)]
enum Rec<'a> {
    Data { dir: Direction, data: &'a Bytes },
    Event(&'a Event),
}

impl<'a> Rec<'a> {
    fn of(event: &'a Event) -> Self {
        match event {
            Event::Data { dir, data } => Rec::Data { dir: *dir, data },
            e => Rec::Event(e),
        }
    }

    /// Budget a record holds until it is in the file: its payload, plus a fixed allowance for
    /// its head and bookkeeping.
    fn cost(self) -> usize {
        let payload = match self {
            Rec::Data { data, .. } => data.len(),
            Rec::Event(e) => data_len(e).map_or(0, |(_, n)| n),
        };
        payload.saturating_add(RECORD_OVERHEAD)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task: a batch is ready, a new batch started, finish or abandon.
    wake: Notify,
    /// Wakes sessions waiting for room in the budget (also on failure).
    room: Notify,
    failure: OnceLock<String>,
    /// Time sessions spent waiting for room in the budget (µs), and how many records waited:
    /// how much the recorder (its CPU or its disk) paced the session. A wait is counted when it
    /// starts, so the compressor sees one still going on.
    waited_us: AtomicU64,
    waits: AtomicU64,
    /// Data frames written below `zstd_level` because the compressor was behind.
    fast_frames: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the trail; keep going rather than poison every session.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `cost` bytes of budget back (their records are compressed and written).
    fn release(&self, cost: usize) {
        if cost == 0 {
            return;
        }
        {
            let mut st = self.lock();
            st.queued = st.queued.saturating_sub(cost);
        }
        self.room.notify_waiters();
    }
}

struct Inner {
    shared: Arc<Shared>,
    policy: Policy,
    start: Instant,
    path: PathBuf,
}

impl Drop for Inner {
    /// Every handle dropped without `finish`: the task writes out what it has and stops, leaving
    /// the trail unsealed (it verifies as incomplete) rather than inventing an end.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if !st.closed {
            st.closed = true;
            st.abandoned = true;
            st.seal(Op::End { free_context: true });
        }
        drop(st);
        self.shared.wake.notify_one();
    }
}

/// Handle to one session's trail. Cheap to clone; every clone feeds the same ordered stream.
#[derive(Clone)]
pub struct TrailWriter {
    inner: Arc<Inner>,
}

/// A handle that does not keep the writer alive (see [`TrailWriter::downgrade`]): for those who
/// only look at a session's trail (the control API), so a session that ends without `finish`
/// still leaves its writer abandoned and its trail closed.
#[derive(Clone)]
pub struct WeakTrailWriter {
    inner: std::sync::Weak<Inner>,
}

impl WeakTrailWriter {
    pub fn upgrade(&self) -> Option<TrailWriter> {
        self.inner.upgrade().map(|inner| TrailWriter { inner })
    }
}

impl std::fmt::Debug for TrailWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailWriter")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// See [`TrailWriter::backpressure`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backpressure {
    pub waited: Duration,
    pub waits: u64,
    /// Data frames compressed below the configured level to catch up (`zstd_fast_level`).
    pub fast_frames: u64,
}

/// What the caller knows about the session when its trail is opened.
pub struct TrailSpec {
    pub session_id: String,
    pub protocol: String,
    pub meta: SessionMeta,
    pub start: OffsetDateTime,
}

impl TrailWriter {
    /// Creates `<data_dir>/trails/.../<id>.trail`, writes the header and starts the writer task.
    pub async fn create(
        data_dir: &Path,
        spec: TrailSpec,
        key: Arc<SigningKey>,
        cfg: WriterConfig,
    ) -> Result<TrailWriter> {
        let path = trail_path(data_dir, spec.start, &spec.session_id);
        Self::create_at(path, spec, key, cfg).await
    }

    pub async fn create_at(
        path: PathBuf,
        spec: TrailSpec,
        key: Arc<SigningKey>,
        cfg: WriterConfig,
    ) -> Result<TrailWriter> {
        // Record time 0 is the session start the header names, not this call: a session whose
        // trail opens after its login and the target's handshake has its records timed from
        // when it began, so `start_unix_us + time` is the wall-clock time of a record.
        let behind = Duration::try_from(OffsetDateTime::now_utc() - spec.start).unwrap_or_default();
        let now = Instant::now();
        let start = now.checked_sub(behind).unwrap_or(now);
        let start_unix_us = spec.start.unix_timestamp_nanos() / 1000;
        let header = TrailHeader {
            format_version: FORMAT_VERSION,
            session_id: spec.session_id,
            protocol: spec.protocol,
            start_time: rfc3339(spec.start),
            start_unix_us: start_unix_us as i64,
            meta: spec.meta,
            signing: keys::signing_info(&key.verifying_key()),
            zstd_level: cfg.zstd_level,
            zstd_fast_level: (cfg.zstd_fast_level < cfg.zstd_level).then_some(cfg.zstd_fast_level),
        };
        let header_frame = encode_header(&header)?;
        let h0 = header_hash(&header_frame);
        let header_len = header_frame.len() as u64;
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<File> {
            if let Some(dir) = p.parent() {
                crate::fsutil::private_dir_all(dir)?;
            }
            let mut f = crate::fsutil::private_new_file()
                .open(&p)
                .map_err(|e| RecorderError::io(&p, e))?;
            f.write_all(&header_frame)
                .map_err(|e| RecorderError::io(&p, e))?;
            Ok(f)
        })
        .await
        .map_err(|e| RecorderError::WriterFailed(e.to_string()))??;
        let policy = Policy::new(&cfg);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batch: Batch::default(),
                unflushed_since: None,
                flush_deferred: false,
                batch_cost: 0,
                open: None,
                frame: None,
                ready: Vec::new(),
                queued: 0,
                stats: Stats::default(),
                last_t: 0,
                spare: Vec::new(),
                packed: Vec::new(),
                spare_packed: Vec::new(),
                quiet: false,
                finish: None,
                closed: false,
                abandoned: false,
                task_gone: false,
                sealed: 0,
                written: 0,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            failure: OnceLock::new(),
            waited_us: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            fast_frames: AtomicU64::new(0),
        });
        let sink = Sink {
            file: Arc::new(file),
            path: path.clone(),
            offset: header_len,
            chain_head: h0,
            seq: 0,
            index: Vec::new(),
            cur: None,
            cctx: None,
            wbuf: Vec::new(),
            last_sync: Instant::now(),
            syncing: None,
            key,
            adapt: Adapt::new(&cfg),
            flush_pending: false,
            cfg: cfg.clone(),
            fsync: cfg.fsync,
        };
        let task = Task {
            shared: shared.clone(),
            policy,
            sink: Some(sink),
            inflight: None,
            start,
            start_unix_us: start_unix_us as i64,
            path: path.clone(),
        };
        tokio::spawn(task.run());
        Ok(TrailWriter {
            inner: Arc::new(Inner {
                shared,
                policy,
                start,
                path,
            }),
        })
    }

    pub fn downgrade(&self) -> WeakTrailWriter {
        WeakTrailWriter {
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Microseconds since the session started, the time base of every record.
    pub fn now_us(&self) -> u64 {
        self.inner.start.elapsed().as_micros() as u64
    }

    /// Set once the writer has failed; every later call returns the error too.
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.failure.get().cloned()
    }

    fn failed(&self) -> RecorderError {
        match self.inner.shared.failure.get() {
            Some(m) => RecorderError::WriterFailed(m.clone()),
            None => RecorderError::Closed,
        }
    }

    /// Records one event, waiting while the writer is behind. Lossless: an `Ok` means the record is
    /// queued in order; an `Err` means recording has failed and the caller must decide.
    pub async fn record(&self, channel: u32, event: Event) -> Result<()> {
        let t = self.now_us();
        self.record_at(channel, t, event).await
    }

    /// As [`record`](Self::record), with an explicit timestamp (monotonic; earlier times are clamped).
    pub async fn record_at(&self, channel: u32, t: u64, event: Event) -> Result<()> {
        self.record_rec(channel, t, Rec::of(&event)).await
    }

    /// Records channel data (`Event::Data`) the caller keeps: the relay's path, which passes
    /// the same buffer on to the peer. A payload under 16 KiB is copied into the batch without
    /// touching the buffer's reference count; a larger one is held by reference until it is
    /// compressed.
    pub async fn record_data(&self, channel: u32, dir: Direction, data: &Bytes) -> Result<()> {
        let t = self.now_us();
        self.record_data_at(channel, t, dir, data).await
    }

    /// As [`record_data`](Self::record_data), with an explicit timestamp.
    pub async fn record_data_at(
        &self,
        channel: u32,
        t: u64,
        dir: Direction,
        data: &Bytes,
    ) -> Result<()> {
        self.record_rec(channel, t, Rec::Data { dir, data }).await
    }

    async fn record_rec(&self, channel: u32, t: u64, rec: Rec<'_>) -> Result<()> {
        let cost = rec.cost();
        // Fast path: room in the budget, encode under the lock, no await.
        if self.try_push(channel, t, rec, cost)? {
            return Ok(());
        }
        let shared = &self.inner.shared;
        let waiting = Instant::now();
        shared.waits.fetch_add(1, Ordering::Relaxed);
        let r = loop {
            let notified = shared.room.notified();
            tokio::pin!(notified);
            // Registered before the re-check, so a release in between is not missed.
            notified.as_mut().enable();
            match self.try_push(channel, t, rec, cost) {
                Ok(false) => notified.await,
                r => break r.map(|_| ()),
            }
        };
        let us = waiting.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        shared.waited_us.fetch_add(us, Ordering::Relaxed);
        r
    }

    /// How long records waited for the writer so far (summed over the session's tasks) and how
    /// many did. Nonzero means recording paced the session: the disk or the compressor's CPU
    /// could not keep up with the traffic.
    pub fn backpressure(&self) -> Backpressure {
        let s = &self.inner.shared;
        Backpressure {
            waited: Duration::from_micros(s.waited_us.load(Ordering::Relaxed)),
            waits: s.waits.load(Ordering::Relaxed),
            fast_frames: s.fast_frames.load(Ordering::Relaxed),
        }
    }

    /// Encodes the record if the budget has room (a record larger than the whole budget goes
    /// through alone). Returns `false` when the caller must wait.
    fn try_push(&self, channel: u32, t: u64, rec: Rec<'_>, cost: usize) -> Result<bool> {
        let shared = &self.inner.shared;
        if shared.failure.get().is_some() {
            return Err(self.failed());
        }
        let p = &self.inner.policy;
        let mut st = shared.lock();
        if st.closed || st.task_gone {
            return Err(self.failed());
        }
        if st.queued > 0 && st.queued.saturating_add(cost) > p.budget_max {
            return Ok(false);
        }
        let wake = st.push(p, channel, t, rec, cost)?;
        drop(st);
        if wake {
            shared.wake.notify_one();
        }
        Ok(true)
    }

    /// Puts every record so far in the file (flushed, readable by a live reader) and returns
    /// once it is there, whatever the flush interval: for a reader that wants the trail up to
    /// this moment. Records that arrive meanwhile may or may not be included.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let target = {
            let mut st = shared.lock();
            if st.closed || st.task_gone {
                return Err(self.failed());
            }
            if st.seal(Op::Flush) {
                shared.wake.notify_one();
            }
            st.sealed
        };
        loop {
            let notified = shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a completion in between is not missed.
            notified.as_mut().enable();
            {
                let st = shared.lock();
                if st.written >= target {
                    return Ok(());
                }
                if st.task_gone {
                    return Err(self.failed());
                }
            }
            notified.await;
        }
    }

    /// Records the session end, finishes the last frame, writes the index and seals the trail.
    pub async fn finish(&self, end: SessionEnd) -> Result<TrailSummary> {
        let shared = &self.inner.shared;
        if shared.failure.get().is_some() {
            return Err(self.failed());
        }
        let (reply, rx) = oneshot::channel();
        {
            let mut st = shared.lock();
            if st.closed || st.task_gone {
                return Err(self.failed());
            }
            let t = self.now_us().max(st.last_t);
            let p = self.inner.policy;
            st.push(&p, 0, t, Rec::Event(&Event::End(end)), 0)?;
            let t = st.last_t;
            st.seal(Op::End { free_context: true });
            st.closed = true;
            st.finish = Some((t, reply));
        }
        shared.wake.notify_one();
        rx.await.map_err(|_| self.failed())?
    }
}

/// Ready batches in order, and the packed buffer their small ones are in.
type Work = (Vec<Ready>, Vec<u8>);
type Job = tokio::task::JoinHandle<(Sink, Work, Result<()>)>;

/// The writer task: hands ready batches to the blocking pool (one job in flight while the next
/// batch fills), runs the wall-clock timers, and writes the end frame and seal.
struct Task {
    shared: Arc<Shared>,
    policy: Policy,
    /// The sink when no compression job holds it.
    sink: Option<Sink>,
    inflight: Option<Job>,
    start: Instant,
    start_unix_us: i64,
    path: PathBuf,
}

enum Next {
    Work(Work),
    Finish(u64, oneshot::Sender<Result<TrailSummary>>),
    Abandoned,
    Wait(Option<u64>),
}

impl Task {
    async fn run(mut self) {
        let res = self.run_inner().await;
        if let Err(e) = &res {
            tracing::error!(path = %self.path.display(), error = %e, "trail writer failed");
            // Set before the task is marked gone, so whoever sees it gone reports this error.
            let _ = self.shared.failure.set(e.to_string());
        }
        let pending_finish = {
            let mut st = self.shared.lock();
            st.task_gone = true;
            st.finish.take()
        };
        if let (Err(e), Some((_, reply))) = (res, pending_finish) {
            let _ = reply.send(Err(RecorderError::WriterFailed(e.to_string())));
        }
        // Sessions waiting for room see the failure (or the closed trail) and return.
        self.shared.room.notify_waiters();
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn next(&mut self) -> Next {
        let now = self.now_us();
        let mut st = self.shared.lock();
        st.time_policy(&self.policy, now, false);
        if st.flush_deferred {
            st.seal(Op::Flush);
        }
        if !st.ready.is_empty() {
            let spare = std::mem::take(&mut st.spare_packed);
            let packed = std::mem::replace(&mut st.packed, spare);
            return Next::Work((std::mem::take(&mut st.ready), packed));
        }
        if let Some((t, reply)) = st.finish.take() {
            return Next::Finish(t, reply);
        }
        if st.abandoned {
            return Next::Abandoned;
        }
        Next::Wait(st.next_deadline(&self.policy))
    }

    async fn run_inner(&mut self) -> Result<()> {
        loop {
            match self.next() {
                Next::Work(work) => {
                    let mut sink = self.take_sink().await?;
                    let shared = Arc::clone(&self.shared);
                    self.inflight = Some(tokio::task::spawn_blocking(move || {
                        let mut work = work;
                        let r = sink.compress_all(&mut work, &shared);
                        (sink, work, r)
                    }));
                }
                Next::Finish(t, reply) => {
                    let r = self.finish(t).await;
                    let failed = r.as_ref().err().map(|e| e.to_string());
                    let _ = reply.send(r);
                    return match failed {
                        Some(e) => Err(RecorderError::WriterFailed(e)),
                        None => Ok(()),
                    };
                }
                Next::Abandoned => {
                    self.take_sink().await?;
                    return Ok(());
                }
                Next::Wait(deadline) => {
                    // A deadline beyond what an Instant holds is no deadline.
                    let sleep = deadline
                        .and_then(|d| self.start.checked_add(Duration::from_micros(d)))
                        .map(|at| tokio::time::sleep_until(at.into()));
                    tokio::select! {
                        done = async { self.inflight.as_mut().expect("guarded").await },
                            if self.inflight.is_some() =>
                        {
                            self.inflight = None;
                            self.completed(done)?;
                        }
                        _ = self.shared.wake.notified() => {}
                        _ = async {
                            match sleep {
                                Some(s) => s.await,
                                None => std::future::pending().await,
                            }
                        } => {}
                    }
                }
            }
        }
    }

    /// A compression job ended: release its budget, keep its buffers, surface its error.
    fn completed(
        &mut self,
        done: std::result::Result<(Sink, Work, Result<()>), tokio::task::JoinError>,
    ) -> Result<()> {
        let (sink, (mut items, mut packed), r) =
            done.map_err(|e| RecorderError::WriterFailed(format!("compression task: {e}")))?;
        // Referenced payloads are released here, not under the sessions' lock.
        for it in &mut items {
            if let Body::Batch(b) = &mut it.body {
                b.clear();
            }
        }
        {
            let mut st = self.shared.lock();
            // A session that went quiet holds no buffers, even if its idle close was sealed
            // while this job ran (a new record since then opens a frame: active again).
            let active = st.frame.is_some() || !st.quiet;
            if r.is_ok() {
                // A failed job's batches never count as written: `flush` then sees the failure.
                st.written += items.len() as u64;
            }
            for it in items {
                st.queued = st.queued.saturating_sub(it.cost);
                match it.body {
                    Body::Batch(b) if active && st.spare.len() < self.policy.spares() => {
                        st.spare.push(b)
                    }
                    _ => {}
                }
            }
            // Caught up: keep the two spares a steady session needs, not the backlog's.
            if st.ready.is_empty() {
                st.spare.truncate(2);
            }
            // A replay's backlog may have grown it to megabytes: that is not kept.
            if active && packed.capacity() <= PACKED_KEEP {
                packed.clear();
                st.spare_packed = packed;
            }
        }
        self.shared.room.notify_waiters();
        self.sink = Some(sink);
        r
    }

    /// The sink, once the compression job that holds it (if any) is done.
    async fn take_sink(&mut self) -> Result<Sink> {
        if let Some(job) = self.inflight.take() {
            let done = job.await;
            self.completed(done)?;
        }
        self.sink.take().ok_or(RecorderError::Closed)
    }

    async fn finish(&mut self, t: u64) -> Result<TrailSummary> {
        let mut sink = self.take_sink().await?;
        let stats = std::mem::take(&mut self.shared.lock().stats);
        let end_unix_us = self.start_unix_us + t as i64;
        let end_time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(end_unix_us) * 1000)
            .map(rfc3339)
            .unwrap_or_default();
        let summary = EndSummary {
            end_time,
            end_unix_us,
            duration_us: t,
            end: stats.end.clone().unwrap_or_default(),
            records: stats.records,
            frames: sink.seq,
            bytes_client_to_server: stats.bytes_client_to_server,
            bytes_server_to_client: stats.bytes_server_to_client,
            channels: stats.channels.into_values().collect(),
            index: std::mem::take(&mut sink.index),
        };
        let end_frame = encode_end(&summary)?;
        let head = sink.chain_head;
        let (file_bytes, summary) =
            tokio::task::spawn_blocking(move || -> Result<(u64, EndSummary)> {
                let end_hash = sha256(&[&end_frame]);
                let signature = sink.key.sign(&Seal::message(&head, &end_hash)).to_bytes();
                let seal = Seal {
                    chain_head: head,
                    end_hash,
                    signature,
                }
                .encode();
                let mut both = end_frame;
                both.extend_from_slice(&seal);
                sink.write(&both);
                sink.commit()?;
                sink.wait_sync()?;
                if sink.fsync {
                    sink.file
                        .sync_all()
                        .map_err(|e| RecorderError::io(&sink.path, e))?;
                }
                Ok((sink.offset, summary))
            })
            .await
            .map_err(|e| RecorderError::WriterFailed(e.to_string()))??;
        Ok(TrailSummary {
            path: self.path.clone(),
            file_bytes,
            end: summary,
            chain_head: head,
        })
    }
}

/// One batch as the compressor takes it.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Already encoded (small batches).
    Packed(&'a [u8]),
    Batch(&'a Batch),
}

/// The part of the writer that runs on the blocking pool.
struct Sink {
    /// Shared with the background fdatasync, which needs no descriptor of its own.
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    /// Head of the hash chain, sequence number and seek index of finished frames.
    chain_head: [u8; 32],
    seq: u64,
    index: Vec<IndexEntry>,
    /// The frame being compressed: where it starts, its size so far, its running chain hash.
    cur: Option<(u64, u64, ChainHasher)>,
    cctx: Option<CCtx<'static>>,
    /// Compressed bytes not yet written.
    wbuf: Vec<u8>,
    last_sync: Instant,
    /// Result of the fdatasync running in the background, if one is.
    syncing: Option<std::sync::mpsc::Receiver<std::io::Result<()>>>,
    key: Arc<SigningKey>,
    adapt: Adapt,
    /// A batch asked for a flush that has not been done yet: it is done right before the next
    /// write to the file (see `flush_if_pending`).
    flush_pending: bool,
    cfg: WriterConfig,
    fsync: bool,
}

/// A compressor that has fallen behind its session trades trail size for speed a frame at a
/// time, as `zstd --adapt` does, rather than slow the session down: recording stays lossless
/// and the trail only grows while the gateway is short of CPU. A disk that cannot keep up is
/// not helped by bigger output, so time spent writing holds the level where it is.
struct Adapt {
    /// Level of the frame being compressed (or the next one).
    level: i32,
    top: i32,
    floor: i32,
    /// Frames in a row without a session waiting.
    calm: u32,
    /// `Shared::waits` when the current frame started.
    seen: u64,
    since: Instant,
    /// Time the compression jobs of the current frame took, and the part of it spent writing
    /// and waiting for syncs (the rest is compression).
    active: Duration,
    io: Duration,
    /// The frame being compressed has taken input.
    open: bool,
}

/// Frames in a row without a wait before the writer steps one level back up. A frame is at most
/// 1 MiB, so a bulk transfer climbs back within milliseconds of the CPU freeing up.
const CALM_FRAMES: u32 = 4;

/// A frame this long without a wait puts the writer straight back at `zstd_level`: the session
/// is no longer pushing the compressor (an interactive session after a burst of output).
const CALM_TIME: Duration = Duration::from_secs(1);

impl Adapt {
    fn new(cfg: &WriterConfig) -> Self {
        Adapt {
            level: cfg.zstd_level,
            top: cfg.zstd_level,
            floor: cfg.zstd_fast_level.min(cfg.zstd_level),
            calm: 0,
            seen: 0,
            since: Instant::now(),
            active: Duration::ZERO,
            io: Duration::ZERO,
            open: false,
        }
    }

    /// The next level up or down from `level` within `floor..=top`; zstd's 0 means "default",
    /// so it is skipped.
    fn step(&self, level: i32, down: bool) -> i32 {
        let next = match (down, level) {
            (true, 1) => -1,
            (false, -1) => 1,
            (true, l) => l - 1,
            (false, l) => l + 1,
        };
        next.clamp(self.floor, self.top)
    }

    /// Picks the level of a frame starting `now`, from what happened since the last one started.
    fn frame_start(&mut self, waits: u64, now: Instant) -> i32 {
        let waited = waits != self.seen;
        if waited && self.io * 2 < self.active {
            self.level = self.step(self.level, true);
            self.calm = 0;
        } else if waited {
            // The disk, not the CPU, held the session up: bigger output would not help.
            self.calm = 0;
        } else if now.saturating_duration_since(self.since) >= CALM_TIME {
            self.level = self.top;
            self.calm = 0;
        } else {
            self.calm += 1;
            if self.calm >= CALM_FRAMES {
                self.level = self.step(self.level, false);
                self.calm = 0;
            }
        }
        self.seen = waits;
        self.since = now;
        self.active = Duration::ZERO;
        self.io = Duration::ZERO;
        self.open = true;
        self.level
    }

    /// The open frame ended (`idle`: its session went quiet, so the compressor had caught up).
    /// Returns whether it was written below `zstd_level`.
    fn frame_end(&mut self, idle: bool) -> bool {
        self.open = false;
        let fast = self.level < self.top;
        if idle {
            self.level = self.top;
            self.calm = 0;
        }
        fast
    }
}

fn zerr(code: usize) -> RecorderError {
    RecorderError::Zstd(zstd_safe::get_error_name(code).to_string())
}

/// Streams `input` into the compressor; with a flush or end directive, until it is all out.
fn feed(
    cctx: &mut CCtx<'static>,
    out: &mut Vec<u8>,
    input: &[u8],
    directive: ZSTD_EndDirective,
) -> Result<()> {
    let mut ib = InBuffer::around(input);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let pos = out.len();
        let mut ob = OutBuffer::around_pos(out, pos);
        let remaining = cctx
            .compress_stream2(&mut ob, &mut ib, directive)
            .map_err(zerr)?;
        let consumed = ib.pos() == input.len();
        let done = match directive {
            ZSTD_EndDirective::ZSTD_e_continue => consumed,
            _ => consumed && remaining == 0,
        };
        if done {
            return Ok(());
        }
    }
}

impl Sink {
    /// Appends to the write buffer; [`commit`](Self::commit) puts it in the file (one write per
    /// job, however many batches it holds).
    fn write(&mut self, b: &[u8]) {
        self.wbuf.extend_from_slice(b);
        self.offset += b.len() as u64;
    }

    /// Writes out the buffer and starts an fdatasync of it on its own blocking thread, so the
    /// next frames compress while the disk catches up (a synchronous sync per frame cost bulk
    /// sessions about a tenth of their throughput). At most one sync is outstanding: a new one
    /// first waits for, and reports the error of, the previous one.
    fn sync(&mut self) -> Result<()> {
        self.commit()?;
        self.wait_sync()?;
        self.last_sync = Instant::now();
        let file = Arc::clone(&self.file);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let upto = self.offset;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || {
                    let r = file.sync_data();
                    if r.is_ok() {
                        drop_cached(&file, upto);
                    }
                    let _ = tx.send(r);
                });
                self.syncing = Some(rx);
                Ok(())
            }
            // Outside a runtime: sync in place.
            Err(_) => file
                .sync_data()
                .map_err(|e| RecorderError::io(&self.path, e)),
        }
    }

    /// Waits for the outstanding fdatasync, if any.
    fn wait_sync(&mut self) -> Result<()> {
        let Some(rx) = self.syncing.take() else {
            return Ok(());
        };
        let t = Instant::now();
        let r = rx.recv();
        self.adapt.io += t.elapsed();
        match r {
            Ok(r) => r.map_err(|e| RecorderError::io(&self.path, e)),
            Err(_) => Err(RecorderError::WriterFailed("fsync task lost".into())),
        }
    }

    fn commit(&mut self) -> Result<()> {
        let t = Instant::now();
        let r = (&*self.file)
            .write_all(&self.wbuf)
            .map_err(|e| RecorderError::io(&self.path, e));
        self.adapt.io += t.elapsed();
        self.wbuf.clear();
        if self.cctx.is_none() {
            // No frame open (idle session): hold no buffers until the next record.
            self.wbuf = Vec::new();
        } else if self.wbuf.capacity() > 4 << 20 {
            self.wbuf.shrink_to(1 << 20);
        }
        r
    }

    /// Compresses a job's batches in order and writes them out, giving their budget back as it
    /// goes (what is not given back here, `Task::completed` gives back).
    fn compress_all(&mut self, (items, packed): &mut Work, shared: &Shared) -> Result<()> {
        let mut at = 0;
        // Budget of the batches compressed but not yet given back.
        let mut done = 0;
        // When the last item ended: each item's time (compression and writes) counts once.
        let mut last = Instant::now();
        for it in items.iter_mut() {
            let input = match &it.body {
                Body::Packed(n) => {
                    let b = packed.get(at..at + n).ok_or_else(|| {
                        RecorderError::WriterFailed("packed batches out of step".into())
                    })?;
                    at += n;
                    Input::Packed(b)
                }
                Body::Batch(b) => Input::Batch(b),
            };
            if !self.adapt.open {
                let level = self
                    .adapt
                    .frame_start(shared.waits.load(Ordering::Relaxed), last);
                if let Some(c) = &mut self.cctx {
                    // Between frames: the context is back in its init stage.
                    c.set_parameter(CParameter::CompressionLevel(level))
                        .map_err(zerr)?;
                }
            }
            self.compress(input, it.op, it.meta)?;
            if let Op::End { free_context } = it.op
                && self.adapt.frame_end(free_context)
            {
                shared.fast_frames.fetch_add(1, Ordering::Relaxed);
            }
            done += std::mem::take(&mut it.cost);
            if done >= RELEASE_STEP {
                // In the file before the budget is given back.
                self.flush_if_pending()?;
                self.commit()?;
                shared.release(std::mem::take(&mut done));
            }
            let now = Instant::now();
            self.adapt.active += now - last;
            last = now;
        }
        if at != packed.len() {
            return Err(RecorderError::WriterFailed(
                "packed batches out of step".into(),
            ));
        }
        self.flush_if_pending()?;
        self.commit()?;
        self.adapt.active += last.elapsed();
        shared.release(done);
        Ok(())
    }

    /// Group commit: a zstd flush only matters at a write to the file (nothing in between is
    /// seen by a reader or survives a crash), so the flushes of a job's batches are done once,
    /// before its next write. A live session's job holds one batch, flushed as before; a writer
    /// that fell behind (a busy CPU, a replay) ends one small zstd block per write instead of
    /// one per flushed second, which is what made catching up costly.
    fn flush_if_pending(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.flush_pending) {
            return Ok(());
        }
        let Some(cctx) = &mut self.cctx else {
            return Ok(());
        };
        let start = self.wbuf.len();
        feed(cctx, &mut self.wbuf, &[], ZSTD_EndDirective::ZSTD_e_flush)?;
        self.appended(start);
        if self.fsync && self.last_sync.elapsed() >= self.cfg.fsync_max_interval {
            self.sync()?;
        }
        Ok(())
    }

    /// Accounts compressed output appended to the write buffer from `start` to the open frame.
    fn appended(&mut self, start: usize) {
        let produced = (self.wbuf.len() - start) as u64;
        if produced > 0 {
            let (at, head) = (self.offset, self.chain_head);
            let cur = self
                .cur
                .get_or_insert_with(|| (at, 0, ChainHasher::new(&head)));
            cur.2.update(&self.wbuf[start..]);
            cur.1 += produced;
            self.offset += produced;
        }
    }

    /// Compresses one batch into the open frame; on `End`, finishes it and appends its chain entry.
    fn compress(&mut self, input: Input<'_>, op: Op, meta: Option<FrameMeta>) -> Result<()> {
        if self.cctx.is_none() {
            self.cctx = Some(new_context(&self.cfg, self.adapt.level)?);
        }
        let (Some(cctx), out) = (&mut self.cctx, &mut self.wbuf) else {
            return Err(RecorderError::Closed);
        };
        let start = out.len();
        let len = match input {
            Input::Packed(b) => b.len(),
            Input::Batch(b) => b.encoded_len(),
        };
        out.reserve(zstd_safe::compress_bound(len) + 1024);
        // A flush is done before the job's next write (group commit); an end flushes anyway.
        self.flush_pending = match op {
            Op::Continue => self.flush_pending,
            Op::Flush => true,
            Op::End { .. } => false,
        };
        let op = if op == Op::Flush { Op::Continue } else { op };
        let directive = match op {
            Op::Continue | Op::Flush => ZSTD_EndDirective::ZSTD_e_continue,
            Op::End { .. } => ZSTD_EndDirective::ZSTD_e_end,
        };
        if len == 0 {
            if op != Op::Continue {
                feed(cctx, out, &[], directive)?;
            }
        } else if let Input::Packed(b) = input {
            // Small batches arrive encoded: one compressor call instead of four; each call has a
            // fixed cost comparable to compressing a few hundred bytes.
            feed(cctx, out, b, directive)?;
        } else if let Input::Batch(batch) = input {
            let continue_ = ZSTD_EndDirective::ZSTD_e_continue;
            feed(cctx, out, &batch.prefix(), continue_)?;
            feed(cctx, out, &batch.heads, continue_)?;
            feed(cctx, out, &batch.times, continue_)?;
            for part in batch.payload_parts() {
                feed(cctx, out, part, continue_)?;
            }
            if op != Op::Continue {
                feed(cctx, out, &[], directive)?;
            }
        }
        self.appended(start);
        let Op::End { free_context } = op else {
            return Ok(());
        };
        if free_context {
            self.cctx = None;
        }
        let (Some((offset, compressed, hasher)), Some(meta)) = (self.cur.take(), meta) else {
            return Ok(());
        };
        let mut entry = ChainEntry {
            seq: self.seq,
            data_offset: offset,
            data_len: u32::try_from(compressed)
                .map_err(|_| RecorderError::WriterFailed("frame over 4 GiB".into()))?,
            raw_len: meta.raw_len as u32,
            records: meta.records,
            first_time_us: meta.first_t,
            last_time_us: meta.last_t,
            hash: [0; 32],
            signature: [0; 64],
        };
        entry.hash = hasher.finish(&entry.hashed_prefix());
        entry.signature = self.key.sign(&entry.signed_message()).to_bytes();
        self.write(&entry.encode());
        // A frame's end is synced unless the last sync is under a second old (bulk sessions end a
        // frame per MiB; the next sync covers them, within the flush interval's promise).
        if self.fsync && self.last_sync.elapsed() >= self.cfg.fsync_min_interval {
            self.sync()?;
        }
        self.chain_head = entry.hash;
        self.seq += 1;
        self.index.push(IndexEntry {
            offset,
            time_us: meta.first_t,
            first_record: meta.first_record,
        });
        Ok(())
    }
}

/// Drops a trail's synced pages from the page cache: they are cold once on disk (auditors read
/// trails later, live followers read the unsynced tail), and a gateway recording bulk transfers
/// would otherwise fill memory with them and pay for their reclaim (measured: gateway CPU per
/// MiB grew by a quarter over five 512 MiB transfers).
fn drop_cached(file: &File, upto: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(upto) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor this function borrows; advisory, errors ignored.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED);
    }
}

fn new_context(cfg: &WriterConfig, level: i32) -> Result<CCtx<'static>> {
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zerr)?;
    c.set_parameter(CParameter::WindowLog(cfg.window_log))
        .map_err(zerr)?;
    // Higher levels want bigger tables; only shrink them for the fast levels.
    if cfg.zstd_level <= 3 {
        c.set_parameter(CParameter::HashLog(cfg.hash_log))
            .map_err(zerr)?;
        c.set_parameter(CParameter::ChainLog(cfg.chain_log))
            .map_err(zerr)?;
    }
    c.set_parameter(CParameter::ChecksumFlag(true))
        .map_err(zerr)?;
    Ok(c)
}

/// The span of compression levels a trail may be written with: zstd's 1..=22, and -1..=-7,
/// zstd's `--fast=N` (faster and larger; for gateways whose CPU, not disk, limits bulk sessions).
/// Further than -7 the output approaches the raw bytes for little more speed. 0 is not a level
/// (zstd reads it as "default"): see [`is_zstd_level`].
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -7..=22;

/// Whether `level` is one a trail may be written with.
pub fn is_zstd_level(level: i32) -> bool {
    level != 0 && ZSTD_LEVELS.contains(&level)
}

/// Wall-clock microseconds, for callers that build headers themselves.
pub fn unix_us_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn open(dir: &Path, id: &str, cfg: WriterConfig) -> TrailWriter {
        let spec = TrailSpec {
            session_id: id.into(),
            protocol: "ssh".into(),
            meta: SessionMeta::default(),
            start: OffsetDateTime::now_utc(),
        };
        let key = Arc::new(SigningKey::from_bytes(&[3u8; 32]));
        TrailWriter::create(dir, spec, key, cfg).await.unwrap()
    }

    /// `n` bytes of `b` from the server.
    /// Waits (at most 30 s) until `done` holds of the writer's state. Every finished
    /// compression job signals `room`, so this waits for the writer's progress, not for time.
    async fn until(w: &TrailWriter, what: &str, done: impl Fn(&State) -> bool) {
        let shared = &w.inner.shared;
        let reached = async {
            loop {
                let notified = shared.room.notified();
                tokio::pin!(notified);
                // Registered before the check, so a job finishing in between is not missed.
                notified.as_mut().enable();
                if done(&shared.lock()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reached)
            .await
            .unwrap_or_else(|_| panic!("{what}: not after 30 s"));
    }

    fn output(b: u8, n: usize) -> Event {
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from(vec![b; n]),
        }
    }

    /// The zstd context is the bulk of an open trail's memory: keep it bounded and known.
    #[test]
    fn zstd_context_per_open_frame_stays_small() {
        let cfg = WriterConfig::default();
        let mut c = new_context(&cfg, cfg.zstd_level).unwrap();
        let input: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(input.len()));
        let mut ib = InBuffer::around(&input);
        let mut ob = OutBuffer::around(&mut out);
        c.compress_stream2(&mut ob, &mut ib, ZSTD_EndDirective::ZSTD_e_flush)
            .unwrap();
        let size = c.sizeof();
        println!(
            "zstd context (level {}, window_log {}, hash_log {}, chain_log {}): {size} bytes",
            cfg.zstd_level, cfg.window_log, cfg.hash_log, cfg.chain_log
        );
        assert!(size < 1100 * 1024, "context is {size} bytes");
    }

    /// Record times count from the session start the header names, even when the trail is
    /// opened later (after the login and the target's handshake).
    #[tokio::test]
    async fn record_time_zero_is_the_session_start() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TrailSpec {
            session_id: "late".into(),
            protocol: "vnc".into(),
            meta: SessionMeta::default(),
            start: OffsetDateTime::now_utc() - Duration::from_millis(1500),
        };
        let key = Arc::new(SigningKey::from_bytes(&[3u8; 32]));
        let cfg = WriterConfig {
            fsync: false,
            ..WriterConfig::default()
        };
        let w = TrailWriter::create(dir.path(), spec, key, cfg)
            .await
            .unwrap();
        let t = w.now_us();
        assert!((1_500_000..1_600_000).contains(&t), "{t}");
        w.record(1, output(b'x', 1)).await.unwrap();
        let sum = w.finish(SessionEnd::default()).await.unwrap();
        let mut r = crate::reader::TrailReader::open(&sum.path).unwrap();
        let mut first = None;
        r.for_each_record(|rec| {
            first.get_or_insert(rec.time_us);
            Ok(())
        })
        .unwrap();
        assert!(first.unwrap() >= 1_500_000);
        // A start in the future (a clock step) counts from now.
        let spec = TrailSpec {
            session_id: "future".into(),
            protocol: "ssh".into(),
            meta: SessionMeta::default(),
            start: OffsetDateTime::now_utc() + Duration::from_secs(60),
        };
        let key = Arc::new(SigningKey::from_bytes(&[3u8; 32]));
        let w = TrailWriter::create(dir.path(), spec, key, WriterConfig::default())
            .await
            .unwrap();
        assert!(w.now_us() < 1_000_000);
        w.finish(SessionEnd::default()).await.unwrap();
    }

    /// Once a session goes quiet its frame is closed and the trail holds no buffers: not the
    /// batch's columns, not spare batches, not the packed buffer a backlog of flushes grew.
    #[tokio::test]
    async fn a_quiet_session_keeps_no_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            flush_interval: Duration::from_millis(5),
            frame_idle_close: Duration::from_millis(300),
            fsync: false,
            ..WriterConfig::default()
        };
        let w = open(dir.path(), "quiet", cfg).await;
        let data = |n: usize| output(b'x', n);
        // Small batches flushed in record time (packed), then large ones (whole batches).
        for i in 0..200u64 {
            w.record_at(1, i * 1_000, data(3)).await.unwrap();
        }
        let t = w.now_us().max(200 * 1_000);
        for i in 0..8 {
            w.record_at(1, t + i, data(100 * 1024)).await.unwrap();
        }
        let held = |st: &State| {
            st.batch.retained() + st.spare.len() + st.packed.capacity() + st.spare_packed.capacity()
        };
        assert!(
            held(&w.inner.shared.lock()) > 0,
            "buffers in use while active"
        );
        // The writer task closes the frame 300 ms (wall clock) after the last record's time.
        until(&w, "frame closed", |st| {
            st.frame.is_none() && st.ready.is_empty() && st.queued == 0
        })
        .await;
        assert_eq!(
            held(&w.inner.shared.lock()),
            0,
            "a quiet session holds buffers"
        );
        let sum = w.finish(SessionEnd::default()).await.unwrap();
        assert!(sum.end.frames >= 1);
    }

    /// Records big enough to fill a compression chunk on their own are handed to the
    /// compressor at once, without a flush; when the session then goes quiet, the writer's flush
    /// timer must still bring them to the file (they once waited for the frame's idle close, a
    /// minute later).
    #[tokio::test]
    async fn a_full_chunk_followed_by_silence_is_flushed_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            flush_interval: Duration::from_millis(50),
            chunk_bytes: 4096,
            frame_idle_close: Duration::from_secs(600),
            fsync: false,
            ..WriterConfig::default()
        };
        let w = open(dir.path(), "chunk", cfg).await;
        // 5,000 bytes: over the chunk (sealed on its own), under the size shared by reference.
        let last: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for i in 0..3u8 {
            let data = if i == 2 { last.clone() } else { vec![i; 5000] };
            w.record_data(1, Direction::ServerToClient, &Bytes::from(data))
                .await
                .unwrap();
        }
        // The writer task flushes 50 ms (wall clock) after the first unflushed record.
        until(&w, "the full chunk flushed", |st| {
            st.unflushed_since.is_none() && st.written == st.sealed
        })
        .await;
        let mut r = crate::reader::TrailReader::open(w.path()).unwrap();
        let mut datas = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            if let crate::reader::Item::Partial { records, .. }
            | crate::reader::Item::Frame { records, .. } = item
            {
                datas.extend(records.into_iter().filter_map(|r| match r.event {
                    Event::Data { data, .. } => Some(data),
                    _ => None,
                }));
            }
        }
        assert_eq!(datas.last().map(|d| &d[..]), Some(&last[..]));
        w.finish(SessionEnd::default()).await.unwrap();
    }

    /// A session far ahead of its compressor keeps emptied batches for reuse (at most what its
    /// budget holds in flight); once the compressor has caught up it keeps two.
    #[tokio::test(flavor = "current_thread")]
    async fn spare_batches_shrink_once_the_compressor_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            fsync: false,
            ..WriterConfig::default()
        };
        let w = open(dir.path(), "spares", cfg).await;
        // 24 MiB of 1 KiB records in record time 0: the budget (4 MiB) fills with 256 KiB
        // batches before the writer task runs, several times over.
        let mut most = 0;
        for _ in 0..24 * 1024 {
            w.record_at(1, 0, output(b'y', 1024)).await.unwrap();
            most = most.max(w.inner.shared.lock().spare.len());
        }
        // How many it keeps while behind depends on how the threads interleave; never more
        // than the budget holds in flight.
        assert!(most <= w.inner.policy.spares(), "{most} spares");
        w.flush().await.unwrap();
        assert!(
            w.inner.shared.lock().spare.len() <= 2,
            "spares kept once caught up"
        );
        w.finish(SessionEnd::default()).await.unwrap();
    }

    /// A session that outruns its writer waits (nothing is dropped), and says how long.
    #[tokio::test]
    async fn waiting_for_the_writer_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            fsync: false,
            queue_bytes: 64 * 1024,
            chunk_bytes: 16 * 1024,
            ..WriterConfig::default()
        };
        let w = open(dir.path(), "busy", cfg).await;
        let data = |n: usize| output(b'y', n);
        w.record(1, data(10)).await.unwrap();
        assert_eq!(
            w.backpressure(),
            Backpressure::default(),
            "room left: no wait"
        );
        // 4 MiB through a 64 KiB budget.
        for _ in 0..128 {
            w.record(1, data(32 * 1024)).await.unwrap();
        }
        let bp = w.backpressure();
        assert!(bp.waits > 0 && bp.waits <= 128, "{bp:?}");
        assert!(bp.waited > Duration::ZERO, "{bp:?}");
        let sum = w.finish(SessionEnd::default()).await.unwrap();
        assert_eq!(sum.end.bytes_server_to_client, 10 + 128 * 32 * 1024);
    }

    #[test]
    fn adapting_steps_through_levels_but_zero_and_stays_in_range() {
        let a = Adapt::new(&WriterConfig::default());
        let mut down = vec![a.level];
        for _ in 0..8 {
            down.push(a.step(*down.last().unwrap(), true));
        }
        assert_eq!(down, [3, 2, 1, -1, -2, -3, -3, -3, -3]);
        let mut up = vec![-3];
        for _ in 0..7 {
            up.push(a.step(*up.last().unwrap(), false));
        }
        assert_eq!(up, [-3, -2, -1, 1, 2, 3, 3, 3]);
        let strict = Adapt::new(&WriterConfig {
            zstd_fast_level: 9,
            ..WriterConfig::default()
        });
        assert_eq!((strict.step(3, true), strict.step(3, false)), (3, 3));
    }

    /// The ladder follows the session's waits when compression (not writing) took the time,
    /// climbs back after calm frames, and is back at the top after a calm second or an idle close.
    #[test]
    fn adapting_follows_waits_the_cpu_causes() {
        let mut a = Adapt::new(&WriterConfig::default());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let busy = |a: &mut Adapt, active: u64, io: u64| {
            a.active = Duration::from_millis(active);
            a.io = Duration::from_millis(io);
        };
        assert_eq!(a.frame_start(0, at(0)), 3, "nothing happened yet");
        // Waits while the job compressed: a level faster per frame.
        busy(&mut a, 8, 1);
        assert_eq!(a.frame_start(1, at(10)), 2);
        assert!(
            a.frame_end(false),
            "a frame below zstd_level is a fast frame"
        );
        busy(&mut a, 8, 1);
        assert_eq!(a.frame_start(9, at(20)), 1);
        // Waits while the job was mostly writing (a slow disk): the level holds.
        busy(&mut a, 8, 5);
        assert_eq!(a.frame_start(10, at(30)), 1);
        // Four calm frames: one level up.
        for ms in [40, 50, 60] {
            assert_eq!(a.frame_start(10, at(ms)), 1);
        }
        assert_eq!(a.frame_start(10, at(70)), 2);
        // A calm frame of a second: straight back to the top.
        busy(&mut a, 8, 1);
        assert_eq!(a.frame_start(11, at(80)), 1);
        assert_eq!(a.frame_start(11, at(1_080)), 3);
        assert!(!a.frame_end(false));
        // An idle close: back to the top for the next frame.
        busy(&mut a, 8, 1);
        assert_eq!(a.frame_start(12, at(1_090)), 2);
        assert!(a.frame_end(true));
        assert_eq!(a.frame_start(12, at(1_100)), 3);
    }

    /// Log-like text: compressible, and differently so at each level.
    fn log_lines(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 100);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!(
                "2026-12-02T05:{:02}:{:02} host{} sshd[{}]: accepted key for user{} port {}\n",
                x % 60,
                (x >> 8) % 60,
                (x >> 16) % 7,
                (x >> 20) % 40_000,
                (x >> 36) % 50,
                (x >> 44) % 65_536
            );
            v.extend_from_slice(line.as_bytes());
        }
        v.truncate(n);
        v
    }

    /// A session held up by a compressor with too little CPU gets faster frames rather than a
    /// slower session (unless configured not to); every byte is in the trail either way, and the
    /// trail says which levels its frames may have.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compressor_short_of_cpu_steps_down_its_level() {
        let dir = tempfile::tempdir().unwrap();
        let text = Bytes::from(log_lines(8 << 20));
        let mut sizes = Vec::new();
        for (id, fast) in [("adaptive", -3), ("strict", 3)] {
            let cfg = WriterConfig {
                fsync: false,
                queue_bytes: 64 * 1024,
                chunk_bytes: 32 * 1024,
                frame_max_raw: 64 * 1024,
                zstd_fast_level: fast,
                ..WriterConfig::default()
            };
            let w = open(dir.path(), id, cfg).await;
            for part in text.chunks(32 * 1024) {
                let data = text.slice_ref(part);
                let event = Event::Data {
                    dir: Direction::ServerToClient,
                    data,
                };
                w.record(1, event).await.unwrap();
            }
            let bp = w.backpressure();
            assert!(
                bp.waits > 0,
                "{id}: 8 MiB through a 64 KiB budget waits: {bp:?}"
            );
            if fast < 3 {
                assert!(bp.fast_frames > 0, "{id}: {bp:?}");
            } else {
                assert_eq!(bp.fast_frames, 0, "{id}: {bp:?}");
            }
            let sum = w.finish(SessionEnd::default()).await.unwrap();
            let r = crate::reader::TrailReader::open(&sum.path).unwrap();
            let want = (fast < 3).then_some(fast);
            assert_eq!(r.header.zstd_fast_level, want, "{id}");
            let mut out = Vec::new();
            let integrity = crate::export::cat(&sum.path, 1, None, &mut out).unwrap();
            assert_eq!(integrity, crate::reader::Integrity::Sealed, "{id}");
            assert!(out == text[..], "{id}: trail content differs");
            sizes.push(sum.file_bytes);
        }
        // The faster frames cost size: proof they were written at another level.
        assert!(
            sizes[0] > sizes[1],
            "adaptive {} vs strict {}",
            sizes[0],
            sizes[1]
        );
    }
}
