//! moto's S3 server (`moto_server`, Python) on `127.0.0.1`, for tests of code that stores objects
//! in S3.
//!
//! The server comes from the project's venv (`target/peers-venv/bin/moto_server`, made by
//! `scripts/install-test-deps.sh`), else from `PATH`. It keeps everything in memory, accepts any
//! credentials without checking signatures: the code under test is pointed at
//! [`S3Server::endpoint`] with path-style addressing, region `us-east-1` and the credentials
//! `AWS_ACCESS_KEY_ID=testing` / `AWS_SECRET_ACCESS_KEY=testing`, while the helpers here
//! ([`S3Server::create_bucket`], [`S3Server::object_bytes`], [`S3Server::list_keys`]) send plain
//! HTTP with a made-up `Authorization` header. (A request without one counts as anonymous: moto
//! lets it create buckets and objects but answers 403 to reading a private object.) [`S3Server::pause`] freezes the process (SIGSTOP) to test timeouts and retries:
//! connections are still accepted by the kernel, but nothing answers.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{self, percent_encode};
use crate::{free_port, sh_quote, spawn_watchdog};

/// Marks the helpers' requests as authenticated: moto reads the access key and the scope (service
/// `s3`, region `us-east-1`) but checks no signature.
const FAKE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
     Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// A running moto S3 server; dropping it kills the server and removes its log.
pub struct S3Server {
    child: Child,
    /// Kills the server if this process dies without dropping `self`.
    watchdog: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    stopped: bool,
}

impl S3Server {
    /// Starts `moto_server` on a free port and returns once it accepts connections (polled every
    /// 20 ms, for at most 30 s).
    pub fn start() -> Result<S3Server> {
        let bin = moto_server()?;
        let dir = tempfile::Builder::new().prefix("tg-moto-").tempdir()?;
        // The port was free when picked; another process may bind it first: try a few.
        for attempt in 1..=3 {
            match Self::start_on(&bin, dir.path(), free_port()) {
                Ok((child, watchdog, port)) => {
                    return Ok(S3Server {
                        child,
                        watchdog: Some(watchdog),
                        port,
                        dir,
                        stopped: false,
                    });
                }
                Err(e) if attempt < 3 && format!("{e:#}").contains("already in use") => {}
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn start_on(bin: &Path, dir: &Path, port: u16) -> Result<(Child, Child, u16)> {
        let log_path = dir.join("moto.log");
        let log = File::create(&log_path)?;
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id();
        let on_exit = format!(
            "grep -q moto_server /proc/{pid}/cmdline 2>/dev/null && kill -9 {pid}; rm -rf {}",
            sh_quote(&dir.display().to_string())
        );
        let mut watchdog = match spawn_watchdog(Command::new("sh"), &on_exit) {
            Ok(watchdog) => watchdog,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        let failure = loop {
            if let Some(status) = child.try_wait()? {
                break format!("moto_server exited ({status}) before listening");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok((child, watchdog, port));
            }
            if Instant::now() > deadline {
                break "moto_server not listening after 30 s".to_owned();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Disarm the watchdog before the server's pid can be reused.
        let _ = watchdog.kill();
        let _ = watchdog.wait();
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        bail!("{failure} on port {port}; its log:\n{log}")
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates bucket `name` (in `us-east-1`).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        self.expect_ok("PUT", &format!("/{}", percent_encode(name, false)), b"")
            .with_context(|| format!("creating bucket {name:?}"))?;
        Ok(())
    }

    /// Stores `bytes` as object `key` of `bucket`, for tests that need objects in place.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) -> Result<()> {
        self.expect_ok("PUT", &object_path(bucket, key), bytes)
            .with_context(|| format!("storing s3://{bucket}/{key}"))?;
        Ok(())
    }

    /// The content of object `key` of `bucket`.
    pub fn object_bytes(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.expect_ok("GET", &object_path(bucket, key), b"")
            .with_context(|| format!("reading s3://{bucket}/{key}"))
    }

    /// The keys in `bucket` that start with `prefix`, in S3's order (all pages of
    /// ListObjectsV2).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!(
                "/{}?list-type=2&prefix={}",
                percent_encode(bucket, false),
                percent_encode(prefix, false)
            );
            if let Some(token) = &token {
                target += &format!("&continuation-token={}", percent_encode(token, false));
            }
            let body = self
                .expect_ok("GET", &target, b"")
                .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
            let xml = String::from_utf8_lossy(&body);
            keys.extend(elements(&xml, "Key"));
            token = match elements(&xml, "IsTruncated").first().map(String::as_str) {
                Some("true") => elements(&xml, "NextContinuationToken").into_iter().next(),
                _ => None,
            };
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted, requests get no answer.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// The server's output so far (its request log and errors), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Starts a fresh server (empty: moto keeps nothing) on the same port after [`S3Server::stop`],
    /// as a store coming back after an outage. Retries while the port is still held (10 s).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let bin = moto_server()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::start_on(&bin, self.dir.path(), self.port) {
                Ok((child, watchdog, _)) => {
                    self.child = child;
                    self.watchdog = Some(watchdog);
                    self.stopped = false;
                    return Ok(());
                }
                Err(e)
                    if Instant::now() < deadline && format!("{e:#}").contains("already in use") =>
                {
                    std::thread::sleep(Duration::from_millis(100)); // polling interval
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Kills the server and waits for it; does nothing when it is already stopped.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        // Disarm the watchdog first: once the server is reaped, its pid may be reused.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} moto_server: {status}");
    }

    /// Sends a request and returns the body of its 2xx response.
    fn expect_ok(&self, method: &str, target: &str, body: &[u8]) -> Result<Vec<u8>> {
        let headers = [
            ("Authorization", FAKE_AUTHORIZATION),
            ("Content-Type", "application/octet-stream"),
        ];
        let response = http::request(self.port, method, target, &headers, body)?;
        if !(200..300).contains(&response.status) {
            bail!(
                "{method} {target}: status {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response.body)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/{}/{}",
        percent_encode(bucket, false),
        percent_encode(key, true)
    )
}

/// The text of every `<name>` element of `xml`, entities decoded (no nesting, no attributes).
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        found.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    found
}

/// `moto_server` from the project's venv, else from `PATH`.
fn moto_server() -> Result<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers-venv/bin/moto_server");
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("moto_server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(venv)
        .chain(on_path)
        .find(|p| p.is_file())
        .context(
            "moto_server not found (target/peers-venv/bin or PATH): run \
             scripts/install-test-deps.sh",
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_elements() {
        let xml = "<a><Key>x&amp;y</Key><Key>z</Key><IsTruncated>false</IsTruncated></a>";
        assert_eq!(super::elements(xml, "Key"), ["x&y", "z"]);
        assert_eq!(super::elements(xml, "IsTruncated"), ["false"]);
        assert!(super::elements(xml, "None").is_empty());
    }
}
