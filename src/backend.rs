//! The two AWS services behind one small trait, and the one place where SDK errors are
//! classified.
//!
//! A fetch turns an AWS answer into the exact JSON body the agent serves, once, so a cache hit
//! is a clone of bytes. Secrets follow the AWS Secrets Manager Agent's GetSecretValue shape;
//! parameters follow the AWS Parameters and Secrets Lambda Extension's GetParameter shape.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{OnceCell, Semaphore};

use aws_config::identity::IdentityCache;
use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ServiceErrorKind};
use crate::metrics::Metrics;
use crate::roles::{Assumed, HeldCredentials, RoleCredentials, Roles};

mod limits;

/// Which service a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    Parameter,
    /// An ACM certificate with its chain and private key (`render`'s `awsacm:` sources).
    Certificate,
}

/// What is cached: one answer of one service for one selector. Hashed by kind and id only
/// ([`hash_key`]); equality compares every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kind: Kind,
    /// Secret id (name or ARN) or parameter name (name or ARN).
    pub id: String,
    /// `versionId` of a secret, `version` of a parameter.
    pub version: Option<String>,
    /// `versionStage` of a secret, `label` of a parameter.
    pub label: Option<String>,
    /// `withDecryption` (parameters only).
    pub decrypt: bool,
    /// `roleArn`: read as this role (assumed with STS); `None` is the agent's own.
    pub role: Option<Arc<str>>,
}

impl Key {
    /// A secret key; no stage and `AWSCURRENT` are the same entry.
    pub fn secret(id: impl Into<String>, version: Option<String>, stage: Option<String>) -> Self {
        let stage = match (&version, stage) {
            (None, Some(s)) if s == "AWSCURRENT" => None,
            (_, s) => s,
        };
        Key {
            kind: Kind::Secret,
            id: id.into(),
            version,
            label: stage,
            decrypt: false,
            role: None,
        }
    }

    /// The same key, read as `role` (`None`: the agent's own credentials).
    pub fn with_role(mut self, role: Option<Arc<str>>) -> Self {
        self.role = role;
        self
    }

    /// The stage to send to AWS: the key's, or AWSCURRENT when it names neither a stage nor a
    /// version. AWS reads AWSCURRENT without one, but AWS-compatible backends (moto among
    /// them) answer a stageless call with a version that AWSCURRENT has since left.
    fn wire_stage(&self) -> Option<String> {
        match (&self.version, &self.label) {
            (None, None) => Some("AWSCURRENT".into()),
            (_, label) => label.clone(),
        }
    }

    /// An ACM certificate by its ARN.
    pub fn certificate(arn: impl Into<String>) -> Self {
        Key {
            kind: Kind::Certificate,
            id: arn.into(),
            version: None,
            label: None,
            decrypt: false,
            role: None,
        }
    }

    pub fn parameter(
        name: impl Into<String>,
        version: Option<String>,
        label: Option<String>,
        decrypt: bool,
    ) -> Self {
        Key {
            kind: Kind::Parameter,
            id: name.into(),
            version,
            label,
            decrypt,
            role: None,
        }
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.kind, &self.id, state);
    }
}

/// The hash of a [`Key`] and of a [`KeyRef`]: kind and id. Versions, stages and roles of one id
/// are few, so leaving them out costs nothing in collisions, and a hit hashes about 20 bytes
/// instead of 50.
fn hash_key<H: std::hash::Hasher>(kind: Kind, id: &str, state: &mut H) {
    state.write_u8(kind as u8);
    state.write(id.as_bytes());
}

/// A [`Key`] borrowed from a request, so that a cache hit finds its entry without copying the
/// id. It hashes and compares exactly as the `Key` it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub version: Option<&'a str>,
    pub label: Option<&'a str>,
    pub decrypt: bool,
    pub role: Option<&'a str>,
}

impl<'a> KeyRef<'a> {
    /// The AWSCURRENT version of secret `id`, read with the agent's own credentials (what
    /// `Key::secret(id, None, None)` is).
    pub fn current_secret(id: &'a str) -> Self {
        KeyRef {
            kind: Kind::Secret,
            id,
            version: None,
            label: None,
            decrypt: false,
            role: None,
        }
    }
}

impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.kind, self.id, state);
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.kind == key.kind
            && self.id == key.id
            && self.version == key.version.as_deref()
            && self.label == key.label.as_deref()
            && self.decrypt == key.decrypt
            && self.role == key.role.as_deref()
    }
}

/// One fetched value, already serialized as the agent's response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Bytes,
    /// The secret's VersionId or the parameter's Version.
    pub version: Option<String>,
    /// The secret version's stages, sorted (empty for parameters).
    pub stages: Vec<String>,
}

/// The result of refreshing a value the cache already holds.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// AWS says the version (and its stages) did not change: keep the cached body.
    Unchanged,
    New(Fetched),
}

