//! End-to-end harness: a real OpenSSH `sshd` as the target, the real `trailgate` binary as the
//! gateway, and the real OpenSSH clients. Everything binds loopback; readiness is observed, never
//! assumed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod browser;
pub mod peers;
mod sshd;
mod trail;
pub mod vnc;

pub use sshd::Sshd;
pub use trail::*;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `addr` accepts TCP connections (the process signals readiness by listening).
pub fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited before listening: {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20)); // polling interval, not a readiness guess
    }
}

pub fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .expect("pub key")
        .trim()
        .to_string()
}

pub const ALICE_PASSWORD: &str = "correct horse battery staple";
/// The secret of the `admin-tok` API token of the test configurations.
pub const ADMIN_SECRET: &str = "admin-secret";
/// The secret of the `audit-tok` (auditor) API token of the test configurations.
pub const AUDIT_SECRET: &str = "audit-secret";

/// The gateway under test, as the real binary with a generated config.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub api: SocketAddr,
    /// The VNC listener, when the config has `[vnc]`.
    pub vnc: Option<SocketAddr>,
    pub alice_key: PathBuf,
    pub config: PathBuf,
    child: Child,
    stderr_log: PathBuf,
    pub extra: String,
    /// RLIMIT_FSIZE for the gateway process (writes past it fail with EFBIG), to make a
    /// recording fail for real.
    file_size_limit: Option<u64>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trailgate"))
}

/// Config for one target `db1` (the given sshd) plus whatever `extra` adds.
pub fn gateway_config(dir: &Path, sshd: &Sshd, extra: &str, policy: &str) -> Result<String> {
    let alice_pub = keygen(&dir.join("alice_key"));
    let hash = trailgate_proxy::auth::hash_password(ALICE_PASSWORD).map_err(anyhow::Error::msg)?;
    Ok(format!(
        r#"data_dir = "data"
node_id = "test-node"

[ssh]
listen = "127.0.0.1:0"
auth_failure_delay = "50ms"

[recording]
flush_interval = "100ms"
fsync = false

[[users]]
name = "alice"
password_hash = "{hash}"
authorized_keys = ["{alice_pub}"]

[[users]]
name = "bob"
password_hash = "{hash}"

[[targets]]
name = "db1"
address = "127.0.0.1:{port}"
host_key = "{host_pub}"
user = "{user}"
private_key = "{gwkey}"
allow_users = ["alice"]
channel_policy = "test"

[channel_policies.test]
allow = [{policy}]

[api]
listen = "127.0.0.1:0"

[[api_tokens]]
name = "admin-tok"
token_sha256 = "16175223c8ddce5ace0493c948569c211b03c4c6bb3d3e484434999448cffe01"
role = "admin"

[[api_tokens]]
name = "audit-tok"
token_sha256 = "a0e0c9b193eef8f255d6349f6db6e24ccfd2f547fcb0a1b76a4370d03e64c473"
role = "auditor"
{catalog}{extra}
"#,
        catalog = catalog_section(),
        port = sshd.port,
        host_pub = sshd.host_pub,
        user = whoami(),
        gwkey = sshd.gateway_key.display(),
    ))
}

pub const FULL_POLICY: &str = r#""session-shell", "session-exec", "session-subsystem:sftp", "direct-tcpip", "tcpip-forward", "agent""#;

impl Gateway {
    pub fn start(sshd: &Sshd) -> Result<Gateway> {
        Self::start_with(sshd, "", FULL_POLICY)
    }

    pub fn start_with(sshd: &Sshd, extra: &str, policy: &str) -> Result<Gateway> {
        Self::start_inner(sshd, extra, policy, |t| t, None)
    }

    pub fn run(dir: tempfile::TempDir, config: PathBuf, extra: String) -> Result<Gateway> {
        Self::run_limited(dir, config, extra, None)
    }

    /// A gateway on the default test config as rewritten by `edit`, optionally with no file of
    /// the gateway process allowed to grow past `file_size_limit` bytes.
    pub fn start_custom(
        sshd: &Sshd,
        policy: &str,
        edit: impl Fn(String) -> String,
        file_size_limit: Option<u64>,
    ) -> Result<Gateway> {
        Self::start_inner(sshd, "", policy, edit, file_size_limit)
    }

