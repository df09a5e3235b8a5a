//! Embeds the console's files (`console/`, vendored players included) in the binary: writes
//! `$OUT_DIR/console_assets.rs`, a table of (path under `/console/`, content type, bytes).

use std::path::{Path, PathBuf};

/// Files of `console/` that are not served (the page itself is served at `/`).
const SKIP: &[&str] = &["index.html", "vendor/README.md", "vendor/fetch.sh"];

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).expect("under the root").to_path_buf());
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        // Licences and notices.
        _ => "text/plain; charset=utf-8",
    }
}

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("console");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let mut table = String::from("&[\n");
    for f in files {
        let rel = f.to_string_lossy().replace('\\', "/");
        if SKIP.contains(&rel.as_str()) {
            continue;
        }
        let abs = root.join(&f);
        // Every directory, so an added file re-runs the script.
        if let Some(parent) = abs.parent() {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
        table += &format!(
            "    ({rel:?}, {:?}, include_bytes!({:?})),\n",
            content_type(&rel),
            abs.display().to_string()
        );
    }
    table += "]\n";
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("console_assets.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
