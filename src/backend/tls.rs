//! The trust roots of the HTTPS client every AWS call goes through, and what a certificate
//! failure says.
//!
//! Trust roots, the first that applies:
//!
//! 1. `AWS_CA_BUNDLE`: a PEM bundle, the only roots (as the AWS CLI and SDKs read it). This is
//!    where a corporate or private CA goes (a TLS-inspecting proxy, a private endpoint).
//! 2. The system's: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the usual bundle paths of
//!    the distribution (`openssl-probe` finds them; the SDK's TLS layer loads them, as before).
//! 3. None found (an application image `FROM scratch` or busybox, where `exec` runs under the
//!    webhook's env mode): the Mozilla roots built into the binary (`webpki-root-certs`), so a
//!    call to AWS verifies in any image.
//!
//! A handshake that fails on the certificate becomes a [`CertificateError`] naming the host and
//! the roots used; `backend::classify` turns it into `Error::Certificate`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::{TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// Where the trust roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A PEM bundle, the only roots (`AWS_CA_BUNDLE`).
    Bundle(PathBuf),
    /// The system's, else the built-in Mozilla roots.
    System,
}

impl Roots {
    /// `AWS_CA_BUNDLE` when set, else the system's. Read from the process environment, as
    /// `aws-config` reads the rest of the AWS settings.
    pub fn from_env() -> Roots {
        match std::env::var_os("AWS_CA_BUNDLE") {
            Some(p) if !p.is_empty() => Roots::Bundle(p.into()),
            _ => Roots::System,
        }
    }
}

/// Trust roots loaded: the PEM certificates, or the system's (loaded by the SDK's TLS layer as
/// it always did, so the usual case costs nothing more), and where they came from.
#[derive(Debug)]
pub struct Loaded {
    /// The system's roots: the SDK loads them itself.
    system: bool,
    pem: Vec<Vec<u8>>,
    /// E.g. "AWS_CA_BUNDLE /etc/corp/ca.pem (1 certificate)".
    pub origin: String,
}

impl Loaded {
    pub fn len(&self) -> usize {
        self.pem.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.system && self.pem.is_empty()
    }
}

/// Loads `roots`. Certificates that the verifier cannot use are left out (the SDK's TLS layer
/// would panic on them); a bundle that cannot be read or holds none leaves no roots, and every
/// call then fails with a certificate error that says so.
pub fn load(roots: &Roots) -> Loaded {
    match roots {
        Roots::Bundle(path) => match std::fs::read(path) {
            Ok(pem) => {
                let ders: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                    .filter_map(Result::ok)
                    .collect();
                let pem = usable_pem(ders);
                let origin = format!("AWS_CA_BUNDLE {} ({})", path.display(), count(pem.len()));
                Loaded {
                    system: false,
                    pem,
                    origin,
                }
            }
            Err(e) => Loaded {
                system: false,
                pem: Vec::new(),
                origin: format!(
                    "AWS_CA_BUNDLE {}, which cannot be read ({e})",
                    path.display()
                ),
            },
        },
        Roots::System => match system_roots() {
            Some(origin) => Loaded {
                system: true,
                pem: Vec::new(),
                origin,
            },
            None => {
                let pem = usable_pem(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
                let origin = format!(
                    "the Mozilla roots built into secrets-agent ({}; no CA bundle found on \
                     this system)",
                    count(pem.len())
                );
                Loaded {
                    system: false,
                    pem,
                    origin,
                }
            }
        },
    }
}

/// Where the system's roots are, as `rustls-native-certs` (the SDK's loader) looks for them:
/// only `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set, else the distributions' paths
/// (`openssl-probe`). `None` when nothing there holds anything: a few `stat`s, nothing read.
fn system_roots() -> Option<String> {
    let file = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    let dir = |p: &Path| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
    let env_file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let env_dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|d| std::env::split_paths(&d).collect())
        .unwrap_or_default();
    let (cert_file, cert_dirs, by_env) = if env_file.is_some() || !env_dirs.is_empty() {
        (env_file, env_dirs, true)
    } else {
        let probe = openssl_probe::probe();
        (probe.cert_file, probe.cert_dir, false)
    };
    let named = |var: &str, what: &str, p: &Path| {
        let by = if by_env { var } else { what };
        format!("{by} {}", p.display())
    };
    if let Some(f) = cert_file.filter(|f| file(f)) {
        return Some(named("SSL_CERT_FILE", "the system's CA bundle", &f));
    }
    cert_dirs
        .iter()
        .find(|d| dir(d))
        .map(|d| named("SSL_CERT_DIR", "the system's CA folder", d))
}

fn count(n: usize) -> String {
    format!("{n} certificate{}", if n == 1 { "" } else { "s" })
}

