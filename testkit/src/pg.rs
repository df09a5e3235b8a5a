//! A private PostgreSQL 15 cluster on `127.0.0.1`, in a temporary directory of its own.
//!
//! [`Postgres::start`] makes one for a test (stopped and removed on drop); [`shared`] makes one per
//! test process, and each test then takes a database of its own with
//! [`Postgres::create_unique_database`] or [`Postgres::create_database`]. Authentication is
//! `trust` for the superuser `postgres`: URLs are `postgres://postgres@127.0.0.1:PORT/NAME`.
//!
//! The cluster trades durability for speed (`fsync`, `synchronous_commit` and `full_page_writes`
//! off). PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned and
//! run by the account `tgpg` (through `runuser`); `scripts/install-test-deps.sh` creates it.

mod host;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};

use crate::{free_port, sh_quote, spawn_watchdog};
use host::{account_ids, bin_dir, is_root, temp_dir};

/// Where Debian 12's `postgresql-15` puts its programs (not on `PATH`).
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The account that owns and runs clusters when the tests run as root.
const RUN_AS: &str = "tgpg";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";

/// A running PostgreSQL cluster; dropping it stops the server and removes its files.
pub struct Postgres {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Whether the cluster belongs to [`RUN_AS`] (the tests run as root).
    as_other: bool,
    /// Stops the cluster and removes `tmp` if this process dies without dropping `self`.
    watchdog: Option<Child>,
    running: bool,
}

/// One cluster for the whole test process, started on first use and never stopped by the process
/// itself: its watchdog stops it and removes its files once the process has exited.
pub fn shared() -> Result<&'static Postgres> {
    static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| Postgres::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("the shared PostgreSQL cluster did not start: {e}"))
}

impl Postgres {
    /// Creates a cluster (`initdb`) and starts it (`pg_ctl start -w`, which returns once the server
    /// accepts connections) on a free port.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let owner = if is_root() {
            Some(account_ids(RUN_AS)?)
        } else {
            None
        };
        if owner.is_some() {
            devices_reachable()?;
        }
        let tmp = temp_dir(owner.is_some())?;
        if let Some((uid, gid)) = owner {
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {} to {RUN_AS}", tmp.path().display()))?;
        }
        let mut pg = Postgres {
            tmp,
            bin,
            port: 0,
            as_other: owner.is_some(),
            watchdog: None,
            running: false,
        };
        let data = pg.data_dir();
        let mut initdb = pg.command("initdb");
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        initdb.args(["--locale=C", "-D"]).arg(&data);
        run(initdb, "initdb").map_err(|e| match format!("{e:#}").contains("/dev/null") {
            true => e.context(format!("{RUN_AS} cannot open /dev/null: {INSTALL_HINT}")),
            false => e,
        })?;
        let tmp_path = pg.tmp.path().display().to_string();
        let mut conf = OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        writeln!(
            conf,
            "\n# trailgate-testkit\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{tmp_path}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 300\nshared_buffers = 128MB"
        )?;
        let on_exit = format!(
            "{} -D {} stop -m immediate >/dev/null 2>&1; rm -rf {}",
            sh_quote(&pg.bin.join("pg_ctl").display().to_string()),
            sh_quote(&data.display().to_string()),
            sh_quote(&tmp_path),
        );
        pg.watchdog = Some(spawn_watchdog(pg.command_for("sh"), &on_exit)?);
        // The port was free when picked; another process may bind it first: try a few.
        for attempt in 1..=3 {
            pg.port = free_port();
            let log_before = pg.log().len();
            let mut pg_ctl = pg.command("pg_ctl");
            pg_ctl.arg("-D").arg(&data).arg("-l").arg(pg.log_path());
            pg_ctl.args(["-w", "-t", "60", "-o", &format!("-p {}", pg.port), "start"]);
            match run(pg_ctl, "pg_ctl start") {
                Ok(()) => {
                    pg.running = true;
                    return Ok(pg);
                }
                Err(_) if attempt < 3 && pg.log()[log_before..].contains("already in use") => {}
                Err(e) => return Err(e.context(format!("server log:\n{}", pg.log()))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` for the superuser `postgres` (no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (`createdb`) and returns its [`url`](Self::url).
    pub fn create_database(&self, name: &str) -> Result<String> {
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        createdb
            .arg("--")
            .arg(name)
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        run(createdb, "createdb").with_context(|| format!("creating database {name:?}"))?;
        Ok(self.url(name))
    }

    /// Creates a database named `PREFIX_PID_N` (`N` counts up in this process), so that tests
    /// sharing one cluster do not see each other's data, and returns its URL. `prefix` is cut to
    /// 40 characters, lowercased, and its characters other than letters, digits and `_` become `_`.
    pub fn create_unique_database(&self, prefix: &str) -> Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .chars()
            .take(40)
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        self.create_database(&format!("{prefix}_{}_{n}", std::process::id()))
    }

    /// The server log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (`pg_ctl stop -m fast`); its files stay until `self` is dropped. Does
    /// nothing when it is already stopped.
    pub fn stop(&mut self) {
        self.stop_in("fast");
    }

    fn stop_in(&mut self, mode: &str) {
        if !std::mem::take(&mut self.running) {
            return;
        }
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-w", "-m", mode]);
        if let Err(e) = run(pg_ctl, "pg_ctl stop") {
            eprintln!(
                "trailgate-testkit: stopping PostgreSQL on port {}: {e:#}",
                self.port
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join("log")
    }

    /// `program` from the cluster's bin directory, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        self.command_for(&self.bin.join(program).display().to_string())
    }

    /// `program` run as the cluster's owner, in the cluster's directory.
    fn command_for(&self, program: &str) -> Command {
        let mut command = if self.as_other {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", RUN_AS, "--", program]);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(self.tmp.path()).stdin(Stdio::null());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_in("immediate");
        // End-of-file on its pipe: the watchdog removes the files the cluster's owner made.
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// Runs `command` to completion; an error carries its output.
fn run(mut command: Command, what: &str) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `initdb` and the server open `/dev/null` as the unprivileged account. Some sandboxes keep
/// `/dev` at mode 0700 and put it back there while tests run (seen under CI after the install
/// script had opened it), so as root this lets other accounts traverse it again when needed,
/// as `scripts/install-test-deps.sh` does; the devices keep their own modes.
fn devices_reachable() -> Result<()> {
    let ok = || {
        Command::new("runuser")
            .args(["-u", RUN_AS, "--", "sh", "-c", ": </dev/null"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok() {
        return Ok(());
    }
    let st = Command::new("chmod").args(["o+x", "/dev"]).status()?;
    if !st.success() || !ok() {
        bail!("{RUN_AS} cannot open /dev/null and /dev could not be opened to it: {INSTALL_HINT}");
    }
    Ok(())
}
