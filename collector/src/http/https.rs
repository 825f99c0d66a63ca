//! HTTPS for the console and API: a listener that hands axum connections whose TLS handshake
//! is done. Handshakes run in tasks of their own, each with a deadline, so a client that stalls
//! mid-handshake holds up no one else.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The server config for a certificate chain and key in PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("http.tls_cert_file {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "http.tls_cert_file {}: no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("http.tls_key_file {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("http.tls_cert_file and http.tls_key_file do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Call from within the runtime: it starts the accepting task. At most `handshakes` run at
    /// once (each until it is handed over); past that, accepting waits, so a flood of stalled
    /// handshakes costs bounded tasks and descriptors.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>, handshakes: usize) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (done, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(handshakes.max(1)));
        tokio::spawn(async move {
            loop {
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = done.closed() => return,
                };
                // Ends with the listener, so the port is let go.
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = done.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                        let _ = done.send((tls, peer)).await;
                    }
                    drop(slot);
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task lives as long as this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