    fn start_inner(
        sshd: &Sshd,
        extra: &str,
        policy: &str,
        edit: impl Fn(String) -> String,
        file_size_limit: Option<u64>,
    ) -> Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let text = edit(gateway_config(dir.path(), sshd, extra, policy)?);
        let config = dir.path().join("trailgate.toml");
        std::fs::write(&config, text)?;
        Self::run_limited(dir, config, extra.to_string(), file_size_limit)
    }

    fn run_limited(
        dir: tempfile::TempDir,
        config: PathBuf,
        extra: String,
        file_size_limit: Option<u64>,
    ) -> Result<Gateway> {
        let stderr_log = dir.path().join("gateway.log");
        let (child, addr, api, vnc) = Self::spawn(&config, &stderr_log, file_size_limit)?;
        Ok(Gateway {
            alice_key: dir.path().join("alice_key"),
            dir,
            addr,
            api,
            vnc,
            config,
            child,
            stderr_log,
            extra,
            file_size_limit,
        })
    }

    /// Starts the binary and waits for its "listening" lines on stdout.
    fn spawn(
        config: &Path,
        stderr_log: &Path,
        file_size_limit: Option<u64>,
    ) -> Result<(Child, SocketAddr, SocketAddr, Option<SocketAddr>)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_log)?;
        let mut cmd = match file_size_limit {
            None => Command::new(bin()),
            Some(n) => {
                // SIGXFSZ would kill the process; ignored (inherited through exec), the write
                // returns EFBIG instead, as on a full quota.
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    "trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\"",
                    &n.to_string(),
                ])
                .arg(bin());
                c
            }
        };
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("TRAILGATE_LOG", "info,russh=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting trailgate")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for (k, prefix) in [
                    ("ssh", "trailgate: ssh listening on "),
                    ("api", "trailgate: api listening on "),
                    ("vnc", "trailgate: vnc listening on "),
                ] {
                    if let Some(a) = line.strip_prefix(prefix) {
                        let _ = tx.send((k, a.trim().to_string()));
                    }
                }
            }
        });
        let (mut addr, mut api, mut vnc) = (None, None, None);
        // The VNC line, when there is one, comes before the API's.
        while addr.is_none() || api.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(("ssh", a)) => addr = Some(a.parse()?),
                Ok(("vnc", a)) => vnc = Some(a.parse()?),
                Ok((_, a)) => api = Some(a.parse()?),
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "gateway did not start: {}",
                        std::fs::read_to_string(stderr_log).unwrap_or_default()
                    );
                }
            }
        }
        Ok((child, addr.context("ssh")?, api.context("api")?, vnc))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Base OpenSSH client command through the gateway (key auth as alice, batch mode).
    pub fn ssh_cmd(&self, program: &str) -> Command {
        self.ssh_cmd_level(program, "ERROR")
    }

    /// As `ssh_cmd` with another client log level (OpenSSH keeps the first value of an option).
    pub fn ssh_cmd_level(&self, program: &str, level: &str) -> Command {
        let mut c = Command::new(program);
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            &format!("LogLevel={level}"),
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=20",
        ])
        .arg("-i")
        .arg(&self.alice_key)
        .stdin(Stdio::null());
        c
    }

    pub fn ssh(&self) -> Command {
        let mut c = self.ssh_cmd("ssh");
        c.args(["-p", &self.addr.port().to_string()]);
        c
    }

    pub fn dest(&self) -> String {
        format!("alice@db1@{}", self.addr.ip())
    }

    /// Runs `ssh alice@db1@gw -- cmd` and returns its output.
    /// `ssh -tt` into a shell, kept open (output discarded): the child and its stdin.
    pub fn shell(&self) -> (std::process::Child, std::process::ChildStdin) {
        let mut child = self
            .ssh()
            .arg("-tt")
            .arg(self.dest())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh");
        let stdin = child.stdin.take().expect("stdin");
        (child, stdin)
    }

    pub fn exec(&self, cmd: &str) -> Output {
        self.ssh().arg(self.dest()).arg(cmd).output().expect("ssh")
    }

    /// Every trail file under data_dir, oldest first.
    pub fn trails(&self) -> Vec<PathBuf> {
        let mut v = walk(&self.data_dir().join("trails"));
        v.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        v
    }

    /// The trail of the session whose record mentions `needle` (waits until it is sealed).
    pub fn sealed_trail_with(&self, needle: &str) -> PathBuf {
        self.sealed_trails_with(needle, 1).remove(0).1
    }

    /// The `count` sealed trails (with their `trail info`) whose records mention `needle`; waits
    /// until there are that many.
    pub fn sealed_trails_with(
        &self,
        needle: &str,
        count: usize,
    ) -> Vec<(serde_json::Value, PathBuf)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<_> = self
                .trails()
                .into_iter()
                .map(|t| (trail_info(&t), t))
                .filter(|(i, _)| i["integrity"] == "sealed" && i.to_string().contains(needle))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} sealed trails mentioning {needle:?}; log:\n{}",
                found.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50)); // trails are sealed asynchronously
        }
    }

    /// kill -9 the gateway and start it again on the same config and data directory.
    pub fn crash_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr, api, vnc) =
            Self::spawn(&self.config, &self.stderr_log, self.file_size_limit)?;
        (self.child, self.addr, self.api, self.vnc) = (child, addr, api, vnc);
        Ok(())
    }

    /// Calls the control API with curl; returns the status code and the body.
    pub fn api_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        c.arg(format!("http://{}{}", self.api, path));
        let out = c.output().expect("curl");
        let mut v = out.stdout;
        let pos = v.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&v[pos + 1..])
            .trim()
            .parse()
            .unwrap_or(0);
        v.truncate(pos);
        (code, v)
    }

    pub fn api_json(&self, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.api_call(method, path, Some(token), None);
        (
            code,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The `/metrics` exposition, read with `token`.
    pub fn metrics_text(&self, token: &str) -> String {
        let (code, body) = self.api_call("GET", "/metrics", Some(token), None);
        assert_eq!(code, 200);
        String::from_utf8_lossy(&body).into_owned()
    }

    /// `GET /api/v1/sessions?limit=1000&{query}`: the items and the total.
    pub fn sessions(&self, query: &str, token: &str) -> (Vec<serde_json::Value>, u64) {
        let (code, v) = self.api_json(
            "GET",
            &format!("/api/v1/sessions?limit=1000&{query}"),
            token,
        );
        assert_eq!(code, 200, "{v}");
        (
            v["items"].as_array().cloned().unwrap_or_default(),
            v["meta"]["total"].as_u64().unwrap_or(0),
        )
    }

    /// `ssh` through the gateway with a password from askpass (no keys), `opts` added before
    /// the destination; runs `cmd`.
    pub fn password_ssh(&self, password: &str, opts: &[&str], cmd: &str) -> Output {
        let ask = askpass(self.dir.path(), password);
        Command::new("setsid")
            .arg("ssh")
            .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "PubkeyAuthentication=no"])
            .args(opts)
            .args(["-p", &self.addr.port().to_string(), &self.dest(), cmd])
            .env("SSH_ASKPASS", &ask)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .expect("ssh")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: a clean shutdown seals every trail.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait gateway")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}

/// An askpass script that answers every prompt with `password`.
pub fn askpass(dir: &Path, password: &str) -> PathBuf {
    let p = dir.join("askpass.sh");
    let mut f = std::fs::File::create(&p).expect("askpass");
    writeln!(f, "#!/bin/sh\nprintf '%s\\n' '{password}'").expect("askpass");
    drop(f);
    let _ = Command::new("chmod").arg("+x").arg(&p).status();
    p
}

pub fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A file of `mib` MiB of mixed compressible and incompressible content.
pub fn make_file(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = if (j / 4096) % 2 == 0 {
                (x >> 24) as u8
            } else {
                b"log line: user=alice action=read\n"[(j + i) % 33]
            };
        }
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
}

/// Polls `f` (every 50 ms: a polling interval, not a readiness guess) until it yields, for at
/// most `secs` seconds.
/// With `TRAILGATE_TEST_CATALOG=postgres`, each gateway under test keeps its catalog in a
/// database of its own on the test process's PostgreSQL cluster (`scripts/test.sh` runs the
/// catalog's end-to-end tests that way as well); otherwise nothing (SQLite in `data_dir`).
pub fn catalog_section() -> String {
    if std::env::var("TRAILGATE_TEST_CATALOG").as_deref() != Ok("postgres") {
        return String::new();
    }
    let url = trailgate_testkit::pg::shared()
        .and_then(|pg| pg.create_unique_database("gw"))
        .expect("PostgreSQL for TRAILGATE_TEST_CATALOG=postgres (scripts/install-test-deps.sh)");
    format!("\n[catalog]\nurl = \"{url}\"\n")
}

pub fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A TCP service that speaks first (like sshd or MySQL) and then echoes one line.
pub fn banner_service() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        for s in l.incoming().take(1) {
            let mut s = s.unwrap();
            s.write_all(b"HELLO-BANNER\n").unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            s.write_all(format!("echo:{line}").as_bytes()).unwrap();
        }
    });
    (port, h)
}
