//! Per-channel relay: two pump tasks per channel, one per direction, so a direction waiting for
//! its peer's window never stops the other (which would deadlock full-duplex transfers).
//! Every queue is russh's bounded channel queue or the recorder's byte budget; data is passed on
//! as `Bytes` (no copies) after it is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client, server};
use tokio::sync::oneshot;
use tracing::Instrument;
use trailgate_recorder::{ChannelOpen, Direction, Event, Request};

use crate::session::ChannelRecord;
use crate::session::{ChannelState, Session};

/// How long a relayed channel request may wait for the target's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// An SSH channel: the neutral [`ChannelState`] the session lists, plus the SSH side of it.
pub struct ChanCtx {
    pub id: u32,
    pub state: Arc<ChannelState>,
    /// Replies the target owes for relayed requests, oldest first (SSH replies are FIFO).
    pending: Mutex<VecDeque<oneshot::Sender<bool>>>,
    /// Upstream write half, for requests relayed from handler callbacks.
    pub up: Option<Arc<ChannelWriteHalf<client::Msg>>>,
}

pub use crate::session::endpoint;

impl ChanCtx {
    pub fn new(
        id: u32,
        open: &ChannelOpen,
        verdict: &str,
        up: Option<Arc<ChannelWriteHalf<client::Msg>>>,
    ) -> Arc<Self> {
        Arc::new(ChanCtx {
            id,
            state: Arc::new(ChannelState::new(id, open, verdict)),
            pending: Mutex::new(VecDeque::new()),
            up,
        })
    }

    pub fn record(&self) -> ChannelRecord {
        self.state.record()
    }

    pub fn update(&self, f: impl FnOnce(&mut ChannelRecord)) {
        self.state.update(f)
    }

    /// Relays a request to the target and waits for its reply (`false` on failure, timeout or a
    /// closed channel). The reply is awaited here so the client gets it for the right request.
    pub async fn request<F>(&self, send: F) -> bool
    where
        F: std::future::Future<Output = Result<(), russh::Error>>,
    {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(tx);
        }
        if send.await.is_err() {
            if let Ok(mut p) = self.pending.lock() {
                p.pop_back();
            }
            return false;
        }
        matches!(tokio::time::timeout(REPLY_TIMEOUT, rx).await, Ok(Ok(true)))
    }

    fn reply(&self, ok: bool) {
        let next = self.pending.lock().ok().and_then(|mut p| p.pop_front());
        if let Some(tx) = next {
            let _ = tx.send(ok);
        }
    }

    /// Records the close once, whichever side (or the session's end) closes first.
    async fn close_once(&self, sh: &Session) {
        if self.state.mark_closed() {
            sh.rec(self.id, Event::Close).await;
        }
    }
}

/// Records a channel open and registers the channel with the session.
pub async fn register(sh: &Arc<Session>, ctx: &Arc<ChanCtx>, open: ChannelOpen, denied: bool) {
    if let Ok(mut chs) = sh.channels.lock() {
        chs.insert(ctx.id, ctx.state.clone());
    }
    sh.gw.metrics.channel(&open.kind, &ctx.record().verdict);
    let ev = if denied {
        Event::Denied(open)
    } else {
        Event::Open(open)
    };
    sh.rec(ctx.id, ev).await;
    sh.publish();
}

/// Records a channel that was not opened (policy denial or a peer's refusal) with its reason.
pub async fn refuse(
    sh: &Arc<Session>,
    id: u32,
    mut open: ChannelOpen,
    verdict: &str,
    reason: String,
) {
    open.reason = Some(reason);
    let ctx = ChanCtx::new(id, &open, verdict, None);
    register(sh, &ctx, open, true).await;
}

/// A channel open both sides agreed to: registers and records it, confirms it to the side that
/// asked (`confirm`), then starts its pumps. The confirmation comes before any data can be
/// written to the channel: data on an unconfirmed channel would be dropped (a service that
/// speaks first would lose its banner).
pub async fn start_channel(
    sh: &Arc<Session>,
    id: u32,
    open: ChannelOpen,
    down: russh::Channel<server::Msg>,
    up: russh::Channel<client::Msg>,
    confirm: impl std::future::Future<Output = ()>,
    down_handle: Option<server::Handle>,
) -> Arc<ChanCtx> {
    let (up_read, up_write) = up.split();
    let up_write = Arc::new(up_write);
    let ctx = ChanCtx::new(id, &open, "accept", Some(up_write.clone()));
    register(sh, &ctx, open, false).await;
    confirm.await;
    spawn_pumps(sh, ctx.clone(), down, up_read, up_write, down_handle);
    ctx
}

/// Starts both pumps of an accepted channel.
fn spawn_pumps(
    sh: &Arc<Session>,
    ctx: Arc<ChanCtx>,
    down: russh::Channel<server::Msg>,
    up_read: ChannelReadHalf,
    up_write: Arc<ChannelWriteHalf<client::Msg>>,
    down_handle: Option<server::Handle>,
) {
    let (down_read, down_write) = down.split();
    // On the session's tracker: the session seals its trail only after both have ended.
    let tracker = &sh.pumps;
    tracker
        .spawn(pump_c2s(sh.clone(), ctx.clone(), down_read, up_write).instrument(sh.span.clone()));
    tracker.spawn(
        pump_s2c(sh.clone(), ctx, up_read, down_write, down_handle).instrument(sh.span.clone()),
    );
}

