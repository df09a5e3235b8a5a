//! Port forwarding through the gateway with OpenSSH's `-L` and `-R`: a service that speaks
//! first loses nothing, and each direction lands in the trail on its channel.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Connects to a forwarded port once the forward is up, and talks to the banner service.
fn talk_through(port: u16, ssh: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut banner = String::new();
            if r.read_line(&mut banner).is_ok() && !banner.is_empty() {
                s.write_all(b"ping\n").unwrap();
                let mut echo = String::new();
                r.read_line(&mut echo).unwrap();
                return format!("{banner}{echo}");
            }
        }
        assert!(ssh.try_wait().unwrap().is_none(), "ssh exited early");
        assert!(Instant::now() < deadline, "forward never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forwards a port with `-L` or `-R` to the banner service, talks through it, and returns the
/// session's trail and the forwarded channel's id.
fn forward_round_trip(flag: &str, kind: &str) -> (Gateway, std::path::PathBuf, u64, u16) {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let (svc, svc_thread) = banner_service();
    let port = free_port();
    let mut ssh = gw
        .ssh()
        .args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            flag,
            &format!("127.0.0.1:{port}:127.0.0.1:{svc}"),
        ])
        .arg(gw.dest())
        .spawn()
        .unwrap();
    let got = talk_through(port, &mut ssh);
    assert_eq!(
        got, "HELLO-BANNER\necho:ping\n",
        "the first bytes of a service that speaks first arrive"
    );
    svc_thread.join().unwrap();
    ssh.kill().unwrap();
    ssh.wait().unwrap();
    let trail = gw.sealed_trail_with(kind);
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["type"] == kind).clone();
    drop(sshd);
    (
        gw,
        trail,
        ch["id"].as_u64().unwrap(),
        ch["connected"]["port"].as_u64().unwrap_or(0) as u16,
    )
}

#[test]
fn local_forward_to_a_service_that_speaks_first_loses_nothing() {
    let (_gw, trail, id, connected) = forward_round_trip("-L", "direct-tcpip");
    assert_ne!(connected, 0);
    assert_eq!(
        trail_cat(&trail, id, Some("s2c")),
        b"HELLO-BANNER\necho:ping\n"
    );
    assert_eq!(trail_cat(&trail, id, Some("c2s")), b"ping\n");
}

#[test]
fn remote_forward_is_relayed_and_recorded() {
    let (_gw, trail, id, _) = forward_round_trip("-R", "forwarded-tcpip");
    // Direction is by connection: the admin's side is the "client".
    assert_eq!(
        trail_cat(&trail, id, Some("c2s")),
        b"HELLO-BANNER\necho:ping\n"
    );
    assert_eq!(trail_cat(&trail, id, Some("s2c")), b"ping\n");
}
