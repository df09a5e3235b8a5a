//! Every encoding and pixel format, from hand-built streams fed whole.

use flate2::{Compress, Compression, FlushCompress};

use super::*;
use crate::client::encoding as enc;
use crate::encode::{self, rect_header, update_header};

pub(super) const RED: [u8; 3] = [255, 0, 0];
pub(super) const GREEN: [u8; 3] = [0, 255, 0];
pub(super) const BLUE: [u8; 3] = [0, 0, 255];
pub(super) const WHITE: [u8; 3] = [255, 255, 255];
pub(super) const BLACK: [u8; 3] = [0, 0, 0];

pub(super) fn init(w: u16, h: u16, pf: PixelFormat) -> Vec<u8> {
    ServerInit {
        width: w,
        height: h,
        pixel_format: pf,
        name: "test desk".into(),
    }
    .to_bytes()
}

pub(super) fn rgb565_be() -> PixelFormat {
    PixelFormat {
        bits_per_pixel: 16,
        depth: 16,
        big_endian: true,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    }
}

/// 32 bpp, big-endian, red in the top byte (what TigerVNC's viewer asks for).
pub(super) fn xrgb_be_high() -> PixelFormat {
    PixelFormat {
        big_endian: true,
        red_shift: 24,
        green_shift: 16,
        blue_shift: 8,
        ..PixelFormat::RGB888
    }
}

fn bgr233() -> PixelFormat {
    PixelFormat {
        bits_per_pixel: 8,
        depth: 8,
        big_endian: false,
        true_colour: true,
        red_max: 7,
        green_max: 7,
        blue_max: 3,
        red_shift: 0,
        green_shift: 3,
        blue_shift: 6,
    }
}

pub(super) fn decoded(server: &[u8]) -> Decoder {
    let mut d = Decoder::new();
    d.feed_server(server).unwrap();
    d
}

fn update(rects: &[Vec<u8>]) -> Vec<u8> {
    let mut v = update_header(rects.len() as u16).to_vec();
    for r in rects {
        v.extend_from_slice(r);
    }
    v
}

fn row(d: &Decoder, y: u16) -> Vec<[u8; 3]> {
    (0..d.framebuffer().width())
        .map(|x| d.framebuffer().pixel(x, y).unwrap())
        .collect()
}

#[test]
fn raw_in_every_true_colour_format() {
    for pf in [PixelFormat::RGB888, rgb565_be(), xrgb_be_high(), bgr233()] {
        let mut s = init(3, 2, pf);
        let colours = [RED, GREEN, BLUE, WHITE, BLACK, RED];
        s.extend(update(&[encode::raw_rect(&pf, 0, 0, 3, 2, &colours)]));
        let d = decoded(&s);
        assert_eq!(row(&d, 0), [RED, GREEN, BLUE], "{pf:?}");
        assert_eq!(row(&d, 1), [WHITE, BLACK, RED], "{pf:?}");
        assert_eq!(d.counters().updates, 1);
        assert_eq!(d.pixel_format(), Some(pf));
    }
}

#[test]
fn colour_map_mode() {
    let pf = PixelFormat {
        true_colour: false,
        ..bgr233()
    };
    let mut s = init(2, 1, pf);
    s.extend(encode::colour_map_entries(
        5,
        &[[0xffff, 0, 0], [0, 0x8000, 0xffff]],
    ));
    s.extend(update(&[{
        let mut r = rect_header(0, 0, 2, 1, enc::RAW).to_vec();
        r.extend([6, 5]);
        r
    }]));
    let d = decoded(&s);
    assert_eq!(row(&d, 0), [[0, 0x80, 0xff], RED]);
}

