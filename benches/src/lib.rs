//! Shared, deterministic corpus generators for the criterion benches.
//!
//! Two corpora model what a trail writer sees:
//! - [`bulk_corpus`]: a ~64 MiB file transfer (logs, source text, ~20 % binary) delivered as
//!   32 KiB SSH data records on one channel, server to client.
//! - [`interactive_corpus`]: a terminal session: keystrokes typed one by one and echoed,
//!   command outputs, prompts and idle gaps, ~4 MiB of payload.
//!
//! Every generator is seeded ([`StdRng`] from rand 0.8), so runs are reproducible.
//!
//! Binary `tcp-relay` (`src/bin/tcp-relay.rs`): a plain TCP relay, the latency floor that
//! `benches/ssh-gateway.sh` measures the gateway against.

use std::fmt::Write as _;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
pub use trailgate_recorder::Direction;

/// One recorded data event: `(channel, time_us since session start, direction, payload)`.
pub type Item = (u32, u64, Direction, Bytes);

/// Payload bytes of the bulk corpus.
pub const BULK_BYTES: usize = 64 << 20;
/// SSH-sized data record of the bulk corpus.
pub const BULK_RECORD: usize = 32 << 10;
/// Payload bytes (about) of the interactive corpus.
pub const INTERACTIVE_BYTES: usize = 4 << 20;
/// The session channel both corpora use.
pub const CHANNEL: u32 = 1;

/// All data bytes of `corpus`, in order.
pub fn payload_concat(corpus: &[Item]) -> Vec<u8> {
    let mut v = Vec::with_capacity(corpus.iter().map(|i| i.3.len()).sum());
    for (_, _, _, data) in corpus {
        v.extend_from_slice(data);
    }
    v
}

/// Total payload bytes of `corpus`.
pub fn payload_len(corpus: &[Item]) -> usize {
    corpus.iter().map(|i| i.3.len()).sum()
}

// ---------------------------------------------------------------------------------------------
// text generators

const HOSTS: &[&str] = &[
    "web-01",
    "web-02",
    "web-03",
    "db-01",
    "cache-02",
    "bastion",
    "ci-runner-7",
];
const SERVICES: &[&str] = &[
    "sshd", "nginx", "postgres", "systemd", "kernel", "cron", "dockerd", "app",
];
const USERS: &[&str] = &["alice", "bob", "deploy", "root", "backup", "carol", "ci"];
const PATHS: &[&str] = &[
    "/api/v1/sessions",
    "/api/v1/targets",
    "/healthz",
    "/static/app.js",
    "/static/style.css",
    "/login",
    "/api/v1/users/42",
    "/metrics",
];
const WORDS: &[&str] = &[
    "session", "target", "policy", "record", "frame", "chain", "buffer", "config", "client",
    "server", "channel", "request", "reply", "error", "state", "index", "offset", "window", "key",
    "user", "node", "writer", "reader", "stream", "handle", "timeout", "retry", "limit", "token",
    "cache", "queue", "event", "context", "result", "value", "item", "count", "len", "path",
];
const TYPES: &[&str] = &[
    "u32",
    "u64",
    "usize",
    "String",
    "Vec<u8>",
    "bool",
    "Bytes",
    "Option<u64>",
    "&str",
];

