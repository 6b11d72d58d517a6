//! Connection rules under hostile load: silent and slow connections give way at the limit,
//! `/ping` answers while every connection is busy, a client that never reads is closed, and
//! open connections never pass the limit. Small limits and short configured timeouts; the
//! assertions are on counts and states, not on speed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use secrets_agent::api::server::RESERVE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX: usize = 8;

fn addr(agent: &TestAgent) -> String {
    agent.base.trim_start_matches("http://").to_string()
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// True once the agent closed `s` (end of stream or reset), false if still open after `wait`.
async fn closed_by_agent(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let end = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn at_the_limit_silent_and_slow_connections_give_way_to_reads_and_ping() {
    // Timeouts far longer than the test: only eviction can make room.
    let agent = TestAgent::start(|c| {
        c.max_conn = MAX;
        c.first_byte_timeout = Duration::from_secs(600);
        c.header_timeout = Duration::from_secs(600);
    })
    .await;
    let name = unique("conn-limit");
    create_secret(&name, "let-me-in").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);

    let mut hostile = Vec::new();
    for i in 0..3 * MAX {
        let mut s = TcpStream::connect(addr(&agent)).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /secretsmanager/get?sec").await.unwrap();
        }
        hostile.push(s);
    }
    until("the hostile connections fill the pool", || {
        agent.app.connections_open().0 == MAX
    })
    .await;

    for _ in 0..3 {
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["SecretString"], "let-me-in");
        let r = get(&format!("{}/ping", agent.base), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), "healthy");
    }
    assert!(agent.app.connections_open().0 <= MAX);

    // Every hostile connection but the newest few was closed to make room.
    let mut closed = 0;
    for s in hostile.iter_mut() {
        if closed_by_agent(s, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(closed >= 2 * MAX, "closed {closed} of {}", 3 * MAX);
    let metrics = agent.get("/metrics").await.text();
    assert!(
        !metrics.contains("secrets_agent_connections_evicted_total 0\n"),
        "{metrics}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn ping_answers_and_reads_get_429_while_every_connection_is_busy() {
    let agent = TestAgent::start(|c| c.max_conn = 4).await;
    let mut names = Vec::new();
    for i in 0..4 {
        let n = unique(&format!("conn-busy{i}"));
        create_secret(&n, "slow").await;
        names.push(n);
    }
    agent
        .proxy
        .set_fault(Fault::Delay(Duration::from_millis(1500)), None);
    let busy: Vec<_> = names
        .iter()
        .map(|n| {
            let url = format!("{}/secretsmanager/get?secretId={n}", agent.base);
            tokio::spawn(
                async move { get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await },
            )
        })
        .collect();
    until("four reads wait on the backend", || {
        agent.proxy.count("GetSecretValue") == 4
    })
    .await;
    assert_eq!(agent.app.connections_open().0, 4);

    let r = get(&format!("{}/ping", agent.base), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "the reserve answers /ping");
    let r = agent
        .get(&format!("/secretsmanager/get?secretId={}", names[0]))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["__type"], "TooManyRequestsException");

    // The busy connections were not closed to make room.
    for b in busy {
        let r = b.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["SecretString"], "slow");
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed() {
    let agent = TestAgent::start(|c| c.write_timeout = Duration::from_millis(300)).await;
    let name = unique("conn-noread");
    create_secret(&name, &"x".repeat(60_000)).await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);

    // A small receive buffer, then 200 pipelined requests (12 MB of answers) never read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr(&agent).parse().unwrap()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n"
    );
    s.write_all(request.repeat(200).as_bytes()).await.unwrap();
    until("the connection is open", || {
        agent.app.connections_open().0 == 1
    })
    .await;
    until("the agent closes the connection", || {
        agent.app.connections_open().0 == 0
    })
    .await;
    assert!(closed_by_agent(&mut s, Duration::from_secs(10)).await);
    agent.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
    let agent = TestAgent::start(|c| c.first_byte_timeout = Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(addr(&agent)).await.unwrap();
    assert!(closed_by_agent(&mut s, Duration::from_secs(10)).await);
    until("the pool is empty", || agent.app.connections_open().0 == 0).await;
    agent.stop().await;
}

#[tokio::test]
async fn open_connections_never_pass_the_limit() {
    let agent = Arc::new(
        TestAgent::start(|c| {
            c.max_conn = MAX;
            c.first_byte_timeout = Duration::from_secs(600);
            c.header_timeout = Duration::from_secs(600);
        })
        .await,
    );
    let name = unique("conn-never");
    create_secret(&name, "v").await;
    let path = format!("/secretsmanager/get?secretId={name}");
    assert_eq!(agent.get(&path).await.status, StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (agent, stop, most) = (agent.clone(), stop.clone(), most.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (main, reserve) = agent.app.connections_open();
                assert!(main <= MAX, "{main} served connections");
                assert!(reserve <= RESERVE, "{reserve} in the reserve");
                most.fetch_max(main, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let hostile = {
        let a = addr(&agent);
        tokio::spawn(async move {
            let mut held = Vec::new();
            for i in 0..200 {
                if let Ok(mut s) = TcpStream::connect(&a).await {
                    if i % 3 == 0 {
                        let _ = s.write_all(b"GET /pi").await;
                    }
                    held.push(s);
                }
            }
            held
        })
    };
    for _ in 0..20 {
        let r = agent.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let held = hostile.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(most.load(Ordering::Relaxed), MAX, "the limit was reached");
    drop(held);
    Arc::into_inner(agent).unwrap().stop().await;
}

/// Hostile round 2, item 3: clients that pipeline requests and never read their answers hold
/// every connection. A new connection must not wait behind them: `/ping` answers within
/// `secrets-agent health`'s 2 s each time (it waited exactly the 5 s head timeout: the served
/// connections counted as busy while their answers could not be written, and an evicted one
/// went on serving for as long as its client pipelined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_clients_that_never_read_do_not_hold_up_ping() {
    const HOSTILE: usize = 60;
    let agent = TestAgent::start(|c| c.max_conn = 20).await;
    let request = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let a: std::net::SocketAddr = addr(&agent).parse().unwrap();
    // How many hostile connections the agent has taken up: answered or closed.
    let taken = Arc::new(AtomicUsize::new(0));
    let hostile: Vec<_> = (0..HOSTILE)
        .map(|_| {
            let (request, taken) = (request.clone(), taken.clone());
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                let mut s = socket.connect(a).await.unwrap();
                let _ = s.write_all(request.as_bytes()).await;
                // Peeking leaves the answers unread in the socket.
                let mut one = [0u8; 1];
                let _ = s.peek(&mut one).await;
                taken.fetch_add(1, Ordering::Relaxed);
                // Pipelines for as long as the agent reads; never reads an answer.
                while s.write_all(request.as_bytes()).await.is_ok() {}
                std::future::pending::<()>().await;
            })
        })
        .collect();
    until("the agent took up every hostile connection", || {
        taken.load(Ordering::Relaxed) == HOSTILE
    })
    .await;
    let ping = format!("{}/ping", agent.base);
    for round in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(2), get(&ping, &[])).await;
        let r = r.unwrap_or_else(|_| panic!("/ping round {round} took over 2 s"));
        assert_eq!(r.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for h in hostile {
        h.abort();
    }
    agent.stop().await;
}
