//! `secrets-agent webhook`: a Kubernetes mutating admission webhook over HTTPS. A pod annotated
//! `secrets-agent.io/inject: "true"` gets the agent as a native sidecar, its containers'
//! commands run under `secrets-agent exec`, or secret files rendered into a memory volume, or a
//! mix (see `mutate`). The webhook fetches no secret and needs no AWS permission: what it adds
//! runs with the pod's own identity.
//!
//! Routes: `POST /mutate` (AdmissionReview admission.k8s.io/v1), `GET /healthz`, `GET /metrics`.

mod metrics;
mod mutate;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Env};
use crate::{logging, EXIT_USAGE};

pub use mutate::{review, Mode, Outcome, Settings};

/// Where the webhook listens unless told otherwise: loopback, as everything we bind. In a
/// cluster the Deployment passes `--listen 0.0.0.0:8443`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The largest review read: a Pod is at most about 1.5 MiB in etcd.
const MAX_BODY: usize = 4 << 20;
/// A longer body is read and dropped up to this much (and this long), so its sender gets the
/// 413; past it the connection is closed.
const DRAIN_MAX: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TLS certificate chain (PEM), reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// TLS private key (PEM), reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The image of the containers the webhook adds, unless a pod's secrets-agent.io/image
    /// names another.
    #[arg(long, default_value = concat!("secrets-agent:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The secrets-agent binary's path inside that image.
    #[arg(
        long,
        default_value = "/usr/local/bin/secrets-agent",
        value_name = "PATH"
    )]
    pub binary: String,
    /// The webhook's own namespace, whose pods are never mutated (also POD_NAMESPACE).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// Runs the webhook until SIGTERM or SIGINT; the exit code.
pub fn run(args: Args, listen: Option<String>, config: Result<Config, String>, env: &Env) -> u8 {
    match &config {
        Ok(c) => logging::init(c, env, false),
        Err(_) => logging::init(&Config::default(), env, false),
    }
    let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!(
                "secrets-agent webhook: --listen {listen:?} is not ADDR:PORT (e.g. {DEFAULT_LISTEN} \
                 or 0.0.0.0:8443)"
            );
            return EXIT_USAGE;
        }
    };
    let certs = match tls::Reloading::new(args.cert.clone(), args.key.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("secrets-agent webhook: {e}; give --cert and --key as PEM files");
            return EXIT_USAGE;
        }
    };
    let tls = match tls::server_config(certs) {
        Ok(c) => TlsAcceptor::from(Arc::new(c)),
        Err(e) => {
            eprintln!("secrets-agent webhook: {e}");
            return 1;
        }
    };
    let settings = Settings {
        image: args.image,
        binary: args.binary,
        namespace: args.namespace.or_else(|| env.get("POD_NAMESPACE").cloned()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(addr, tls, Arc::new(State::new(settings))))
}

struct State {
    settings: Settings,
    metrics: metrics::WebhookMetrics,
}

impl State {
    fn new(settings: Settings) -> State {
        State {
            settings,
            metrics: metrics::WebhookMetrics::default(),
        }
    }
}

async fn serve(addr: SocketAddr, tls: TlsAcceptor, state: Arc<State>) -> u8 {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("secrets-agent webhook: cannot listen on {addr}: {e}");
            return EXIT_USAGE;
        }
    };
    tracing::info!(%addr, image = %state.settings.image, "webhook listening");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let tls = tls.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| handle(req, state.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("reviews still in flight after 10 s; stopping anyway");
        }
    }
    tracing::info!("webhook stopped");
    0
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8"
                    .parse()
                    .expect("static header"),
            );
            r
        }
        (&Method::POST, "/mutate") => mutate(req, &state).await,
        (_, "/healthz" | "/metrics" | "/mutate") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} {path}: use POST /mutate, GET /healthz or GET /metrics\n",
                req.method()
            ),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no route {path}: use POST /mutate, GET /healthz or GET /metrics\n"),
        ),
    })
}

/// What the body of a review came to.
enum Read {
    Body(Bytes),
    /// Longer than MAX_BODY: read to its end (up to DRAIN_MAX), kept nowhere.
    TooLarge,
    Failed(String),
}

/// Reads a review's body. One longer than MAX_BODY is still read (and dropped) to its end, up
/// to DRAIN_MAX and DRAIN_TIME, so the client reads a 413 instead of a connection reset
/// mid-upload.
async fn read_body(body: Incoming) -> Read {
    let mut body = body;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Some(e.to_string()),
            };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= MAX_BODY {
                    kept.extend_from_slice(&data);
                } else if seen > DRAIN_MAX {
                    break;
                }
            }
        }
        None
    };
    match tokio::time::timeout(DRAIN_TIME, drain).await {
        Ok(None) if seen <= MAX_BODY => Read::Body(Bytes::from(kept)),
        Ok(None) | Err(_) if seen > MAX_BODY => Read::TooLarge,
        Ok(Some(e)) => Read::Failed(e),
        _ => Read::Failed(format!("the body did not arrive within {DRAIN_TIME:?}")),
    }
}

async fn mutate(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = match declared {
        // Not worth reading: the client learns it from the status.
        Some(n) if n > DRAIN_MAX as u64 => Read::TooLarge,
        _ => read_body(req.into_body()).await,
    };
    let body = match read {
        Read::Body(b) => b,
        Read::TooLarge => {
            state
                .metrics
                .record("invalid", "none".into(), started.elapsed());
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the review is larger than {MAX_BODY} bytes (a Pod is at most about 1.5 MiB \
                     in etcd); nothing was admitted\n"
                ),
            );
        }
        Read::Failed(e) => {
            state
                .metrics
                .record("invalid", "none".into(), started.elapsed());
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the review ({e}); at most {MAX_BODY} bytes\n"),
            );
        }
    };
    match review(&body, &state.settings) {
        Ok((answer, outcome)) => {
            state
                .metrics
                .record(outcome.result(), outcome.modes(), started.elapsed());
            let uid = answer["response"]["uid"].as_str().unwrap_or("");
            match &outcome {
                Outcome::Denied(m) => tracing::info!(uid, "denied: {m}"),
                Outcome::Unchanged(why) => tracing::debug!(uid, "unchanged: {why}"),
                Outcome::Mutated(_) => tracing::info!(uid, modes = %outcome.modes(), "mutated"),
            }
            let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static header"),
            );
            r
        }
        Err(e) => {
            state
                .metrics
                .record("invalid", "none".into(), started.elapsed());
            tracing::info!("malformed review: {e}");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    r
}
