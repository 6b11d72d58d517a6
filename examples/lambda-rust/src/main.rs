//! A Lambda function that reads a secret through the secrets-agent extension on localhost:2773,
//! once at init (before the first event) and again on each invoke, the way docs/lambda.md says:
//! `GET /secretsmanager/get?secretId=...` with the function's `AWS_SESSION_TOKEN` in
//! `X-Aws-Parameters-Secrets-Token`. Repeated reads are served from the extension's cache.
//!
//! Settings: `SECRET_ID` (required), `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` (default 2773).
//! The answer names the secret and its version and gives the value's length, never the value.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

type Http = Client<HttpConnector, Empty<Bytes>>;

struct Agent {
    client: Http,
    url: String,
    token: String,
}

impl Agent {
    fn from_env() -> Result<Agent, Error> {
        let secret_id = required("SECRET_ID")?;
        let port = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "2773".into());
        // Under SnapStart Lambda sets no AWS_SESSION_TOKEN; the extension then takes
        // AWS_CONTAINER_AUTHORIZATION_TOKEN (docs/lambda.md, "The token").
        let token = required("AWS_SESSION_TOKEN")
            .or_else(|_| required("AWS_CONTAINER_AUTHORIZATION_TOKEN"))
            .map_err(|_| {
                "neither AWS_SESSION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN is set: Lambda \
                 sets one of them; elsewhere set the one the extension takes as its token"
            })?;
        Ok(Agent {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!(
                "http://localhost:{port}/secretsmanager/get?secretId={}",
                encode(&secret_id)
            ),
            token,
        })
    }

    /// The GetSecretValue JSON the extension answers with.
    async fn secret(&self) -> Result<Value, Error> {
        let req = hyper::Request::get(&self.url)
            .header("X-Aws-Parameters-Secrets-Token", &self.token)
            .body(Empty::new())?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            // The extension's error body names the problem (AccessDenied, not found); no value.
            return Err(format!(
                "secrets-agent answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

fn required(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{name} is not set: set it in the function's environment").into()),
    }
}

/// Percent-encodes a secret id (a name or an ARN) for the query string.
fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// What the function returns: which secret and version it read, and the value's length.
fn summary(secret: &Value, read_at: &str) -> Value {
    json!({
        "readAt": read_at,
        "name": secret["Name"],
        "versionId": secret["VersionId"],
        "length": secret["SecretString"].as_str().map(str::len),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let agent = Agent::from_env()?;
    // Init: the extension is serving before the runtime starts, so this read works (and is a
    // cache hit when SECRET_ID is also in SECRETS_AGENT_PREFETCH).
    let at_init = summary(&agent.secret().await?, "init");
    let agent = &agent;
    let at_init = &at_init;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let now = agent.secret().await?;
        Ok::<Value, Error>(json!({ "init": at_init, "invoke": summary(&now, "invoke") }))
    }))
    .await
}
