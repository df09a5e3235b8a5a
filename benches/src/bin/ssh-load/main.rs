//! `ssh-load`: many concurrent recorded SSH sessions through the gateway, measured.
//!
//! The harness runs, in one process, the target (an in-process russh echo server, so one
//! process serves every session and the target is never the limit) and the clients (russh,
//! public-key login, a shell with a pty); the gateway is the release binary with a generated
//! config, recording on with its defaults (fsync, 1 s flush, zstd 3). Phases:
//! 1. log in `--sessions` sessions, `--concurrency` at a time: logins per second, gateway CPU
//!    per login;
//! 2. let them idle `--idle-settle-s`: gateway memory per idle session;
//! 3. `--typing` of them type at human pace (one key per `--key-interval-ms` on average, each
//!    timed to its echo) for `--duration-s`: echo latency percentiles, gateway CPU and memory
//!    per typing session;
//! 4. the same with `--bulk` sessions downloading `--bulk-mib` each;
//! 5. close everything: memory and descriptors after, every trail verified sealed, catalog rows.
//!
//! `--direct` runs the same against the target without the gateway, for comparison.
//! `--soak-minutes M` instead churns `--soak-sessions` sessions (connect, type, download,
//! disconnect) for M minutes, sampling the gateway every 30 s, then checks every trail and the
//! catalog. `--scale-out` compares one node with two on one PostgreSQL catalog. Modules: `target` (the echo server), `client` (one session), `gateway` (the process
//! and its /proc figures), `phases` (the measured run), `soak`, `scaleout`, `trails` (trail and catalog checks), `report` (the table).

mod client;
mod gateway;
mod phases;
mod report;
mod scaleout;
mod soak;
mod target;
mod trails;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};

#[derive(Parser, Debug, Clone)]
#[command(about = "Concurrent recorded SSH sessions through the gateway, measured")]
pub struct Args {
    /// Sessions held open at once.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Of them, how many type.
    #[arg(long, default_value_t = 100)]
    pub typing: usize,
    /// Mean time between keys of a typing session (uniform in 0.5x-1.5x).
    #[arg(long, default_value_t = 250)]
    pub key_interval_ms: u64,
    /// Sessions downloading in the bulk phase.
    #[arg(long, default_value_t = 2)]
    pub bulk: usize,
    #[arg(long, default_value_t = 64)]
    pub bulk_mib: u64,
    /// Length of each typing phase.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Idle time before idle memory is measured.
    #[arg(long, default_value_t = 5)]
    pub idle_settle_s: u64,
    /// Also run without the gateway (clients straight to the target).
    #[arg(long)]
    pub direct: bool,
    #[arg(long, default_value = "target/release/trailgate")]
    pub gateway: PathBuf,
    /// Appended to the gateway's config (e.g. "[recording]\nfsync = false").
    #[arg(long, default_value = "")]
    pub gateway_extra: String,
    /// Churn sessions for this many minutes instead of the phases (0: off).
    #[arg(long, default_value_t = 0)]
    pub soak_minutes: u64,
    #[arg(long, default_value_t = 200)]
    pub soak_sessions: usize,
    /// Instead of the phases: `--typing` sessions typing through one gateway node pinned to one
    /// core, then 1.8 times as many through two nodes (one core each) on one PostgreSQL
    /// catalog; echo latency of each.
    #[arg(long)]
    pub scale_out: bool,
    /// Keep the temp dir (trails, catalog, config) for inspection.
    #[arg(long)]
    pub keep: bool,
}

/// Keys and the target, shared by every run.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub target: std::net::SocketAddr,
    pub target_host_pub: String,
    pub gateway_key_path: PathBuf,
    pub user_key: Arc<PrivateKey>,
    pub user_pub: String,
}

impl Setup {
    /// The gateway in `dir` (under the temp dir), in front of the echo target.
    pub fn start_gateway(&self, args: &Args, dir: &str) -> Result<gateway::Gateway> {
        let place = gateway::Placement {
            extra: &args.gateway_extra,
            ..Default::default()
        };
        self.start_in(args, dir, &place)
    }

    /// Gateway node `i` of a cluster on the catalog `catalog_url`, pinned to CPU `i`.
    pub fn start_node(&self, args: &Args, i: usize, catalog_url: &str) -> Result<gateway::Gateway> {
        let top = format!("node_id = \"node-{i}\"");
        let extra = format!(
            "{}\n[catalog]\nurl = \"{catalog_url}\"\n",
            args.gateway_extra
        );
        let place = gateway::Placement {
            top: &top,
            extra: &extra,
            cpu: Some(i),
        };
        self.start_in(args, &format!("node-{i}"), &place)
    }

    fn start_in(
        &self,
        args: &Args,
        dir: &str,
        place: &gateway::Placement<'_>,
    ) -> Result<gateway::Gateway> {
        let dir = self.dir.path().join(dir);
        std::fs::create_dir_all(&dir)?;
        gateway::start(
            &args.gateway,
            &dir,
            self.target,
            &self.target_host_pub,
            &self.gateway_key_path,
            &self.user_pub,
            place,
        )
    }
}

async fn setup() -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let rng = &mut russh::keys::key::safe_rng();
    let host = PrivateKey::random(rng, Algorithm::Ed25519)?;
    let gw_key = PrivateKey::random(rng, Algorithm::Ed25519)?;
    let user = PrivateKey::random(rng, Algorithm::Ed25519)?;
    let gateway_key_path = dir.path().join("gateway_to_target");
    gw_key.write_openssh_file(&gateway_key_path, LineEnding::LF)?;
    let target_host_pub = host.public_key().to_openssh()?;
    let user_pub = user.public_key().to_openssh()?;
    let target = target::start(host)
        .await
        .context("starting the echo target")?;
    Ok(Setup {
        dir,
        target,
        target_host_pub,
        gateway_key_path,
        user_key: Arc::new(user),
        user_pub,
    })
}

/// Raises the descriptor limit as far as allowed: each session holds two here (client and
/// target sockets) and three in the gateway (two sockets and its trail), which inherits it.
fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let want = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return want.rlim_cur;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

fn main() -> Result<()> {
    let args = Args::parse();
    let fds = raise_fd_limit();
    eprintln!("descriptor limit: {fds}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let s = setup().await?;
        if args.scale_out {
            scaleout::run(&args, &s).await?;
        } else if args.soak_minutes > 0 {
            soak::run(&args, &s).await?;
        } else {
            let gw = phases::run(&args, &s, false).await?;
            let direct = if args.direct {
                Some(phases::run(&args, &s, true).await?)
            } else {
                None
            };
            report::table(&args, &gw, direct.as_ref());
        }
        if args.keep {
            eprintln!("kept {}", s.dir.keep().display());
        }
        Ok(())
    })
}
