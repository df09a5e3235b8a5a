//! VNC through the gateway against real TigerVNC (`Xvnc`) and `x11vnc` targets, driven by the
//! project's scripted viewer: each security type toward targets, TLS-first on both sides,
//! certificate errors, old clients, kill, slow readers, malformed messages, and what the trail
//! renders (snapshots, FBS) compared with the pixels the viewer received.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::vnc::{
    Certs, Mode, PLAIN_PASSWORD, PLAIN_USER, Refused, Viewer, X11vnc, Xvnc, ended_session, start,
    target,
};
use common::*;

const ADMIN: &str = "admin-secret";
const VNC_PASSWORD: &str = "vncpw123";

fn png_rgb(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().expect("png");
    let mut buf = vec![0u8; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn snapshot_cli(trail: &str, at: Option<f64>, out: &Path) -> Vec<u8> {
    let mut c = Command::new(bin());
    c.args(["trail", "snapshot", trail, "--out"]).arg(out);
    if let Some(at) = at {
        c.args(["--at", &at.to_string()]);
    }
    let o = c.output().expect("trail snapshot");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).expect("png")
}

/// Connects as `login`, paints the target, waits to see it, types and points, and leaves.
/// Returns the viewer's last framebuffer (RGB) for comparison with the trail.
fn desktop_round_trip(
    gw: &Gateway,
    certs: &Certs,
    login: &str,
    x: &Xvnc,
    mode: Mode,
) -> (Viewer, Vec<u8>) {
    let mut v = Viewer::connect(
        gw.vnc.expect("vnc"),
        &certs.path("ca.pem"),
        login,
        ALICE_PASSWORD,
        mode,
    )
    .unwrap_or_else(|e| panic!("connect as {login}: {e:?}\n{}", gw.log()));
    assert_eq!(v.init.name, format!("testdesk{}", x.port));
    assert_eq!((v.init.width, v.init.height), (320, 240));
    v.setup_default();
    x.solid("#3366cc");
    v.until_pixel(10, 10, [0x33, 0x66, 0xcc]);
    v.until_pixel(300, 200, [0x33, 0x66, 0xcc]);
    for k in [0x61u32, 0x62, 0x63] {
        v.key(k);
    }
    v.pointer(50, 60, 0);
    v.pointer(51, 61, 1);
    v.pointer(51, 61, 0);
    // One more round trip so the events reached the target before we leave.
    v.request(true);
    let fb = v.dec.framebuffer().pixels().to_vec();
    (v, fb)
}

fn check_recorded(gw: &Gateway, name: &str, viewer_fb: &[u8], security: &str) -> serde_json::Value {
    let s = ended_session(gw, name);
    assert_eq!(s["protocol"], "vnc");
    assert_eq!(s["verdict"], "accept", "{s}");
    assert_eq!(s["trail"]["integrity"], "sealed", "{s}");
    assert_eq!(s["vnc"]["target"]["security"], security, "{s}");
    assert_eq!(
        s["vnc"]["client"]["security"]
            .as_str()
            .map(|x| x.starts_with("vencrypt-")),
        Some(true)
    );
    assert_eq!(s["vnc"]["client"]["tls_version"], "TLSv1_3", "{s}");
    assert!(
        s["vnc"]["client"]["tls_cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS_")),
        "{s}"
    );
    assert_eq!(s["vnc"]["width"], 320);
    let trail = gw.trail_of(&s).display().to_string();
    let (rc, out) = trail_verify(Path::new(&trail));
    assert_eq!(rc, 0, "{out}");
    // The trail renders exactly what the viewer saw.
    let png = snapshot_cli(&trail, None, &gw.dir.path().join(format!("{name}.png")));
    let (w, h, rgb) = png_rgb(&png);
    assert_eq!((w, h), (320, 240));
    assert!(
        rgb == viewer_fb,
        "snapshot of {name} differs from the viewer's screen"
    );
    let info = trail_info(Path::new(&trail));
    assert_eq!(info["vnc"]["key_events"], 6, "{info}");
    assert_eq!(info["vnc"]["pointer_events"], 3, "{info}");
    assert!(info["vnc"]["updates"].as_u64().unwrap_or(0) >= 2, "{info}");
    s
}

