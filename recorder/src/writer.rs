//! `TrailWriter`: the lossless, bounded, asynchronous trail writer.
//!
//! Protocol code calls [`TrailWriter::record`], which waits for room in a per-trail byte budget
//! (bounded queue: when the disk cannot keep up, the session slows down; nothing is dropped). One
//! writer task per trail encodes records; compression, hashing, signing and disk writes run on
//! tokio's blocking pool, never on a connection task or a runtime worker.
//!
//! Memory per open trail: the byte budget (default 256 KiB, only while data is in flight), the raw
//! chunk buffer (up to `chunk_bytes`), and a zstd context while a frame is open (about 1 MiB at level 3
//! with `window_log` 17 and 14-bit tables; see docs/performance.md). A frame idle for `frame_idle_close` is finished
//! and its context freed, so idle sessions cost a few KiB.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
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
    /// fdatasync at every finished frame and at the seal.
    pub fsync: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            flush_interval: Duration::from_secs(1),
            zstd_level: 3,
            frame_max_raw: 1024 * 1024,
            frame_max_age: Duration::from_secs(60),
            frame_idle_close: Duration::from_secs(15),
            queue_bytes: 1024 * 1024,
            chunk_bytes: 256 * 1024,
            window_log: 17,
            hash_log: 14,
            chain_log: 14,
            coalesce_us: 2_000,
            fsync: true,
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

const RECORD_OVERHEAD: usize = 64;
const COALESCE_MAX: usize = 16 * 1024;

enum Cmd {
    Rec {
        channel: u32,
        t: u64,
        event: Event,
        _permit: OwnedSemaphorePermit,
    },
    Finish {
        end: SessionEnd,
        reply: oneshot::Sender<Result<TrailSummary>>,
    },
}

struct Inner {
    tx: mpsc::UnboundedSender<Cmd>,
    budget: Arc<Semaphore>,
    budget_max: usize,
    start: Instant,
    path: PathBuf,
    failure: Arc<OnceLock<String>>,
}

/// Handle to one session's trail. Cheap to clone; every clone feeds the same ordered stream.
#[derive(Clone)]
pub struct TrailWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TrailWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailWriter")
            .field("path", &self.inner.path)
            .finish()
    }
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
        let start = Instant::now();
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
        };
        let header_frame = encode_header(&header)?;
        let h0 = header_hash(&header_frame);
        let header_len = header_frame.len() as u64;
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<File> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| RecorderError::io(dir, e))?;
            }
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(&p)
                .map_err(|e| RecorderError::io(&p, e))?;
            f.write_all(&header_frame)
                .map_err(|e| RecorderError::io(&p, e))?;
            Ok(f)
        })
        .await
        .map_err(|e| RecorderError::WriterFailed(e.to_string()))??;
        let (tx, rx) = mpsc::unbounded_channel();
        let budget_max = cfg.queue_bytes.max(RECORD_OVERHEAD * 4);
        let failure = Arc::new(OnceLock::new());
        let sink = Sink {
            file,
            path: path.clone(),
            offset: header_len,
            chain_head: h0,
            seq: 0,
            index: Vec::new(),
            cur: None,
            cctx: None,
            out: Vec::new(),
            key,
            cfg: cfg.clone(),
            fsync: cfg.fsync,
        };
        let task = Task {
            rx,
            cfg,
            sink: Some(sink),
            inflight: None,
            raw: Vec::new(),
            spare: Vec::new(),
            pending: None,
            frame: None,
            stats: Stats::default(),
            last_t: 0,
            last_record_at: Instant::now(),
            unflushed: false,
            start,
            start_unix_us: start_unix_us as i64,
            failure: failure.clone(),
            path: path.clone(),
        };
        tokio::spawn(task.run());
        Ok(TrailWriter {
            inner: Arc::new(Inner {
                tx,
                budget: Arc::new(Semaphore::new(budget_max)),
                budget_max,
                start,
                path,
                failure,
            }),
        })
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
        self.inner.failure.get().cloned()
    }

    fn failed(&self) -> RecorderError {
        match self.inner.failure.get() {
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
        if self.inner.failure.get().is_some() {
            return Err(self.failed());
        }
        let cost = data_len(&event)
            .map_or(0, |(_, n)| n)
            .saturating_add(RECORD_OVERHEAD)
            .min(self.inner.budget_max);
        let permit = self
            .inner
            .budget
            .clone()
            .acquire_many_owned(cost as u32)
            .await
            .map_err(|_| self.failed())?;
        self.inner
            .tx
            .send(Cmd::Rec {
                channel,
                t,
                event,
                _permit: permit,
            })
            .map_err(|_| self.failed())
    }

    /// Records the session end, finishes the last frame, writes the index and seals the trail.
    pub async fn finish(&self, end: SessionEnd) -> Result<TrailSummary> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Finish { end, reply })
            .map_err(|_| self.failed())?;
        rx.await.map_err(|_| self.failed())?
    }
}

