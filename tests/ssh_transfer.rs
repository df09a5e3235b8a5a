//! Bulk transfers, floods and multiplexing through the gateway with recording on.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 100;

#[test]
fn scp_and_sftp_move_100_mib_each_way_byte_exact_and_the_trail_holds_the_upload() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let local = gw.dir.path().join("src.bin");
    make_file(&local, MIB);
    let want = sha256_file(&local);
    let remote_dir = sshd.dir.path();
    let port = gw.addr.port().to_string();

    // Upload with the classic scp protocol (an exec channel running `scp -t`).
    let up = remote_dir.join("up.bin");
    let out = gw
        .ssh_cmd("scp")
        .args(["-O", "-P", &port, "-o", "User=alice@db1"])
        .arg(&local)
        .arg(format!("127.0.0.1:{}", up.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scp: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert_eq!(sha256_file(&up), want, "scp upload is byte exact");

    // Download with sftp (subsystem channel).
    let down = gw.dir.path().join("down.bin");
    let batch = gw.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "get {} {}\nput {} {}\n",
            up.display(),
            down.display(),
            local.display(),
            remote_dir.join("put.bin").display()
        ),
    )
    .unwrap();
    let out = gw
        .ssh_cmd("sftp")
        .args(["-P", &port, "-o", "User=alice@db1", "-b"])
        .arg(&batch)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sftp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_file(&down), want, "sftp download is byte exact");
    assert_eq!(
        sha256_file(&remote_dir.join("put.bin")),
        want,
        "sftp upload is byte exact"
    );

    // The scp trail: the uploaded bytes are in the client-to-server stream, intact.
    let trail = gw.sealed_trail_with("scp -t");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| {
        c["command"]
            .as_str()
            .is_some_and(|s| s.starts_with("scp -t"))
    });
    let c2s = trail_cat(&trail, ch["id"].as_u64().unwrap(), Some("c2s"));
    let header_end = c2s.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(
        c2s[..header_end].starts_with(format!("C0644 {} ", MIB << 20).as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&c2s[..header_end])
    );
    let body = &c2s[header_end..header_end + (MIB << 20)];
    let body_path = gw.dir.path().join("from-trail.bin");
    std::fs::write(&body_path, body).unwrap();
    assert_eq!(
        sha256_file(&body_path),
        want,
        "trail cat gives the uploaded file back"
    );
    let (code, report) = trail_verify(&trail);
    assert_eq!(code, 0, "{report}");
    let size = std::fs::metadata(&trail).unwrap().len();
    assert!(
        size < (MIB as u64) << 20,
        "trail is compressed: {size} bytes for {MIB} MiB"
    );

    let trail = gw.sealed_trail_with("session-subsystem:sftp");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["type"] == "session-subsystem:sftp");
    assert!(ch["bytes_server_to_client"].as_u64().unwrap() > (MIB as u64) << 20);
    assert!(ch["bytes_client_to_server"].as_u64().unwrap() > (MIB as u64) << 20);
}

#[test]
fn ctrl_c_after_a_flood_reaches_the_shell_promptly() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let mut child = gw
        .ssh()
        .arg("-tt")
        .arg(gw.dest())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"yes flood-line\n").unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0usize;
    while seen < 4 << 20 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "flood ended early");
        seen += n;
    }
    stdin.write_all(b"\x03").unwrap();
    stdin.write_all(b"echo done-$((40+2))\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tail = Vec::new();
    loop {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "session ended before the shell answered");
        tail.extend_from_slice(&buf[..n]);
        if tail.windows(7).any(|w| w == b"done-42") {
            break;
        }
        if tail.len() > 1 << 20 {
            tail.drain(..tail.len() - 64);
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the flood");
    }
    stdin.write_all(b"exit\n").unwrap();
    drop(stdin);
    let _ = child.wait();
}

#[test]
fn a_client_that_stops_reading_does_not_grow_gateway_memory() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let base = gw.rss_kib();
    // The target floods; the client reads nothing: the gateway must push back, not buffer.
    let mut child = gw
        .ssh()
        .arg(gw.dest())
        .arg("cat /dev/zero")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut peak = base;
    while Instant::now() < deadline {
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(Duration::from_millis(100)); // sampling period of the measurement
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        peak < base + 64 * 1024,
        "gateway RSS grew from {base} KiB to {peak} KiB with a stalled client"
    );
}