/// The certificates a root store accepts, each as PEM.
fn usable_pem(ders: Vec<CertificateDer<'_>>) -> Vec<Vec<u8>> {
    let mut store = rustls::RootCertStore::empty();
    let mut out = Vec::with_capacity(ders.len());
    for der in ders {
        if store.add(der.clone()).is_ok() {
            out.push(to_pem(&der));
        }
    }
    out
}

fn to_pem(der: &[u8]) -> Vec<u8> {
    let b64 = aws_smithy_types::base64::encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem.into_bytes()
}

/// The roots from the environment, loaded once per process.
pub fn from_env() -> Arc<Loaded> {
    static LOADED: OnceLock<Arc<Loaded>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let loaded = load(&Roots::from_env());
            tracing::debug!(roots = %loaded.origin, "TLS trust roots for AWS");
            Arc::new(loaded)
        })
        .clone()
}

/// The HTTPS client over rustls with ring, trusting `roots`; proxies from the environment.
pub fn client(roots: Arc<Loaded>) -> SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    let mut store = TrustStore::empty().with_native_roots(roots.system);
    for pem in &roots.pem {
        store.add_pem_certificate(pem.clone());
    }
    // A store of parsable certificates builds.
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .unwrap_or_default();
    // `build_with_connector_fn` is how the SDK builds its default client with proxy support;
    // `Builder::build_https` takes no proxy configuration.
    let inner = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut b = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(context.clone());
        b.set_connector_settings(settings.cloned());
        b.set_sleep_impl(components.and_then(|c| c.sleep_impl()));
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build()
    });
    SharedHttpClient::new(NamingClient { inner, roots })
}

/// A TLS handshake refused the server's certificate.
#[derive(Debug)]
pub struct CertificateError {
    /// `host[:port]` the call went to.
    pub host: String,
    /// rustls's reason, then the roots used.
    pub reason: String,
    source: ConnectorError,
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the TLS certificate of {} is not trusted: {}",
            self.host, self.reason
        )
    }
}

impl std::error::Error for CertificateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The `CertificateError` in an error's chain, if any.
pub fn certificate_error<'a>(
    mut e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CertificateError> {
    loop {
        if let Some(c) = e.downcast_ref::<CertificateError>() {
            return Some(c);
        }
        e = e.source()?;
    }
}

/// The rustls error in a chain: `io::Error` hides its inner error from `source()`, so it is
/// opened with `get_ref`.
fn rustls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
            continue;
        }
        e = e.source()?;
    }
}

/// Wraps the SDK's client so that a certificate failure names the host and the roots.
#[derive(Debug)]
struct NamingClient {
    inner: SharedHttpClient,
    roots: Arc<Loaded>,
}

impl HttpClient for NamingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(NamingConnector {
            inner: self.inner.http_connector(settings, components),
            roots: self.roots.clone(),
        })
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct NamingConnector {
    inner: SharedHttpConnector,
    roots: Arc<Loaded>,
}

impl HttpConnector for NamingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let host = request
            .uri()
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "the AWS endpoint".into());
        let call = self.inner.call(request);
        let roots = self.roots.clone();
        HttpConnectorFuture::new(async move {
            call.await.map_err(|e| {
                let reason = match rustls_error(&e) {
                    Some(rustls::Error::InvalidCertificate(c)) => format!("{c:?}"),
                    Some(rustls::Error::NoCertificatesPresented) => {
                        "the server sent no certificate".into()
                    }
                    _ => return e,
                };
                let reason = if roots.is_empty() {
                    format!("{reason}; no trust roots: {}", roots.origin)
                } else {
                    format!("{reason}; trusted roots: {}", roots.origin)
                };
                ConnectorError::other(
                    Box::new(CertificateError {
                        host,
                        reason,
                        source: e,
                    }),
                    None,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_roots_are_usable() {
        let pem = usable_pem(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
        assert!(pem.len() > 100, "{}", pem.len());
        // PEM that the SDK's parser reads back.
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem[0])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back[0], webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]);
    }

    #[test]
    fn a_bundle_that_is_missing_or_not_pem_gives_no_roots_and_says_so() {
        let missing = load(&Roots::Bundle("/nonexistent/ca.pem".into()));
        assert!(missing.is_empty());
        assert!(
            missing.origin.contains("cannot be read"),
            "{}",
            missing.origin
        );
        let path = std::env::temp_dir().join(format!("sa-bundle-{}", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let junk = load(&Roots::Bundle(path.clone()));
        std::fs::remove_file(&path).unwrap();
        assert!(junk.is_empty());
        assert!(junk.origin.contains("(0 certificates)"), "{}", junk.origin);
    }
}
