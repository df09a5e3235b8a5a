//! The web console in a real browser (headless Chromium over WebDriver): sign in with a token,
//! see a real ssh session appear while active, watch its output live, kill it as admin, play
//! it back in the terminal player, find no kill button as auditor, replay a VNC session in
//! noVNC and seek in it; the pages' security headers.

mod common;

use std::io::Write;
use std::time::Instant;

use common::browser::Browser;
use common::vnc::{Certs, Mode, Viewer, Xvnc, ended_session, start, target};
use common::*;

use serde_json::json;

/// Signs in and waits for the sessions page.
fn signed_in(b: &Browser, gw: &Gateway, token: &str) {
    sign_in(b, gw, token);
    b.wait_js(
        "the sessions page",
        20,
        "return document.querySelector('#sessions') !== null",
    );
}

fn sign_in(b: &Browser, gw: &Gateway, token: &str) {
    b.goto(&format!("http://{}/", gw.api));
    b.wait_js(
        "the sign-in form",
        20,
        "return document.querySelector('#token') !== null",
    );
    b.fill("#token", token);
    b.click("#signin button[type=submit]");
}

#[test]
fn console_signs_in_lists_watches_kills_and_replays_ssh_sessions() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    // The pages carry the security headers, and no script is inline.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", &format!("http://{}/", gw.api)])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        page.contains(
            "content-security-policy: default-src 'none'; script-src 'self' 'wasm-unsafe-eval';"
        ),
        "{page}"
    );
    assert!(page.contains("x-frame-options: deny"), "{page}");
    assert!(!page.contains("<script>"), "no inline scripts");

    let b = Browser::start();
    // A bad token is refused, and nothing else is shown.
    sign_in(&b, &gw, "not-a-token");
    b.wait_js(
        "the refusal",
        20,
        "const e = document.querySelector('#signin-error'); return e && e.textContent.includes('refused');",
    );
    signed_in(&b, &gw, ADMIN_SECRET);
    assert!(b.text().contains("admin-tok (admin)"), "{}", b.text());

    // A real interactive session appears while active.
    let (mut child, mut stdin) = gw.shell();
    stdin.write_all(b"echo live-$((40+2))\n").unwrap();
    let id = b
        .wait_js(
            "the active session in the list",
            20,
            "const r = [...document.querySelectorAll('#sessions tr[data-id]')]\
               .find(r => r.textContent.includes('active')); return r ? r.dataset.id : null;",
        )
        .as_str()
        .unwrap()
        .to_string();
    b.click(&format!("#sessions tr[data-id='{id}']"));
    // Its output, live, then what is typed next.
    b.wait_js(
        "live output",
        20,
        "const e = document.querySelector('#live'); return e && e.textContent.includes('live-42');",
    );
    stdin.write_all(b"echo next-$((50+5))\n").unwrap();
    b.wait_js(
        "the next line, live",
        20,
        "const e = document.querySelector('#live'); return e && e.textContent.includes('next-55');",
    );
    // Admin kills it from the page, with a reason; the client is disconnected.
    b.fill("#kill-reason", "console check");
    b.click("#kill");
    b.wait_js(
        "the kill result",
        20,
        "const e = document.querySelector('#kill-result'); return e && e.textContent.includes('console check');",
    );
    let status = child.wait().unwrap();
    assert!(!status.success());
    let (_, rec) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), ADMIN_SECRET);
    assert_eq!(rec["terminated_by"], "api token admin-tok", "{rec}");

    // Played back: the terminal player renders what was typed.
    b.goto(&format!("http://{}/#/sessions", gw.api));
    b.goto(&format!("http://{}/#/session/{id}", gw.api));
    b.wait_js(
        "the replay shows the output",
        30,
        "const t = document.querySelector('#terminal'); return t && t.innerText.includes('next-55');",
    );
    b.wait_js(
        "verify result",
        20,
        "const v = document.querySelector('#verify'); return v && v.textContent.includes('sealed');",
    );

    // An auditor sees the session and no kill button; the API refuses an auditor's kill.
    let (mut other, mut other_in) = gw.shell();
    other_in.write_all(b"echo audited\n").unwrap();
    let live = wait_until("the second session live", 20, || {
        let (items, _) = gw.sessions("active=true", ADMIN_SECRET);
        items
            .first()
            .and_then(|s| s["id"].as_str().map(str::to_string))
    });
    b.click("#signout");
    signed_in(&b, &gw, AUDIT_SECRET);
    assert!(b.text().contains("audit-tok (auditor)"), "{}", b.text());
    b.goto(&format!("http://{}/#/session/{live}", gw.api));
    b.wait_js(
        "the auditor's live view",
        20,
        "const e = document.querySelector('#live'); return e && e.textContent.includes('audited');",
    );
    assert_eq!(
        b.js("return document.querySelector('#kill') === null", json!([])),
        true,
        "no kill button for auditors"
    );
    let refused = b.js(
        "const r = await fetch(arguments[0], {method: 'POST', headers: \
           {Authorization: 'Bearer ' + sessionStorage.getItem('tg_token')}}); return r.status;",
        json!([format!("/api/v1/sessions/{live}/kill")]),
    );
    assert_eq!(refused, 403);
    // The token is in the tab's storage only, never in a URL.
    let url = b.js("return location.href", json!([]));
    assert!(!url.as_str().unwrap().contains(AUDIT_SECRET));
    other_in.write_all(b"exit\n").unwrap();
    drop(other_in);
    let _ = other.wait();
}

/// The colour of the noVNC canvas at (x, y), or null before it shows anything.
fn canvas_pixel(x: u32, y: u32) -> String {
    format!(
        "const c = document.querySelector('#vnc-screen canvas'); \
         if (!c || !c.width) return null; \
         const d = c.getContext('2d').getImageData({x}, {y}, 1, 1).data; \
         return [d[0], d[1], d[2]];"
    )
}

