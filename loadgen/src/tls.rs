//! `--tls-ca`: connections that speak TLS, to measure what TLS costs a
//! server against plaintext on the same workload.
//!
//! Handshakes happen while connecting, before any phase starts, so they
//! are not in the measured window. A connection's stream is a [`Stream`]:
//! plaintext or TLS, one branch per read or write, which on a client is
//! noise next to the system call it leads to.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What TLS connections need: the connector trusting `--tls-ca`, and the
/// name the server's certificate must carry (its IP address).
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// Trusts the CA certificates in `ca` (PEM) for a server at `server`.
    pub fn new(ca: &Path, server: SocketAddr) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("--tls-ca {}", ca.display()))?
        {
            let cert = cert.with_context(|| format!("--tls-ca {}", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("--tls-ca {}", ca.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::IpAddress(server.ip().into()),
        })
    }

    /// Runs the client handshake on `stream`.
    pub async fn connect(&self, stream: TcpStream) -> io::Result<Stream> {
        let stream = self.connector.connect(self.name.clone(), stream).await?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// A connection's stream.
pub enum Stream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS (boxed: its session state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