fn pick<'a, T: ?Sized>(rng: &mut StdRng, xs: &'a [&'a T]) -> &'a T {
    xs[rng.gen_range(0..xs.len())]
}

fn ip(rng: &mut StdRng) -> String {
    format!(
        "10.{}.{}.{}",
        rng.gen_range(0..4),
        rng.gen_range(0..32),
        rng.gen_range(1..255)
    )
}

/// Syslog/access-log-like lines with increasing timestamps.
struct LogGen {
    t: u64,
    nl: &'static str,
}

impl LogGen {
    fn new(rng: &mut StdRng, nl: &'static str) -> Self {
        LogGen {
            t: 1_715_000_000_000 + rng.gen_range(0..86_400_000),
            nl,
        }
    }

    fn line(&mut self, rng: &mut StdRng, out: &mut String) {
        self.t += rng.gen_range(0..2_000);
        let (s, ms) = (self.t / 1000, self.t % 1000);
        let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
        let host = pick(rng, HOSTS);
        let _ = match rng.gen_range(0..10) {
            0..=3 => write!(
                out,
                "{} - - [14/May/2024:{h:02}:{m:02}:{sec:02} +0000] \"{} {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" {}.{:03}",
                ip(rng),
                ["GET", "GET", "GET", "POST", "PUT"][rng.gen_range(0..5)],
                pick(rng, PATHS),
                [200, 200, 200, 200, 304, 404, 500][rng.gen_range(0..7)],
                rng.gen_range(0..40_000),
                rng.gen_range(0..2),
                rng.gen_range(0..1000),
            ),
            4..=5 => write!(
                out,
                "May 14 {h:02}:{m:02}:{sec:02} {host} sshd[{}]: Accepted publickey for {} from {} port {} ssh2: ED25519 SHA256:{:016x}",
                rng.gen_range(1000..60_000),
                pick(rng, USERS),
                ip(rng),
                rng.gen_range(30_000..65_000),
                rng.next_u64(),
            ),
            6..=7 => write!(
                out,
                "2024-05-14T{h:02}:{m:02}:{sec:02}.{ms:03}Z {} {} {}: {} {} {} in {}ms (id={:08x})",
                host,
                ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"][rng.gen_range(0..6)],
                pick(rng, SERVICES),
                pick(rng, WORDS),
                ["completed", "started", "failed", "retried", "queued"][rng.gen_range(0..5)],
                pick(rng, WORDS),
                rng.gen_range(0..5000),
                rng.next_u32(),
            ),
            _ => write!(
                out,
                "May 14 {h:02}:{m:02}:{sec:02} {host} {}[{}]: {} {} for user {}: {} {}",
                pick(rng, SERVICES),
                rng.gen_range(1..40_000),
                [
                    "pam_unix(sshd:session):",
                    "Started",
                    "Stopped",
                    "Reloading",
                    "CRON"
                ][rng.gen_range(0..5)],
                pick(rng, WORDS),
                pick(rng, USERS),
                pick(rng, WORDS),
                rng.gen_range(0..100_000),
            ),
        };
        out.push_str(self.nl);
    }
}

fn ident(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.5) {
        pick(rng, WORDS).to_string()
    } else {
        format!("{}_{}", pick(rng, WORDS), pick(rng, WORDS))
    }
}