/// What the cache needs from AWS.
pub trait Backend: Send + Sync + 'static {
    /// Forgets connections and credentials, for a process restored from a snapshot (SnapStart):
    /// pooled connections are dead and cached credentials may be stale. The default does
    /// nothing.
    fn renew(&self) {}

    /// Fetches `key`. With `previous`, a secret asks DescribeSecret first and returns
    /// `Unchanged` when the version it would get is the one already held.
    fn fetch(
        &self,
        key: &Key,
        previous: Option<Arc<Fetched>>,
    ) -> impl Future<Output = Result<Refreshed, Error>> + Send;

    /// Fetches many secrets (AWSCURRENT) at once, as few calls as the service allows, as
    /// `role` (`None`: the agent's own credentials). Returns one result per id.
    fn fetch_secrets(
        &self,
        role: Option<Arc<str>>,
        ids: Vec<String>,
    ) -> impl Future<Output = Vec<(String, Result<Fetched, Error>)>> + Send;

    /// Fetches (AWSCURRENT) every secret carrying one of `tag_keys`, at most `limit` of them,
    /// each with its name, as `role` (`None`: the agent's own credentials). The default finds
    /// none.
    fn fetch_tagged(
        &self,
        role: Option<Arc<str>>,
        tag_keys: Vec<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, Fetched)>, Error>> + Send {
        let _ = (role, tag_keys, limit);
        async { Ok(Vec::new()) }
    }
}

/// Secrets Manager and SSM through the AWS SDK.
pub struct AwsBackend {
    /// Built once. From the environment that happens in the background after the port is
    /// bound, so `/ping` answers before the SDK is ready; a read waits for it (under its timeout).
    clients: Arc<LazyClients>,
    /// Caps concurrent AWS calls (the extension's MAX_CONNECTIONS).
    permits: Semaphore,
    secrets_timeout: Duration,
    parameters_timeout: Duration,
    metrics: Arc<Metrics>,
    /// The role may not call DescribeSecret: expiry goes straight to GetSecretValue.
    describe_denied: AtomicBool,
    /// The role may not call BatchGetSecretValue: prefetch reads one secret at a time.
    batch_denied: AtomicBool,
    /// Roles assumed for `roleArn` reads, each with clients that sign as it.
    roles: Roles<Clients>,
    /// RoleSessionName of every AssumeRole.
    session_name: String,
    /// Renewal of role credentials is measured on this clock.
    clock: Arc<dyn Clock>,
}

/// Cheap to clone: each SDK client is a handle over shared state.
#[derive(Clone)]
struct Clients {
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    /// What they were built from: the base of the clients of assumed roles.
    sdk: Arc<aws_config::SdkConfig>,
    acm: aws_sdk_acm::Client,
}

/// The clients, and what building them again needs.
struct LazyClients {
    /// Replaced by [`LazyClients::renew`]; a read clones the current cell, so a renewal never
    /// disturbs a call already under way. The lock is held only to clone or swap the `Arc`.
    cell: std::sync::Mutex<Arc<OnceCell<Clients>>>,
    source: Source,
}

