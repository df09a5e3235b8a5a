//! VNC throughput and input latency through the gateway and through a plain TLS-terminating
//! relay, measured side by side in one process (`benches/vnc-gateway.sh` sets up the peers).
//!
//! `vnc-bench --ca CA --gateway ADDR --login USER@TARGET --password PW --relay ADDR
//!  --direct ADDR [--frames N] [--rounds R] [--moves M]`
//!
//! Both paths are TLS-first toward this client. Through the gateway the client authenticates
//! with VeNCrypt Plain inside TLS; through the relay it speaks the target's own RFB (security
//! None) inside TLS; direct is plain RFB to the target (the latency floor). Per round and path: N full-screen non-incremental Raw updates as fast as
//! they come (MB/s of framebuffer data), then M key presses into an xterm on the desktop, each
//! timed from its KeyEvent to the FramebufferUpdate that shows the echo.
//! Paths alternate within each round; the report gives the median of per-round ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use trailgate_rfb::client as msg;
use trailgate_rfb::decode::Decoder;
use trailgate_rfb::{PixelFormat, ServerInit};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Args {
    ca: String,
    gateway: String,
    login: String,
    password: String,
    relay: String,
    direct: String,
    frames: usize,
    rounds: usize,
    moves: usize,
}

fn args() -> Args {
    let mut a = Args {
        ca: String::new(),
        gateway: String::new(),
        login: String::new(),
        password: String::new(),
        relay: String::new(),
        direct: String::new(),
        frames: 200,
        rounds: 5,
        moves: 300,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let val = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--ca" => a.ca = val,
            "--gateway" => a.gateway = val,
            "--login" => a.login = val,
            "--password" => a.password = val,
            "--relay" => a.relay = val,
            "--direct" => a.direct = val,
            "--frames" => a.frames = val.parse().unwrap_or(a.frames),
            "--rounds" => a.rounds = val.parse().unwrap_or(a.rounds),
            "--moves" => a.moves = val.parse().unwrap_or(a.moves),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

async fn tls(addr: &str, ca: &str) -> Res<Box<dyn Io>> {
    if ca.is_empty() {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    Ok(Box::new(s))
}

struct Conn {
    s: Box<dyn Io>,
    init: ServerInit,
    dec: Decoder,
    buf: Vec<u8>,
    /// Key presses that brought no update within a second (not in the latencies).
    missed: usize,
}

/// RFB 3.8 inside TLS: VeNCrypt Plain (gateway) or None (the target itself, via the relay).
async fn open(addr: &str, ca: &str, creds: Option<(&str, &str)>) -> Res<Conn> {
    let mut s = tls(addr, ca).await?;
    let mut v = [0u8; 12];
    s.read_exact(&mut v).await?;
    s.write_all(b"RFB 003.008\n").await?;
    let n = s.read_u8().await?;
    let mut types = vec![0u8; n as usize];
    s.read_exact(&mut types).await?;
    match creds {
        Some((user, pw)) => {
            s.write_all(&[19]).await?;
            let mut v = [0u8; 2];
            s.read_exact(&mut v).await?;
            s.write_all(&[0, 2]).await?;
            s.read_u8().await?;
            let n = s.read_u8().await?;
            for _ in 0..n {
                s.read_u32().await?;
            }
            s.write_all(&256u32.to_be_bytes()).await?;
            s.read_u8().await?;
            s.write_all(&trailgate_rfb::handshake::plain_credentials(user, pw))
                .await?;
        }
        None => {
            if !types.contains(&1) {
                return Err("target does not offer security None".into());
            }
            s.write_all(&[1]).await?;
        }
    }
    if s.read_u32().await? != 0 {
        return Err(format!("refused by {addr}").into());
    }
    s.write_all(&[1]).await?;
    let mut raw = vec![0u8; 24];
    s.read_exact(&mut raw).await?;
    let n = u32::from_be_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
    let mut name = vec![0u8; n];
    s.read_exact(&mut name).await?;
    raw.extend(name);
    let (init, _) = ServerInit::parse(&raw)?.ok_or("ServerInit")?;
    let mut dec = Decoder::framing_only();
    dec.feed_client(&[1])?;
    dec.feed_server(&raw)?;
    let mut c = Conn {
        s,
        init,
        dec,
        buf: vec![0u8; 256 * 1024],
        missed: 0,
    };
    c.send(&msg::set_pixel_format(&PixelFormat::RGB888)).await?;
    c.send(&msg::set_encodings(&[0])).await?;
    Ok(c)
}

impl Conn {
    async fn send(&mut self, b: &[u8]) -> Res<()> {
        self.s.write_all(b).await?;
        self.dec.feed_client(b)?;
        Ok(())
    }

    /// Reads until one more update is complete; the bytes read.
    async fn update(&mut self) -> Res<u64> {
        let before = self.dec.counters().updates;
        let mut n = 0u64;
        while self.dec.counters().updates == before {
            let r = self.s.read(&mut self.buf).await?;
            if r == 0 {
                return Err("closed".into());
            }
            n += r as u64;
            self.dec.feed_server(&self.buf[..r])?;
        }
        Ok(n)
    }

    async fn throughput(&mut self, frames: usize) -> Res<f64> {
        let (w, h) = (self.init.width, self.init.height);
        // One warm-up frame (Xvnc's first answer may be pseudo-rectangles only).
        self.send(&msg::update_request(false, 0, 0, w, h)).await?;
        self.update().await?;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..frames {
            self.send(&msg::update_request(false, 0, 0, w, h)).await?;
            // A stalled frame fails the attempt (the caller reconnects) instead of hanging.
            bytes += tokio::time::timeout(Duration::from_secs(10), self.update())
                .await
                .map_err(|_| "no update within 10 s")??;
        }
        Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e6)
    }

    /// Key presses into the xterm the script starts at the top left (focus follows the pointer,
    /// so the pointer is put over it first): 'a' and BackSpace alternate, each echoed by the
    /// terminal, and each timed from its KeyEvent to the update that shows it.
    async fn latency(&mut self, moves: usize) -> Res<Vec<Duration>> {
        let (w, h) = (self.init.width, self.init.height);
        let mut out = Vec::with_capacity(moves);
        self.send(&msg::pointer_event(0, 40, 40)).await?;
        self.send(&msg::update_request(false, 0, 0, w, h)).await?;
        self.update().await?;
        for i in 0..moves {
            self.send(&msg::update_request(true, 0, 0, w, h)).await?;
            let key = if i % 2 == 0 { 0x61 } else { 0xff08 };
            let t = Instant::now();
            self.send(&msg::key_event(true, key)).await?;
            self.send(&msg::key_event(false, key)).await?;
            // A key that changed nothing (a BackSpace on an empty line, the terminal not yet
            // mapped) brings no update: skip it rather than wait forever.
            match tokio::time::timeout(Duration::from_secs(1), self.update()).await {
                Ok(r) => {
                    r?;
                    out.push(t.elapsed());
                }
                Err(_) => self.missed += 1,
            }
        }
        Ok(out)
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Gateway,
    Relay,
    Direct,
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = args();
    let creds = (a.login.as_str(), a.password.as_str());
    let (mut ratios, mut added) = (Vec::new(), Vec::new());
    let mut mbps_all = [Vec::new(), Vec::new(), Vec::new()];
    let mut p50_all = [Vec::new(), Vec::new(), Vec::new()];
    println!(
        "round  MB/s gateway  relay  direct  ratio gw/relay | key->echo p50 gateway  relay  direct  added gw-direct"
    );
    for r in 0..a.rounds {
        // Rotate which path goes first.
        let mut order = [Path::Gateway, Path::Relay, Path::Direct];
        order.rotate_left(r % 3);
        let mut mbps = [0.0; 3];
        let mut p50 = [0.0; 3];
        for p in order {
            let trace = std::env::var_os("VNC_BENCH_TRACE").is_some();
            let mut attempt = 0;
            let mut c = loop {
                let mut c = match p {
                    Path::Gateway => open(&a.gateway, &a.ca, Some(creds)).await?,
                    Path::Relay => open(&a.relay, &a.ca, None).await?,
                    Path::Direct => open(&a.direct, "", None).await?,
                };
                if trace {
                    eprintln!("{p:?}: connected, {}x{}", c.init.width, c.init.height);
                }
                match c.throughput(a.frames).await {
                    Ok(m) => {
                        mbps[p as usize] = m;
                        break c;
                    }
                    Err(e) if attempt < 6 => {
                        eprintln!("{p:?}: throughput attempt failed ({e}); reconnecting");
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            if trace {
                eprintln!("{p:?}: throughput done ({:.0} MB/s)", mbps[p as usize]);
            }
            let lat = c.latency(a.moves).await?;
            if c.missed > 0 {
                eprintln!("{p:?}: {} of {} keys brought no update", c.missed, a.moves);
            }
            let mut us: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e6).collect();
            p50[p as usize] = median(&mut us);
        }
        let ratio = mbps[0] / mbps[1];
        let add = p50[0] - p50[2];
        println!(
            "{r:>5}  {:>12.1}  {:>5.1}  {:>6.1}  {ratio:>14.2} | {:>22.0} µs  {:>5.0} µs  {:>6.0} µs  {add:>+15.0} µs",
            mbps[0], mbps[1], mbps[2], p50[0], p50[1], p50[2]
        );
        ratios.push(ratio);
        added.push(add);
        for i in 0..3 {
            mbps_all[i].push(mbps[i]);
            p50_all[i].push(p50[i]);
        }
    }
    println!(
        "median of {} rounds: throughput gateway/relay {:.2}x ({:.0} / {:.0} / {:.0} MB/s gateway/relay/direct); \
         key-to-echo p50 added by the gateway {:+.0} µs (gateway {:.0}, relay {:.0}, direct {:.0} µs)",
        a.rounds,
        median(&mut ratios),
        median(&mut mbps_all[0]),
        median(&mut mbps_all[1]),
        median(&mut mbps_all[2]),
        median(&mut added),
        median(&mut p50_all[0]),
        median(&mut p50_all[1]),
        median(&mut p50_all[2]),
    );
    Ok(())
}