/// Rust-like source text: functions, structs, comments, repeated idioms.
fn source_item(rng: &mut StdRng, out: &mut String) {
    match rng.gen_range(0..4) {
        0 => {
            let _ = writeln!(
                out,
                "/// Returns the {} of the {}.",
                pick(rng, WORDS),
                pick(rng, WORDS)
            );
            let _ = writeln!(out, "#[derive(Debug, Clone, PartialEq)]");
            let _ = writeln!(
                out,
                "pub struct {}{} {{",
                capitalize(pick(rng, WORDS)),
                capitalize(pick(rng, WORDS))
            );
            for _ in 0..rng.gen_range(2..8) {
                let _ = writeln!(out, "    pub {}: {},", ident(rng), pick(rng, TYPES));
            }
            out.push_str("}\n\n");
        }
        _ => {
            let _ = writeln!(
                out,
                "    // {} the {} before {}",
                pick(rng, WORDS),
                pick(rng, WORDS),
                pick(rng, WORDS)
            );
            let _ = writeln!(
                out,
                "    pub fn {}(&mut self, {}: {}) -> Result<{}> {{",
                ident(rng),
                ident(rng),
                pick(rng, TYPES),
                pick(rng, TYPES)
            );
            for _ in 0..rng.gen_range(3..14) {
                let _ = match rng.gen_range(0..6) {
                    0 => writeln!(
                        out,
                        "        let {} = self.{}.{}()?;",
                        ident(rng),
                        ident(rng),
                        ident(rng)
                    ),
                    1 => writeln!(
                        out,
                        "        if {} > {} {{\n            return Err(Error::{}(\"{} {}\".into()));\n        }}",
                        ident(rng),
                        rng.gen_range(0..4096),
                        capitalize(pick(rng, WORDS)),
                        pick(rng, WORDS),
                        pick(rng, WORDS)
                    ),
                    2 => writeln!(
                        out,
                        "        self.{} += {}.len() as u64;",
                        ident(rng),
                        ident(rng)
                    ),
                    3 => writeln!(
                        out,
                        "        tracing::debug!({} = %{}, \"{} {}\");",
                        pick(rng, WORDS),
                        ident(rng),
                        pick(rng, WORDS),
                        pick(rng, WORDS)
                    ),
                    4 => writeln!(
                        out,
                        "        for {} in &self.{} {{\n            {}.push({}.clone());\n        }}",
                        pick(rng, WORDS),
                        ident(rng),
                        ident(rng),
                        pick(rng, WORDS)
                    ),
                    _ => writeln!(
                        out,
                        "        let {} = match {} {{\n            Some(v) => v,\n            None => return Ok({}),\n        }};",
                        ident(rng),
                        ident(rng),
                        ["None", "()", "0", "false"][rng.gen_range(0..4)]
                    ),
                };
            }
            let _ = writeln!(out, "        Ok({})\n    }}\n", ident(rng));
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Binary "random-ish" content: half incompressible (archives, media), half structured tables.
fn binary_file(rng: &mut StdRng, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    if rng.gen_bool(0.5) {
        out.resize(start + len, 0);
        rng.fill_bytes(&mut out[start..]);
    } else {
        // Records of little-endian counters, small deltas, flags and some noise.
        let mut v: u32 = rng.r#gen();
        while out.len() - start < len {
            v = v.wrapping_add(rng.gen_range(0..64));
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&(rng.gen_range(0..16u16)).to_le_bytes());
            out.push(rng.gen_range(0..4));
            out.push(0);
            out.extend_from_slice(&rng.next_u64().to_le_bytes()[..rng.gen_range(0..4)]);
        }
        out.truncate(start + len);
    }
}

// ---------------------------------------------------------------------------------------------
// bulk

/// The bulk corpus with its default seed and size.
pub fn bulk_corpus() -> Vec<Item> {
    bulk_corpus_with(0x7261_696c_6761_7465, BULK_BYTES)
}

/// A file transfer of `total` bytes: a sequence of "files" (40 % logs, 40 % source, 20 %
/// binary by bytes, 64 KiB to 2 MiB each), cut into 32 KiB records at ~100 MiB/s.
pub fn bulk_corpus_with(seed: u64, total: usize) -> Vec<Item> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stream: Vec<u8> = Vec::with_capacity(total + (2 << 20));
    let mut text = String::new();
    while stream.len() < total {
        let len = rng.gen_range(64 << 10..2 << 20);
        match rng.gen_range(0..10) {
            0..=3 => {
                let mut g = LogGen::new(&mut rng, "\n");
                text.clear();
                while text.len() < len {
                    g.line(&mut rng, &mut text);
                }
                stream.extend_from_slice(text.as_bytes());
            }
            4..=7 => {
                text.clear();
                let _ = writeln!(
                    text,
                    "// SPDX-License-Identifier: Apache-2.0\n\nuse std::io;\nuse crate::error::{{Error, Result}};\n"
                );
                while text.len() < len {
                    source_item(&mut rng, &mut text);
                }
                stream.extend_from_slice(text.as_bytes());
            }
            _ => binary_file(&mut rng, len, &mut stream),
        }
    }
    stream.truncate(total);
    let stream = Bytes::from(stream);
    let mut t: u64 = 1_000_000;
    let mut items = Vec::with_capacity(total / BULK_RECORD + 1);
    let mut off = 0;
    while off < stream.len() {
        let end = (off + BULK_RECORD).min(stream.len());
        items.push((
            CHANNEL,
            t,
            Direction::ServerToClient,
            stream.slice(off..end),
        ));
        // 32 KiB at ~100 MiB/s is ~330 us; jitter as the network adds it.
        t += rng.gen_range(200..500);
        off = end;
    }
    items
}

// ---------------------------------------------------------------------------------------------
// interactive

const PROMPT_DIRS: &[&str] = &["~", "~/src/trailgate", "/var/log", "/etc/nginx", "~/deploy"];

fn command(rng: &mut StdRng) -> String {
    match rng.gen_range(0..14) {
        0 => "ls -la".into(),
        1 => format!("ls {}", ["-l", "-lh", "", "-1"][rng.gen_range(0..4)])
            .trim()
            .into(),
        2 => "ps aux".into(),
        3 => format!(
            "tail -n {} /var/log/syslog",
            [20, 50, 100][rng.gen_range(0..3)]
        ),
        4 => "git status".into(),
        5 => "git log --oneline -20".into(),
        6 => format!("cd {}", pick(rng, PROMPT_DIRS)),
        7 => format!("grep -i {} *.log", pick(rng, WORDS)),
        8 => "df -h".into(),
        9 => format!("journalctl -u {} --since today", pick(rng, SERVICES)),
        10 => format!("cat src/{}.rs", pick(rng, WORDS)),
        11 => "sudo systemctl status nginx".into(),
        12 => format!("kubectl get pods -n {}", pick(rng, WORDS)),
        _ => "uptime".into(),
    }
}

/// Terminal output of roughly `len` bytes (CRLF line ends, some colour).
fn output(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + 256);
    let kind = rng.gen_range(0..4);
    let mut logs = LogGen::new(rng, "\r\n");
    while s.len() < len {
        match kind {
            0 => {
                let dir = rng.gen_bool(0.2);
                let name = format!(
                    "{}{}",
                    ident(rng),
                    if dir {
                        ""
                    } else {
                        [".rs", ".log", ".toml", ".md", ".json"][rng.gen_range(0..5)]
                    }
                );
                let _ = write!(
                    s,
                    "{}{} {:>2} {:<7} {:<7} {:>8} May {:>2} {:02}:{:02} {}{}\x1b[0m\r\n",
                    if dir { "d" } else { "-" },
                    if dir { "rwxr-xr-x" } else { "rw-r--r--" },
                    rng.gen_range(1..9),
                    pick(rng, USERS),
                    pick(rng, USERS),
                    rng.gen_range(0..2_000_000),
                    rng.gen_range(1..29),
                    rng.gen_range(0..24),
                    rng.gen_range(0..60),
                    if dir { "\x1b[01;34m" } else { "\x1b[0m" },
                    name
                );
            }
            1 => {
                let _ = write!(
                    s,
                    "{:<8} {:>7} {:>4.1} {:>4.1} {:>8} {:>6} ?        S{}  May14   {}:{:02} /usr/bin/{} --{}={}\r\n",
                    pick(rng, USERS),
                    rng.gen_range(1..99_999),
                    rng.gen_range(0.0..20.0f32),
                    rng.gen_range(0.0..8.0f32),
                    rng.gen_range(10_000..4_000_000),
                    rng.gen_range(1_000..400_000),
                    ["s", "l", "sl", " "][rng.gen_range(0..4)],
                    rng.gen_range(0..90),
                    rng.gen_range(0..60),
                    pick(rng, SERVICES),
                    pick(rng, WORDS),
                    pick(rng, WORDS)
                );
            }
            2 => logs.line(rng, &mut s),
            _ => {
                let _ = write!(
                    s,
                    "\x1b[33m{:07x}\x1b[m {} {} in {}\r\n",
                    rng.r#gen::<u32>() >> 4,
                    ["Fix", "Add", "Refactor", "Document", "Bump"][rng.gen_range(0..5)],
                    pick(rng, WORDS),
                    ident(rng)
                );
            }
        }
    }
    s.truncate(len.max(1).min(s.len()));
    s.into_bytes()
}