/// Where the clients come from.
enum Source {
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
    async fn get(&self) -> Clients {
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
    fn renew(&self) {
        *self.cell.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(OnceCell::new());
    }
}

impl Clients {
    fn new(sdk: &aws_config::SdkConfig) -> Self {
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
    fn signing_as(&self, credentials: HeldCredentials) -> Clients {
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
    fn sts(&self) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(self.sdk.as_ref())
            .retry_config(quick_retry())
            .interceptor(limits::AnswerLimit)
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// Region, credentials and endpoint from the standard chain.
    async fn from_environment(
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
fn quick_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(50))
}

/// The HTTPS client every AWS call goes through: rustls with ring (smaller than aws-lc, and
/// the agent needs no FIPS or post-quantum key exchange on a loopback-to-AWS hop), trusting the
/// roots `aws_tls` finds.
///
/// Proxies come from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case), as
/// the SDK's own default client reads them: HTTPS through a CONNECT tunnel, HTTP in absolute
/// form, credentials in the proxy URL sent as `Proxy-Authorization` and never logged. Only AWS
/// calls use this client; the local listener and `exec`'s reads through the agent do not.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    // Trust roots (AWS_CA_BUNDLE, the system's, else built-in) and certificate errors that name
    // the host: `aws_tls`.
    crate::aws_tls::client(crate::aws_tls::from_env())
}

/// Says at start which proxy AWS calls go through, by host and port only: the URL's
/// credentials never reach the log.
fn log_proxies() {
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
async fn load_sdk_config(
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
            .credentials_provider(crate::credentials_file::FileCredentials::new(path, http))
            .identity_cache(aws_config::identity::IdentityCache::no_cache());
    }
    loader.load().await
}

/// Resolves credentials once in the background and says clearly when there are none, so a
/// missing role shows up at start rather than on the first read. Never blocks serving.
fn check_credentials(sdk: &aws_config::SdkConfig) {
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

/// BatchGetSecretValue takes at most 20 ids.
const BATCH_SIZE: usize = 20;

impl AwsBackend {
    /// Over a given SDK configuration (tests point it at moto).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        config: &crate::config::Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cell = OnceCell::new_with(Some(Clients::new(sdk)));
        Self::with_clients(config, metrics, cell, Source::Sdk(Box::new(sdk.clone())))
    }

    /// Over the standard AWS chain, loaded by [`AwsBackend::warm_up`] or the first read.
    pub fn from_environment(config: &crate::config::Config, metrics: Arc<Metrics>) -> Self {
        let source = Source::Environment {
            region: config.region.clone(),
            validate_credentials: config.validate_credentials,
            credentials_file: config.credentials_file.clone(),
        };
        Self::with_clients(config, metrics, OnceCell::new(), source)
    }

    fn with_clients(
        config: &crate::config::Config,
        metrics: Arc<Metrics>,
        cell: OnceCell<Clients>,
        source: Source,
    ) -> Self {
        AwsBackend {
            clients: Arc::new(LazyClients {
                cell: std::sync::Mutex::new(Arc::new(cell)),
                source,
            }),
            permits: Semaphore::new(config.max_backend_calls),
            secrets_timeout: config.secrets_timeout,
            parameters_timeout: config.parameters_timeout,
            metrics,
            describe_denied: AtomicBool::new(false),
            batch_denied: AtomicBool::new(false),
            roles: Roles::new(config.max_roles),
            session_name: config.role_session_name.clone(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Measures the renewal of role credentials on `clock` (tests pass a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Roles held now.
    pub fn roles_held(&self) -> usize {
        self.roles.len()
    }

    /// Starts building the SDK clients in the background (needs a Tokio runtime).
    pub fn warm_up(&self) {
        let clients = self.clients.clone();
        tokio::spawn(async move {
            clients.get().await;
        });
    }

    /// The clients to read `role` with (`None`: the agent's own), with the role's credentials
    /// assumed or renewed first when they are due.
    async fn clients(&self, role: Option<&Arc<str>>) -> Result<Clients, Error> {
        let own = self.clients.get().await;
        let Some(arn) = role else {
            return Ok(own);
        };
        let assumed = self.roles.get_or_add(arn, || {
            let credentials = RoleCredentials::new(
                arn.clone(),
                own.sts(),
                self.session_name.clone(),
                self.clock.clone(),
                self.secrets_timeout,
                self.metrics.clone(),
            );
            let clients = own.signing_as(credentials.provider());
            Assumed {
                credentials,
                clients,
            }
        })?;
        let ensured = assumed.credentials.ensure().await;
        if ensured.is_err() {
            self.roles.forget_if_unused(arn, &assumed);
        }
        ensured.map(|()| assumed.clients.clone())
    }

    /// Runs one AWS call under the concurrency cap and the timeout (waiting for a permit counts).
    async fn call<T>(
        &self,
        operation: &'static str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let run = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| Error::Unreachable {
                    operation,
                    detail: "agent is shutting down".into(),
                })?;
            fut.await
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation,
                millis: timeout.as_millis() as u64,
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics
            .observe_call(operation, outcome, started.elapsed());
        result
    }

    async fn get_secret(&self, key: &Key) -> Result<Fetched, Error> {
        const OP: &str = "GetSecretValue";
        let out = self
            .call(OP, self.secrets_timeout, async {
                self.clients(key.role.as_ref())
                    .await?
                    .secrets
                    .get_secret_value()
                    .secret_id(&key.id)
                    .set_version_id(key.version.clone())
                    .set_version_stage(key.wire_stage())
                    .customize()
                    .config_override(region_of_arn(&key.id))
                    .send()
                    .await
                    .map_err(|e| classify(OP, self.secrets_timeout, &key.id, e))
            })
            .await?;
        let fields = SecretFields {
            arn: out.arn,
            name: out.name,
            version_id: out.version_id,
            secret_string: out.secret_string,
            secret_binary: out.secret_binary.map(|b| b.into_inner()),
            version_stages: out.version_stages,
            created_date: out.created_date,
        };
        fields.check().map_err(|what| lacking(OP, &key.id, what))?;
        Ok(secret_body(fields))
    }

    /// The version a key would resolve to now, with its stages.
    async fn current_version(&self, key: &Key) -> Result<Option<(String, Vec<String>)>, Error> {
        const OP: &str = "DescribeSecret";
        let out = self
            .call(OP, self.secrets_timeout, async {
                self.clients(key.role.as_ref())
                    .await?
                    .secrets
                    .describe_secret()
                    .secret_id(&key.id)
                    .customize()
                    .config_override(region_of_arn(&key.id))
                    .send()
                    .await
                    .map_err(|e| classify(OP, self.secrets_timeout, &key.id, e))
            })
            .await?;
        // Scheduled for deletion: GetSecretValue now refuses it, and so must the agent; "changed"
        // sends the caller to GetSecretValue, which answers as AWS does.
        if out.deleted_date.is_some() {
            return Ok(None);
        }
        let versions = out.version_ids_to_stages.unwrap_or_default();
        let stage = key.label.as_deref().unwrap_or("AWSCURRENT");
        let found = versions
            .into_iter()
            .find(|(id, stages)| match &key.version {
                Some(v) => id == v,
                None => stages.iter().any(|s| s == stage),
            });
        Ok(found.map(|(id, mut stages)| {
            stages.sort();
            (id, stages)
        }))
    }

    async fn get_parameter(&self, key: &Key) -> Result<Fetched, Error> {
        const OP: &str = "GetParameter";
        let name = match (&key.version, &key.label) {
            (Some(v), _) => format!("{}:{v}", key.id),
            (None, Some(l)) => format!("{}:{l}", key.id),
            (None, None) => key.id.clone(),
        };
        let out = self
            .call(OP, self.parameters_timeout, async {
                self.clients(key.role.as_ref())
                    .await?
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(key.decrypt)
                    .send()
                    .await
                    .map_err(|e| classify(OP, self.parameters_timeout, &key.id, e))
            })
            .await?;
        let Some(p) = out
            .parameter
            .filter(|p| p.name.is_some() && p.value.is_some())
        else {
            return Err(lacking(OP, &key.id, "Parameter with a Name and a Value"));
        };
        let version = p.version;
        let body = ParameterBody {
            parameter: ParameterFields {
                arn: p.arn,
                data_type: p.data_type,
                last_modified_date: p
                    .last_modified_date
                    .and_then(|d| d.fmt(Format::DateTime).ok()),
                name: p.name,
                selector: p.selector,
                source_result: p.source_result,
                kind: p.r#type.map(|t| t.as_str().to_string()),
                value: p.value,
                version,
            },
            result_metadata: Empty {},
        };
        Ok(Fetched {
            body: to_bytes(&body),
            version: Some(version.to_string()),
            stages: Vec::new(),
        })
    }

    async fn batch(
        &self,
        role: Option<&Arc<str>>,
        ids: &[String],
    ) -> Result<Vec<(String, Result<Fetched, Error>)>, Error> {
        const OP: &str = "BatchGetSecretValue";
        let out = self
            .call(OP, self.secrets_timeout, async {
                self.clients(role)
                    .await?
                    .secrets
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(ids.to_vec()))
                    .send()
                    .await
                    .map_err(|e| classify(OP, self.secrets_timeout, &ids.join(","), e))
            })
            .await?;
        let mut results = Vec::with_capacity(ids.len());
        for v in out.secret_values.unwrap_or_default() {
            // Match the answer back to the id the caller used (name or ARN).
            let id = ids
                .iter()
                .find(|id| {
                    Some(id.as_str()) == v.arn.as_deref() || Some(id.as_str()) == v.name.as_deref()
                })
                .cloned();
            let Some(id) = id else { continue };
            let fetched = entry_body(v).map_err(|what| lacking(OP, &id, what));
            results.push((id, fetched));
        }
        for e in out.errors.unwrap_or_default() {
            let Some(id) = e.secret_id else { continue };
            let code = e.error_code.unwrap_or_else(|| "UnknownError".into());
            let kind = kind_for_code(&code, 400);
            results.push((
                id,
                Err(Error::Service {
                    kind,
                    status: 400,
                    code,
                    message: e.message.unwrap_or_default(),
                }),
            ));
        }
        Ok(results)
    }
}

/// A BatchGetSecretValue entry as the body GetSecretValue would have given; what it lacks,
/// if it is not a usable secret.
fn entry_body(v: aws_sdk_secretsmanager::types::SecretValueEntry) -> Result<Fetched, &'static str> {
    let fields = SecretFields {
        arn: v.arn,
        name: v.name,
        version_id: v.version_id,
        secret_string: v.secret_string,
        secret_binary: v.secret_binary.map(|b| b.into_inner()),
        version_stages: v.version_stages,
        created_date: v.created_date,
    };
    fields.check()?;
    Ok(secret_body(fields))
}

/// An answer without a field AWS always sends (an empty `{}` 200 parses as one).
fn lacking(operation: &'static str, id: &str, what: &str) -> Error {
    Error::Unusable {
        operation,
        id: id.to_string(),
        detail: format!("the answer has no {what}, which AWS always sends"),
    }
}

impl AwsBackend {
    /// One page of the secrets carrying `tag_key` (a prefix match, case-sensitive, as AWS's
    /// `tag-key` filter does), read as `role`: the secrets with their names, and the next
    /// page's token.
    async fn tagged_page(
        &self,
        role: Option<&Arc<str>>,
        tag_key: &str,
        page_size: i32,
        token: Option<String>,
    ) -> Result<(Vec<(String, Fetched)>, Option<String>), Error> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        const OP: &str = "BatchGetSecretValue";
        let filter = Filter::builder()
            .key(FilterNameStringType::TagKey)
            .values(tag_key)
            .build();
        let out = self
            .call(OP, self.secrets_timeout, async {
                self.clients(role)
                    .await?
                    .secrets
                    .batch_get_secret_value()
                    .filters(filter)
                    .max_results(page_size)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| classify(OP, self.secrets_timeout, tag_key, e))
            })
            .await?;
        for e in out.errors.unwrap_or_default() {
            tracing::warn!(
                secret_id = ?e.secret_id.unwrap_or_default(),
                error = ?e.error_code.unwrap_or_default(),
                tag_key,
                "a tagged secret could not be prefetched"
            );
        }
        let mut found = Vec::new();
        for v in out.secret_values.unwrap_or_default() {
            let Some(name) = v.name.clone() else { continue };
            match entry_body(v) {
                Ok(fetched) => found.push((name, fetched)),
                Err(what) => tracing::warn!(
                    secret_id = ?name,
                    tag_key,
                    "a tagged secret's answer has no {what}; it is read on first use instead"
                ),
            }
        }
        Ok((found, out.next_token.filter(|t| !t.is_empty())))
    }
}

