//! TLS for the tests: certificates made at test time (no private key is
//! ever committed) and a blocking TLS client over rustls.
//!
//! [`Pki`] makes a CA, a server certificate it signs for `localhost` and
//! 127.0.0.1, a client certificate it signs, and a rogue CA with a client
//! certificate of its own, which a server trusting the first CA must refuse.
#![allow(dead_code)] // each test binary uses a different part

use corecache::config::TlsConfig;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A CA and certificates it signed, as PEM files in a scratch directory
/// removed when dropped.
pub struct Pki {
    dir: PathBuf,
    /// The CA certificate servers and clients trust.
    pub ca: PathBuf,
    /// The server's certificate (for `localhost` and 127.0.0.1) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate the CA signed, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate another CA signed, and its key.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// Which certificate a TLS client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// None.
    Anonymous,
    /// One the server's CA signed.
    Trusted,
    /// One another CA signed.
    Rogue,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("self-signed CA"), key)
}

fn leaf(
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
    issuer: &(Certificate, KeyPair),
) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "corecache test");
    params.extended_key_usages = vec![purpose];
    let cert = params
        .signed_by(&key, &issuer.0, &issuer.1)
        .expect("signed");
    (cert, key)
}

impl Pki {
    /// Makes every certificate afresh, in a directory named after `name`.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "corecache-pki-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        let authority = ca("corecache test CA");
        let rogue_authority = ca("rogue CA");
        let server = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        );
        let client = leaf(&[], ExtendedKeyUsagePurpose::ClientAuth, &authority);
        let rogue = leaf(&[], ExtendedKeyUsagePurpose::ClientAuth, &rogue_authority);
        Pki {
            ca: write("ca.pem", authority.0.pem()),
            server_cert: write("server.pem", server.0.pem()),
            server_key: write("server-key.pem", server.1.serialize_pem()),
            client_cert: write("client.pem", client.0.pem()),
            client_key: write("client-key.pem", client.1.serialize_pem()),
            rogue_cert: write("rogue.pem", rogue.0.pem()),
            rogue_key: write("rogue-key.pem", rogue.1.serialize_pem()),
            dir,
        }
    }

    /// The server's TLS settings: its certificate, and with `verify_clients`
    /// the CA client certificates must chain to. TLS on `--listen` unless
    /// `listen` gives it an address of its own.
    pub fn server(&self, verify_clients: bool, listen: Option<SocketAddr>) -> TlsConfig {
        TlsConfig {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            ca: verify_clients.then(|| self.ca.clone()),
            listen,
        }
    }

    /// A client configuration trusting the CA and presenting `identity`.
    pub fn client(&self, identity: Identity) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.ca).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let pair = |cert: &PathBuf, key: &PathBuf| {
            (
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
        };
        let config = match identity {
            Identity::Anonymous => builder.with_no_client_auth(),
            Identity::Trusted => {
                let (chain, key) = pair(&self.client_cert, &self.client_key);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            Identity::Rogue => {
                let (chain, key) = pair(&self.rogue_cert, &self.rogue_key);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking TLS client speaking raw protocol bytes.
pub struct TlsClient {
    pub stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects and completes the handshake as far as the client can tell
    /// (with TLS 1.3 a server that refuses the client's certificate says so
    /// only after: the first read then fails). Err if the handshake failed.
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsClient> {
        let mut socket = TcpStream::connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        socket.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket)?;
        }
        Ok(TlsClient {
            stream: StreamOwned::new(conn, socket),
        })
    }

    /// Sends bytes without waiting for anything.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    /// Sends `request` and asserts the reply is exactly `expected`.
    #[track_caller]
    pub fn expect(&mut self, request: &str, expected: &str) {
        self.send(request.as_bytes());
        let mut got = vec![0; expected.len()];
        self.stream.read_exact(&mut got).expect("read the reply");
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "reply to {request:?}"
        );
    }

    /// Reads until the server closes the connection or the TLS session
    /// fails: what arrived before, and the error if it failed.
    pub fn read_to_end(&mut self) -> (Vec<u8>, Option<std::io::Error>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Some(e)),
            }
        }
    }
}
