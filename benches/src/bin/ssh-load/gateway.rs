//! The gateway under load: the release `trailgate serve` with a generated config in a temp dir
//! (one user with the harness's key, one target: the in-process echo server), and what
//! `/proc` says about it (resident memory, CPU time, descriptors).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Gateway {
    pub child: Child,
    pub ssh: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
}

pub const API_TOKEN: &str = "load-admin-secret";

/// How one gateway process is run besides its target.
#[derive(Default)]
pub struct Placement<'a> {
    /// Top-level keys (e.g. `node_id`), put before every table.
    pub top: &'a str,
    /// Appended to the config (e.g. a `[recording]` override, `[catalog]`).
    pub extra: &'a str,
    /// Pins the process to this CPU (`taskset -c`).
    pub cpu: Option<usize>,
}

pub fn start(
    bin: &Path,
    dir: &Path,
    target: SocketAddr,
    target_host_key: &str,
    gateway_key: &Path,
    user_key: &str,
    place: &Placement<'_>,
) -> Result<Gateway> {
    let extra = place.extra;
    use sha2::{Digest, Sha256};
    let token_sha = hex::encode(Sha256::digest(API_TOKEN.as_bytes()));
    let config = format!(
        r#"{top}
data_dir = "{data}"

[ssh]
listen = "127.0.0.1:0"

[api]
listen = "127.0.0.1:0"

[[api_tokens]]
name = "load"
token_sha256 = "{token_sha}"
role = "admin"

# A load test logs in from one address, many at a time.
[limits]
max_unauthenticated = 4096
max_unauthenticated_per_source = 4096

[[users]]
name = "load"
authorized_keys = ["{user_key}"]

[[targets]]
name = "echo"
address = "{target}"
host_key = "{target_host_key}"
user = "load"
private_key = "{gateway_key}"
allow_users = ["load"]
channel_policy = "shell"

[channel_policies.shell]
allow = ["session-shell", "session-exec"]
{extra}
"#,
        top = place.top,
        data = dir.join("data").display(),
        gateway_key = gateway_key.display(),
    );
    let path = dir.join("trailgate.toml");
    std::fs::write(&path, config)?;
    let mut cmd = match place.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("gateway stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let (mut ssh, mut api) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ssh.is_none() || api.is_none() {
        if Instant::now() > deadline {
            bail!("gateway did not report its listeners within 30 s");
        }
        let Some(line) = lines.next() else {
            bail!("gateway exited during start-up");
        };
        let line = line?;
        let addr = || -> Option<SocketAddr> {
            let at = line.find("listen=Some(")? + "listen=Some(".len();
            line[at..].split(')').next()?.parse().ok()
        };
        if line.contains("ssh listener ready") {
            ssh = addr();
        } else if line.contains("api listener ready") {
            api = addr();
        }
    }
    // Keep draining its log so the gateway never blocks on a full pipe; warnings are shown.
    std::thread::spawn(move || {
        for line in lines.map_while(|l| l.ok()) {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("gateway: {line}");
            }
        }
    });
    Ok(Gateway {
        child,
        ssh: ssh.context("ssh listener")?,
        api: api.context("api listener")?,
        data_dir: dir.join("data"),
    })
}

impl Gateway {
    pub fn stats(&self) -> Stats {
        Stats::of(self.child.id())
    }

    pub fn stop(mut self) {
        // SIGTERM: the gateway closes its sessions and seals their trails.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// What `/proc` says about a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub rss_kib: u64,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub fds: u64,
    pub at: Option<Instant>,
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

impl Stats {
    pub fn of(pid: u32) -> Stats {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        Stats {
            rss_kib,
            cpu_ticks: tick(11) + tick(12),
            fds,
            at: Some(Instant::now()),
        }
    }

    /// CPU used between `self` and a later sample, in cores (1.0 = one core busy).
    pub fn cores_until(&self, later: &Stats) -> f64 {
        let secs = match (self.at, later.at) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => return 0.0,
        };
        if secs <= 0.0 {
            return 0.0;
        }
        (later.cpu_ticks.saturating_sub(self.cpu_ticks)) as f64 / ticks_per_second() / secs
    }
}
