//! `trailgate serve`, `check-config` and `hash-password`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use trailgate_control_api::ApiState;
use trailgate_proxy::{Config, Services, SshService, VncService};
use trailgate_recorder::catalog::Catalog;

/// Called once the listeners accept connections: the SSH and API addresses.
pub type OnReady = Box<dyn FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>) + Send>;

pub fn run(config: &Path) -> Result<ExitCode> {
    run_with(config, None)
}

pub fn run_with(config: &Path, on_ready: Option<OnReady>) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    init_tracing();
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    private_umask();
    fixed_mmap_threshold();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let catalog_url = cfg.catalog_url()?;
        let catalog = {
            let dir = cfg.data_dir.clone();
            tokio::task::spawn_blocking(move || Catalog::open_url(catalog_url.as_deref(), &dir))
                .await?
                .context("opening the session catalog")?
        };
        tracing::info!(catalog = %catalog.backend().describe(), "session catalog open");
        let store = cfg.trail_store()?;
        let observer = Arc::new(trailgate_proxy::session::CatalogObserver {
            catalog: catalog.clone(),
            uploader: Default::default(),
        });
        let gw = Services::new(cfg, observer.clone())?;
        let uploader = store.clone().map(|s| {
            tracing::info!(store = ?s.settings(), "sealed trails go to object storage");
            let u = trailgate_storage::Uploader::spawn(
                s,
                catalog.clone(),
                gw.node_id.clone(),
                gw.shutdown.clone(),
                &gw.tracker,
            );
            let _ = observer.uploader.set(u.clone());
            u
        });
        let ssh = SshService::new(gw.clone())?;
        let vnc = VncService::new(gw.clone())?;
        // What the control API stored (policies, VNC options) applies from the first session.
        let restored = trailgate_control_api::configuration::restore(&catalog, &gw.runtime)
            .map_err(|e| anyhow::anyhow!("loading stored configuration: {e}"))?;
        if restored > 0 {
            tracing::info!(
                policies = restored,
                "settings policies from the control API loaded"
            );
        }
        set_vnc_log_level(&gw.runtime.vnc_options());
        // Nothing may show as active without a live connection: close what the last run left.
        let cat = catalog.clone();
        let key = gw.signing_key.clone();
        let (node, state) = (
            gw.node_id.clone(),
            if uploader.is_some() {
                "uploading"
            } else {
                "local"
            },
        );
        let n =
            tokio::task::spawn_blocking(move || cat.reconcile_after_restart(&key, &node, state))
                .await??;
        if n > 0 {
            tracing::warn!(
                sessions = n,
                "closed sessions left active by the previous run (gateway restarted)"
            );
        }
        let listener = ssh.bind().await?;
        let addr = listener.local_addr()?;
        let vnc = match vnc {
            Some(v) => {
                let l = v.bind().await?;
                let a = l.local_addr()?;
                Some((v, l, a))
            }
            None => None,
        };
        let api = match &gw.cfg().api {
            Some(api_cfg) => {
                let l = tokio::net::TcpListener::bind(api_cfg.listen)
                    .await
                    .with_context(|| format!("api.listen {}", api_cfg.listen))?;
                let api_addr = l.local_addr()?;
                let mut state = ApiState::new(
                    catalog.clone(),
                    gw.registry.clone(),
                    gw.runtime.clone(),
                    gw.cfg().data_dir.clone(),
                    gw.metrics.clone(),
                );
                state.on_vnc_options = Some(Box::new(set_vnc_log_level));
                state.trails = Arc::new(trailgate_storage::TrailCache::new(
                    gw.cfg().data_dir.join("cache"),
                    gw.cfg().storage.cache_max,
                    store.clone(),
                ));
                state.uploader = uploader.clone();
                let app = trailgate_control_api::router(Arc::new(state));
                let tls = match (&api_cfg.tls_cert, &api_cfg.tls_key) {
                    (Some(cert), Some(key)) => {
                        let policy = api_cfg
                            .client_tls_security_settings
                            .compile("api.client_tls_security_settings")
                            .map_err(anyhow::Error::msg)?;
                        Some(trailgate_proxy::tls::server_config(
                            cert,
                            key,
                            "api",
                            &[b"http/1.1"],
                            &policy,
                        )?)
                    }
                    _ => None,
                };
                let limits = trailgate_control_api::serve::Limits {
                    max_connections: api_cfg.max_connections,
                    header_read_timeout: api_cfg.header_read_timeout,
                };
                let task = tokio::spawn(trailgate_control_api::serve::serve(
                    l,
                    tls,
                    app,
                    limits,
                    gw.shutdown.clone(),
                    Duration::from_secs(5),
                ));
                Some((api_addr, task))
            }
            None => None,
        };
        // Other nodes on the same catalog find this one (and its API, for live follow).
        let api_url = gw.cfg().cluster.api_url.clone().or_else(|| {
            let a = api.as_ref()?.0;
            let scheme = if gw.cfg().api.as_ref()?.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            (!a.ip().is_unspecified()).then(|| format!("{scheme}://{a}"))
        });
        trailgate_proxy::cluster::start(&gw, &catalog, api_url);
        if uploader.is_some() {
            // Trails this node sealed before a restart and had not stored yet.
            if let Some(u) = &uploader {
                u.wake();
            }
        }
        // Stable lines on stdout: scripts and tests wait for them (and learn the ports when the
        // config says port 0).
        println!("trailgate: ssh listening on {addr}");
        if let Some((_, _, a)) = &vnc {
            println!("trailgate: vnc listening on {a}");
        }
        if let Some((a, _)) = &api {
            println!("trailgate: api listening on {a}");
        }
        // So users can check what their client shows on first connect.
        for fp in ssh.host_key_fingerprints() {
            println!("trailgate: ssh host key {fp}");
        }
        if let Some((v, _, _)) = &vnc
            && let Some(fp) = v.certificate_fingerprint()
        {
            println!("trailgate: vnc certificate {fp}");
        }
        std::io::stdout().flush().ok();
        if let Some(f) = on_ready {
            f(addr, api.as_ref().map(|(a, _)| *a));
        }
        let serve = tokio::spawn(ssh.clone().serve(listener));
        let vnc_service = vnc.as_ref().map(|(v, _, _)| v.clone());
        let serve_vnc = vnc.map(|(v, l, _)| tokio::spawn(v.serve(l)));
        tokio::spawn(crate::reload::on_sighup(
            crate::reload::Reloader {
                path: config.to_path_buf(),
                gw: gw.clone(),
                ssh: ssh.clone(),
                vnc: vnc_service,
                catalog: catalog.clone(),
            },
            gw.shutdown.clone(),
        ));
        tokio::spawn(metadata_cleanup(catalog.clone(), gw.clone()));
        wait_for_signal().await;
        tracing::info!("shutting down");
        gw.shutdown(Duration::from_secs(10)).await;
        serve.abort();
        if let Some(h) = serve_vnc {
            h.abort();
        }
        if let Some((_, h)) = api {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        let cat = catalog.clone();
        let _ = tokio::task::spawn_blocking(move || cat.close()).await;
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
    // SIGQUIT too: every signal that stops the gateway ends sessions with a reason and seals
    // their trails.
    let quit = signal(SignalKind::quit()).ok();
    let quit = async {
        match quit {
            Some(mut q) => {
                q.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = quit => {}
    }
}

/// At start-up and every `retention.interval` (re-read each time, so a reload applies):
/// `[retention]` and the VNC options' metadata cleanup.
async fn metadata_cleanup(catalog: Arc<Catalog>, gw: Arc<Services>) {
    loop {
        let (c, g) = (catalog.clone(), gw.clone());
        let interval = gw.cfg().retention.interval;
        let _ = tokio::task::spawn_blocking(move || {
            trailgate_control_api::configuration::cleanup(&c, &g.runtime);
            let r = g.cfg().retention.clone();
            match c.apply_retention(&g.node_id, r.trails, r.metadata) {
                Ok(d) => g.metrics.retention_deleted(d.trails, d.records),
                Err(e) => tracing::error!(error = %e, "retention pass failed"),
            }
        })
        .await;
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static FILTER: std::sync::OnceLock<(FilterHandle, String)> = std::sync::OnceLock::new();

pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let base = std::env::var("TRAILGATE_LOG").unwrap_or_else(|_| "info,russh=warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&base)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set((handle, base));
    }
}

/// Applies the VNC options' `service.log_level` to the VNC bridge's logs.
fn set_vnc_log_level(o: &trailgate_proxy::policy::VncOptions) {
    let Some((handle, base)) = FILTER.get() else {
        return;
    };
    let directive = format!("{base},trailgate_proxy::vnc={}", o.tracing_level());
    if let Ok(f) = tracing_subscriber::EnvFilter::try_new(&directive) {
        let _ = handle.reload(f);
    }
}

/// Everything `serve` loads before it listens, without listening or writing: the file, host
/// keys, the SSH targets' keys and host keys, the VNC certificate and CA files, the API's TLS.
pub fn check(config: &Path) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    for w in cfg.warnings() {
        eprintln!("warning: {w}");
    }
    SshService::check_host_keys(&cfg)?;
    SshService::load_targets(&cfg)?;
    trailgate_proxy::vnc::VncState::load(&cfg)?;
    if let Some(api) = &cfg.api
        && let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key)
    {
        let policy = api
            .client_tls_security_settings
            .compile("api.client_tls_security_settings")
            .map_err(anyhow::Error::msg)?;
        trailgate_proxy::tls::server_config(cert, key, "api", &[b"http/1.1"], &policy)?;
    }
    println!(
        "{}: ok ({} users, {} targets)",
        config.display(),
        cfg.users.len(),
        cfg.targets.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Turns the terminal's echo off until dropped (a password typed at `hash-password`).
pub struct NoEcho(Option<libc::termios>);

impl NoEcho {
    pub fn new() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return NoEcho(None);
            }
            NoEcho(Some(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

pub fn hash_password() -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("password: ");
        let _quiet = NoEcho::new();
        stdin.lock().read_line(&mut line)?;
    } else {
        stdin.lock().read_line(&mut line)?;
    }
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        anyhow::bail!("empty password");
    }
    let h = trailgate_proxy::auth::hash_password(pw).map_err(anyhow::Error::msg)?;
    println!("{h}");
    Ok(ExitCode::SUCCESS)
}

pub fn reindex(config: &Path) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    init_tracing();
    let catalog = Catalog::open_url(cfg.catalog_url()?.as_deref(), &cfg.data_dir)?;
    let n = catalog.reindex(&cfg.data_dir)?;
    catalog.close();
    println!(
        "reindexed {n} sessions from the trails under {}",
        cfg.data_dir.join("trails").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything the gateway creates (trails, catalog, keys, probe files) is for its own account:
/// the modes are set explicitly where it matters, and the umask covers the rest.
fn private_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// glibc raises its mmap threshold each time a large mmapped block is freed, after which the
/// ~1 MiB zstd context of every trail and the 256 KiB socket buffers of every session come from
/// malloc arenas instead, and stay there after the sessions end. A fixed threshold keeps them
/// mmapped, so closing sessions returns their memory to the system (three rounds of 300 sessions:
/// 264 MiB resident after the last closed without this, 86 MiB with it; docs/performance.md).
/// `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; called before the runtime starts
        // any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}
