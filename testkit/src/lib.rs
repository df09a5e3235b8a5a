//! Real peer servers on loopback for Trailgate's tests (a dev-dependency only, never shipped).
//!
//! Tests start the genuine programs, not fakes, each on a free `127.0.0.1` port and in a temporary
//! directory of its own, and stop them when the handle is dropped:
//!
//! - [`pg`]: a private PostgreSQL 15 cluster ([`pg::Postgres`]), one per test or one per test
//!   process ([`pg::shared`]) with a database per test.
//! - [`s3`]: moto's S3 server ([`s3::S3Server`]), with plain-HTTP helpers to create buckets and
//!   read back what the code under test stored.
//! - `http` (private): the minimal HTTP/1.1 client those helpers use.
//!
//! The programs come from `scripts/install-test-deps.sh`; when one is missing, starting it fails
//! with an error that says to run that script. Should a test process die without unwinding
//! (killed by a timeout, say), a watchdog per server stops the server and removes its files: the
//! watchdog waits for end-of-file on a pipe whose writing end only the test process holds.

pub mod pg;
pub mod s3;

mod http;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A TCP port on `127.0.0.1` that was free a moment ago: the kernel picks it for a listener that
/// is dropped at once. Another process may take it before the caller binds it; the servers here
/// retry with a new port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Spawns `sh` (through `shell`, which may be `runuser ... -- sh`) to run `on_exit` once the test
/// process is gone: the shell reads (with its builtin `read`, so that killing it leaves no child
/// behind) its standard input, a pipe whose writing end stays in the
/// returned [`Child`] (close-on-exec, so no other child inherits it), until end-of-file. Killing
/// the returned child first disarms the watchdog, unless it was started through `runuser` (which
/// leaves its own child running). It runs in a process group of its own, so a
/// Ctrl-C on the test run does not end it before it has cleaned up.
pub(crate) fn spawn_watchdog(mut shell: Command, on_exit: &str) -> Result<Child> {
    shell
        .arg("-c")
        .arg(format!("while read -r _; do :; done; {on_exit}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning the cleanup watchdog (sh)")
}

/// `s` quoted for `sh`.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
