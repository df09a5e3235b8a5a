//! Settings policies over VNC against real TigerVNC targets: TLS versions and suites on the
//! client leg (refused in the handshake by the listener's settings, or after login by the
//! target's policy), on the target leg (a TLS-1.2-only Xvnc under a TLS 1.3 policy), the idle
//! timeout, and the global VNC options through the control API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::vnc::{
    Certs, Mode, Refused, Viewer, Xvnc, ended_session, start, target, tls_client_limited,
};
use common::*;
use rustls::CipherSuite;
use rustls::version::{TLS12, TLS13};
use serde_json::{Value, json};

const AUDITOR: &str = "audit-secret";

/// The session records with verdict `deny`, newest first.
fn denied(gw: &Gateway, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} denied sessions"), 20, || {
        let (items, _) = gw.sessions("verdict=deny", ADMIN_SECRET);
        (items.len() >= n && items.iter().all(|s| s["active"] == false)).then_some(items)
    })
}

#[test]
fn the_client_leg_is_held_to_the_listeners_tls_settings_in_the_handshake() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let targets = target("desk", x.port, "tls = \"none\"")
        + "\n[vnc.client_tls_security_settings]\nminimum_tls_version = \"TLSv1_3\"\n\
           cipher_strength = { selection = \"custom\", custom_cipher = \"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\" }\n";
    let (gw, certs) = start(&targets);
    let addr = gw.vnc.expect("vnc");
    let ca = certs.path("ca.pem");
    // TLS 1.2 only, over VeNCrypt and TLS-first: refused in the handshake.
    for mode in [Mode::Vencrypt, Mode::TlsFirst] {
        let r = Viewer::connect_tls(
            addr,
            tls_client_limited(&ca, &[&TLS12], None),
            "alice@desk",
            ALICE_PASSWORD,
            mode,
        );
        assert!(matches!(r, Err(Refused::Io(_))), "{:?}", r.err());
    }
    // TLS 1.3 with a suite outside the custom list.
    let only128 = [CipherSuite::TLS13_AES_128_GCM_SHA256];
    let r = Viewer::connect_tls(
        addr,
        tls_client_limited(&ca, &[&TLS13], Some(&only128)),
        "alice@desk",
        ALICE_PASSWORD,
        Mode::Vencrypt,
    );
    assert!(matches!(r, Err(Refused::Io(_))), "{:?}", r.err());
    let d = denied(&gw, 3);
    for s in &d {
        assert!(
            s["end_reason"]
                .as_str()
                .unwrap()
                .contains("outside the gateway's policy"),
            "{s}"
        );
        assert!(s["user"]["name"].is_null(), "no credentials crossed: {s}");
    }
    // Inside the policy: the gateway's suite order wins.
    let v =
        Viewer::connect(addr, &ca, "alice@desk", ALICE_PASSWORD, Mode::Vencrypt).expect("allowed");
    drop(v);
    let s = ended_session(&gw, "desk");
    assert_eq!(s["vnc"]["client"]["tls_version"], "TLSv1_3", "{s}");
    assert_eq!(
        s["vnc"]["client"]["tls_cipher"], "TLS_AES_256_GCM_SHA384",
        "{s}"
    );
    assert_eq!(s["vnc"]["client"]["tls_minimum"], "TLSv1_3", "{s}");
}

#[test]
fn target_policies_govern_the_target_leg_and_check_the_client_leg_after_login() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    // A target that speaks TLS 1.2 and nothing newer.
    let old = Xvnc::start_args(
        tmp.path(),
        "X509None",
        &tc,
        None,
        &["-GnuTLSPriority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"],
    )
    .expect("xvnc");
    let plain = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let ca = format!("ca_file = \"{}\"", tc.path("ca.pem").display());
    let targets = target(
        "old13",
        old.port,
        &format!("{ca}\nsettings_policy = \"strict-server\""),
    ) + &target(
        "old12",
        old.port,
        &format!("{ca}\nsettings_policy = \"legacy\""),
    ) + &target(
        "desk13",
        plain.port,
        "tls = \"none\"\nsettings_policy = \"strict-client\"",
    ) + "\n[settings_policies.strict-server.server_tls_security_settings]\nminimum_tls_version = \"TLSv1_3\"\n\
           \n[settings_policies.legacy.server_tls_security_settings]\nminimum_tls_version = \"TLSv1_0\"\n\
           \n[settings_policies.strict-client.client_tls_security_settings]\nminimum_tls_version = \"TLSv1_3\"\n";
    let (gw, certs) = start(&targets);
    assert!(gw.log().contains("TLSv1_0 means TLSv1_2"), "{}", gw.log());
    let addr = gw.vnc.expect("vnc");
    let gw_ca = certs.path("ca.pem");

    match Viewer::connect(addr, &gw_ca, "alice@old13", ALICE_PASSWORD, Mode::Vencrypt) {
        Err(Refused::Reason(r)) => assert!(r.contains("TLSv1_3"), "{r}"),
        other => panic!("old13: {:?}", other.err()),
    }
    let s = ended_session(&gw, "old13");
    assert_eq!(s["verdict"], "fail", "{s}");
    assert!(
        s["end_reason"]
            .as_str()
            .unwrap()
            .contains("settings policy allows TLSv1_3"),
        "{s}"
    );

    let v = Viewer::connect(addr, &gw_ca, "alice@old12", ALICE_PASSWORD, Mode::Vencrypt)
        .expect("old12");
    drop(v);
    let s = ended_session(&gw, "old12");
    assert_eq!(s["vnc"]["target"]["tls_version"], "TLSv1_2", "{s}");
    assert_eq!(
        s["vnc"]["target"]["tls_minimum"], "TLSv1_2",
        "effective minimum: {s}"
    );
    assert!(
        s["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("settings:legacy")),
        "{s}"
    );

    // The listener allows TLS 1.2; the target's policy does not: refused after login, before
    // the target is contacted.
    let r = Viewer::connect_tls(
        addr,
        tls_client_limited(&gw_ca, &[&TLS12], None),
        "alice@desk13",
        ALICE_PASSWORD,
        Mode::Vencrypt,
    );
    match r {
        Err(Refused::Reason(r)) => assert!(r.contains("below the policy's minimum TLSv1_3"), "{r}"),
        other => panic!("desk13: {:?}", other.err()),
    }
    let s = ended_session(&gw, "desk13");
    assert_eq!(s["verdict"], "deny", "{s}");
    assert!(s["vnc"].is_null(), "the target was not reached: {s}");
}

