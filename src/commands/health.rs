//! `secrets-agent health`: `GET /ping` on the configured address, for images without curl (an
//! ECS `healthCheck`, a Kubernetes probe). Also where a client reaches the agent.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::{Config, ConfigError, Listen};

/// `secrets-agent health`: 0 when the agent on the configured address answers `/ping`, else 1
/// with the reason on stderr.
pub fn run(config: Result<Config, ConfigError>) -> u8 {
    match config
        .map_err(|e| e.to_string())
        .and_then(|c| health(&c.listen))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            1
        }
    }
}

/// `GET /ping` on the configured address; true when it answers 200.
pub fn health(listen: &Listen) -> Result<(), String> {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const REQUEST: &[u8] = b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = Vec::new();
    match listen {
        Listen::Tcp(addr) => {
            let target = reachable(*addr);
            let mut s = TcpStream::connect_timeout(&target, TIMEOUT)
                .map_err(|e| format!("cannot connect to {target}: {e}"))?;
            exchange(&mut s, REQUEST, &mut response, TIMEOUT)?;
        }
        #[cfg(unix)]
        Listen::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.write_all(REQUEST).map_err(|e| e.to_string())?;
            s.read_to_end(&mut response).map_err(|e| e.to_string())?;
        }
        #[cfg(not(unix))]
        Listen::Unix(_) => return Err("unix sockets need a unix system".into()),
    }
    let head = String::from_utf8_lossy(&response);
    let status = head.lines().next().unwrap_or("");
    if status.starts_with("HTTP/1.1 200") && head.ends_with("healthy") {
        Ok(())
    } else {
        Err(format!("unexpected answer from /ping: {status:?}"))
    }
}

/// Where a client reaches an agent listening on `addr`: a wildcard address through loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn exchange(
    s: &mut TcpStream,
    request: &[u8],
    response: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    s.read_to_end(response).map_err(|e| e.to_string())?;
    Ok(())
}
