//! Chunking (any split gives the same result), malformed input (errors, never panics or huge
//! allocations) and random bytes.

use flate2::{Compress, Compression};

use super::tests::*;
use super::*;
use crate::client::encoding as enc;
use crate::encode::{self, rect_header, update_header};

/// A session using every encoding: (client stream, server stream).
fn session() -> (Vec<u8>, Vec<u8>) {
    let pf = PixelFormat::RGB888;
    let pf16 = rgb565_be();
    let mut c = vec![0u8];
    c.extend(crate::client::set_pixel_format(&pf16));
    c.extend(crate::client::update_request(false, 0, 0, 40, 30));
    c.extend([6, 0, 0, 0, 0, 0, 0, 5]);
    c.extend(b"hello");
    c.extend(crate::client::key_event(true, 0x20));
    c.extend(crate::client::pointer_event(0, 3, 4));

    let mut z = Compress::new(Compression::fast(), true);
    let mut s = init(40, 30, pf);
    let grad: Vec<[u8; 3]> = (0..40 * 30)
        .map(|i| [i as u8, (i / 7) as u8, 255 - i as u8])
        .collect();
    let mut u = update_header(0xffff).to_vec();
    u.extend(encode::raw_rect(&pf16, 0, 0, 40, 30, &grad));
    u.extend(hextile_rect(&pf16));
    u.extend(encode::zrle_rect(
        &mut z,
        &pf16,
        10,
        10,
        30,
        20,
        &grad[..600],
    ));
    let mut copy = rect_header(30, 0, 10, 10, enc::COPY_RECT).to_vec();
    copy.extend([0, 0, 0, 5]);
    u.extend(copy);
    let mut rre = rect_header(5, 20, 10, 10, enc::RRE).to_vec();
    rre.extend(1u32.to_be_bytes());
    rre.extend(encode::pixels(&pf16, &[GREEN, RED]));
    rre.extend([0, 1, 0, 1, 0, 3, 0, 3]);
    u.extend(rre);
    let mut cursor = rect_header(0, 0, 2, 2, enc::CURSOR).to_vec();
    cursor.extend(encode::pixels(&pf16, &[WHITE; 4]));
    cursor.extend([0xc0, 0xc0]);
    u.extend(cursor);
    u.extend(rect_header(0, 0, 0, 0, enc::LAST_RECT));
    s.extend(u);
    s.extend(encode::server_cut_text(b"clip"));
    s.extend(encode::bell());
    let mut u = update_header(1).to_vec();
    u.extend(encode::zrle_rect(&mut z, &pf16, 0, 0, 8, 8, &grad[..64]));
    s.extend(u);
    (c, s)
}

/// Feeds both streams in chunks of the sizes `sizes` yields (the client's first: the pixel
/// format has to be known before the first update).
fn feed_chunked(c: &[u8], s: &[u8], mut sizes: impl FnMut() -> usize) -> Decoder {
    let mut d = Decoder::new();
    d.feed_server(&s[..10]).unwrap();
    for part in [c, &s[10..]] {
        let mut at = 0;
        while at < part.len() {
            let n = sizes().clamp(1, part.len() - at);
            if std::ptr::eq(part, c) {
                d.feed_client(&part[at..at + n]).unwrap();
            } else {
                d.feed_server(&part[at..at + n]).unwrap();
            }
            at += n;
        }
    }
    d
}

/// xorshift64*: enough randomness for chunk sizes and noise without a dependency.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn any_chunking_gives_the_same_result() {
    let (c, s) = session();
    let whole = feed_chunked(&c, &s, || usize::MAX);
    let k = whole.counters();
    assert_eq!((k.updates, k.rects, k.bells, k.cut_texts), (2, 7, 1, 1));
    assert_eq!(
        (k.key_events, k.pointer_events, k.client_cut_texts),
        (1, 1, 1)
    );
    assert!(whole.at_message_boundary());
    // The CopyRect took Hextile's red background at (0, 5) to (30, 0); RRE's subrectangle is red.
    let fb = whole.framebuffer();
    assert_eq!(fb.pixel(30, 0), Some(RED));
    assert_eq!(fb.pixel(39, 9), Some(RED));
    assert_eq!(fb.pixel(7, 22), Some(RED));
    let bytewise = feed_chunked(&c, &s, || 1);
    assert_eq!(bytewise.framebuffer(), whole.framebuffer());
    assert_eq!(bytewise.counters(), whole.counters());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20 {
        let d = feed_chunked(&c, &s, || (rng.next() % 97) as usize);
        assert_eq!(d.framebuffer(), whole.framebuffer());
        assert_eq!(d.counters(), whole.counters());
    }
}

