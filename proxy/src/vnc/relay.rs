//! The two pumps of a VNC session. Client to target: framed message by message (key and
//! pointer events are user input; SetEncodings is cut down to what the decoder renders;
//! anything unknown or malformed ends the session). Target to client: relayed as read, no
//! parsing. Both directions are recorded before they are forwarded; a slow reader slows its
//! writer (one buffer per direction, no queue).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use trailgate_recorder::{Direction, Event};
use trailgate_rfb::ClientMessage;
use trailgate_rfb::client::{filter_encodings, next_message, set_encodings};

use super::io::Io;
use crate::session::{ChannelState, Session};

/// Target-to-client reads grow while they come back full (a full-HD raw update is ~8 MiB: large
/// reads mean fewer records and syscalls) and shrink again when the stream is quiet, so an idle
/// session holds a small buffer.
const S2C_MIN: usize = 16 * 1024;
const S2C_MAX: usize = 256 * 1024;
const C2S_READ: usize = 16 * 1024;
/// Target-to-client read buffers used in turn: by the time one comes round again the recorder
/// has usually compressed, and released, what was read into it, so `reserve` takes the same
/// memory back instead of fresh pages (faulting in a fresh buffer for every read cost a fifth
/// of the gateway's CPU on full-screen Raw updates). 16 x 256 KiB is the trail writer's 4 MiB
/// in-flight budget: the ring holds no more than the recorder may hold anyway.
const S2C_BUFFERS: usize = 16;

/// How a pump ended.
pub enum PumpEnd {
    /// The sender closed its side.
    Eof,
    /// A read or write failed.
    Io(String),
    /// The client sent something the gateway does not relay.
    Protocol(String),
}

/// The sender closed its side: passed on, and recorded.
async fn eof(sh: &Session, channel: u32, dir: Direction, wr: &mut WriteHalf<Io>) -> PumpEnd {
    let _ = wr.shutdown().await;
    sh.rec(channel, Event::Eof { dir }).await;
    PumpEnd::Eof
}

/// Client to target.
pub async fn client_to_target(
    sh: Arc<Session>,
    ch: Arc<ChannelState>,
    mut rd: ReadHalf<Io>,
    mut wr: WriteHalf<Io>,
) -> PumpEnd {
    let mut buf = BytesMut::with_capacity(C2S_READ);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(C2S_READ);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return eof(&sh, ch.id, Direction::ClientToServer, &mut wr).await,
            // A TLS peer that closes without close_notify has still left (most viewers do).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return eof(&sh, ch.id, Direction::ClientToServer, &mut wr).await;
            }
            Ok(_) => {}
            Err(e) => return PumpEnd::Io(e.to_string()),
        }
        let (out, input) = match frame(&mut buf) {
            Ok(x) => x,
            Err(e) => return PumpEnd::Protocol(e),
        };
        if out.is_empty() {
            continue;
        }
        sh.traffic(true, out.len(), input);
        ch.count(Direction::ClientToServer, out.len());
        sh.rec_data(ch.id, Direction::ClientToServer, &out).await;
        if let Err(e) = wr.write_all(&out).await {
            return PumpEnd::Io(e.to_string());
        }
    }
}

/// Takes the complete messages at the front of `buf`: the bytes to forward (the same bytes,
/// without a copy, unless a SetEncodings was rewritten) and whether any was user input.
fn frame(buf: &mut BytesMut) -> Result<(Bytes, bool), String> {
    let mut at = 0;
    let mut input = false;
    let mut rewritten: Option<Vec<u8>> = None;
    let mut copied_to = 0;
    while let Some((msg, len)) = next_message(&buf[at..]).map_err(|e| e.to_string())? {
        input |= msg.is_user_input();
        if let ClientMessage::SetEncodings(list) = &msg {
            let out = rewritten.get_or_insert_with(Vec::new);
            out.extend_from_slice(&buf[copied_to..at]);
            out.extend(set_encodings(&filter_encodings(list)));
            copied_to = at + len;
        }
        at += len;
    }
    let taken = buf.split_to(at).freeze();
    Ok(match rewritten {
        None => (taken, input),
        Some(mut out) => {
            out.extend_from_slice(&taken[copied_to..]);
            (Bytes::from(out), input)
        }
    })
}

/// Target to client.
pub async fn target_to_client(
    sh: Arc<Session>,
    ch: Arc<ChannelState>,
    mut rd: ReadHalf<Io>,
    mut wr: WriteHalf<Io>,
) -> PumpEnd {
    let mut bufs: [BytesMut; S2C_BUFFERS] = std::array::from_fn(|_| BytesMut::new());
    let mut turn = 0;
    let mut want = S2C_MIN;
    loop {
        let buf = &mut bufs[turn % S2C_BUFFERS];
        turn += 1;
        buf.reserve(want);
        match rd.read_buf(buf).await {
            Ok(0) => return eof(&sh, ch.id, Direction::ServerToClient, &mut wr).await,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return eof(&sh, ch.id, Direction::ServerToClient, &mut wr).await;
            }
            Ok(_) => {}
            Err(e) => return PumpEnd::Io(e.to_string()),
        }
        let data = buf.split().freeze();
        if data.len() >= want {
            want = (want * 2).min(S2C_MAX);
        } else if data.len() < want / 4 && want > S2C_MIN {
            want = (want / 2).max(S2C_MIN);
            if want == S2C_MIN {
                // Quiet again: an idle session keeps small buffers only.
                for b in bufs.iter_mut().filter(|b| b.capacity() > 2 * S2C_MIN) {
                    *b = BytesMut::new();
                }
            }
        }
        sh.traffic(false, data.len(), false);
        ch.count(Direction::ServerToClient, data.len());
        sh.rec_data(ch.id, Direction::ServerToClient, &data).await;
        if let Err(e) = wr.write_all(&data).await {
            return PumpEnd::Io(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailgate_rfb::client::{key_event, pointer_event, update_request};

    #[test]
    fn frame_forwards_whole_messages_and_filters_encodings() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&update_request(true, 0, 0, 10, 10));
        buf.extend_from_slice(&set_encodings(&[7, 16, -258]));
        buf.extend_from_slice(&key_event(true, 0x61));
        let ptr = pointer_event(0, 1, 2);
        buf.extend_from_slice(&ptr[..3]);
        let (out, input) = frame(&mut buf).unwrap();
        let mut want = update_request(true, 0, 0, 10, 10).to_vec();
        want.extend(set_encodings(&[16, 0]));
        want.extend(key_event(true, 0x61));
        assert_eq!(&out[..], &want[..]);
        assert!(input);
        // The partial pointer event waits for the rest.
        assert_eq!(&buf[..], &ptr[..3]);
        buf.extend_from_slice(&ptr[3..]);
        let (out, input) = frame(&mut buf).unwrap();
        assert_eq!(&out[..], &ptr[..]);
        assert!(input && buf.is_empty());
    }

    #[test]
    fn frame_refuses_unknown_messages() {
        let mut buf = BytesMut::from(&[200u8, 0, 0][..]);
        assert!(frame(&mut buf).is_err());
    }
}