/// Records one data message and passes it on, waiting for the peer's window (backpressure).
/// `false` when the other side is gone.
async fn relay_data<S>(
    sh: &Session,
    ctx: &ChanCtx,
    dir: Direction,
    ext: Option<u32>,
    data: bytes::Bytes,
    to: &ChannelWriteHalf<S>,
) -> bool
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let n = data.len();
    ctx.state.count(dir, n);
    sh.data_activity(dir == Direction::ClientToServer, n);
    match ext {
        // The recorder copies small payloads from the buffer passed on below (no clone).
        None => sh.rec_data(ctx.id, dir, &data).await,
        Some(code) => {
            let event = Event::ExtendedData {
                dir,
                code,
                data: data.clone(),
            };
            sh.rec(ctx.id, event).await;
        }
    }
    // Recorded above: waiting for the peer's window may be cut short when the session ends.
    let send = async {
        match ext {
            None => to.data_bytes(data).await.is_ok(),
            Some(code) => to.extended_data_bytes(code, data).await.is_ok(),
        }
    };
    tokio::select! {
        ok = send => ok,
        _ = sh.closing.cancelled() => false,
    }
}

/// The next message of a channel, or `None` when it closed or the session is ending. A message
/// already taken is always handled (and recorded) in full.
async fn next_msg(sh: &Session, rx: &mut ChannelReadHalf) -> Option<ChannelMsg> {
    tokio::select! {
        // What is already queued is handled first; the peer legs are closed by then.
        biased;
        m = rx.wait() => m,
        _ = sh.closing.cancelled() => None,
    }
}

async fn pump_c2s(
    sh: Arc<Session>,
    ctx: Arc<ChanCtx>,
    mut rx: ChannelReadHalf,
    up: Arc<ChannelWriteHalf<client::Msg>>,
) {
    let dir = Direction::ClientToServer;
    while let Some(msg) = next_msg(&sh, &mut rx).await {
        let more = match msg {
            ChannelMsg::Data { data } => relay_data(&sh, &ctx, dir, None, data, &up).await,
            ChannelMsg::ExtendedData { data, ext } => {
                relay_data(&sh, &ctx, dir, Some(ext), data, &up).await
            }
            ChannelMsg::Eof => {
                sh.rec(ctx.id, Event::Eof { dir }).await;
                let _ = up.eof().await;
                true
            }
            ChannelMsg::Close => false,
            // Requests arrive here too, but are handled (and replied to) in the handler callbacks.
            _ => true,
        };
        if !more {
            break;
        }
    }
    ctx.close_once(&sh).await;
    let _ = up.close().await;
}

async fn pump_s2c(
    sh: Arc<Session>,
    ctx: Arc<ChanCtx>,
    mut rx: ChannelReadHalf,
    down: ChannelWriteHalf<server::Msg>,
    down_handle: Option<server::Handle>,
) {
    let down_id = down.id();
    let dir = Direction::ServerToClient;
    while let Some(msg) = next_msg(&sh, &mut rx).await {
        match msg {
            // A guard cannot take `data` by value: the `if` stays inside the arm.
            #[allow(clippy::collapsible_match)]
            ChannelMsg::Data { data } => {
                if !relay_data(&sh, &ctx, dir, None, data, &down).await {
                    break;
                }
            }
            #[allow(clippy::collapsible_match)]
            ChannelMsg::ExtendedData { data, ext } => {
                if !relay_data(&sh, &ctx, dir, Some(ext), data, &down).await {
                    break;
                }
            }
            ChannelMsg::Eof => {
                sh.rec(ctx.id, Event::Eof { dir }).await;
                let _ = down.eof().await;
            }
            ChannelMsg::ExitStatus { exit_status } => {
                ctx.update(|r| r.exit_status = Some(exit_status));
                sh.rec(
                    ctx.id,
                    Event::Request {
                        dir: Direction::ServerToClient,
                        request: Request::ExitStatus {
                            status: exit_status,
                        },
                    },
                )
                .await;
                let _ = down.exit_status(exit_status).await;
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                let request = Request::ExitSignal {
                    signal: sig_name(&signal_name),
                    core_dumped,
                    message: error_message.clone(),
                };
                sh.rec(
                    ctx.id,
                    Event::Request {
                        dir: Direction::ServerToClient,
                        request,
                    },
                )
                .await;
                if let Some(h) = &down_handle {
                    let _ = h
                        .exit_signal_request(
                            down_id,
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await;
                }
            }
            ChannelMsg::Success => ctx.reply(true),
            ChannelMsg::Failure => ctx.reply(false),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // Fail any request still waiting for a reply that will not come.
    while let Some(tx) = ctx.pending.lock().ok().and_then(|mut p| p.pop_front()) {
        let _ = tx.send(false);
    }
    ctx.close_once(&sh).await;
    let _ = down.close().await;
}

/// Wire name of a signal (RFC 4254 names, without "SIG").
pub fn sig_name(s: &russh::Sig) -> String {
    use russh::Sig::*;
    match s {
        ABRT => "ABRT".into(),
        ALRM => "ALRM".into(),
        FPE => "FPE".into(),
        HUP => "HUP".into(),
        ILL => "ILL".into(),
        INT => "INT".into(),
        KILL => "KILL".into(),
        PIPE => "PIPE".into(),
        QUIT => "QUIT".into(),
        SEGV => "SEGV".into(),
        TERM => "TERM".into(),
        USR1 => "USR1".into(),
        Custom(n) => n.clone(),
    }
}
