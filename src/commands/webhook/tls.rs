//! The webhook's certificate, read from PEM files (as cert-manager mounts them) and read again
//! when they change: every TLS handshake compares the files' identity (inode, size, mtime) with
//! what was loaded, so the next connection after a renewal gets the new certificate without a
//! restart. A change that does not load (a key not yet written, a mismatched pair) keeps the
//! previous certificate and is logged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// What identifies a file's content cheaply.
type Stamp = Option<(u64, u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

/// Loads a certificate chain and its private key, checking that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: no PEM certificate chain ({e})", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no CERTIFICATE block", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no PEM private key ({e})", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("{}: unsupported private key ({e})", key.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together ({e})",
            cert.display(),
            key.display()
        )
    })?;
    Ok(certified)
}

/// The certificate of the moment, reloaded when its files change.
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Stamp, Stamp, Arc<CertifiedKey>)>,
}

impl Reloading {
    /// Loads the pair once; a pair that does not load at start is an error.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Reloading, String> {
        let stamps = (stamp(&cert), stamp(&key));
        let loaded = load(&cert, &key)?;
        Ok(Reloading {
            cert,
            key,
            current: Mutex::new((stamps.0, stamps.1, Arc::new(loaded))),
        })
    }

    /// The certificate to present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = (stamp(&self.cert), stamp(&self.key));
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if (current.0, current.1) != now {
            // Remember the stamps either way: a broken pair is reported once, not per handshake.
            current.0 = now.0;
            current.1 = now.1;
            match load(&self.cert, &self.key) {
                Ok(loaded) => {
                    tracing::info!(cert = %self.cert.display(), "certificate reloaded");
                    current.2 = Arc::new(loaded);
                }
                Err(e) => tracing::warn!("keeping the previous certificate: {e}"),
            }
        }
        current.2.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration presenting `certs` (HTTP/1.1 only).
pub fn server_config(certs: Arc<Reloading>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