impl AwsBackend {
    /// A certificate: DescribeCertificate first, and with `previous` of the same serial,
    /// `Unchanged` (a renewal gives a new serial at the same ARN); otherwise ExportCertificate
    /// under a fresh passphrase, the key decrypted at once.
    async fn certificate(
        &self,
        key: &Key,
        previous: Option<Arc<Fetched>>,
    ) -> Result<Refreshed, Error> {
        const DESCRIBE: &str = "DescribeCertificate";
        const EXPORT: &str = "ExportCertificate";
        let timeout = self.secrets_timeout;
        let described = self
            .call(DESCRIBE, timeout, async {
                self.clients(None)
                    .await?
                    .acm
                    .describe_certificate()
                    .certificate_arn(&key.id)
                    .send()
                    .await
                    .map_err(|e| classify(DESCRIBE, timeout, &key.id, e))
            })
            .await?;
        let serial = described.certificate.and_then(|c| c.serial);
        if let (Some(prev), Some(now)) = (&previous, &serial) {
            if prev.version.as_deref() == Some(now.as_str()) {
                return Ok(Refreshed::Unchanged);
            }
        }
        let unusable = |detail: String| Error::Unreachable {
            operation: EXPORT,
            detail,
        };
        let passphrase = crate::acm::passphrase().map_err(unusable)?;
        let out = self
            .call(EXPORT, timeout, async {
                self.clients(None)
                    .await?
                    .acm
                    .export_certificate()
                    .certificate_arn(&key.id)
                    .passphrase(aws_smithy_types::Blob::new(passphrase.as_bytes()))
                    .send()
                    .await
                    .map_err(|e| classify(EXPORT, timeout, &key.id, e))
            })
            .await?;
        let (Some(certificate), Some(encrypted)) = (out.certificate, out.private_key) else {
            return Err(unusable(
                "the answer has no certificate or no private key".into(),
            ));
        };
        let private_key =
            crate::acm::decrypt_private_key(&encrypted, &passphrase).map_err(unusable)?;
        let body = crate::acm::CertificateBody {
            certificate_arn: key.id.clone(),
            serial: serial.clone(),
            certificate,
            certificate_chain: out.certificate_chain.unwrap_or_default(),
            private_key,
        };
        Ok(Refreshed::New(Fetched {
            body: body.to_bytes(),
            version: serial,
            stages: Vec::new(),
        }))
    }
}

