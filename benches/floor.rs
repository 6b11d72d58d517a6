//! The floor for `make bench`: the least work an HTTP/1.1 server on hyper 1 and Tokio can do
//! per request. It answers every request, whatever its path or headers, with the same bytes a
//! real cache hit of `secrets-agent` carries (status 200, `Content-Type: application/json`,
//! `X-Cache: hit`, `Age`, the body read from a file), and does nothing else: no routing, no
//! token check, no cache, no header read timeout. The agent's hit path is judged against it.
//!
//! Usage: `floor ADDR:PORT BODY_FILE` (bench/run.py starts it; under `cargo bench` it only says
//! so and exits). Prints `PORT <n>` once bound and exits when its standard input closes, so the
//! benchmark that started it cannot leave it running.
//!
//! The runtime is the agent's (multi-threaded, one worker per core) and sockets get
//! `TCP_NODELAY` as the agent's do, and it uses the same allocator, so the two differ only in
//! what happens per request.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AGE, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mimalloc::MiMalloc;
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") {
        // `cargo bench` runs every bench target; this one is a server that `make bench` drives.
        println!("floor: a server for `make bench` to measure against; run `make bench`");
        return ExitCode::SUCCESS;
    }
    let [listen, body_file] = args.as_slice() else {
        eprintln!("usage: floor ADDR:PORT BODY_FILE");
        return ExitCode::from(64);
    };
    let body = match std::fs::read(body_file) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("cannot read {body_file}: {e}");
            return ExitCode::from(66);
        }
    };
    // The benchmark closes our stdin when it is done (or dies): stop then.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, body)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, body: Bytes) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let port = listener.local_addr()?.port();
    let mut out = std::io::stdout();
    writeln!(out, "PORT {port}")?;
    out.flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(answer(body)) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-cache", HeaderValue::from_static("hit"));
    h.insert(AGE, HeaderValue::from_static("0"));
    resp
}
