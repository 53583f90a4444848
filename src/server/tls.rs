//! TLS: the rustls server configuration built from `--tls-cert`,
//! `--tls-key` and `--tls-ca`, and the handshake of one connection.
//!
//! A TLS connection is accepted like any other, counted against
//! `--max-connections` (so handshakes in flight are bounded too), and its
//! handshake runs in its own connection task: on the core that accepted it
//! (thread-per-core) or wherever the task runs (work-stealing), bounded by
//! `--tls-handshake-timeout`, so a client that stalls or fails its
//! handshake costs only itself. After the handshake the connection is the
//! ordinary one (`connection.rs`), reading and writing through the TLS
//! stream; forwarding between cores never sees the difference.

use super::StartError;
use crate::config::TlsConfig;
use crate::stats::ThreadStats;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A TLS connection after its handshake.
pub(crate) type Stream = TlsStream<TcpStream>;

fn fail(setting: &'static str, path: &Path, reason: impl std::fmt::Display) -> StartError {
    StartError::Tls {
        setting,
        reason: format!("{}: {reason}", path.display()),
    }
}

/// Reads the certificates and keys `tls` names and builds the acceptor
/// every TLS listener shares. Any file that cannot be read or used stops
/// start-up with the setting that named it.
pub(crate) fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, StartError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("--tls-cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| fail("--tls-key", &tls.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("--tls-cert", &tls.cert, e))?;
    let builder = match &tls.ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("--tls-ca", path)? {
                roots.add(cert).map_err(|e| fail("--tls-ca", path, e))?;
            }
            // Every client must present a certificate that chains to one
            // of these: memcached's `ssl_verify_mode` 2 (require).
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| fail("--tls-ca", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        fail(
            "--tls-key",
            &tls.key,
            format!("does not fit --tls-cert: {e}"),
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file; at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(setting, path, e))?;
    if chain.is_empty() {
        return Err(fail(setting, path, "no PEM certificate in it"));
    }
    Ok(chain)
}

/// Runs the server side of a TLS handshake on `stream`, for at most
/// `timeout`. None when it failed (a refused client certificate, bytes
/// that are not TLS), timed out, or the server began shutting down; a
/// failure or a timeout counts in `stats` as `ssl_handshake_errors`, the
/// name memcached gives its failed handshakes.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
    stats: &ThreadStats,
) -> Option<Stream> {
    crate::fault::check(crate::fault::Site::TlsHandshake);
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, acceptor.accept(stream)) => outcome,
        _ = shutdown.wait_for(|stop| *stop) => return None,
    };
    let failure = match outcome {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {timeout:?}"),
    };
    tracing::debug!("TLS handshake failed: {failure}");
    // Work-stealing: the task may have moved to another worker since it
    // took this slot, so the add must be atomic.
    stats.tls_handshake_errors.add_shared(1);
    None
}