/// The raw RFB refusal a 3.8 client gets before any security type: the reason.
fn rfb_refusal(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).expect("version");
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).expect("types");
    assert_eq!(n[0], 0, "no security types: a refusal");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut why = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut why).unwrap();
    String::from_utf8_lossy(&why).into_owned()
}

#[test]
fn idle_timeout_and_the_global_vnc_options() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tc = Certs::make(&tmp.path().join("targetcerts"));
    let x = Xvnc::start(tmp.path(), "None", &tc, None).expect("xvnc");
    let targets = target("desk", x.port, "tls = \"none\"\nsettings_policy = \"idle\"")
        + "\n[settings_policies.idle]\ntimeout = 2\n\
           \n[[api_tokens]]\nname = \"audit-tok\"\ntoken_sha256 = \"a0e0c9b193eef8f255d6349f6db6e24ccfd2f547fcb0a1b76a4370d03e64c473\"\nrole = \"auditor\"\n";
    let (gw, certs) = start(&targets);
    let addr = gw.vnc.expect("vnc");
    let ca = certs.path("ca.pem");

    // Idle: nothing asked, nothing sent; the session ends two seconds later.
    let mut v =
        Viewer::connect(addr, &ca, "alice@desk", ALICE_PASSWORD, Mode::Vencrypt).expect("connect");
    let t0 = Instant::now();
    assert!(v.wait_update().is_err(), "the session should end");
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_millis(1900) && t < Duration::from_millis(3000),
        "idle after {t:?}"
    );
    let s = ended_session(&gw, "desk");
    assert_eq!(s["end_reason"], "terminated by policy: idle timeout", "{s}");

    // Options: auditors read, admins write, values are checked.
    let path = "/api/v1/configuration/vnc/options";
    let (code, body) = gw.api_call("GET", path, Some(AUDITOR), None);
    assert_eq!(code, 200);
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(o["body"]["service"]["enabled"], true, "{o}");
    assert_eq!(o["key"], "options");
    let off = json!({"service": {"enabled": false, "log_level": 4}, "channel_database_cleanup": {"enabled": true, "days": 30}});
    assert_eq!(
        gw.api_call("PUT", path, Some(AUDITOR), Some(&off.to_string()))
            .0,
        403
    );
    let bad = json!({"service": {"enabled": true, "log_level": 9}});
    let (code, body) = gw.api_call("PUT", path, Some(ADMIN_SECRET), Some(&bad.to_string()));
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("service.log_level"));
    assert_eq!(
        gw.api_call("PUT", path, Some(ADMIN_SECRET), Some(&off.to_string()))
            .0,
        200
    );
    // Switched off: new connections hear why; the cleanup kept recent sessions.
    assert!(rfb_refusal(addr).contains("switched off"));
    assert_eq!(gw.sessions("target=desk", ADMIN_SECRET).1, 1);
    let on = json!({"service": {"enabled": true}});
    assert_eq!(
        gw.api_call("PUT", path, Some(ADMIN_SECRET), Some(&on.to_string()))
            .0,
        200
    );
    let v =
        Viewer::connect(addr, &ca, "alice@desk", ALICE_PASSWORD, Mode::Vencrypt).expect("on again");
    drop(v);
    let (_, body) = gw.api_call("GET", "/api/v1/configuration/changes", Some(AUDITOR), None);
    let ch: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ch["meta"]["total"], 2, "{ch}");
    assert_eq!(ch["items"][1]["after"]["service"]["enabled"], false, "{ch}");
    assert_eq!(
        ch["items"][0]["before"]["service"]["enabled"], false,
        "{ch}"
    );
}
