//! VNC peers for the end-to-end tests: development certificates from `trailgate certs dev`,
//! TigerVNC `Xvnc` and `x11vnc` targets on free displays and ports, and a scripted RFB viewer
//! of our own (VeNCrypt X509Plain or TLS-first toward the gateway) that decodes what it
//! receives with the project's decoder, so tests compare real pixels.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use trailgate_rfb::client::{self as msg, encoding};
use trailgate_rfb::decode::Decoder;
use trailgate_rfb::{PixelFormat, ServerInit};

use super::{ALICE_PASSWORD, Gateway, free_port, wait_listening, wait_until};

/// The PAM account the X509Plain target checks (made by scripts/install-test-deps.sh).
pub const PLAIN_USER: &str = "tgvnc";
pub const PLAIN_PASSWORD: &str = "tgvnc-pass-1";

/// A gateway config with `[vnc]` (the development certificates in `certs`), alice and bob, the
/// API with the admin token, and `targets` (TOML appended at the end).
pub fn config(dir: &Path, certs: &Certs, targets: &str) -> String {
    let hash = trailgate_proxy::auth::hash_password(ALICE_PASSWORD).expect("hash");
    format!(
        r#"data_dir = "data"
node_id = "test-node"

[ssh]
listen = "127.0.0.1:0"

[vnc]
listen = "127.0.0.1:0"
tls_cert = "{gw}"
tls_key = "{key}"

[recording]
flush_interval = "100ms"
fsync = false

[[users]]
name = "alice"
password_hash = "{hash}"

[[users]]
name = "bob"
password_hash = "{hash}"

[api]
listen = "127.0.0.1:0"

[[api_tokens]]
name = "admin-tok"
token_sha256 = "16175223c8ddce5ace0493c948569c211b03c4c6bb3d3e484434999448cffe01"
role = "admin"
{targets}
"#,
        gw = certs.path("gateway.pem").display(),
        key = certs.path("gateway.key").display(),
    )
    .replace("\n\n\n", "\n\n")
    .replace("{dir}", &dir.display().to_string())
}

pub fn start(targets: &str) -> (Gateway, Certs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(&dir.path().join("certs"));
    let text = config(dir.path(), &certs, targets);
    let cfg = dir.path().join("trailgate.toml");
    std::fs::write(&cfg, text).expect("config");
    let gw = Gateway::run(dir, cfg, String::new()).expect("gateway");
    assert!(gw.vnc.is_some(), "no vnc listener line");
    (gw, certs)
}

pub fn target(name: &str, port: u16, body: &str) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{port}\"\n{body}\n"
    )
}

/// The session record of the only session to `target` once it has ended.
pub fn ended_session(gw: &Gateway, target: &str) -> serde_json::Value {
    wait_until(&format!("session to {target} ended"), 20, || {
        let (items, _) = gw.sessions(&format!("target={target}"), super::ADMIN_SECRET);
        items.into_iter().find(|s| s["active"] == false)
    })
}