#[test]
fn each_target_security_type_relays_and_records_the_desktop() {
    if !common::vnc::have_vnc_peers() {
        panic!("Xvnc missing: run scripts/install-test-deps.sh");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let certs0 = Certs::make(&tmp.path().join("targetcerts"));
    let vncauth = Xvnc::start(tmp.path(), "VncAuth", &certs0, Some(VNC_PASSWORD)).expect("xvnc");
    let x509vnc = Xvnc::start(tmp.path(), "X509Vnc", &certs0, Some(VNC_PASSWORD)).expect("xvnc");
    let x509plain = Xvnc::start(tmp.path(), "X509Plain", &certs0, None).expect("xvnc");
    let none = Xvnc::start(tmp.path(), "None", &certs0, None).expect("xvnc");
    let ca = certs0.path("ca.pem");
    let targets = [
        target("d-vncauth", vncauth.port, &format!("tls = \"none\"\npassword = \"{VNC_PASSWORD}\"")),
        target("d-x509vnc", x509vnc.port, &format!("ca_file = \"{}\"\npassword = \"{VNC_PASSWORD}\"", ca.display())),
        target(
            "d-x509plain",
            x509plain.port,
            &format!("tls_fingerprint = \"{}\"\nuser = \"{PLAIN_USER}\"\npassword = \"{PLAIN_PASSWORD}\"", certs0.target_fingerprint),
        ),
        target("d-none", none.port, "tls = \"none\""),
    ]
    .concat();
    let (gw, certs) = start(&targets);
    for (name, x, sec) in [
        ("d-vncauth", &vncauth, "vnc-auth"),
        ("d-x509vnc", &x509vnc, "vencrypt-x509-vnc"),
        ("d-x509plain", &x509plain, "vencrypt-x509-plain"),
        ("d-none", &none, "none"),
    ] {
        let (v, fb) = desktop_round_trip(&gw, &certs, &format!("alice@{name}"), x, Mode::Vencrypt);
        v.close();
        let s = check_recorded(&gw, name, &fb, sec);
        if sec != "none" && sec != "vnc-auth" {
            assert_eq!(s["vnc"]["target"]["tls_version"], "TLSv1_3", "{s}");
        }
        let _ = x.log();
    }
    // The API serves the same picture as the CLI.
    let s = ended_session(&gw, "d-x509plain");
    let id = s["id"].as_str().expect("id");
    let (code, png) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/snapshot"),
        Some(ADMIN),
        None,
    );
    assert_eq!(code, 200);
    let cli = snapshot_cli(
        &gw.trail_of(&s).display().to_string(),
        None,
        &gw.dir.path().join("api.png"),
    );
    assert_eq!(png_rgb(&png).2, png_rgb(&cli).2);
    let text = gw.metrics_text(ADMIN);
    assert!(
        metric_value(
            &text,
            "trailgate_relayed_bytes_total{protocol=\"vnc\",direction=\"s2c\"}"
        ) > 0.0,
        "{text}"
    );
}

#[test]
fn tls_first_on_both_legs_with_x11vnc() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let x11 = X11vnc::start(tmp.path(), &x, &tc, VNC_PASSWORD).expect("x11vnc");
    let (gw, certs) = start(&target(
        "desk1",
        x11.port,
        &format!(
            "tls = \"tls-first\"\nca_file = \"{}\"\npassword = \"{VNC_PASSWORD}\"",
            tc.path("ca.pem").display()
        ),
    ));
    // `alice` alone: she may use exactly one VNC target.
    let (v, fb) = desktop_round_trip(&gw, &certs, "alice", &x, Mode::TlsFirst);
    v.close();
    let s = check_recorded(&gw, "desk1", &fb, "vnc-auth");
    assert_eq!(s["vnc"]["target"]["tls_mode"], "tls-first");
    assert_eq!(s["vnc"]["client"]["tls_mode"], "tls-first");
    assert_eq!(s["vnc"]["client"]["security"], "vencrypt-plain");
}