/// True for an AWS "you may not call this" answer.
fn is_access_denied(e: &Error) -> bool {
    matches!(
        e,
        Error::Service {
            kind: ServiceErrorKind::AccessDenied,
            ..
        }
    )
}

/// Records that the role may not call an optional operation; warns once per process.
fn note_denied(flag: &AtomicBool, operation: &str, permission: &str, instead: &str, e: &Error) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            operation,
            error = ?e.to_string(),
            "{operation} is not allowed for this role; {instead} from now on. Grant {permission} \
             to save GetSecretValue calls (it is optional)"
        );
    }
}

impl AwsBackend {
    /// Whether `prev` is still what `key` resolves to, by DescribeSecret. `None` when the probe
    /// cannot tell: then the caller reads the value. A "no" from the probe never reaches the
    /// caller and never drops the cached value: GetSecretValue decides (a role that allows
    /// only GetSecretValue, all the AWS extension needs, keeps working).
    async fn unchanged(&self, key: &Key, prev: &Fetched) -> Result<Option<bool>, Error> {
        if self.describe_denied.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.current_version(key).await {
            Ok(Some((version, stages))) => Ok(Some(
                prev.version.as_deref() == Some(version.as_str()) && prev.stages == stages,
            )),
            Ok(None) => Ok(Some(false)),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                if is_access_denied(&e) {
                    note_denied(
                        &self.describe_denied,
                        "DescribeSecret",
                        "secretsmanager:DescribeSecret",
                        "expired secrets are read again with GetSecretValue",
                        &e,
                    );
                } else {
                    tracing::debug!(error = ?e.to_string(), "DescribeSecret said no; reading the value");
                }
                Ok(None)
            }
        }
    }
}

