//! The target: a throwaway OpenSSH `sshd` on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use super::*;

fn sshd_path() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("sshd not found: run scripts/install-test-deps.sh");
}

/// A throwaway OpenSSH server on a free loopback port, accepting one key for the current user.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_pub: String,
    pub gateway_key: PathBuf,
    child: Child,
}

impl Sshd {
    pub fn start() -> Result<Sshd> {
        Self::start_with("")
    }

    pub fn start_with(extra: &str) -> Result<Sshd> {
        std::fs::create_dir_all("/run/sshd").ok();
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let host_pub = keygen(&d.join("host_key"));
        let gw_pub = keygen(&d.join("gateway_key"));
        std::fs::write(d.join("authorized_keys"), format!("{gw_pub}\n"))?;
        let port = free_port();
        // Sessions get an empty HOME: the account's shell rc files (a slow `pyenv init`, say)
        // must not decide how fast a test's command starts.
        std::fs::create_dir_all(d.join("home"))?;
        let cfg = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin yes\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             Subsystem sftp internal-sftp\nAllowTcpForwarding yes\nGatewayPorts no\nAllowAgentForwarding yes\n{x11}\
             PrintMotd no\nPrintLastLog no\n{loglevel}MaxSessions 100\nMaxStartups 200\nAcceptEnv LANG LC_* TG_*\n\
             SetEnv HOME={d}/home\n{extra}\n",
            hk = d.join("host_key").display(),
            d = d.display(),
            // sshd keeps the first value of a keyword: a test that wants X11 says so in `extra`.
            x11 = if extra.contains("X11Forwarding") {
                ""
            } else {
                "X11Forwarding no\n"
            },
            loglevel = if extra.contains("LogLevel") {
                ""
            } else {
                "LogLevel ERROR\n"
            },
        );
        std::fs::write(d.join("sshd_config"), cfg)?;
        let check = Command::new(sshd_path())
            .arg("-t")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .output()?;
        if !check.status.success() {
            bail!("sshd -t: {}", String::from_utf8_lossy(&check.stderr));
        }
        let mut child = Command::new(sshd_path())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log"))?)
            .spawn()
            .context("starting sshd")?;
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), &mut child, "sshd")?;
        Ok(Sshd {
            gateway_key: d.join("gateway_key"),
            dir,
            port,
            host_pub,
            child,
        })
    }

    /// What sshd logged so far (at `LogLevel ERROR` unless the test's `extra` sets another).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