#[test]
fn refusals_say_why_and_are_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let other = Certs::make(&tmp.path().join("othercerts"));
    let x = Xvnc::start(tmp.path(), "X509Vnc", &tc, Some(VNC_PASSWORD)).expect("xvnc");
    let targets = [
        target(
            "good",
            x.port,
            &format!(
                "ca_file = \"{}\"\npassword = \"{VNC_PASSWORD}\"\nallow_users = [\"alice\"]",
                tc.path("ca.pem").display()
            ),
        ),
        target(
            "wrongca",
            x.port,
            &format!(
                "ca_file = \"{}\"\npassword = \"{VNC_PASSWORD}\"",
                other.path("ca.pem").display()
            ),
        ),
        target(
            "wrongpin",
            x.port,
            &format!(
                "tls_fingerprint = \"{}\"\npassword = \"{VNC_PASSWORD}\"",
                other.target_fingerprint
            ),
        ),
        target(
            "badpw",
            x.port,
            &format!(
                "ca_file = \"{}\"\npassword = \"not-it\"",
                tc.path("ca.pem").display()
            ),
        ),
    ]
    .concat();
    let (gw, certs) = start(&targets);
    let addr = gw.vnc.expect("vnc");
    let ca = certs.path("ca.pem");
    let reason = |login: &str, pw: &str| match Viewer::connect(addr, &ca, login, pw, Mode::Vencrypt)
    {
        Err(Refused::Reason(r)) => r,
        Err(e) => panic!("{login}: no reason: {e:?}"),
        Ok(_) => panic!("{login}: accepted"),
    };
    for t in ["wrongca", "wrongpin"] {
        let r = reason(&format!("alice@{t}"), ALICE_PASSWORD);
        assert!(r.contains("certificate"), "{t}: {r}");
        let s = ended_session(&gw, t);
        assert_eq!(s["verdict"], "key-error", "{s}");
    }
    let r = reason("alice@badpw", ALICE_PASSWORD);
    assert!(r.contains("refused the gateway's credentials"), "{r}");
    assert_eq!(ended_session(&gw, "badpw")["verdict"], "auth-fail");
    let r = reason("alice@good", "wrong password");
    assert_eq!(r, "authentication failed");
    let r = reason("bob@good", ALICE_PASSWORD);
    assert!(r.contains("not available to bob"), "{r}");
    let r = reason("alice", ALICE_PASSWORD);
    assert!(r.contains("choose a target"), "{r}");
    let (items, _) = gw.sessions("verdict=gw-auth-fail", ADMIN);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["protocol"], "vnc");

    // Old clients are told why, in their version's way.
    use std::io::{Read, Write};
    for (version, head) in [("RFB 003.003\n", 4usize), ("RFB 003.007\n", 1)] {
        let mut t = std::net::TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut line = [0u8; 12];
        t.read_exact(&mut line).expect("version");
        t.write_all(version.as_bytes()).expect("write");
        let mut h = vec![0u8; head];
        t.read_exact(&mut h).expect("refusal");
        assert!(h.iter().all(|b| *b == 0), "{version}: {h:?}");
        let mut len = [0u8; 4];
        t.read_exact(&mut len).expect("len");
        let mut why = vec![0u8; u32::from_be_bytes(len) as usize];
        t.read_exact(&mut why).expect("reason");
        assert!(
            String::from_utf8_lossy(&why).contains("RFB 3.8"),
            "{version}"
        );
    }
}

#[test]
fn kill_slow_reader_and_malformed_messages_end_only_their_session() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "VncAuth", &tc, Some(VNC_PASSWORD)).expect("xvnc");
    let (gw, certs) = start(&target(
        "desk",
        x.port,
        &format!("tls = \"none\"\npassword = \"{VNC_PASSWORD}\""),
    ));
    let addr = gw.vnc.expect("vnc");
    let ca = certs.path("ca.pem");
    let connect = || {
        Viewer::connect(addr, &ca, "alice@desk", ALICE_PASSWORD, Mode::Vencrypt).expect("connect")
    };

    // A viewer that asks for full raw frames and never reads: the gateway's memory stays flat.
    let mut slow = connect();
    slow.setup(&[0]);
    let mut watcher = connect();
    watcher.setup_default();
    x.solid("#00ff00");
    watcher.until_pixel(5, 5, [0, 255, 0]);
    let before = gw.rss_kib();
    for _ in 0..400 {
        slow.request(false); // 320x240x4 = 300 KiB each: 120 MiB if anything queued them
    }
    for c in ["#ff0000", "#0000ff", "#00ff00", "#ff00ff"] {
        x.solid(c);
    }
    // The other session is unaffected while the slow one is stuck.
    x.solid("#ffff00");
    watcher.until_pixel(5, 5, [255, 255, 0]);
    let grew = gw.rss_kib().saturating_sub(before);
    assert!(
        grew < 24 * 1024,
        "gateway grew by {grew} KiB behind a viewer that does not read"
    );

    // Malformed input ends that session only.
    let mut bad = connect();
    bad.send_raw(&[200, 1, 2, 3]).expect("send");
    assert!(
        bad.wait_closed(Duration::from_secs(10)).is_some(),
        "malformed session not closed"
    );
    x.solid("#00ffff");
    watcher.until_pixel(5, 5, [0, 255, 255]);

    // Kill through the API ends the watcher's session at once.
    let (items, _) = gw.sessions("active=true", ADMIN);
    assert_eq!(items.len(), 2, "slow and watcher remain");
    let watcher_id = items
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .max()
        .expect("id");
    let t = std::time::Instant::now();
    let (code, _) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{watcher_id}/kill"),
        Some(ADMIN),
        Some(r#"{"reason":"test kill"}"#),
    );
    assert_eq!(code, 200);
    let closed = watcher
        .wait_closed(Duration::from_secs(5))
        .expect("killed viewer not closed");
    eprintln!(
        "kill: viewer closed {:?} after the request (API answered at {:?})",
        closed,
        t.elapsed()
    );
    let (_, items) = (0, gw.sessions("", ADMIN).0);
    let killed = items
        .iter()
        .find(|s| s["id"] == watcher_id.as_str())
        .expect("record");
    assert_eq!(killed["status"], "terminated", "{killed}");
    assert!(
        killed["end_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("test kill")
    );
    let malformed = items
        .iter()
        .find(|s| {
            s["end_reason"]
                .as_str()
                .unwrap_or_default()
                .contains("malformed client message")
        })
        .expect("malformed session record");
    assert_eq!(malformed["trail"]["integrity"], "sealed");
    slow.close();
}

