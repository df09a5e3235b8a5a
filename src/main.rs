//! `trailgate`: the gateway binary. Argument parsing and wiring only; the work lives in the
//! `trailgate-proxy`, `trailgate-recorder`, `trailgate-control-api` and `trailgate-demo` crates.

mod certs;
mod demo;
mod reload;
mod serve;
mod sessions_cmd;
mod setup;
mod trail_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, not glibc's malloc: thousands of sessions allocate and free buffers on every worker
/// thread, and glibc's per-thread arenas kept that memory after the sessions ended (RSS stayed
/// at its peak); jemalloc returns freed pages to the system within seconds and fragments less
/// (docs/performance.md, "Many sessions on one node").
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Purge freed pages from a background thread, a second after they became unused.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

#[derive(Debug, Parser)]
#[command(
    name = "trailgate",
    version,
    about = "SSH and VNC recording proxy gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Work with trail files: info, verify, cat, export, play, snapshot.
    Trail {
        #[command(subcommand)]
        cmd: trail_cmd::TrailCmd,
    },
    /// Try Trailgate: a gateway with a generated configuration and a built-in SSH target
    /// (loopback only), printing the ssh command, its password and an API token.
    Demo {
        /// Where to write the configuration, keys and trails (default: a new temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The gateway's SSH port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 2222)]
        ssh_port: u16,
        /// The control API's port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 8022)]
        api_port: u16,
    },
    /// Sessions through the control API: list, show, kill, download (URL and token from
    /// flags or TRAILGATE_URL / TRAILGATE_TOKEN).
    Sessions {
        #[command(subcommand)]
        cmd: sessions_cmd::SessionsCmd,
    },
    /// Write a configuration for this machine: data directory, first user and API token, first
    /// target with its host key shown for confirmation.
    Setup(setup::SetupArgs),
    /// Run the gateway.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0: valid).
    CheckConfig {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Rebuild the session catalog from the trail files.
    Reindex {
        /// The TOML configuration file (its data_dir holds the trails and the catalog).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password from standard input and print its argon2id hash for `password_hash`.
    HashPassword,
    /// Generate key material.
    Keygen {
        #[command(subcommand)]
        what: KeygenCmd,
    },
    /// Make certificates.
    Certs {
        #[command(subcommand)]
        what: CertsCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCmd {
    /// A development CA with a gateway and a target certificate (localhost, 127.0.0.1, ::1 and
    /// any --name), for VNC over TLS and the API's HTTPS. Never for production.
    Dev {
        #[arg(long, default_value = "./certs/dev")]
        out: PathBuf,
        /// More subjectAltNames (DNS names or IP addresses).
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeygenCmd {
    /// The Ed25519 key pair that seals trails (generated on first start if missing).
    TrailSigning {
        /// Where to write the private key (the public key goes beside it, `.pub`).
        #[arg(long, default_value = "./trailgate-data/keys/trail-signing.key")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve { .. } | Cmd::Demo { .. }) {
        // Command-line tools end quietly when their reader goes away (`trail cat F | head`),
        // as other Unix tools do; the gateway itself keeps ignoring SIGPIPE.
        // SAFETY: restores the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let res = match cli.cmd {
        Cmd::Trail { cmd } => trail_cmd::run(cmd),
        Cmd::Demo {
            dir,
            ssh_port,
            api_port,
        } => demo::run(demo::DemoArgs {
            dir,
            ssh_port,
            api_port,
        }),
        Cmd::Sessions { cmd } => sessions_cmd::run(cmd),
        Cmd::Setup(a) => setup::run(a),
        Cmd::Serve { config } => serve::run(&config),
        Cmd::CheckConfig { config } => serve::check(&config),
        Cmd::HashPassword => serve::hash_password(),
        Cmd::Reindex { config } => serve::reindex(&config),
        Cmd::Keygen {
            what: KeygenCmd::TrailSigning { out },
        } => trail_cmd::keygen_trail_signing(&out),
        Cmd::Certs {
            what: CertsCmd::Dev { out, names },
        } => certs::dev(&out, &names),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trailgate: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
