//! The scriptable SSH peers (asyncssh, paramiko) in `tests/peers/`, run with the venv that
//! `scripts/install-test-deps.sh` makes.

use std::path::PathBuf;
use std::process::Command;

pub fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// `python tests/peers/NAME args...`
pub fn peer(name: &str) -> Command {
    let mut c = Command::new(python());
    c.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(name),
    );
    c
}
