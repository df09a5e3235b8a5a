//! Client-to-server messages: framing (where each message ends), what each means, and the
//! SetEncodings filter that keeps every recording decodable.
//!
//! The gateway frames the client's stream to count user input (key and pointer events) and to
//! refuse what it cannot frame. Messages of extensions are accepted only when the encodings the
//! gateway lets through can have announced them.

use crate::error::{Result, RfbError};
use crate::pixel::PixelFormat;

/// Encodings and pseudo-encodings.
pub mod encoding {
    pub const RAW: i32 = 0;
    pub const COPY_RECT: i32 = 1;
    pub const RRE: i32 = 2;
    pub const HEXTILE: i32 = 5;
    pub const ZRLE: i32 = 16;
    pub const CURSOR: i32 = -239;
    pub const DESKTOP_SIZE: i32 = -223;
    pub const LAST_RECT: i32 = -224;
    pub const EXTENDED_DESKTOP_SIZE: i32 = -308;

    /// What the gateway's decoder renders: SetEncodings is filtered to these.
    pub const DECODABLE: &[i32] = &[
        RAW,
        COPY_RECT,
        RRE,
        HEXTILE,
        ZRLE,
        CURSOR,
        DESKTOP_SIZE,
        LAST_RECT,
        EXTENDED_DESKTOP_SIZE,
    ];
}

/// Most encodings a SetEncodings may list (a real viewer sends a few dozen).
pub const MAX_ENCODINGS: usize = 1024;

/// ClientCutText longer than this ends the session (the gateway buffers a message whole).
pub const MAX_CUT_TEXT: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    SetPixelFormat(PixelFormat),
    SetEncodings(Vec<i32>),
    FramebufferUpdateRequest {
        incremental: bool,
        x: u16,
        y: u16,
        width: u16,
        height: u16,
    },
    KeyEvent {
        down: bool,
        key: u32,
    },
    PointerEvent {
        buttons: u8,
        x: u16,
        y: u16,
    },
    /// Latin-1 text; only its length is kept here.
    ClientCutText {
        len: usize,
    },
    /// SetDesktopSize (ExtendedDesktopSize): the client asks for a new size.
    SetDesktopSize {
        width: u16,
        height: u16,
        screens: u8,
    },
}

impl ClientMessage {
    /// Key and pointer events: what a person does (the inactivity timer counts these only).
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            ClientMessage::KeyEvent { .. } | ClientMessage::PointerEvent { .. }
        )
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Frames one message at the start of `b`: `Ok(None)` while it is incomplete, else the message
/// and its length in bytes. An unknown type or an impossible length is an error.
pub fn next_message(b: &[u8]) -> Result<Option<(ClientMessage, usize)>> {
    let Some(&kind) = b.first() else {
        return Ok(None);
    };
    let need = |n: usize| b.len() >= n;
    Ok(match kind {
        0 => {
            if !need(20) {
                return Ok(None);
            }
            let mut pf = [0u8; 16];
            pf.copy_from_slice(&b[4..20]);
            Some((ClientMessage::SetPixelFormat(PixelFormat::parse(&pf)?), 20))
        }
        2 => {
            if !need(4) {
                return Ok(None);
            }
            let n = usize::from(u16_at(b, 2));
            if n > MAX_ENCODINGS {
                return Err(RfbError::TooLong {
                    what: "SetEncodings list",
                    len: n,
                    max: MAX_ENCODINGS,
                });
            }
            if !need(4 + 4 * n) {
                return Ok(None);
            }
            let list = (0..n).map(|i| u32_at(b, 4 + 4 * i) as i32).collect();
            Some((ClientMessage::SetEncodings(list), 4 + 4 * n))
        }
        3 => {
            if !need(10) {
                return Ok(None);
            }
            Some((
                ClientMessage::FramebufferUpdateRequest {
                    incremental: b[1] != 0,
                    x: u16_at(b, 2),
                    y: u16_at(b, 4),
                    width: u16_at(b, 6),
                    height: u16_at(b, 8),
                },
                10,
            ))
        }
        4 => {
            if !need(8) {
                return Ok(None);
            }
            Some((
                ClientMessage::KeyEvent {
                    down: b[1] != 0,
                    key: u32_at(b, 4),
                },
                8,
            ))
        }
        5 => {
            if !need(6) {
                return Ok(None);
            }
            Some((
                ClientMessage::PointerEvent {
                    buttons: b[1],
                    x: u16_at(b, 2),
                    y: u16_at(b, 4),
                },
                6,
            ))
        }
        6 => {
            if !need(8) {
                return Ok(None);
            }
            // A negative length is the extended clipboard, whose pseudo-encoding is filtered.
            let len = u32_at(b, 4) as i32;
            if len < 0 {
                return Err(RfbError::Malformed(
                    "extended ClientCutText without the extension".into(),
                ));
            }
            let len = len as usize;
            if len > MAX_CUT_TEXT {
                return Err(RfbError::TooLong {
                    what: "ClientCutText",
                    len,
                    max: MAX_CUT_TEXT,
                });
            }
            if !need(8 + len) {
                return Ok(None);
            }
            Some((ClientMessage::ClientCutText { len }, 8 + len))
        }
        251 => {
            if !need(8) {
                return Ok(None);
            }
            let screens = b[6];
            let total = 8 + 16 * usize::from(screens);
            if !need(total) {
                return Ok(None);
            }
            Some((
                ClientMessage::SetDesktopSize {
                    width: u16_at(b, 2),
                    height: u16_at(b, 4),
                    screens,
                },
                total,
            ))
        }
        other => return Err(RfbError::UnsupportedMessage(other)),
    })
}