fn err_of(server: &[u8]) -> RfbError {
    let mut d = Decoder::new();
    let e = d.feed_server(server).unwrap_err();
    // Sticky: later bytes get the same error.
    assert_eq!(d.feed_server(&[0]).unwrap_err(), e);
    assert_eq!(d.error(), Some(&e));
    e
}

#[test]
fn malformed_streams_are_errors() {
    let pf = PixelFormat::RGB888;
    let with = |rect: &[u8]| {
        let mut s = init(8, 8, pf);
        s.extend(update_header(1));
        s.extend_from_slice(rect);
        s
    };
    let raw_outside = rect_header(4, 4, 5, 1, enc::RAW);
    assert!(matches!(
        err_of(&with(&raw_outside)),
        RfbError::Malformed(_)
    ));
    assert!(matches!(
        err_of(&with(&rect_header(0, 0, 1, 1, 7))),
        RfbError::UnsupportedEncoding(7)
    ));
    let mut copy = rect_header(0, 0, 4, 4, enc::COPY_RECT).to_vec();
    copy.extend([0, 6, 0, 0]);
    assert!(matches!(err_of(&with(&copy)), RfbError::Malformed(_)));
    let mut zrle = rect_header(0, 0, 8, 8, enc::ZRLE).to_vec();
    zrle.extend(u32::MAX.to_be_bytes());
    assert!(matches!(err_of(&with(&zrle)), RfbError::TooLong { .. }));
    let mut garbage = rect_header(0, 0, 8, 8, enc::ZRLE).to_vec();
    garbage.extend([0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]);
    assert!(matches!(err_of(&with(&garbage)), RfbError::Malformed(_)));
    let mut rre = rect_header(0, 0, 4, 4, enc::RRE).to_vec();
    rre.extend([0, 0, 0, 1, 0, 0, 0, 0]);
    rre.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 2]);
    assert!(matches!(err_of(&with(&rre)), RfbError::Malformed(_)));
    let mut hex = rect_header(0, 0, 4, 4, enc::HEXTILE).to_vec();
    hex.extend([2 | 4 | 8, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0x00, 0x40]);
    assert!(matches!(err_of(&with(&hex)), RfbError::Malformed(_)));
    let mut big = init(8, 8, pf);
    big.extend(update_header(1));
    big.extend(rect_header(0, 0, 0xffff, 0xffff, enc::DESKTOP_SIZE));
    assert!(matches!(err_of(&big), RfbError::TooLong { .. }));
    assert!(matches!(
        err_of(&init(0xffff, 0xffff, pf)),
        RfbError::TooLong { .. }
    ));
    let mut unknown = init(8, 8, pf);
    unknown.push(9);
    assert!(matches!(err_of(&unknown), RfbError::Malformed(_)));
    let mut bad_pf = init(8, 8, pf);
    bad_pf[4] = 24;
    assert!(err_of(&bad_pf).to_string().contains("bits-per-pixel"));
    let mut d = Decoder::new();
    assert!(d.feed_client(&[1, 99]).is_err());
}

#[test]
fn zrle_tiles_that_lie_are_errors() {
    let pf = PixelFormat::RGB888;
    for tile in [
        vec![17u8],                                 // undefined subencoding
        vec![2, 1, 1, 1, 2, 2, 2],                  // packed palette without its indices
        vec![128, 9, 9, 9, 0xff, 0xff, 0xff, 0xff], // plain RLE run past the tile
        vec![130, 1, 1, 1, 2, 2, 2, 5],             // palette RLE index past the palette
        vec![0, 1, 2],                              // raw tile cut short
    ] {
        let mut z = Compress::new(Compression::fast(), true);
        let mut s = init(4, 4, pf);
        s.extend(update_header(1));
        s.extend(zrle_tiles(&mut z, 0, 0, 4, 4, &tile));
        assert!(matches!(err_of(&s), RfbError::Malformed(_)), "{tile:?}");
    }
    // A zlib bomb: far more data than a 4x4 rectangle can need.
    let mut z = Compress::new(Compression::best(), true);
    let mut s = init(4, 4, pf);
    s.extend(update_header(1));
    let mut bomb = vec![1u8, 0, 0, 0];
    bomb.resize(1 << 20, 0);
    s.extend(zrle_tiles(&mut z, 0, 0, 4, 4, &bomb));
    assert!(err_of(&s).to_string().contains("inflates past"));
}