#[test]
fn copy_rect_and_rre() {
    let pf = PixelFormat::RGB888;
    let mut s = init(4, 4, pf);
    let mut rre = rect_header(0, 0, 4, 2, enc::RRE).to_vec();
    rre.extend(2u32.to_be_bytes());
    rre.extend(encode::pixels(&pf, &[BLUE]));
    for (c, x, y, w, h) in [(RED, 0u16, 0u16, 1u16, 1u16), (GREEN, 2, 1, 2, 1)] {
        rre.extend(encode::pixels(&pf, &[c]));
        for v in [x, y, w, h] {
            rre.extend(v.to_be_bytes());
        }
    }
    let mut copy = rect_header(0, 2, 4, 2, enc::COPY_RECT).to_vec();
    copy.extend([0, 0, 0, 0]);
    s.extend(update(&[rre, copy]));
    let d = decoded(&s);
    assert_eq!(row(&d, 0), [RED, BLUE, BLUE, BLUE]);
    assert_eq!(row(&d, 1), [BLUE, BLUE, GREEN, GREEN]);
    assert_eq!(row(&d, 2), row(&d, 0));
    assert_eq!(row(&d, 3), row(&d, 1));
    assert_eq!(d.counters().rects, 2);
}

/// A 20x18 Hextile rectangle: four tiles (two partial) using every subencoding bit.
pub(super) fn hextile_rect(pf: &PixelFormat) -> Vec<u8> {
    let px = |c| encode::pixels(pf, &[c]);
    let mut r = rect_header(0, 0, 20, 18, enc::HEXTILE).to_vec();
    // Tile 0 (16x16): background red, foreground green, one 3x2 subrectangle at (1, 2).
    r.push(2 | 4 | 8);
    r.extend(px(RED));
    r.extend(px(GREEN));
    r.extend([1, 0x12, 0x21]);
    // Tile 1 (4x16): raw, blue.
    r.push(1);
    r.extend(encode::pixels(pf, &[BLUE; 64]));
    // Tile 2 (16x2): nothing specified: the red background carries over.
    r.push(0);
    // Tile 3 (4x2): background white, two coloured subrectangles.
    r.push(2 | 8 | 16);
    r.extend(px(WHITE));
    r.push(2);
    r.extend(px(BLACK));
    r.extend([0x00, 0x00]);
    r.extend(px(GREEN));
    r.extend([0x31, 0x00]);
    r
}

#[test]
fn hextile_tiles() {
    for pf in [PixelFormat::RGB888, rgb565_be(), bgr233()] {
        let mut s = init(20, 18, pf);
        s.extend(update(&[hextile_rect(&pf)]));
        let d = decoded(&s);
        let fb = d.framebuffer();
        assert_eq!(fb.pixel(0, 0), Some(RED));
        assert_eq!(fb.pixel(1, 2), Some(GREEN));
        assert_eq!(fb.pixel(3, 3), Some(GREEN));
        assert_eq!(fb.pixel(4, 3), Some(RED));
        assert_eq!(fb.pixel(19, 15), Some(BLUE));
        assert_eq!(fb.pixel(5, 17), Some(RED));
        assert_eq!(fb.pixel(16, 16), Some(BLACK));
        assert_eq!(fb.pixel(19, 17), Some(GREEN));
        assert_eq!(fb.pixel(19, 16), Some(WHITE));
        assert_eq!(d.counters().updates, 1, "{pf:?}");
    }
}

/// A ZRLE rectangle from hand-written tile data, compressed through `z`.
pub(super) fn zrle_tiles(
    z: &mut Compress,
    x: u16,
    y: u16,
    w: u16,
    h: u16,
    tiles: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(tiles.len() * 2 + 64);
    z.compress_vec(tiles, &mut out, FlushCompress::Sync)
        .unwrap();
    let mut r = rect_header(x, y, w, h, enc::ZRLE).to_vec();
    r.extend((out.len() as u32).to_be_bytes());
    r.extend(out);
    r
}