impl Backend for AwsBackend {
    fn renew(&self) {
        self.clients.renew();
        self.roles.clear();
        // Build the new ones now, in the background, rather than on the first read.
        self.warm_up();
    }

    async fn fetch(&self, key: &Key, previous: Option<Arc<Fetched>>) -> Result<Refreshed, Error> {
        match key.kind {
            Kind::Parameter => self.get_parameter(key).await.map(Refreshed::New),
            Kind::Certificate => self.certificate(key, previous).await,
            Kind::Secret => {
                if let Some(prev) = previous.filter(|p| p.version.is_some()) {
                    if self.unchanged(key, &prev).await? == Some(true) {
                        return Ok(Refreshed::Unchanged);
                    }
                }
                self.get_secret(key).await.map(Refreshed::New)
            }
        }
    }

    async fn fetch_secrets(
        &self,
        role: Option<Arc<str>>,
        ids: Vec<String>,
    ) -> Vec<(String, Result<Fetched, Error>)> {
        let mut results = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_SIZE) {
            let batch = if self.batch_denied.load(Ordering::Relaxed) {
                Ok(Vec::new())
            } else {
                self.batch(role.as_ref(), chunk).await
            };
            let mut answered = match batch {
                Ok(r) => r,
                Err(e) if is_access_denied(&e) => {
                    note_denied(
                        &self.batch_denied,
                        "BatchGetSecretValue",
                        "secretsmanager:BatchGetSecretValue",
                        "prefetch and /secretsmanager/batch read one secret at a time",
                        &e,
                    );
                    Vec::new()
                }
                Err(e) => {
                    tracing::debug!(
                        error = ?e.to_string(),
                        "BatchGetSecretValue failed; fetching one by one"
                    );
                    Vec::new()
                }
            };
            // Anything the batch did not answer (or a failed batch) is fetched on its own.
            for id in chunk {
                if !answered.iter().any(|(a, _)| a == id) {
                    let key = Key::secret(id.clone(), None, None).with_role(role.clone());
                    let r = self.get_secret(&key).await;
                    answered.push((id.clone(), r));
                }
            }
            results.extend(answered);
        }
        results
    }

    /// One paginated BatchGetSecretValue per tag key (AWS ANDs the filters of one call, and a
    /// secret needs only one of the keys); a secret carrying two keys is kept once.
    async fn fetch_tagged(
        &self,
        role: Option<Arc<str>>,
        tag_keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, Fetched)>, Error> {
        let mut found: Vec<(String, Fetched)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        'keys: for key in &tag_keys {
            let mut token = None;
            loop {
                let room = limit.saturating_sub(found.len()).min(BATCH_SIZE);
                if room == 0 {
                    tracing::warn!(
                        limit,
                        "tag prefetch stopped at the prefetch's share of the cache \
                         (cache_size × cache_buffer_ratio); the rest are fetched on first read"
                    );
                    break 'keys;
                }
                let (page, next) = self
                    .tagged_page(role.as_ref(), key, room as i32, token)
                    .await?;
                for (name, fetched) in page {
                    if seen.insert(name.clone()) {
                        found.push((name, fetched));
                    }
                }
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        Ok(found)
    }
}

/// A secret named by its full ARN (`arn:PARTITION:secretsmanager:REGION:...`) is asked for in
/// the ARN's region, as secrets-init's users expect: an override of the region alone.
fn region_of_arn(id: &str) -> aws_sdk_secretsmanager::config::Builder {
    let b = aws_sdk_secretsmanager::config::Builder::default();
    match id.splitn(5, ':').collect::<Vec<_>>()[..] {
        ["arn", _, "secretsmanager", r, _] if !r.is_empty() => b.region(Region::new(r.to_string())),
        _ => b,
    }
}