#[test]
fn controlmaster_multiplexes_several_channels_over_one_recorded_session() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let sock = gw.dir.path().join("cm.sock");
    let cp = format!("ControlPath={}", sock.display());
    let mut master = gw
        .ssh()
        .args(["-o", "ControlMaster=yes", "-o", &cp, "-N"])
        .arg(gw.dest())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw
        .ssh()
        .args(["-o", &cp, "-O", "check"])
        .arg(gw.dest())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(master.try_wait().unwrap().is_none(), "master exited");
        assert!(Instant::now() < deadline, "master never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (gw, cp) = (&gw, &cp);
                s.spawn(move || {
                    gw.ssh()
                        .args(["-o", cp])
                        .arg(gw.dest())
                        .arg(format!("sleep 0.2; echo mux-{i}"))
                        .output()
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("mux-{i}\n"));
    }
    let _ = gw
        .ssh()
        .args(["-o", &cp, "-O", "exit"])
        .arg(gw.dest())
        .stderr(Stdio::null())
        .status();
    let _ = master.wait();
    let trail = gw.sealed_trail_with("mux-3");
    let info = trail_info(&trail);
    let execs = info["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "session-exec")
        .count();
    assert_eq!(execs, 4, "all four channels in one session's trail");
}

#[test]
fn agent_forwarding_works_with_parallel_agent_channels() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let sock = gw.dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(&gw.alice_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success());
    let out = gw
        .ssh()
        .arg("-A")
        .env("SSH_AUTH_SOCK", &sock)
        .arg(gw.dest())
        .arg("for i in 1 2 3 4; do ssh-add -l & done; wait")
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("ED25519").count(),
        4,
        "four parallel agent queries answered: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trail = gw.sealed_trail_with("auth-agent@openssh.com");
    let info = trail_info(&trail);
    let agents = info["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["channel_type"] == "auth-agent@openssh.com")
        .count();
    assert_eq!(agents, 4);
}

#[test]
fn exit_signals_are_relayed_and_recorded() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = gw.exec("echo before-kill; kill -KILL $$");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before-kill\n");
    assert_ne!(out.status.code(), Some(0));
    let trail = gw.sealed_trail_with("before-kill");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["type"] == "session-exec");
    assert_eq!(ch["exit_signal"], "KILL");
}

/// The `-e` shell rsync runs: the same client options as the other tests, through the gateway.
fn rsync_shell(gw: &Gateway) -> String {
    format!(
        "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -i {} -p {} -l alice@db1",
        gw.alice_key.display(),
        gw.addr.port()
    )
}

