//! The session API's contract, end to end with real ssh clients: how each session ended (code,
//! who terminated it, last activity), denied commands in the catalog, one channel-kind name,
//! paging (`{items, meta}` everywhere, keyset `after`), no server paths, JSON errors for every
//! malformed request, and a catalog rebuilt from the trails that equals the live one.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::Value;

/// curl with raw arguments: the status and the body as JSON (`Null` if it is not JSON).
fn curl(gw: &Gateway, method: &str, path: &str, args: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}\n%{content_type}",
            "-X",
            method,
        ])
        .args(args)
        .arg(format!("http://{}{}", gw.api, path))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.rsplitn(3, '\n');
    let ctype = parts.next().unwrap_or("").to_string();
    let code = parts.next().unwrap_or("0").trim().parse().unwrap_or(0);
    let body = parts.next().unwrap_or("");
    (
        code,
        serde_json::from_str(body).unwrap_or(Value::Null),
        ctype,
    )
}

#[test]
fn every_malformed_request_gets_the_json_error_envelope() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    assert!(gw.exec("echo one").status.success());
    let (items, _) = wait_until("a session", 10, || {
        let r = gw.sessions("active=false", ADMIN_SECRET);
        (!r.0.is_empty()).then_some(r)
    });
    let id = items[0]["id"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {ADMIN_SECRET}");
    let a = auth.as_str();
    let json_body = ["-H", a, "-H", "Content-Type: application/json", "--data"];
    let policies = "/api/v1/configuration/ssh/settings_policies";
    // method, path, curl arguments, status, error code, a word the message contains
    type Case<'a> = (&'a str, String, Vec<&'a str>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/api/v1/sessions?limit=abc".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "limit",
        ),
        (
            "GET",
            "/api/v1/sessions?limit=0".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "limit",
        ),
        (
            "GET",
            "/api/v1/sessions?offset=-3".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "offset",
        ),
        (
            "GET",
            "/api/v1/sessions?active=maybe".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "active",
        ),
        (
            "GET",
            "/api/v1/sessions?since=yesterday".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "since",
        ),
        (
            "GET",
            "/api/v1/sessions?verdict=meh".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "verdict",
        ),
        (
            "GET",
            "/api/v1/sessions?after=nope".into(),
            vec!["-H", a],
            400,
            "bad_request",
            "after",
        ),
        (
            "GET",
            format!("/api/v1/sessions?after={id}&offset=1"),
            vec!["-H", a],
            400,
            "bad_request",
            "after",
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/channels?limit=5000"),
            vec!["-H", a],
            400,
            "bad_request",
            "limit",
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/trail_downloads?offset=x"),
            vec!["-H", a],
            400,
            "bad_request",
            "offset",
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/files/first/content"),
            vec!["-H", a],
            400,
            "bad_request",
            "parse",
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/trail?format=gif"),
            vec!["-H", a],
            400,
            "bad_request",
            "format",
        ),
        (
            "DELETE",
            "/api/v1/sessions".into(),
            vec!["-H", a],
            405,
            "method_not_allowed",
            "method",
        ),
        (
            "PUT",
            format!("/api/v1/sessions/{id}/kill"),
            vec!["-H", a],
            405,
            "method_not_allowed",
            "method",
        ),
        (
            "POST",
            policies.into(),
            vec!["-H", a, "-H", "Content-Type: text/plain", "--data", "x"],
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            "POST",
            policies.into(),
            [&json_body[..], &["{not json"]].concat(),
            400,
            "bad_request",
            "JSON",
        ),
        (
            "POST",
            policies.into(),
            [&json_body[..], &[r#"{"timeout": "soon"}"#]].concat(),
            400,
            "bad_request",
            "timeout",
        ),
        (
            "GET",
            "/api/v1/nothing-here".into(),
            vec!["-H", a],
            404,
            "not_found",
            "endpoint",
        ),
        (
            "GET",
            "/api/v1/sessions/no-such-id".into(),
            vec!["-H", a],
            404,
            "not_found",
            "no-such-id",
        ),
        (
            "GET",
            "/api/v1/sessions".into(),
            vec![],
            401,
            "unauthorized",
            "",
        ),
        (
            "GET",
            "/api/v1/sessions".into(),
            vec!["-H", "Authorization: Bearer wrong"],
            401,
            "unauthorized",
            "",
        ),
    ];
    for (method, path, args, status, code, mentions) in cases {
        let (got, v, ctype) = curl(&gw, method, &path, &args);
        assert_eq!(got, status, "{method} {path}: {v}");
        assert!(
            ctype.starts_with("application/json"),
            "{method} {path}: {ctype}"
        );
        assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "{method} {path}: {v}");
        assert!(
            msg.to_lowercase().contains(&mentions.to_lowercase()),
            "{method} {path}: the message names {mentions:?}: {v}"
        );
    }
}

