//! What a cluster needs from the host: PostgreSQL's programs, the account to run them as, and a
//! directory that account can reach.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use super::{DEBIAN_BIN, INSTALL_HINT};

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `createdb`: that of `initdb` on
/// `PATH` (symbolic links resolved), else Debian's.
pub(super) fn bin_dir() -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "createdb"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("initdb"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    on_path
        .into_iter()
        .chain([PathBuf::from(DEBIAN_BIN)])
        .find(|dir| complete(dir))
        .with_context(|| {
            format!(
                "PostgreSQL not found (initdb, pg_ctl, postgres, createdb on PATH or in \
                 {DEBIAN_BIN}): {INSTALL_HINT}"
            )
        })
}

pub(super) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
    })
}

/// The uid and gid of `account`.
pub(super) fn account_ids(account: &str) -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, account])
            .output()
            .context("running id")?;
        if !out.status.success() {
            bail!("no account {account} to run PostgreSQL as (it refuses root): {INSTALL_HINT}");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// A new temporary directory; for a cluster of another account, in one whose every ancestor that
/// account can traverse (the system's temporary directory, else `/tmp`).
pub(super) fn temp_dir(for_other_account: bool) -> Result<tempfile::TempDir> {
    let mut base = std::env::temp_dir();
    let traversable = |dir: &Path| {
        dir.ancestors()
            .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    if for_other_account && !traversable(&base) {
        base = PathBuf::from("/tmp");
    }
    tempfile::Builder::new()
        .prefix("tg-pg-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary directory in {}", base.display()))
}