/// `trailgate certs dev` output: a CA, gateway and target certificates.
pub struct Certs {
    pub dir: PathBuf,
    pub target_fingerprint: String,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let out = Command::new(super::bin())
            .args(["certs", "dev", "--out"])
            .arg(dir)
            .output()
            .expect("trailgate certs dev");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let fp = text
            .lines()
            .find(|l| l.starts_with("target:"))
            .and_then(|l| l.split('"').nth(1))
            .expect("target fingerprint line")
            .to_string();
        Certs {
            dir: dir.to_path_buf(),
            target_fingerprint: fp,
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

pub fn have_vnc_peers() -> bool {
    Command::new("Xvnc")
        .arg("-version")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok()
}

/// A TigerVNC server (its own X display) on a free port.
pub struct Xvnc {
    child: Child,
    pub display: u32,
    pub port: u16,
    log: PathBuf,
}

impl Xvnc {
    /// `security`: Xvnc's `-SecurityTypes`; `password`: VNC password (for VncAuth/X509Vnc).
    pub fn start(
        dir: &Path,
        security: &str,
        certs: &Certs,
        password: Option<&str>,
    ) -> Result<Xvnc> {
        Self::start_args(dir, security, certs, password, &[])
    }

    /// As [`Xvnc::start`] with more Xvnc arguments (e.g. `-GnuTLSPriority`).
    pub fn start_args(
        dir: &Path,
        security: &str,
        certs: &Certs,
        password: Option<&str>,
        extra: &[&str],
    ) -> Result<Xvnc> {
        let passwd = dir.join(format!("passwd-{}", free_port()));
        if let Some(pw) = password {
            let mut c = Command::new("vncpasswd")
                .arg("-f")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            c.stdin
                .take()
                .context("stdin")?
                .write_all(format!("{pw}\n{pw}\n").as_bytes())?;
            let out = c.wait_with_output()?;
            std::fs::write(&passwd, out.stdout)?;
        }
        // Xvnc picks its own free display (`-displayfd`): it takes the lock file atomically and
        // clears stale ones, where guessing a number raced other tests and tripped over locks
        // left by killed servers. A retry covers the rare loss of the port race.
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("xvnc-{port}-{attempt}.log"));
            let (ready, ready_w) = std::io::pipe()?;
            let mut cmd = Command::new("Xvnc");
            cmd.args(["-displayfd", "1", "-rfbport", &port.to_string()])
                .args(["-localhost", "-nolisten", "tcp"])
                .args(["-geometry", "320x240", "-depth", "24", "-UseBlacklist=0"])
                .args(["-SecurityTypes", security])
                .arg("-X509Cert")
                .arg(certs.path("target.pem"))
                .arg("-X509Key")
                .arg(certs.path("target.key"))
                .args([
                    "-PlainUsers",
                    PLAIN_USER,
                    "-desktop",
                    &format!("testdesk{port}"),
                ]);
            if password.is_some() {
                cmd.arg("-rfbauth").arg(&passwd);
            }
            cmd.args(extra);
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(ready_w)
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("Xvnc")?;
            drop(cmd); // our copy of the pipe's write end: EOF if Xvnc exits before it is ready
            let mut line = String::new();
            std::io::BufReader::new(ready).read_line(&mut line)?;
            let display = line.trim().parse::<u32>();
            let listening =
                wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), &mut child, "Xvnc");
            match (display, listening) {
                (Ok(display), Ok(())) => {
                    return Ok(Xvnc {
                        child,
                        display,
                        port,
                        log,
                    });
                }
                (display, listening) => {
                    last = format!(
                        "display {display:?}, {listening:?}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    stop(&mut child);
                }
            }
        }
        bail!("Xvnc did not start: {last}")
    }

    /// Paints the whole root window one colour (`xsetroot -solid`).
    pub fn solid(&self, colour: &str) {
        let st = Command::new("xsetroot")
            .args(["-solid", colour])
            .env("DISPLAY", format!(":{}", self.display))
            .status()
            .expect("xsetroot");
        assert!(st.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Xvnc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, so Xvnc removes its display lock and socket, then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10)); // polling interval
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// x11vnc serving an existing display TLS-first (`-ssl -sslonly`), with VNC authentication.
pub struct X11vnc {
    child: Child,
    pub port: u16,
}

impl X11vnc {
    /// Serves `x`'s display under the same desktop name.
    pub fn start(dir: &Path, x: &Xvnc, certs: &Certs, password: &str) -> Result<X11vnc> {
        let display = x.display;
        let port = free_port();
        let log = dir.join(format!("x11vnc-{port}.log"));
        let mut child = Command::new("x11vnc")
            .args([
                "-display",
                &format!(":{display}"),
                "-rfbport",
                &port.to_string(),
            ])
            .args([
                "-localhost",
                "-forever",
                "-shared",
                "-nopw",
                "-quiet",
                "-noxdamage",
            ])
            .args([
                "-passwd",
                password,
                "-desktop",
                &format!("testdesk{}", x.port),
                "-ssl",
            ])
            .arg(certs.path("target-combined.pem"))
            .arg("-sslonly")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("x11vnc")?;
        wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &mut child,
            "x11vnc",
        )?;
        Ok(X11vnc { child, port })
    }
}

impl Drop for X11vnc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

/// How the viewer reaches the gateway.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// RFB, VeNCrypt X509Plain (TLS inside).
    Vencrypt,
    /// TLS from the first byte, VeNCrypt Plain inside.
    TlsFirst,
}

/// A scripted RFB viewer.
pub struct Viewer {
    s: Box<dyn Rw>,
    tcp: TcpStream,
    pub init: ServerInit,
    pub dec: Decoder,
}

fn tls_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    tls_client_limited(
        ca,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        None,
    )
}

