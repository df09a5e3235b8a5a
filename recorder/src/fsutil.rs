//! Owner-only files and directories. Trails and the catalog hold everything admins typed and
//! saw: they are created 0600 in 0700 directories whatever the process umask is.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{RecorderError, Result};

/// Creates `dir` and its missing parents as 0700. An existing `dir` that others can read is
/// made 0700 too (it is ours: trails or keys), with a warning.
pub fn private_dir_all(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| RecorderError::io(dir, e))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| RecorderError::io(dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %dir.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "directory readable by others: setting it to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RecorderError::io(dir, e))?;
    }
    Ok(())
}

/// Options that create a new file owner-only (0600) for writing.
pub fn private_new_file() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

/// Whether a trail could be written in `dir` now: creates, fills (64 KiB, the size of a few
/// records batches) and syncs a probe file, then removes it. The error names only what failed
/// (e.g. "No space left on device"), never a path: it is shown to unauthenticated callers.
pub fn probe_writable(dir: &Path) -> std::result::Result<(), String> {
    use std::io::Write;
    let what = |step: &str, e: std::io::Error| format!("{step}: {}", e.kind());
    private_dir_all(dir).map_err(|_| "cannot create the trail directory".to_string())?;
    let p = dir.join(format!(".probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let res = (|| {
        let mut f = private_new_file().open(&p).map_err(|e| what("create", e))?;
        f.write_all(&[0u8; 64 * 1024])
            .map_err(|e| what("write", e))?;
        f.sync_data().map_err(|e| what("sync", e))
    })();
    let _ = std::fs::remove_file(&p);
    res
}

/// Bytes free for an unprivileged writer on the file system holding `dir` (the nearest
/// existing ancestor when `dir` does not exist yet).
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = dir;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the struct we pass for the NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `Err` with a reason when the trail storage has less free space than `floor` bytes.
pub fn check_free_space(dir: &Path, floor: Option<u64>) -> std::result::Result<(), String> {
    let Some(floor) = floor else {
        return Ok(());
    };
    match free_space(dir) {
        Ok(free) if free >= floor => Ok(()),
        Ok(free) => Err(format!(
            "trail storage: only {} MiB free, below recording.min_free_space ({} MiB)",
            free >> 20,
            floor >> 20
        )),
        Err(e) => Err(format!("trail storage: free space unknown: {}", e.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_owner_only_under_a_permissive_umask() {
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o022) };
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        private_dir_all(&d).unwrap();
        let f = d.join("f");
        private_new_file().open(&f).unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// `msg` without the data directory's location: records and API responses say what went wrong
/// (`<data_dir>/trails/...: No space left on device`), not where the gateway keeps its files.
pub fn redact_data_dir(msg: &str, data_dir: &Path) -> String {
    let mut out = msg.to_string();
    let mut forms = vec![data_dir.display().to_string()];
    if let Ok(c) = data_dir.canonicalize() {
        forms.push(c.display().to_string());
    }
    // Longest first: a canonical path may contain the configured one.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    for f in forms.iter().filter(|f| !f.is_empty() && f.as_str() != ".") {
        out = out.replace(f.as_str(), "<data_dir>");
    }
    out
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn the_data_dir_is_named_not_shown() {
        let d = tempfile::tempdir().unwrap();
        let msg = format!(
            "{}/trails/x.trail: No space left on device",
            d.path().display()
        );
        assert_eq!(
            super::redact_data_dir(&msg, d.path()),
            "<data_dir>/trails/x.trail: No space left on device"
        );
    }
}