#[test]
fn random_bytes_never_panic() {
    let pf = PixelFormat::RGB888;
    let (c, s) = session();
    let mut rng = Rng(42);
    for round in 0..300 {
        let mut d = if round % 3 == 0 {
            Decoder::framing_only()
        } else {
            Decoder::new()
        };
        let mut server = if round % 2 == 0 {
            init(64, 48, pf)
        } else {
            s.clone()
        };
        let mut client = c.clone();
        // Noise after a valid start, or flipped bytes inside a valid stream.
        if round % 2 == 0 {
            server.extend((0..2000).map(|_| rng.next() as u8));
            client.extend((0..50).map(|_| rng.next() as u8));
        } else {
            for _ in 0..4 {
                let i = rng.next() as usize % server.len();
                server[i] = rng.next() as u8;
            }
            let i = rng.next() as usize % client.len();
            client[i] = rng.next() as u8;
        }
        let _ = d.feed_client(&client);
        let mut at = 0;
        while at < server.len() {
            let n = (1 + rng.next() as usize % 300).min(server.len() - at);
            let _ = d.feed_server(&server[at..at + n]);
            at += n;
        }
        let _ = d.framebuffer().to_png();
    }
}

/// Random but plausible updates: real message types and encodings, random geometry and
/// payloads (ZRLE payloads compressed, so the tile parser sees them), so the noise gets past
/// the headers into every decoder.
#[test]
fn random_rectangles_never_panic() {
    let pf = PixelFormat::RGB888;
    let encodings = [0, 1, 2, 5, 16, -239, -223, -224, -308];
    let mut rng = Rng(7);
    for round in 0..400 {
        let mut z = Compress::new(Compression::fast(), true);
        let mut s = init(64, 48, if round % 2 == 0 { pf } else { rgb565_be() });
        for _ in 0..6 {
            let n = 1 + rng.next() % 4;
            s.extend(update_header(n as u16));
            for _ in 0..n {
                let mut r = || (rng.next() % 70) as u16;
                let (x, y, w, h) = (r(), r(), r(), r());
                let e = encodings[rng.next() as usize % encodings.len()];
                let len = rng.next() as usize % 300;
                let noise: Vec<u8> = (0..len)
                    .map(|_| (rng.next() % 260).min(255) as u8)
                    .collect();
                if e == enc::ZRLE {
                    s.extend(zrle_tiles(&mut z, x % 64, y % 48, w % 20, h % 20, &noise));
                } else {
                    s.extend(rect_header(x, y, w, h, e));
                    s.extend(noise);
                }
            }
        }
        let mut d = Decoder::new();
        let mut at = 0;
        while at < s.len() {
            let n = (1 + rng.next() as usize % 500).min(s.len() - at);
            if d.feed_server(&s[at..at + n]).is_err() {
                break;
            }
            at += n;
        }
    }
}

/// The damage of each chunk re-encoded as RGB888 ZRLE (what the console's replay does) and
/// decoded again paints the same screen, whatever the encodings and formats of the original.
#[test]
fn damage_reencoded_as_zrle_reproduces_the_screen() {
    let (c, s) = session();
    let mut d = Decoder::new();
    d.track_damage(true);
    d.feed_client(&c).unwrap();
    let mut out = Vec::new();
    let mut z = encode::ZrleStream::new();
    let mut copy: Option<Decoder> = None;
    for chunk in s.chunks(97) {
        d.feed_server(chunk).unwrap();
        let damage = d.take_damage();
        let Some(si) = d.server_init() else { continue };
        let re =
            copy.get_or_insert_with(|| decoded(&init(si.width, si.height, PixelFormat::RGB888)));
        if damage.is_empty() {
            continue;
        }
        out.clear();
        out.extend(update_header(damage.len() as u16));
        for r in &damage {
            z.rect_rgb888(d.framebuffer(), r, &mut out);
        }
        re.feed_server(&out).unwrap();
        assert_eq!(re.framebuffer().pixels(), d.framebuffer().pixels());
    }
    assert!(d.counters().rects > 3, "the session painted");
    assert_eq!(copy.unwrap().framebuffer(), d.framebuffer());
}