/// A viewer's TLS limited to some versions and, optionally, suites (policy tests).
pub fn tls_client_limited(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<&[rustls::CipherSuite]>,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(want) = suites {
        provider.cipher_suites.retain(|s| want.contains(&s.suite()));
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn read_n(s: &mut dyn Rw, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

fn read_u32(s: &mut dyn Rw) -> std::io::Result<u32> {
    let v = read_n(s, 4)?;
    Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// Why a connection through the gateway failed: the gateway's reason when it gave one.
#[derive(Debug)]
pub enum Refused {
    Reason(String),
    Io(String),
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Self {
        Refused::Io(e.to_string())
    }
}

impl Viewer {
    pub fn connect(
        addr: SocketAddr,
        ca: &Path,
        login: &str,
        password: &str,
        mode: Mode,
    ) -> Result<Viewer, Refused> {
        Self::connect_tls(addr, tls_client(ca), login, password, mode)
    }

    /// As [`Viewer::connect`] with the viewer's own TLS configuration.
    pub fn connect_tls(
        addr: SocketAddr,
        tls_cfg: Arc<rustls::ClientConfig>,
        login: &str,
        password: &str,
        mode: Mode,
    ) -> Result<Viewer, Refused> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let server_name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = |t: TcpStream| -> Box<dyn Rw> {
            let conn =
                rustls::ClientConnection::new(tls_cfg.clone(), server_name.clone()).expect("tls");
            Box::new(rustls::StreamOwned::new(conn, t))
        };
        let mut s: Box<dyn Rw> = match mode {
            Mode::TlsFirst => tls(tcp.try_clone()?),
            Mode::Vencrypt => Box::new(tcp.try_clone()?),
        };
        let v = read_n(&mut *s, 12)?;
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(b"RFB 003.008\n")?;
        let n = read_n(&mut *s, 1)?[0];
        let types = read_n(&mut *s, usize::from(n))?;
        assert_eq!(types, vec![19], "the gateway offers VeNCrypt only");
        s.write_all(&[19])?;
        assert_eq!(read_n(&mut *s, 2)?, vec![0, 2]);
        s.write_all(&[0, 2])?;
        assert_eq!(read_n(&mut *s, 1)?, vec![0]);
        let n = read_n(&mut *s, 1)?[0];
        let mut subs = Vec::new();
        for _ in 0..n {
            subs.push(read_u32(&mut *s)?);
        }
        let want = if mode == Mode::TlsFirst { 256 } else { 262 };
        assert_eq!(subs, vec![want]);
        s.write_all(&want.to_be_bytes())?;
        assert_eq!(read_n(&mut *s, 1)?, vec![1]);
        if mode == Mode::Vencrypt {
            s = tls(tcp.try_clone()?);
        }
        s.write_all(&trailgate_rfb::handshake::plain_credentials(
            login, password,
        ))?;
        if read_u32(&mut *s)? != 0 {
            let len = read_u32(&mut *s)? as usize;
            let why = read_n(&mut *s, len)?;
            return Err(Refused::Reason(String::from_utf8_lossy(&why).into_owned()));
        }
        s.write_all(&[1])?;
        let mut raw = read_n(&mut *s, 24)?;
        let name_len = u32::from_be_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        raw.extend(read_n(&mut *s, name_len)?);
        let (init, _) = ServerInit::parse(&raw)
            .ok()
            .flatten()
            .ok_or(Refused::Io("ServerInit".into()))?;
        let mut dec = Decoder::new();
        dec.feed_client(&[1])
            .map_err(|e| Refused::Io(e.to_string()))?;
        dec.feed_server(&raw)
            .map_err(|e| Refused::Io(e.to_string()))?;
        Ok(Viewer { s, tcp, init, dec })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
        self.s.flush().expect("flush");
        self.dec.feed_client(bytes).expect("own message");
    }

    /// Sends bytes the decoder would refuse (malformed input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    /// 32-bit true colour and the given encodings.
    pub fn setup(&mut self, encodings: &[i32]) {
        self.send(&msg::set_pixel_format(&PixelFormat::RGB888));
        self.send(&msg::set_encodings(encodings));
    }

    pub fn setup_default(&mut self) {
        self.setup(&[
            encoding::ZRLE,
            encoding::HEXTILE,
            encoding::RAW,
            encoding::COPY_RECT,
        ]);
    }

    pub fn request(&mut self, incremental: bool) {
        let (w, h) = (self.init.width, self.init.height);
        self.send(&msg::update_request(incremental, 0, 0, w, h));
    }

    /// Reads until one more FramebufferUpdate has been decoded.
    pub fn wait_update(&mut self) -> std::io::Result<()> {
        let before = self.dec.counters().updates;
        let mut buf = vec![0u8; 256 * 1024];
        while self.dec.counters().updates == before {
            let n = self.s.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.dec
                .feed_server(&buf[..n])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        }
        Ok(())
    }

    /// Requests updates until the pixel at (x, y) is `rgb` (Xvnc may answer the first request
    /// with pseudo-rectangles only).
    pub fn until_pixel(&mut self, x: u16, y: u16, rgb: [u8; 3]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut incremental = false;
        loop {
            self.request(incremental);
            self.wait_update().expect("update");
            if self.pixel(x, y) == Some(rgb) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pixel ({x},{y}) is {:?}, not {rgb:?}",
                self.pixel(x, y)
            );
            incremental = true;
        }
    }

    pub fn pixel(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        self.dec.framebuffer().pixel(x, y)
    }

    pub fn key(&mut self, keysym: u32) {
        self.send(&msg::key_event(true, keysym));
        self.send(&msg::key_event(false, keysym));
    }

    pub fn pointer(&mut self, x: u16, y: u16, buttons: u8) {
        self.send(&msg::pointer_event(buttons, x, y));
    }

    /// Reads (and discards) until the connection closes; how long that took.
    pub fn wait_closed(&mut self, within: Duration) -> Option<Duration> {
        let t = Instant::now();
        let _ = self.tcp.set_read_timeout(Some(within));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return Some(t.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return Some(t.elapsed()),
            }
        }
    }

    pub fn close(self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