#[test]
fn fbs_export_replays_to_the_recorded_final_frame() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let (gw, certs) = start(&target("desk", x.port, "tls = \"none\""));
    let (mut v, _) = desktop_round_trip(&gw, &certs, "alice@desk", &x, Mode::Vencrypt);
    let blue_seen = std::time::SystemTime::now();
    x.solid("#804020");
    v.until_pixel(100, 100, [0x80, 0x40, 0x20]);
    let fb = v.dec.framebuffer().pixels().to_vec();
    v.close();
    let s = ended_session(&gw, "desk");
    let trail = &gw.trail_of(&s).display().to_string();
    let out = gw.dir.path().join("s.fbs");
    let o = Command::new(bin())
        .args(["trail", "export", trail, "--format", "fbs", "--out"])
        .arg(&out)
        .output()
        .expect("export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = std::fs::read(&out).expect("fbs");
    assert!(file.starts_with(b"FBS 001.000\n"));
    let blocks = trailgate_rfb::fbs::read_blocks(&file).expect("blocks");
    assert!(blocks.len() > 3);
    assert!(
        blocks.windows(2).all(|w| w[0].0 <= w[1].0),
        "timestamps go forward"
    );
    let replayed = trailgate_rfb::fbs::replay(&file).expect("replay");
    assert!(
        replayed.framebuffer().pixels() == &fb[..],
        "FBS replay differs from the viewer's last frame"
    );
    // A snapshot at a moment in the middle shows the colour of that moment.
    let start_us = s["start_unix_us"].as_i64().expect("start");
    let seen_us = blue_seen
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let at = (seen_us - start_us) as f64 / 1e6;
    let png = snapshot_cli(trail, Some(at), &gw.dir.path().join("mid.png"));
    let (w, _, rgb) = png_rgb(&png);
    let i = (100 * w as usize + 100) * 3;
    assert_eq!(&rgb[i..i + 3], &[0x33, 0x66, 0xcc], "at {at}s");
}

#[test]
fn inactivity_counts_keys_and_pointer_only_idle_counts_any_traffic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let targets = target(
        "desk",
        x.port,
        "tls = \"none\"\nsettings_policy = \"short\"",
    ) + "\n[settings_policies.short]\ninactivity_timeout = \"1500ms\"\n";
    let (gw, certs) = start(&targets);
    let addr = gw.vnc.expect("vnc");
    let mut v = Viewer::connect(
        addr,
        &certs.path("ca.pem"),
        "alice@desk",
        ALICE_PASSWORD,
        Mode::Vencrypt,
    )
    .expect("connect");
    v.setup_default();
    // Update requests and the updates they bring are traffic, not input: the session ends.
    let t = std::time::Instant::now();
    let mut i = 0u32;
    let closed = loop {
        x.solid(if i.is_multiple_of(2) {
            "#101010"
        } else {
            "#202020"
        });
        v.request(true);
        if v.wait_update().is_err() {
            break t.elapsed();
        }
        i += 1;
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not ended for inactivity"
        );
    };
    assert!(
        closed >= Duration::from_millis(1400) && closed < Duration::from_millis(2500),
        "ended after {closed:?}"
    );
    let s = ended_session(&gw, "desk");
    assert!(
        s["end_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("inactivity timeout"),
        "{s}"
    );

    // Keys keep it alive past the timeout.
    let mut v = Viewer::connect(
        addr,
        &certs.path("ca.pem"),
        "alice@desk",
        ALICE_PASSWORD,
        Mode::Vencrypt,
    )
    .expect("connect");
    v.setup_default();
    // Typing for twice the timeout, each key paced by a non-incremental update (answered at
    // once, unlike an incremental one that waits for a change): the session stays.
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(3000) {
        v.key(0xffe1); // Shift: changes nothing on the screen
        v.request(false);
        v.wait_update()
            .expect("session alive while typing past the timeout");
    }
}