#[test]
fn console_replays_a_vnc_session_in_novnc_with_seek() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let (gw, certs) = start(&target("desk", x.port, "tls = \"none\""));
    let mut v = Viewer::connect(
        gw.vnc.expect("vnc"),
        &certs.path("ca.pem"),
        "alice@desk",
        ALICE_PASSWORD,
        Mode::Vencrypt,
    )
    .expect("viewer");
    v.setup_default();
    x.solid("#20a040");
    v.until_pixel(100, 100, [0x20, 0xa0, 0x40]);
    let green_seen = Instant::now();
    // Starting the browser puts a while of green screen in the recording.
    let b = Browser::start();
    sign_in(&b, &gw, ADMIN_SECRET);
    let red_set = Instant::now();
    x.solid("#c03020");
    v.until_pixel(100, 100, [0xc0, 0x30, 0x20]);
    v.close();
    let closed = Instant::now();
    let s = ended_session(&gw, "desk");
    let id = s["id"].as_str().unwrap();
    // The middle of the green while, in seconds since the session start.
    let green_at = s["duration"].as_f64().unwrap() - (closed - green_seen).as_secs_f64()
        + (red_set - green_seen).as_secs_f64() / 2.0;

    b.wait_js(
        "the sessions page",
        20,
        "return document.querySelector('#sessions') !== null",
    );
    b.goto(&format!("http://{}/#/session/{id}", gw.api));
    // noVNC plays the recording to its end: the last colour, in noVNC's canvas.
    b.wait_js(
        "the replay's end",
        30,
        "return document.querySelector('#player').dataset.ended === '1'",
    );
    let px = b.wait_js("the last screen", 10, &canvas_pixel(100, 100));
    assert_eq!(px, json!([0xc0, 0x30, 0x20]));
    // At the recorded pace: the green while (under the idle limit) took its real time.
    let played = b.js(
        "return Number(document.querySelector('#player').dataset.playedMs)",
        json!([]),
    );
    let green_ms = (red_set - green_seen).as_millis() as u64;
    assert!(
        played.as_u64().unwrap() >= green_ms,
        "played in {played} ms, green lasted {green_ms} ms"
    );
    // Paused, a seek shows the screen of that moment (green) and stays there.
    b.js(
        &format!("window.tgVnc.pause(); window.tgVnc.seek({green_at:.3}); return true;"),
        json!([]),
    );
    b.wait_js(
        "the green screen after the seek",
        20,
        &format!(
            "const p = (function() {{ {} }})(); return p && p[0] === 0x20 && p[1] === 0xa0 && p[2] === 0x40;",
            canvas_pixel(100, 100)
        ),
    );
    assert_eq!(
        b.js(
            "return document.querySelector('#vnc-status').textContent",
            json!([])
        ),
        json!("Paused")
    );
    // Thumbnails: scaled snapshots across the session.
    let n = b.wait_js(
        "thumbnails",
        20,
        "const t = [...document.querySelectorAll('#vnc-thumbs img')].filter((i) => i.complete && i.naturalWidth === 160); \
         return t.length >= 4 ? t.length : null;",
    );
    assert!(n.as_u64().unwrap() >= 4, "{n}");
    let errors = b.js("return window.tgErrors", json!([]));
    assert_eq!(errors, json!([]), "script errors");
}

#[test]
fn console_edits_settings_policies_as_admin_only() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let b = Browser::start();
    signed_in(&b, &gw, ADMIN_SECRET);
    b.goto(&format!("http://{}/#/policies", gw.api));
    b.wait_js(
        "the new-policy editor",
        20,
        "return document.querySelector(\"[data-policy='ssh/new'] textarea\") !== null",
    );
    // A body the API refuses: its message, naming the field, is shown.
    b.fill("[data-policy='ssh/new'] .new-key", "strict");
    b.fill("[data-policy='ssh/new'] textarea", r#"{"timeout": "soon"}"#);
    b.click("[data-policy='ssh/new'] .save");
    b.wait_js(
        "the refusal",
        20,
        "const r = document.querySelector(\"[data-policy='ssh/new'] .result\"); \
         return r && r.textContent.includes('body.timeout');",
    );
    b.fill(
        "[data-policy='ssh/new'] textarea",
        r#"{"timeout": 600, "inactivity_timeout": {"enabled": false}}"#,
    );
    b.click("[data-policy='ssh/new'] .save");
    b.wait_js(
        "the saved policy listed",
        20,
        "return document.querySelector(\"[data-policy='ssh/strict'] textarea\") !== null",
    );
    let (code, v) = gw.api_json(
        "GET",
        "/api/v1/configuration/ssh/settings_policies/strict",
        AUDIT_SECRET,
    );
    assert_eq!(
        (code, v["body"]["timeout"].as_u64()),
        (200, Some(600)),
        "{v}"
    );
    let (_, changes) = gw.api_json("GET", "/api/v1/configuration/changes", AUDIT_SECRET);
    assert_eq!(changes["items"][0]["by"], "admin-tok", "{changes}");

    // An auditor reads the policies and cannot change them.
    b.click("#signout");
    signed_in(&b, &gw, AUDIT_SECRET);
    b.goto(&format!("http://{}/#/policies", gw.api));
    b.wait_js(
        "the policy, read-only",
        20,
        "const t = document.querySelector(\"[data-policy='ssh/strict'] textarea\"); \
         return t && t.readOnly && t.value.includes('600');",
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('.save, .delete').length",
            json!([])
        ),
        0
    );
}
