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
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::backend::roles::{Assumed, HeldCredentials, RoleCredentials, Roles};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ServiceErrorKind};
use crate::metrics::Metrics;

pub mod acm;
mod bodies;
mod classify;
mod clients;
pub mod credentials_file;
mod key;
mod limits;
pub mod roles;
pub mod tls;

use bodies::*;
pub(crate) use classify::{classify, kind_for_code};
pub use clients::https_client;
use clients::*;
pub use key::{Key, KeyRef, Kind};

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
        let passphrase = crate::backend::acm::passphrase().map_err(unusable)?;
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
            crate::backend::acm::decrypt_private_key(&encrypted, &passphrase).map_err(unusable)?;
        let body = crate::backend::acm::CertificateBody {
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
        ["arn", _, "secretsmanager", r, _] if !r.is_empty() => {
            b.region(aws_config::Region::new(r.to_string()))
        }
        _ => b,
    }
}

#[cfg(test)]
mod tests;
