//! A plain TCP relay (no SSH, no recording) for latency baselines: what any gateway that adds a
//! process and two loopback hops costs on this machine before it does any work.
//!
//! `tcp-relay LISTEN TARGET` (e.g. `tcp-relay 127.0.0.1:0 127.0.0.1:22`); prints
//! `relay listening on ADDR` once bound.

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: tcp-relay LISTEN TARGET");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (mut down, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut up) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
}
