//! The SDK clients every AWS call goes through: built once (in the background from the
//! environment), the HTTPS client with its proxy rules, quick retries, the answer limits, and the
//! clients of assumed roles.

use super::*;

/// Cheap to clone: each SDK client is a handle over shared state.
#[derive(Clone)]
pub(super) struct Clients {
    pub(super) secrets: aws_sdk_secretsmanager::Client,
    pub(super) ssm: aws_sdk_ssm::Client,
    /// What they were built from: the base of the clients of assumed roles.
    pub(super) sdk: Arc<aws_config::SdkConfig>,
    pub(super) acm: aws_sdk_acm::Client,
}

/// The clients, and what building them again needs.
pub(super) struct LazyClients {
    /// Replaced by [`LazyClients::renew`]; a read clones the current cell, so a renewal never
    /// disturbs a call already under way. The lock is held only to clone or swap the `Arc`.
    pub(super) cell: std::sync::Mutex<Arc<OnceCell<Clients>>>,
    pub(super) source: Source,
}

/// Where the clients come from.
pub(super) enum Source {
    /// A given SDK configuration (tests point it at moto).
    Sdk(Box<aws_config::SdkConfig>),
    /// The standard chain; `region` from the configuration wins over the environment.
    Environment {
        region: Option<String>,
        validate_credentials: bool,
        /// `credentials_file_path`: credentials from this file instead of the standard chain.
        credentials_file: Option<std::path::PathBuf>,
    },
}

impl LazyClients {
    /// The clients; the first caller builds them, later ones wait for that.
    pub(super) async fn get(&self) -> Clients {
        let cell = self.cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        cell.get_or_init(|| async {
            match &self.source {
                Source::Sdk(sdk) => Clients::new(sdk),
                Source::Environment {
                    region,
                    validate_credentials,
                    credentials_file,
                } => {
                    Clients::from_environment(
                        region.clone(),
                        *validate_credentials,
                        credentials_file.clone(),
                    )
                    .await
                }
            }
        })
        .await
        .clone()
    }

    /// Drops the clients: the next call builds new ones (new connections; from the
    /// environment, credentials resolved again).
    pub(super) fn renew(&self) {
        *self.cell.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(OnceCell::new());
    }
}

impl Clients {
    pub(super) fn new(sdk: &aws_config::SdkConfig) -> Self {
        let retry = quick_retry();
        let sm_conf = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .interceptor(limits::AnswerLimit)
            .build();
        let ssm_conf = aws_sdk_ssm::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .interceptor(limits::AnswerLimit)
            .build();
        let acm_conf = aws_sdk_acm::config::Builder::from(sdk)
            .retry_config(retry)
            .interceptor(limits::AnswerLimit)
            .build();
        Clients {
            secrets: aws_sdk_secretsmanager::Client::from_conf(sm_conf),
            ssm: aws_sdk_ssm::Client::from_conf(ssm_conf),
            sdk: Arc::new(sdk.clone()),
            acm: aws_sdk_acm::Client::from_conf(acm_conf),
        }
    }

    /// Clients that sign with `credentials` (an assumed role's), otherwise as `self`. No
    /// identity cache of their own: the role's credentials are held and renewed by `roles`.
    pub(super) fn signing_as(&self, credentials: HeldCredentials) -> Clients {
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .identity_cache(IdentityCache::no_cache())
            .build();
        Clients::new(&sdk)
    }

    /// An STS client on the agent's own credentials (the regional endpoint of the configured
    /// region, or `AWS_ENDPOINT_URL`), with the same quick retry as the others.
    pub(super) fn sts(&self) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(self.sdk.as_ref())
            .retry_config(quick_retry())
            .interceptor(limits::AnswerLimit)
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// Region, credentials and endpoint from the standard chain.
    pub(super) async fn from_environment(
        region: Option<String>,
        validate_credentials: bool,
        credentials_file: Option<std::path::PathBuf>,
    ) -> Self {
        let started = std::time::Instant::now();
        log_proxies();
        // A credentials file that is not there yet is reported by its provider instead.
        let validate_credentials = validate_credentials && credentials_file.is_none();
        let sdk = load_sdk_config(region, credentials_file).await;
        if validate_credentials {
            check_credentials(&sdk);
        }
        let clients = Clients::new(&sdk);
        tracing::debug!(
            millis = started.elapsed().as_millis() as u64,
            "AWS clients ready"
        );
        clients
    }
}

/// Retries: one quick retry in the SDK; longer waits belong to the cache's backoff so a
/// failing AWS is not hammered once per request.
pub(super) fn quick_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(50))
}

/// The HTTPS client every AWS call goes through: rustls with ring (smaller than aws-lc, and
/// the agent needs no FIPS or post-quantum key exchange on a loopback-to-AWS hop), trusting the
/// roots `tls` finds.
///
/// Proxies come from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case), as
/// the SDK's own default client reads them: HTTPS through a CONNECT tunnel, HTTP in absolute
/// form, credentials in the proxy URL sent as `Proxy-Authorization` and never logged. Only AWS
/// calls use this client; the local listener and `exec`'s reads through the agent do not.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    // Trust roots (AWS_CA_BUNDLE, the system's, else built-in) and certificate errors that name
    // the host: `tls`.
    super::tls::client(super::tls::from_env())
}

/// Says at start which proxy AWS calls go through, by host and port only: the URL's
/// credentials never reach the log.
pub(super) fn log_proxies() {
    let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
    for (scheme, dst) in [
        ("https", "https://amazonaws.com/"),
        ("http", "http://amazonaws.com/"),
    ] {
        let dst = http::Uri::from_static(dst);
        if let Some(proxy) = matcher.intercept(&dst) {
            // The matcher keeps the credentials apart: its URI has none.
            let uri = proxy.uri();
            let authority = uri.authority().map_or("", |a| a.as_str());
            let shown = format!("{}://{authority}", uri.scheme_str().unwrap_or("http"));
            tracing::info!(
                scheme,
                proxy = %shown,
                "AWS calls go through a proxy (hosts in NO_PROXY go direct)"
            );
        }
    }
}

/// Region, credentials and endpoint from the standard chain (`region`, when given, wins).
/// With a credentials file, credentials come from it alone, and the SDK keeps no identity
/// cache: each call asks the file's provider, which re-reads the file only when it changed.
pub(super) async fn load_sdk_config(
    region: Option<String>,
    credentials_file: Option<std::path::PathBuf>,
) -> aws_config::SdkConfig {
    let http = https_client();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http.clone());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(path) = credentials_file {
        loader = loader
            .credentials_provider(crate::backend::credentials_file::FileCredentials::new(
                path, http,
            ))
            .identity_cache(aws_config::identity::IdentityCache::no_cache());
    }
    loader.load().await
}

/// Resolves credentials once in the background and says clearly when there are none, so a
/// missing role shows up at start rather than on the first read. Never blocks serving.
pub(super) fn check_credentials(sdk: &aws_config::SdkConfig) {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        tracing::warn!("no AWS credentials provider is configured; reads will fail");
        return;
    };
    tokio::spawn(async move {
        match provider.provide_credentials().await {
            Ok(_) => tracing::debug!("AWS credentials resolved"),
            Err(e) => tracing::warn!(
                error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
                "no AWS credentials could be resolved; reads will fail until they can \
                 (give the task or function a role, or set validate_credentials = false)"
            ),
        }
    });
}