fn session(gw: &Gateway, id: &str) -> Value {
    let (code, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), ADMIN_SECRET);
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn records_say_how_sessions_ended_and_a_rebuilt_catalog_equals_the_live_one() {
    let sshd = Sshd::start().unwrap();
    let mut gw =
        Gateway::start_with(&sshd, "", r#""session-shell", "session-subsystem:sftp""#).unwrap();
    // A command the channel policy denies: in the catalog with its command, as denied.
    assert!(!gw.exec("echo denied-cmd-1").status.success());
    let denied = wait_until("the denied command's session", 10, || {
        let (items, _) = gw.sessions("command=denied-cmd&active=false", ADMIN_SECRET);
        items.into_iter().next()
    });
    let ch = &denied["channels"][0];
    assert_eq!(
        (
            ch["type"].as_str(),
            ch["verdict"].as_str(),
            ch["command"].as_str()
        ),
        (
            Some("session-exec"),
            Some("deny"),
            Some("echo denied-cmd-1")
        ),
        "{denied:#}"
    );
    assert_eq!(
        denied["end_reason_code"], "client_disconnected",
        "{denied:#}"
    );
    assert!(denied["terminated_by"].is_null());

    // A shell the client leaves: typed input is the last activity.
    let (mut c, mut stdin) = gw.shell();
    stdin.write_all(b"echo typed-1\nexit\n").unwrap();
    assert!(c.wait().unwrap().success());
    let left = wait_until("the shell session ended", 10, || {
        let (items, _) = gw.sessions("active=false", ADMIN_SECRET);
        items
            .into_iter()
            .find(|s| s["channels"][0]["type"] == "session-shell")
    });
    assert_eq!(left["end_reason_code"], "client_disconnected", "{left:#}");
    assert_eq!(left["status"], "disconnected");
    let (start, last, end) = (
        left["start_time"].as_str().unwrap(),
        left["last_activity"].as_str().expect("last_activity"),
        left["end_time"].as_str().unwrap(),
    );
    assert!(start <= last && last <= end, "{left:#}");

    // A shell an operator kills.
    let (mut c, mut stdin) = gw.shell();
    stdin.write_all(b"echo typed-2\n").unwrap();
    let live = wait_until("the shell is live", 10, || {
        let (items, _) = gw.sessions("active=true", ADMIN_SECRET);
        items
            .into_iter()
            .find(|s| s["channels"][0]["type"] == "session-shell")
    });
    let kid = live["id"].as_str().unwrap().to_string();
    assert!(live["last_activity"].is_string(), "{live:#}");
    assert!(live["end_reason_code"].is_null());
    let (code, _) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{kid}/kill"),
        Some(ADMIN_SECRET),
        Some(r#"{"reason": "audit"}"#),
    );
    assert_eq!(code, 200);
    let _ = c.wait();
    let killed = session(&gw, &kid);
    assert_eq!(
        (
            killed["end_reason_code"].as_str(),
            killed["terminated_by"].as_str(),
            killed["status"].as_str(),
            killed["end_reason"].as_str()
        ),
        (
            Some("killed"),
            Some("api token admin-tok"),
            Some("terminated"),
            Some("terminated by api token admin-tok: audit")
        ),
        "{killed:#}"
    );

    // A wrong password: refused by the gateway, no trail.
    let o = gw.password_ssh("wrong", &["-o", "NumberOfPasswordPrompts=1"], "true");
    assert!(!o.status.success());
    let refused = wait_until("the refused session", 10, || {
        let (items, _) = gw.sessions("verdict=gw-auth-fail", ADMIN_SECRET);
        items.into_iter().next()
    });
    assert_eq!(
        refused["end_reason_code"], "gateway_auth_failed",
        "{refused:#}"
    );
    assert!(refused["trail"]["url"].is_null(), "{refused:#}");

    // Lists: `{items, meta}` everywhere; keyset paging walks the same sessions as offsets.
    let (code, chans) = gw.api_json(
        "GET",
        &format!("/api/v1/sessions/{kid}/channels?limit=1"),
        AUDIT_SECRET,
    );
    assert_eq!(code, 200);
    assert_eq!(chans["meta"]["total"], 1, "{chans}");
    assert_eq!(chans["items"][0]["type"], "session-shell");
    let (code, dl) = gw.api_json(
        "GET",
        &format!("/api/v1/sessions/{kid}/trail_downloads"),
        AUDIT_SECRET,
    );
    assert_eq!((code, dl["meta"]["total"].as_u64()), (200, Some(0)), "{dl}");
    let (all, total) = gw.sessions("", ADMIN_SECRET);
    assert_eq!(total, 4);
    let mut walked = Vec::new();
    let mut next =
        Some("/api/v1/sessions?limit=1&after=".to_string() + all[0]["id"].as_str().unwrap());
    walked.push(all[0]["id"].clone());
    while let Some(link) = next {
        let (code, page) = gw.api_json("GET", &link, AUDIT_SECRET);
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["meta"]["total"], 4, "total counts every match: {page}");
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone()),
        );
        next = page["meta"]["next"].as_str().map(str::to_string);
    }
    let ids: Vec<Value> = all.iter().map(|s| s["id"].clone()).collect();
    assert_eq!(walked, ids);
    for s in &all {
        assert!(s["trail"].get("path").is_none(), "no server path: {s}");
    }

    // Rebuilt from the trails alone, the records are the ones the gateway published.
    let recorded: Vec<Value> = all
        .into_iter()
        .filter(|s| s["trail"]["url"].is_string())
        .collect();
    assert_eq!(recorded.len(), 3);
    gw.stop();
    let data = gw.data_dir();
    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let o = Command::new(bin())
        .args(["reindex", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    gw.crash_and_restart().unwrap();
    for before in &recorded {
        let after = session(&gw, before["id"].as_str().unwrap());
        assert_eq!(&after, before, "rebuilt record differs");
    }
}