/// A small data record held back in case the next one continues it. Keeps the original `Bytes`
/// until a second piece arrives, so the common case costs no copy and no allocation.
struct Pending {
    channel: u32,
    dir: Direction,
    t: u64,
    last_t: u64,
    first: Bytes,
    more: Option<Vec<u8>>,
}

impl Pending {
    fn len(&self) -> usize {
        self.more.as_ref().map_or(self.first.len(), Vec::len)
    }
}

/// What the task knows of the frame being filled (the compression side lives in the sink).
struct OpenFrame {
    raw_len: u64,
    records: u32,
    first_t: u64,
    last_t: u64,
    first_record: u64,
    opened_at: Instant,
}

/// A frame's accounting, handed to the sink with the chunk that ends it.
#[derive(Clone, Copy)]
struct FrameMeta {
    raw_len: u64,
    records: u32,
    first_t: u64,
    last_t: u64,
    first_record: u64,
}

impl OpenFrame {
    fn meta(&self) -> FrameMeta {
        FrameMeta {
            raw_len: self.raw_len,
            records: self.records,
            first_t: self.first_t,
            last_t: self.last_t,
            first_record: self.first_record,
        }
    }
}

type Job = tokio::task::JoinHandle<(Sink, Vec<u8>, Result<()>)>;

