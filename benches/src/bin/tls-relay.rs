//! A TLS-terminating TCP relay (no RFB work, no recording): the baseline the VNC gateway is
//! measured against. TLS toward the client with the given certificate, plain TCP to the target.
//!
//! `tls-relay LISTEN TARGET CERT KEY`; prints `relay listening on ADDR` once bound.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, cert, key] = &args[..] else {
        eprintln!("usage: tls-relay LISTEN TARGET CERT KEY");
        std::process::exit(2);
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind(listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (down, _) = listener.accept().await?;
        let (target, acceptor) = (target.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _ = down.set_nodelay(true);
            let Ok(mut down) = acceptor.accept(down).await else {
                return;
            };
            let Ok(mut up) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
}