/// rsync's "Literal data: N bytes" from `--stats` (N may carry thousands separators).
fn rsync_literal_bytes(stats: &str) -> u64 {
    let line = stats
        .lines()
        .find(|l| l.starts_with("Literal data:"))
        .unwrap_or_else(|| panic!("no literal data line in {stats}"));
    line.chars()
        .filter(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn rsync_uploads_a_tree_then_a_delta_and_downloads_it_byte_exact_all_recorded() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let src = gw.dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    make_file(&src.join("big.bin"), 8);
    std::fs::write(src.join("notes.txt"), "rsync-marker-7f3a first version\n").unwrap();
    std::fs::write(src.join("sub/empty"), "").unwrap();
    let remote = sshd.dir.path().join("mirror");
    let shell = rsync_shell(&gw);
    let rsync = |from: String, to: String| {
        let out = Command::new("rsync")
            // -I: compare contents even when size and mtime match (the edit below keeps the size
            // and may land in the same second), so the second upload is always a delta.
            .args(["-a", "-I", "--stats", "-e", &shell, &from, &to])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rsync {from} {to}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let same = |a: &std::path::Path, b: &std::path::Path| {
        for f in ["big.bin", "notes.txt", "sub/empty"] {
            assert_eq!(sha256_file(&a.join(f)), sha256_file(&b.join(f)), "{f}");
        }
    };

    let first = rsync(
        format!("{}/", src.display()),
        format!("127.0.0.1:{}/", remote.display()),
    );
    same(&src, &remote);
    assert!(rsync_literal_bytes(&first) >= 8 << 20, "{first}");

    // Change 100 bytes in the middle of the 8 MiB file: rsync sends a delta, which needs its
    // block checksums to cross the gateway one way and the matching instructions the other.
    let mut big = std::fs::read(src.join("big.bin")).unwrap();
    big[4 << 20..(4 << 20) + 100].fill(b'Z');
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("notes.txt"), "rsync-marker-7f3a second version\n").unwrap();
    let second = rsync(
        format!("{}/", src.display()),
        format!("127.0.0.1:{}/", remote.display()),
    );
    same(&src, &remote);
    let literal = rsync_literal_bytes(&second);
    assert!(literal < 256 << 10, "a delta, not the whole file: {second}");

    let back = gw.dir.path().join("back");
    rsync(
        format!("127.0.0.1:{}/", remote.display()),
        format!("{}/", back.display()),
    );
    same(&src, &back);

    // Three sessions, each one exec channel running `rsync --server` that exited 0; the second
    // upload's trail holds the new text as it went up.
    let infos = gw.sealed_trails_with("rsync --server", 3);
    assert_eq!(infos.len(), 3);
    let mut uploads_with_v2 = 0;
    for (info, trail) in &infos {
        let ch = find_channel(info, |c| c["type"] == "session-exec");
        let cmd = ch["command"].as_str().unwrap();
        assert!(cmd.starts_with("rsync --server"), "{cmd}");
        assert_eq!(ch["exit_status"], 0, "{info:#}");
        let id = ch["id"].as_u64().unwrap();
        let up = trail_cat(trail, id, Some("c2s"));
        if cmd.contains("--sender") {
            assert!(ch["bytes_server_to_client"].as_u64().unwrap() >= 8 << 20);
        } else if up.windows(14).any(|w| w == b"second version") {
            uploads_with_v2 += 1;
        }
    }
    assert_eq!(
        uploads_with_v2, 1,
        "the delta upload's trail holds the new notes.txt"
    );
    // The files index names each rsync with its direction and target path (rsync's protocol is
    // not decoded into files) and whether it succeeded.
    let mut ops: Vec<(String, String)> = infos
        .iter()
        .map(|(_, trail)| {
            let t = trail_files(trail);
            let op = &t["operations"][0];
            assert_eq!(op["ok"], true, "{t:#}");
            (
                op["op"].as_str().unwrap().to_string(),
                op["paths"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ops.sort();
    let r = format!("{}/", remote.display());
    assert_eq!(
        ops,
        [
            ("rsync-download".to_string(), r.clone()),
            ("rsync-upload".to_string(), r.clone()),
            ("rsync-upload".to_string(), r),
        ]
    );
}

/// Xvfb on a display it picks itself, with a cookie in its own authority file (never
/// ~/.Xauthority).
struct Xvfb {
    child: std::process::Child,
    display: String,
    xauthority: std::path::PathBuf,
}

impl Xvfb {
    fn start(dir: &std::path::Path) -> Xvfb {
        use std::io::BufRead;
        let xauthority = dir.join("client.xauth");
        // `-displayfd 1`: Xvfb picks a free display and prints its number once it accepts
        // connections; the authority file is read when a client connects, so it can follow.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "640x371x24",
                "-nolisten",
                "tcp",
                "-auth",
            ])
            .arg(&xauthority)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (scripts/install-test-deps.sh)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not start: {line:?}"));
        let display = format!(":{n}");
        let cookie: String = (0..16)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        let added = Command::new("xauth")
            .arg("-f")
            .arg(&xauthority)
            .args(["add", &display, ".", &cookie])
            .output()
            .unwrap();
        assert!(added.status.success(), "xauth add: {added:?}");
        Xvfb {
            child,
            display,
            xauthority,
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn x11_forwarding_reaches_the_clients_x_server_when_policy_allows_it() {
    // The target's sshd hands out X displays from :30 on, and runs xauth with the XAUTHORITY
    // the client sends, so nothing touches the test user's ~/.Xauthority.
    let sshd = Sshd::start_with(
        "X11Forwarding yes\nX11UseLocalhost yes\nX11DisplayOffset 30\nXAuthLocation /usr/bin/xauth\nAcceptEnv XAUTHORITY",
    )
    .unwrap();
    let remote_xauth = sshd.dir.path().join("remote.xauth");
    let x11_policy = format!("{FULL_POLICY}, \"x11\"");
    let gw = Gateway::start_with(&sshd, "", &x11_policy).unwrap();
    let x = Xvfb::start(gw.dir.path());
    let run = |gw: &Gateway| {
        gw.ssh()
            .arg("-Y")
            .args([
                "-o",
                &format!("SetEnv=XAUTHORITY={}", remote_xauth.display()),
            ])
            .env("DISPLAY", &x.display)
            .env("XAUTHORITY", &x.xauthority)
            .arg(gw.dest())
            .arg("echo remote-display=$DISPLAY; xdpyinfo | grep -E 'dimensions|vendor string'")
            .output()
            .unwrap()
    };
    let out = run(&gw);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    // The size of *our* Xvfb screen, seen from the target: the X protocol crossed the gateway.
    assert!(text.contains("640x371 pixels"), "{text}");
    assert!(text.contains("remote-display=localhost:3"), "{text}");

    let trail = gw.sealed_trail_with("x11");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["type"] == "x11");
    assert!(ch["bytes_client_to_server"].as_u64().unwrap() > 0, "{ch:#}");
    assert!(ch["bytes_server_to_client"].as_u64().unwrap() > 0, "{ch:#}");
    // The X server's setup reply went from the client's side to the target: its vendor string
    // is in the channel's client-to-server stream.
    let reply = trail_cat(&trail, ch["id"].as_u64().unwrap(), Some("c2s"));
    assert!(
        reply.windows(11).any(|w| w == b"The X.Org F"),
        "X server setup reply recorded"
    );
    let (code, _) = trail_verify(&trail);
    assert_eq!(code, 0);
    drop(gw);

    // Without "x11" in the policy the forwarding request is refused: the client warns and the
    // remote command finds no display.
    let gw = Gateway::start(&sshd).unwrap();
    let out = run(&gw);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("640x371"), "{text}");
    assert!(text.contains("remote-display=\n"), "no DISPLAY set: {text}");
}

/// A download whose trail cannot be written (the gateway may not grow a file past 4 MiB): with
/// `on_failure = "terminate"` the session ends with the reason, with `"continue"` it goes on
/// unrecorded; either way the failure is logged, counted and shown in the catalog.
#[test]
fn a_failing_recording_terminates_or_continues_as_configured_and_is_never_silent() {
    let sshd = Sshd::start().unwrap();
    const LIMIT: u64 = 4 << 20;
    const DOWNLOAD: usize = 64 << 20;
    for on_failure in ["terminate", "continue"] {
        let gw = Gateway::start_custom(
            &sshd,
            FULL_POLICY,
            |text| {
                text.replace(
                    "fsync = false\n",
                    &format!("fsync = false\non_failure = \"{on_failure}\"\n"),
                )
            },
            Some(LIMIT),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&gw.config)
                .unwrap()
                .contains(on_failure)
        );
        let mut child = gw
            .ssh()
            .arg(gw.dest())
            .arg(format!("head -c {DOWNLOAD} /dev/urandom"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut got = 0usize;
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let log = gw.log();
        assert!(log.contains("recording failed"), "logged: {log}");

        // Its final record (the client may leave before the gateway has concluded).
        let rec = wait_until("the ended session with a failed trail", 10, || {
            let (code, v) = gw.api_json("GET", "/api/v1/sessions?verdict=accept", "audit-secret");
            assert_eq!(code, 200);
            v["items"]
                .as_array()?
                .iter()
                .find(|s| s["trail"]["integrity"] == "failed" && s["active"] == false)
                .cloned()
        });
        assert!(
            rec["trail"]["error"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("too large"),
            "{rec:#}"
        );
        let (_, body) = gw.api_call("GET", "/metrics", Some("audit-secret"), None);
        let metrics = String::from_utf8(body).unwrap();
        assert!(
            metrics.contains("trailgate_recording_failures_total 1"),
            "{metrics}"
        );
        match on_failure {
            "terminate" => {
                assert!(!status.success());
                assert!(got < DOWNLOAD, "cut short: {got}");
                assert!(
                    err.contains("recording failed"),
                    "the client is told why: {err}"
                );
                assert!(
                    rec["end_reason"]
                        .as_str()
                        .unwrap()
                        .contains("recording failed"),
                    "{rec:#}"
                );
                assert_eq!(rec["status"], "terminated");
            }
            _ => {
                assert!(status.success(), "{err}");
                assert_eq!(got, DOWNLOAD, "every byte delivered");
                assert!(log.contains("UNRECORDED"), "{log}");
            }
        }
        // What did reach the disk is still a readable prefix: never reported as intact.
        let trail = gw.trail_of(&rec);
        let (code, text) = trail_verify(&trail);
        assert_ne!(code, 0, "{text}");
    }
}