/// The interactive corpus with its default seed and size.
pub fn interactive_corpus() -> Vec<Item> {
    interactive_corpus_with(0x7368_656c_6c21, INTERACTIVE_BYTES)
}

/// A shell session of about `total` payload bytes on one channel: prompt, a command typed one
/// key at a time (100-250 ms apart, each echoed 1-20 ms later, with an occasional typo fixed by
/// backspace), Enter, ~50 ms later the output (100 B - 8 KiB in chunks of up to 4 KiB), then think
/// time of 0.5-5 s and, now and then, an idle gap of 5-60 s.
pub fn interactive_corpus_with(seed: u64, total: usize) -> Vec<Item> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut items: Vec<Item> = Vec::new();
    let mut t: u64 = 400_000;
    fn push(items: &mut Vec<Item>, t: u64, dir: Direction, data: Vec<u8>) {
        items.push((CHANNEL, t, dir, Bytes::from(data)));
    }
    let mut cwd = "~/src/trailgate";
    // Login banner.
    push(
        &mut items,
        t,
        Direction::ServerToClient,
        b"Welcome to Ubuntu 24.04 LTS (GNU/Linux 6.8.0-31-generic x86_64)\r\n\r\nLast login: Tue May 14 09:12:03 2024 from 10.0.3.17\r\n".to_vec(),
    );
    let mut bytes = payload_len(&items);
    while bytes < total {
        let before = items.len();
        t += rng.gen_range(1_000..5_000);
        let prompt = format!("\x1b[01;32malice@web-03\x1b[00m:\x1b[01;34m{cwd}\x1b[00m$ ");
        push(
            &mut items,
            t,
            Direction::ServerToClient,
            prompt.into_bytes(),
        );
        let cmd = command(&mut rng);
        t += rng.gen_range(300_000..1_500_000);
        for &key in cmd.as_bytes() {
            if rng.gen_bool(0.04) {
                // Typo, then backspace.
                let wrong = b"asdfjkl;"[rng.gen_range(0..8)];
                push(&mut items, t, Direction::ClientToServer, vec![wrong]);
                push(
                    &mut items,
                    t + rng.gen_range(1_000..20_000),
                    Direction::ServerToClient,
                    vec![wrong],
                );
                t += rng.gen_range(150_000..400_000);
                push(&mut items, t, Direction::ClientToServer, vec![0x7f]);
                push(
                    &mut items,
                    t + rng.gen_range(1_000..20_000),
                    Direction::ServerToClient,
                    b"\x08\x1b[K".to_vec(),
                );
                t += rng.gen_range(100_000..250_000);
            }
            push(&mut items, t, Direction::ClientToServer, vec![key]);
            push(
                &mut items,
                t + rng.gen_range(1_000..20_000),
                Direction::ServerToClient,
                vec![key],
            );
            t += rng.gen_range(100_000..250_000);
        }
        push(&mut items, t, Direction::ClientToServer, b"\r".to_vec());
        t += rng.gen_range(1_000..20_000);
        push(&mut items, t, Direction::ServerToClient, b"\r\n".to_vec());
        if let Some(dir) = cmd.strip_prefix("cd ") {
            cwd = PROMPT_DIRS
                .iter()
                .find(|d| **d == dir)
                .copied()
                .unwrap_or(cwd);
        } else {
            t += rng.gen_range(30_000..70_000);
            let len = if rng.gen_bool(0.6) {
                rng.gen_range(100..1_500)
            } else {
                rng.gen_range(1_500..8_192)
            };
            let out = output(&mut rng, len);
            for chunk in out.chunks(rng.gen_range(1_024..=4_096)) {
                push(&mut items, t, Direction::ServerToClient, chunk.to_vec());
                t += rng.gen_range(100..1_000);
            }
        }
        if rng.gen_bool(0.08) {
            t += rng.gen_range(5_000_000..60_000_000);
        }
        bytes += items[before..].iter().map(|i| i.3.len()).sum::<usize>();
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpora_are_deterministic_and_sized() {
        let a = interactive_corpus();
        let b = interactive_corpus();
        assert_eq!(a, b);
        let n = payload_len(&a);
        assert!((INTERACTIVE_BYTES..INTERACTIVE_BYTES + 16_384).contains(&n));
        assert!(a.windows(2).all(|w| w[0].1 <= w[1].1));
        let bulk = bulk_corpus_with(1, 1 << 20);
        assert_eq!(payload_len(&bulk), 1 << 20);
        assert!(bulk.iter().all(|i| i.3.len() <= BULK_RECORD));
    }
}