#[test]
fn zrle_subencodings_share_one_zlib_stream() {
    let pf = PixelFormat::RGB888; // 3-byte cpixels
    let cp = |c: [u8; 3]| c.to_vec();
    let mut z = Compress::new(Compression::default(), true);
    let mut s = init(8, 4, pf);
    // Rect 1, 4x2 packed palette (2 colours, 1 bit per pixel, rows padded to a byte).
    let mut t = vec![2];
    t.extend(cp(RED));
    t.extend(cp(BLUE));
    t.extend([0b0101_0000, 0b1000_0000]);
    let r1 = zrle_tiles(&mut z, 0, 0, 4, 2, &t);
    // Rect 2, 4x2 plain RLE: green x3, white x5.
    let mut t = vec![128];
    t.extend(cp(GREEN));
    t.push(2);
    t.extend(cp(WHITE));
    t.push(4);
    let r2 = zrle_tiles(&mut z, 4, 0, 4, 2, &t);
    // Rect 3, 8x2 palette RLE: red (single), blue run of 10, red run of 5.
    let mut t = vec![130];
    t.extend(cp(RED));
    t.extend(cp(BLUE));
    t.extend([0, 0x81, 9, 0x80, 4]);
    let r3 = zrle_tiles(&mut z, 0, 2, 8, 2, &t);
    s.extend(update(&[r1, r2]));
    s.extend(update(&[r3]));
    let d = decoded(&s);
    assert_eq!(
        row(&d, 0),
        [RED, BLUE, RED, BLUE, GREEN, GREEN, GREEN, WHITE]
    );
    assert_eq!(
        row(&d, 1),
        [BLUE, RED, RED, RED, WHITE, WHITE, WHITE, WHITE]
    );
    assert_eq!(row(&d, 2), [RED, BLUE, BLUE, BLUE, BLUE, BLUE, BLUE, BLUE]);
    assert_eq!(row(&d, 3), [BLUE, BLUE, BLUE, RED, RED, RED, RED, RED]);
    assert_eq!(d.counters().updates, 2);
}

#[test]
fn zrle_raw_and_solid_tiles_in_every_cpixel_layout() {
    let depth32 = PixelFormat {
        depth: 32,
        ..PixelFormat::RGB888
    };
    let be_low = PixelFormat {
        big_endian: true,
        ..PixelFormat::RGB888
    };
    for pf in [
        PixelFormat::RGB888,
        be_low,
        xrgb_be_high(),
        depth32,
        rgb565_be(),
        bgr233(),
    ] {
        let mut z = Compress::new(Compression::fast(), true);
        // 70x66: four tiles, three of them partial; the left half solid red.
        let (w, h) = (70u16, 66u16);
        let rgb: Vec<[u8; 3]> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                if x < 64 {
                    RED
                } else if y % 2 == 0 {
                    BLUE
                } else {
                    WHITE
                }
            })
            .collect();
        let mut s = init(w, h, pf);
        s.extend(update(&[encode::zrle_rect(&mut z, &pf, 0, 0, w, h, &rgb)]));
        s.extend(update(&[encode::zrle_rect(
            &mut z,
            &pf,
            60,
            60,
            2,
            2,
            &[GREEN; 4],
        )]));
        let d = decoded(&s);
        let fb = d.framebuffer();
        assert_eq!(fb.pixel(0, 65), Some(RED), "{pf:?}");
        assert_eq!(fb.pixel(69, 64), Some(BLUE), "{pf:?}");
        assert_eq!(fb.pixel(66, 65), Some(WHITE), "{pf:?}");
        assert_eq!(fb.pixel(61, 61), Some(GREEN), "{pf:?}");
    }
}

#[test]
fn pseudo_encodings() {
    let pf = PixelFormat::RGB888;
    let mut s = init(4, 4, pf);
    // Cursor 9x2: pixels plus a 2-byte-wide mask, none of it on the screen.
    let mut cursor = rect_header(1, 1, 9, 2, enc::CURSOR).to_vec();
    cursor.extend(encode::pixels(&pf, &[WHITE; 18]));
    cursor.extend([0xff; 4]);
    let desktop = rect_header(0, 0, 6, 5, enc::DESKTOP_SIZE).to_vec();
    let raw = encode::raw_rect(&pf, 5, 4, 1, 1, &[GREEN]);
    s.extend(update(&[cursor, desktop, raw]));
    // ExtendedDesktopSize with two screens.
    let mut ext = rect_header(0, 0, 7, 3, enc::EXTENDED_DESKTOP_SIZE).to_vec();
    ext.extend([2, 0, 0, 0]);
    ext.extend([0u8; 32]);
    s.extend(update(&[ext.clone()]));
    let mut d = decoded(&s);
    assert_eq!((d.framebuffer().width(), d.framebuffer().height()), (7, 3));
    assert_eq!(d.counters().updates, 2);
    // A refused client request (reason 1, status 3) does not resize.
    let mut refused = rect_header(1, 3, 9, 9, enc::EXTENDED_DESKTOP_SIZE).to_vec();
    refused.extend([0, 0, 0, 0]);
    d.feed_server(&update(&[refused])).unwrap();
    assert_eq!(d.framebuffer().width(), 7);
    // LastRect ends an update announced with 0xffff rectangles.
    let mut u = update_header(0xffff).to_vec();
    u.extend(encode::raw_rect(&pf, 0, 0, 1, 1, &[RED]));
    u.extend(rect_header(0, 0, 0, 0, enc::LAST_RECT));
    u.extend(encode::bell());
    d.feed_server(&u).unwrap();
    assert_eq!(d.framebuffer().pixel(0, 0), Some(RED));
    let c = d.counters();
    assert_eq!((c.updates, c.bells, c.rects), (4, 1, 6));
    assert!(d.at_message_boundary());
}