struct Task {
    rx: mpsc::UnboundedReceiver<Cmd>,
    cfg: WriterConfig,
    /// The sink when no compression job holds it.
    sink: Option<Sink>,
    /// At most one chunk is compressed while the next one fills (pipelining).
    inflight: Option<Job>,
    raw: Vec<u8>,
    spare: Vec<u8>,
    pending: Option<Pending>,
    frame: Option<OpenFrame>,
    stats: Stats,
    last_t: u64,
    last_record_at: Instant,
    unflushed: bool,
    start: Instant,
    start_unix_us: i64,
    failure: Arc<OnceLock<String>>,
    path: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Continue,
    Flush,
    End { free_context: bool },
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.cfg.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Commands are taken in batches: one wake-up per batch, not per record.
        let mut batch: Vec<Cmd> = Vec::with_capacity(256);
        loop {
            let res = tokio::select! {
                n = self.rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        // Every handle dropped without finish: keep what we have (unsealed, so it
                        // verifies as incomplete) rather than invent an end.
                        let _ = self.close_frame(false).await;
                        let _ = self.take_sink().await;
                        return;
                    }
                    let mut res = Ok(());
                    for cmd in batch.drain(..) {
                        match cmd {
                            Cmd::Rec { channel, t, event, _permit } => {
                                if res.is_ok() {
                                    res = self.on_record(channel, t, event).await;
                                }
                            }
                            Cmd::Finish { end, reply } => {
                                let r = match res {
                                    Ok(()) => self.finish(end).await,
                                    Err(e) => Err(e),
                                };
                                if let Err(e) = &r {
                                    let _ = self.failure.set(e.to_string());
                                }
                                let _ = reply.send(r);
                                return;
                            }
                        }
                    }
                    res
                }
                _ = tick.tick() => self.on_tick().await,
            };
            if let Err(e) = res {
                tracing::error!(path = %self.path.display(), error = %e, "trail writer failed");
                let _ = self.failure.set(e.to_string());
                // Dropping the receiver wakes every waiting sender with an error.
                self.rx.close();
                while let Some(cmd) = self.rx.recv().await {
                    if let Cmd::Finish { reply, .. } = cmd {
                        let _ = reply.send(Err(RecorderError::WriterFailed(e.to_string())));
                    }
                }
                return;
            }
        }
    }

    async fn on_record(&mut self, channel: u32, t: u64, event: Event) -> Result<()> {
        let t = t.max(self.last_t);
        self.last_t = t;
        self.last_record_at = Instant::now();
        if let Event::Data { dir, data } = &event
            && data.len() < COALESCE_MAX
        {
            if let Some(p) = &mut self.pending
                && p.channel == channel
                && p.dir == *dir
                && t - p.last_t <= self.cfg.coalesce_us
                && p.len() + data.len() <= COALESCE_MAX
            {
                let first = &p.first;
                p.more
                    .get_or_insert_with(|| first.to_vec())
                    .extend_from_slice(data);
                p.last_t = t;
                return Ok(());
            }
            self.emit_pending()?;
            self.pending = Some(Pending {
                channel,
                dir: *dir,
                t,
                last_t: t,
                first: data.clone(),
                more: None,
            });
            return self.maybe_compress().await;
        }
        self.emit_pending()?;
        self.emit(channel, t, &event)?;
        self.maybe_compress().await
    }

    fn emit_pending(&mut self) -> Result<()> {
        if let Some(p) = self.pending.take() {
            let data = match p.more {
                Some(v) => Bytes::from(v),
                None => p.first,
            };
            self.emit(p.channel, p.t, &Event::Data { dir: p.dir, data })?;
        }
        Ok(())
    }

    /// Serializes a record into the raw buffer of the open frame and updates the statistics.
    fn emit(&mut self, channel: u32, t: u64, event: &Event) -> Result<()> {
        let frame = self.frame.get_or_insert_with(|| OpenFrame {
            raw_len: 0,
            records: 0,
            first_t: t,
            last_t: t,
            first_record: self.stats.records,
            opened_at: Instant::now(),
        });
        // The first record of a frame carries its absolute time so every frame decodes alone.
        // Later ones carry the delta, coarsened for human-scale gaps; times are kept as the reader
        // will reconstruct them so rounding never accumulates.
        let (wire, t) = if frame.records == 0 {
            (dt_wire_exact(t), t)
        } else {
            let (w, d) = dt_wire(t.saturating_sub(frame.last_t));
            (w, frame.last_t + d)
        };
        let before = self.raw.len();
        encode_record(&mut self.raw, channel, wire, event)?;
        frame.raw_len += (self.raw.len() - before) as u64;
        frame.records += 1;
        frame.last_t = t;
        self.last_t = self.last_t.max(t);
        self.unflushed = true;
        self.stats.apply(channel, t, event);
        Ok(())
    }

    async fn maybe_compress(&mut self) -> Result<()> {
        let frame_full = self
            .frame
            .as_ref()
            .is_some_and(|f| f.raw_len as usize >= self.cfg.frame_max_raw);
        if frame_full {
            self.close_frame(false).await
        } else if self.raw.len() >= self.cfg.chunk_bytes {
            self.compress(Op::Continue).await
        } else {
            Ok(())
        }
    }

    async fn on_tick(&mut self) -> Result<()> {
        let Some(frame) = &self.frame else {
            return Ok(());
        };
        if self.last_record_at.elapsed() >= self.cfg.frame_idle_close {
            self.emit_pending()?;
            return self.close_frame(true).await;
        }
        if frame.opened_at.elapsed() >= self.cfg.frame_max_age {
            self.emit_pending()?;
            return self.close_frame(false).await;
        }
        if self.unflushed || self.pending.is_some() {
            self.emit_pending()?;
            self.compress(Op::Flush).await?;
            self.unflushed = false;
        }
        Ok(())
    }

    async fn close_frame(&mut self, free_context: bool) -> Result<()> {
        if self.frame.is_none() && self.pending.is_none() {
            return Ok(());
        }
        self.emit_pending()?;
        self.compress(Op::End { free_context }).await?;
        self.unflushed = false;
        Ok(())
    }

    /// Hands the raw buffer to the blocking pool (compress, hash, write; on `End`, the chain
    /// entry) and returns at once: the next chunk fills while this one is compressed. Waits only
    /// for the previous chunk's job, whose errors surface here.
    async fn compress(&mut self, op: Op) -> Result<()> {
        let meta = match op {
            Op::End { .. } => self.frame.take().map(|f| f.meta()),
            _ => self.frame.as_ref().map(|f| f.meta()),
        };
        let Some(meta) = meta else { return Ok(()) };
        let mut sink = self.take_sink().await?;
        let raw = std::mem::replace(&mut self.raw, std::mem::take(&mut self.spare));
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let r = sink.compress(&raw, op, meta);
            (sink, raw, r)
        }));
        Ok(())
    }

    /// The sink, once the compression job that holds it (if any) is done.
    async fn take_sink(&mut self) -> Result<Sink> {
        if let Some(job) = self.inflight.take() {
            let (sink, mut raw, r) = job
                .await
                .map_err(|e| RecorderError::WriterFailed(format!("compression task: {e}")))?;
            raw.clear();
            self.spare = raw;
            r?;
            return Ok(sink);
        }
        self.sink.take().ok_or(RecorderError::Closed)
    }

    async fn finish(&mut self, end: SessionEnd) -> Result<TrailSummary> {
        let t = (self.start.elapsed().as_micros() as u64).max(self.last_t);
        self.emit_pending()?;
        self.emit(0, t, &Event::End(end.clone()))?;
        self.close_frame(true).await?;
        let end_unix_us = self.start_unix_us + t as i64;
        let end_time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(end_unix_us) * 1000)
            .map(rfc3339)
            .unwrap_or_default();
        let summary = EndSummary {
            end_time,
            end_unix_us,
            duration_us: t,
            end,
            records: self.stats.records,
            frames: 0,
            bytes_client_to_server: self.stats.bytes_client_to_server,
            bytes_server_to_client: self.stats.bytes_server_to_client,
            channels: self.stats.channels.values().cloned().collect(),
            index: Vec::new(),
        };
        let mut sink = self.take_sink().await?;
        let summary = EndSummary {
            frames: sink.seq,
            index: std::mem::take(&mut sink.index),
            ..summary
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
                sink.write(&both)?;
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

/// The part of the writer that runs on the blocking pool.
struct Sink {
    file: File,
    path: PathBuf,
    offset: u64,
    /// Head of the hash chain, sequence number and seek index of finished frames.
    chain_head: [u8; 32],
    seq: u64,
    index: Vec<IndexEntry>,
    /// The frame being compressed: where it starts, its size so far, its running chain hash.
    cur: Option<(u64, u64, ChainHasher)>,
    cctx: Option<CCtx<'static>>,
    out: Vec<u8>,
    key: Arc<SigningKey>,
    cfg: WriterConfig,
    fsync: bool,
}

fn zerr(code: usize) -> RecorderError {
    RecorderError::Zstd(zstd_safe::get_error_name(code).to_string())
}

impl Sink {
    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.file
            .write_all(b)
            .map_err(|e| RecorderError::io(&self.path, e))?;
        self.offset += b.len() as u64;
        Ok(())
    }

    fn context(&mut self) -> Result<&mut CCtx<'static>> {
        if self.cctx.is_none() {
            self.cctx = Some(new_context(&self.cfg)?);
        }
        self.cctx.as_mut().ok_or(RecorderError::Closed)
    }

    /// Compresses `raw` into the open frame; on `End`, finishes it and writes its chain entry.
    fn compress(&mut self, raw: &[u8], op: Op, meta: FrameMeta) -> Result<()> {
        let directive = match op {
            Op::Continue => ZSTD_EndDirective::ZSTD_e_continue,
            Op::Flush => ZSTD_EndDirective::ZSTD_e_flush,
            Op::End { .. } => ZSTD_EndDirective::ZSTD_e_end,
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(zstd_safe::compress_bound(raw.len()) + 1024);
        let cctx = self.context()?;
        let mut input = InBuffer::around(raw);
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(64 * 1024);
            }
            let pos = out.len();
            let mut ob = OutBuffer::around_pos(&mut out, pos);
            let remaining = cctx
                .compress_stream2(&mut ob, &mut input, directive)
                .map_err(zerr)?;
            let done_input = input.pos() == raw.len();
            let done = match op {
                Op::Continue => done_input,
                _ => done_input && remaining == 0,
            };
            if done {
                break;
            }
        }
        let (start, head) = (self.offset, self.chain_head);
        let cur = self
            .cur
            .get_or_insert_with(|| (start, 0, ChainHasher::new(&head)));
        cur.2.update(&out);
        cur.1 += out.len() as u64;
        let written = self.write(&out);
        self.out = out;
        written?;
        let Op::End { free_context } = op else {
            return Ok(());
        };
        if free_context {
            self.cctx = None;
        }
        let Some((offset, compressed, hasher)) = self.cur.take() else {
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
        self.write(&entry.encode())?;
        if self.fsync {
            self.file
                .sync_data()
                .map_err(|e| RecorderError::io(&self.path, e))?;
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

fn new_context(cfg: &WriterConfig) -> Result<CCtx<'static>> {
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(cfg.zstd_level))
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

    /// The zstd context is the bulk of an open trail's memory: keep it bounded and known.
    #[test]
    fn zstd_context_per_open_frame_stays_small() {
        let cfg = WriterConfig::default();
        let mut c = new_context(&cfg).unwrap();
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
}