/// Maps an SDK error to our classes. This is the only place that looks inside SDK errors. `id`
/// names what the call was for (secret, parameter, certificate, role), for the caller's message.
pub(crate) fn classify<E>(
    operation: &'static str,
    timeout: Duration,
    id: &str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // A TLS handshake that refused the certificate (`aws_tls` named the host).
    if let SdkError::DispatchFailure(_) = &err {
        if let Some(c) = crate::aws_tls::certificate_error(&err) {
            return Error::Certificate {
                operation,
                host: c.host.clone(),
                reason: c.reason.clone(),
            };
        }
    }
    let unusable = |what: String| Error::Unusable {
        operation,
        id: id.to_string(),
        detail: format!("{what}: {}", detail(&err)),
    };
    match &err {
        // AWS sends its errors with a 4xx or 5xx status. Anything else that did not parse (an
        // HTML or truncated 200, a redirect) did not come from AWS.
        SdkError::ServiceError(ctx) if !(400..600).contains(&ctx.raw().status().as_u16()) => {
            unusable(format!(
                "an HTTP {} answer that is not AWS's",
                ctx.raw().status().as_u16()
            ))
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let meta = ctx.err();
            let code = meta.code().unwrap_or("UnknownError").to_string();
            let message = meta.message().unwrap_or("").to_string();
            Error::Service {
                kind: kind_for_code(&code, status),
                status,
                code,
                message,
            }
        }
        SdkError::TimeoutError(_) => Error::Timeout {
            operation,
            millis: timeout.as_millis() as u64,
        },
        // The answer's body could not be read whole: cut short, or over the limit.
        SdkError::ResponseError(_) => unusable("the answer could not be read".into()),
        SdkError::DispatchFailure(f) => match hyper_error(&err) {
            Some(h) if h.is_parse() => unusable("the answer is not HTTP".into()),
            // hyper failed on the wire (closed or cut connections are io errors or these).
            Some(_) => Error::Unreachable {
                operation,
                detail: detail(&err),
            },
            None if f.is_io() || f.is_timeout() => Error::Unreachable {
                operation,
                detail: detail(&err),
            },
            // Not a network failure: credentials, region or endpoint could not be resolved
            // (the SDK reports those as a dispatch failure of kind "other").
            None => Error::NotSent {
                operation,
                detail: detail(&err),
            },
        },
        SdkError::ConstructionFailure(_) => Error::NotSent {
            operation,
            detail: detail(&err),
        },
        _ => Error::Unreachable {
            operation,
            detail: detail(&err),
        },
    }
}

/// The HTTP client's own error behind an SDK error, if the failure happened on the wire.
fn hyper_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        next = e.source();
    }
    None
}

/// The SDK's whole account of an error, for the log (never for a response body).
fn detail(err: &(dyn std::error::Error + 'static)) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

/// The class of an AWS error code (also used for the agent's own JSON error bodies).
pub(crate) fn kind_for_code(code: &str, status: u16) -> ServiceErrorKind {
    match code {
        "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => {
            ServiceErrorKind::NotFound
        }
        "AccessDeniedException"
        | "AccessDenied"
        | "DecryptionFailure"
        | "UnrecognizedClientException"
        | "InvalidKeyId"
        | "KMSAccessDeniedException"
        | "ExpiredTokenException"
        | "ExpiredToken" => ServiceErrorKind::AccessDenied,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RateExceeded" => ServiceErrorKind::Throttled,
        _ if status >= 500 => ServiceErrorKind::ServerError,
        _ if status == 429 => ServiceErrorKind::Throttled,
        _ => ServiceErrorKind::Other,
    }
}

/// The fields of a secret, from GetSecretValue or BatchGetSecretValue.
struct SecretFields {
    arn: Option<String>,
    name: Option<String>,
    version_id: Option<String>,
    secret_string: Option<String>,
    secret_binary: Option<Vec<u8>>,
    version_stages: Option<Vec<String>>,
    created_date: Option<DateTime>,
}

/// The AWS agent's GetSecretValue body: field names and order as it writes them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretBody<'a> {
    #[serde(rename = "ARN")]
    arn: &'a Option<String>,
    name: &'a Option<String>,
    version_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_binary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stages: &'a Option<Vec<String>>,
    /// Seconds since the epoch with fraction, as a string (the AWS agent's format).
    created_date: Option<String>,
}

impl SecretFields {
    /// What a usable secret lacks: AWS always sends its ARN, name, version and one value.
    fn check(&self) -> Result<(), &'static str> {
        if self.arn.is_none() || self.name.is_none() {
            return Err("ARN or Name");
        }
        if self.version_id.is_none() {
            return Err("VersionId");
        }
        if self.secret_string.is_none() && self.secret_binary.is_none() {
            return Err("SecretString or SecretBinary");
        }
        Ok(())
    }
}