#[test]
fn client_stream_counts_and_sets_the_pixel_format_for_the_next_update() {
    let pf16 = rgb565_be();
    let mut c = vec![1u8]; // ClientInit: shared
    c.extend(crate::client::set_pixel_format(&pf16));
    c.extend(crate::client::set_encodings(&[enc::ZRLE, enc::RAW]));
    c.extend(crate::client::update_request(false, 0, 0, 2, 1));
    c.extend(crate::client::key_event(true, 0x61));
    c.extend(crate::client::key_event(false, 0x61));
    c.extend(crate::client::pointer_event(1, 1, 1));
    c.extend([6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
    let mut d = Decoder::new();
    let mut s = init(2, 1, PixelFormat::RGB888);
    s.extend(encode::server_cut_text(b"from the server"));
    d.feed_server(&s).unwrap();
    d.feed_client(&c).unwrap();
    assert_eq!(d.pending_pixel_format(), Some(pf16));
    assert_eq!(d.pixel_format(), Some(PixelFormat::RGB888));
    d.feed_server(&update(&[encode::raw_rect(
        &pf16,
        0,
        0,
        2,
        1,
        &[RED, BLUE],
    )]))
    .unwrap();
    assert_eq!(row(&d, 0), [RED, BLUE]);
    assert_eq!(d.pixel_format(), Some(pf16));
    assert_eq!(d.first_update_pixel_format(), Some(pf16));
    let k = d.counters();
    assert_eq!(
        (
            k.key_events,
            k.pointer_events,
            k.update_requests,
            k.client_cut_texts,
            k.cut_texts
        ),
        (2, 1, 1, 1, 1)
    );
}

#[test]
fn framing_only_counts_without_pixels() {
    let pf = PixelFormat::RGB888;
    let mut z = Compress::new(Compression::fast(), true);
    let mut s = init(20, 18, pf);
    s.extend(update(&[
        encode::raw_rect(&pf, 0, 0, 2, 2, &[RED; 4]),
        hextile_rect(&pf),
        encode::zrle_rect(&mut z, &pf, 0, 0, 3, 1, &[GREEN; 3]),
    ]));
    s.extend(encode::bell());
    let mut d = Decoder::framing_only();
    d.feed_server(&s).unwrap();
    assert_eq!(
        (d.counters().updates, d.counters().rects, d.counters().bells),
        (1, 3, 1)
    );
    assert!(d.framebuffer().pixels().is_empty());
    assert_eq!(d.framebuffer().width(), 20);
    assert!(d.framebuffer().to_png().is_err());
}

#[test]
fn png_of_the_framebuffer() {
    let pf = PixelFormat::RGB888;
    let mut s = init(3, 1, pf);
    s.extend(update(&[encode::raw_rect(
        &pf,
        0,
        0,
        3,
        1,
        &[RED, GREEN, BLUE],
    )]));
    let png = decoded(&s).framebuffer().to_png().unwrap();
    let dec = png::Decoder::new(std::io::Cursor::new(png));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (3, 1, png::ColorType::Rgb)
    );
    assert_eq!(&buf[..9], &[255, 0, 0, 0, 255, 0, 0, 0, 255]);
}