/// The client's encodings, in its order, without those the decoder cannot render.
pub fn filter_encodings(list: &[i32]) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::with_capacity(list.len());
    for e in list {
        if encoding::DECODABLE.contains(e) && !out.contains(e) {
            out.push(*e);
        }
    }
    // Raw is always allowed by the protocol; say it so the list is never empty.
    if !out.contains(&encoding::RAW) {
        out.push(encoding::RAW);
    }
    out
}

pub fn set_encodings(list: &[i32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 4 * list.len());
    v.extend_from_slice(&[2, 0]);
    v.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for e in list {
        v.extend_from_slice(&e.to_be_bytes());
    }
    v
}

pub fn set_pixel_format(pf: &PixelFormat) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    v.extend_from_slice(&pf.to_bytes());
    v
}

pub fn update_request(incremental: bool, x: u16, y: u16, w: u16, h: u16) -> [u8; 10] {
    let mut b = [3u8, incremental as u8, 0, 0, 0, 0, 0, 0, 0, 0];
    b[2..4].copy_from_slice(&x.to_be_bytes());
    b[4..6].copy_from_slice(&y.to_be_bytes());
    b[6..8].copy_from_slice(&w.to_be_bytes());
    b[8..10].copy_from_slice(&h.to_be_bytes());
    b
}

pub fn key_event(down: bool, key: u32) -> [u8; 8] {
    let mut b = [4u8, down as u8, 0, 0, 0, 0, 0, 0];
    b[4..8].copy_from_slice(&key.to_be_bytes());
    b
}

pub fn pointer_event(buttons: u8, x: u16, y: u16) -> [u8; 6] {
    let mut b = [5u8, buttons, 0, 0, 0, 0];
    b[2..4].copy_from_slice(&x.to_be_bytes());
    b[4..6].copy_from_slice(&y.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_every_message_and_waits_for_partial_ones() {
        let mut stream = Vec::new();
        stream.extend(set_pixel_format(&PixelFormat::RGB888));
        stream.extend(set_encodings(&[16, -239, 7]));
        stream.extend(update_request(true, 0, 0, 800, 600));
        stream.extend(key_event(true, 0x61));
        stream.extend(pointer_event(1, 10, 20));
        stream.extend([6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        let mut at = 0;
        let mut got = Vec::new();
        while at < stream.len() {
            // Every prefix of a message is "incomplete", never an error.
            let Some((m, n)) = next_message(&stream[at..]).unwrap() else {
                panic!("complete message not framed at {at}");
            };
            for cut in 1..n {
                assert_eq!(next_message(&stream[at..at + cut]).unwrap(), None);
            }
            got.push(m);
            at += n;
        }
        assert_eq!(got.len(), 6);
        assert_eq!(got[1], ClientMessage::SetEncodings(vec![16, -239, 7]));
        assert!(got[3].is_user_input() && got[4].is_user_input() && !got[2].is_user_input());
        assert_eq!(got[5], ClientMessage::ClientCutText { len: 2 });
    }

    #[test]
    fn refuses_unknown_and_oversized() {
        assert_eq!(
            next_message(&[99, 0]),
            Err(RfbError::UnsupportedMessage(99))
        );
        assert!(matches!(
            next_message(&[6, 0, 0, 0, 0x7f, 0, 0, 0]),
            Err(RfbError::TooLong { .. })
        ));
        assert!(next_message(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0]).is_err());
        let mut bad_pf = set_pixel_format(&PixelFormat::RGB888);
        bad_pf[4] = 24;
        assert!(next_message(&bad_pf).is_err());
    }

    #[test]
    fn filter_keeps_order_and_decodable_only() {
        assert_eq!(
            filter_encodings(&[7, 16, -314, 1, 16, -239]),
            vec![16, 1, -239, 0]
        );
        assert_eq!(filter_encodings(&[]), vec![0]);
    }
}
