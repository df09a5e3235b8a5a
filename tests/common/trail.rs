//! Reading trails with the real binary (`trailgate trail ...`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::bin;

pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(p) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "trail") {
            out.push(p);
        }
    }
    out
}

pub fn trail_info(path: &Path) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["trail", "info", "--json"])
        .arg(path)
        .output()
        .expect("trail info");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

pub fn trail_cat(path: &Path, channel: u64, direction: Option<&str>) -> Vec<u8> {
    let mut c = Command::new(bin());
    c.args(["trail", "cat"])
        .arg(path)
        .args(["--channel", &channel.to_string()]);
    if let Some(d) = direction {
        c.args(["--direction", d]);
    }
    let out = c.output().expect("trail cat");
    assert!(
        out.status.success(),
        "trail cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `trailgate trail files --json`: the files and file operations of a trail.
pub fn trail_files(trail: &Path) -> serde_json::Value {
    let o = Command::new(bin())
        .args(["trail", "files", "--json"])
        .arg(trail)
        .output()
        .expect("trail files");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("trail files JSON")
}

pub fn trail_verify(path: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .args(["trail", "verify"])
        .arg(path)
        .output()
        .expect("trail verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The channel in a trail's info whose fields satisfy `pred`.
pub fn find_channel(
    info: &serde_json::Value,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> &serde_json::Value {
    info["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| pred(c)))
        .unwrap_or_else(|| panic!("no such channel in {info:#}"))
}

impl super::Gateway {
    /// The trail file of a session record from the API (records show no server paths, only
    /// `trail.url`: the file is found by the session id under the data directory).
    pub fn trail_of(&self, rec: &serde_json::Value) -> PathBuf {
        let id = rec["id"].as_str().expect("session id");
        assert!(
            rec["trail"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/trail")),
            "{rec}"
        );
        assert!(
            rec["trail"].get("path").is_none(),
            "no server path in records: {rec}"
        );
        let name = format!("{id}.trail");
        walk(&self.data_dir().join("trails"))
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
            .unwrap_or_else(|| panic!("no trail file for {id}"))
    }
}
