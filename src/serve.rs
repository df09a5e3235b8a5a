//! `trailgate serve`, `check-config` and `hash-password`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use trailgate_proxy::session::NoObserver;
use trailgate_proxy::{Config, Gateway};

pub fn run(config: &Path) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let gw = Gateway::new(cfg, Arc::new(NoObserver))?;
        let listener = gw.bind_ssh().await?;
        let addr = listener.local_addr()?;
        // One stable line on stdout: scripts and tests wait for it (and learn the port when
        // the config says port 0).
        println!("trailgate: ssh listening on {addr}");
        std::io::stdout().flush().ok();
        let serve = tokio::spawn(gw.clone().serve_ssh(listener));
        wait_for_signal().await;
        tracing::info!("shutting down");
        gw.shutdown(Duration::from_secs(10)).await;
        serve.abort();
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn check(config: &Path) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    println!(
        "{}: ok ({} users, {} targets)",
        config.display(),
        cfg.users.len(),
        cfg.targets.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn hash_password() -> Result<ExitCode> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        anyhow::bail!("empty password");
    }
    let h = trailgate_proxy::auth::hash_password(pw).map_err(anyhow::Error::msg)?;
    println!("{h}");
    Ok(ExitCode::SUCCESS)
}