fn secret_body(f: SecretFields) -> Fetched {
    let body = SecretBody {
        arn: &f.arn,
        name: &f.name,
        version_id: &f.version_id,
        secret_string: &f.secret_string,
        secret_binary: f
            .secret_binary
            .as_deref()
            .map(aws_smithy_types::base64::encode),
        version_stages: &f.version_stages,
        created_date: f.created_date.map(|d| d.as_secs_f64().to_string()),
    };
    let mut stages = f.version_stages.clone().unwrap_or_default();
    stages.sort();
    Fetched {
        body: to_bytes(&body),
        version: f.version_id,
        stages,
    }
}

#[derive(Serialize)]
struct Empty {}

/// The AWS extension's GetParameter body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ParameterBody {
    parameter: ParameterFields,
    result_metadata: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ParameterFields {
    #[serde(rename = "ARN")]
    arn: Option<String>,
    data_type: Option<String>,
    last_modified_date: Option<String>,
    name: Option<String>,
    selector: Option<String>,
    source_result: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    value: Option<String>,
    version: i64,
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Our own structs of strings and numbers always serialize.
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    // The vector grew by doubling: without this a 64 KiB secret could hold 128 KiB for as long
    // as it is cached, and the cache's byte budget counts the length.
    body.shrink_to_fit();
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awscurrent_and_no_stage_share_a_key() {
        assert_eq!(
            Key::secret("a", None, Some("AWSCURRENT".into())),
            Key::secret("a", None, None)
        );
        assert_ne!(
            Key::secret("a", None, Some("AWSPREVIOUS".into())),
            Key::secret("a", None, None)
        );
    }

    #[test]
    fn a_borrowed_key_finds_the_entry_of_the_key_it_stands_for() {
        use hashbrown::Equivalent;
        use std::hash::BuildHasher;
        let hasher = fnv::FnvBuildHasher::default();
        let role: Arc<str> = Arc::from("arn:aws:iam::123456789012:role/r");
        let cases = [
            (
                KeyRef::current_secret("db/pw"),
                Key::secret("db/pw", None, None),
            ),
            (
                KeyRef {
                    version: Some("v1"),
                    label: Some("AWSPREVIOUS"),
                    role: Some(&role),
                    ..KeyRef::current_secret("db/pw")
                },
                Key::secret("db/pw", Some("v1".into()), Some("AWSPREVIOUS".into()))
                    .with_role(Some(role.clone())),
            ),
            (
                KeyRef {
                    kind: Kind::Parameter,
                    decrypt: true,
                    ..KeyRef::current_secret("/app/x")
                },
                Key::parameter("/app/x", None, None, true),
            ),
        ];
        for (borrowed, owned) in &cases {
            assert!(borrowed.equivalent(owned), "{borrowed:?}");
            assert_eq!(
                hasher.hash_one(borrowed),
                hasher.hash_one(owned),
                "{borrowed:?}"
            );
        }
        // Each borrowed key matches only its own entry.
        assert!(!cases[0].0.equivalent(&cases[1].1));
        assert!(!cases[0].0.equivalent(&cases[2].1));
        let mut map: hashbrown::HashMap<Key, u8, fnv::FnvBuildHasher> = Default::default();
        for (i, (_, owned)) in cases.iter().enumerate() {
            map.insert(owned.clone(), i as u8);
        }
        for (i, (borrowed, _)) in cases.iter().enumerate() {
            assert_eq!(map.get(borrowed), Some(&(i as u8)));
        }
    }

    #[test]
    fn secret_body_uses_agent_field_names_and_base64() {
        let f = secret_body(SecretFields {
            arn: Some("arn:x".into()),
            name: Some("n".into()),
            version_id: Some("v1".into()),
            secret_string: None,
            secret_binary: Some(vec![0, 1, 2, 255]),
            version_stages: Some(vec!["AWSCURRENT".into()]),
            created_date: Some(DateTime::from_secs_and_nanos(1_700_000_000, 500_000_000)),
        });
        let text = std::str::from_utf8(&f.body).unwrap();
        assert_eq!(
            text,
            r#"{"ARN":"arn:x","Name":"n","VersionId":"v1","SecretBinary":"AAEC/w==","VersionStages":["AWSCURRENT"],"CreatedDate":"1700000000.5"}"#
        );
        assert_eq!(f.version.as_deref(), Some("v1"));
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(
            kind_for_code("ResourceNotFoundException", 400),
            ServiceErrorKind::NotFound
        );
        assert_eq!(
            kind_for_code("ParameterNotFound", 400),
            ServiceErrorKind::NotFound
        );
        assert_eq!(
            kind_for_code("ThrottlingException", 400),
            ServiceErrorKind::Throttled
        );
        assert_eq!(
            kind_for_code("AccessDeniedException", 400),
            ServiceErrorKind::AccessDenied
        );
        assert_eq!(
            kind_for_code("InternalServiceError", 500),
            ServiceErrorKind::ServerError
        );
        assert_eq!(
            kind_for_code("ValidationException", 400),
            ServiceErrorKind::Other
        );
    }
}
