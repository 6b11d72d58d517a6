//! A TCP or Unix-socket listener behind one `accept`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::config::Listen;

pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, SocketFile),
}

/// The socket file we created: its path, and its identity so that only it is removed at exit.
#[cfg(unix)]
pub struct SocketFile {
    path: std::path::PathBuf,
    id: Option<(u64, u64)>,
}

/// An accepted connection.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Listener {
    /// Binds where the configuration says. A Unix socket is created owner-only (0600). What is
    /// already at its path is removed only when it is a socket nobody listens on (left by an
    /// earlier run); anything else (a file, a folder, a link, a live socket) is refused.
    pub async fn bind(listen: &Listen) -> io::Result<Listener> {
        match listen {
            Listen::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            #[cfg(unix)]
            Listen::Unix(path) => {
                use std::os::unix::fs::PermissionsExt;
                remove_stale_socket(path)?;
                let l = tokio::net::UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                let id = socket_id(path);
                Ok(Listener::Unix(
                    l,
                    SocketFile {
                        path: path.clone(),
                        id,
                    },
                ))
            }
            #[cfg(not(unix))]
            Listen::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets need a unix system",
            )),
        }
    }

    /// The address actually bound (port 0 resolved).
    pub fn local(&self) -> Listen {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Listen::Tcp(a),
                Err(_) => Listen::Unix("?".into()),
            },
            #[cfg(unix)]
            Listener::Unix(_, file) => Listen::Unix(file.path.clone()),
        }
    }

    /// The next connection. A failed accept (out of file descriptors and the like) is retried
    /// every 50 ms, not in a spin; a burst of failures is logged when it starts and when it
    /// ends, with its count (and once a minute while it lasts), and counted in `total`.
    pub async fn accept_or_wait(&self, errors: &mut AcceptErrors, total: &AtomicU64) -> Stream {
        loop {
            match self.accept().await {
                Ok(s) => {
                    if let Some((count, lasted)) = errors.recovered() {
                        tracing::warn!(
                            failures = count,
                            lasted_ms = lasted.as_millis() as u64,
                            "accept works again"
                        );
                    }
                    return s;
                }
                Err(e) => {
                    total.fetch_add(1, Ordering::Relaxed);
                    if errors.failed(Instant::now()) {
                        tracing::warn!(
                            error = %e,
                            failures = errors.count,
                            "accept failing; retrying every 50 ms (logged once per burst)"
                        );
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            #[cfg(unix)]
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

/// Removes a socket file left at `path` by an earlier run; refuses anything else.
#[cfg(unix)]
fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    let refuse = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is {what}; the agent replaces only a socket file left by an earlier run. \
                 Remove it or choose another path",
                path.display()
            ),
        ))
    };
    if !kind.is_socket() {
        return refuse(if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a folder"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "not a socket"
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return refuse("a socket another process is listening on");
    }
    std::fs::remove_file(path)
}

/// Device and inode of the file at `path` (not following a link).
#[cfg(unix)]
fn socket_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// While accept keeps failing, how often the burst is reported again.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Consecutive failed accepts: one burst.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    count: u64,
    since: Option<Instant>,
    reported: Option<Instant>,
}

impl AcceptErrors {
    /// Counts a failure; true when it is to be logged: the first of a burst, then once per
    /// `ACCEPT_REPORT_EVERY`.
    fn failed(&mut self, now: Instant) -> bool {
        self.count += 1;
        self.since.get_or_insert(now);
        match self.reported {
            Some(at) if now.duration_since(at) < ACCEPT_REPORT_EVERY => false,
            _ => {
                self.reported = Some(now);
                true
            }
        }
    }

    /// Ends a burst: how many failures it had and how long it lasted, if there was one.
    fn recovered(&mut self) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let count = std::mem::take(&mut self.count);
        self.reported = None;
        Some((count, since.elapsed()))
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        // Only the socket this listener created: not a file another agent has bound since.
        if let Listener::Unix(_, file) = self {
            if file.id.is_some() && socket_id(&file.path) == file.id {
                let _ = std::fs::remove_file(&file.path);
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn bind_at(path: &std::path::Path) -> io::Result<Listener> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        rt.block_on(Listener::bind(&Listen::Unix(path.to_path_buf())))
    }

    #[cfg(unix)]
    #[test]
    fn unix_socket_replaces_only_a_stale_socket() {
        let dir = std::env::temp_dir().join(format!("sa-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        // A socket left by a run that died (nobody listens): replaced.
        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let l = bind_at(&stale).unwrap();
        drop(l);
        assert!(!stale.exists(), "removed at exit");

        // A regular file, a folder, a link or a live socket: refused and left alone.
        let file = dir.join("file");
        std::fs::write(&file, "keep me").unwrap();
        let folder = dir.join("folder");
        std::fs::create_dir(&folder).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        let live = dir.join("live.sock");
        let _other = std::os::unix::net::UnixListener::bind(&live).unwrap();
        for (path, what) in [
            (&file, "a regular file"),
            (&folder, "a folder"),
            (&link, "a symbolic link"),
            (&live, "listening"),
        ] {
            let Err(err) = bind_at(path) else {
                panic!("{} was replaced", path.display())
            };
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(what), "{msg}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(folder.is_dir());
        assert!(std::fs::symlink_metadata(&link).is_ok());
        assert!(std::os::unix::net::UnixStream::connect(&live).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_failures_are_logged_once_per_burst() {
        let mut e = AcceptErrors::default();
        assert_eq!(e.recovered(), None, "no burst yet");
        let start = Instant::now();
        let logged = (0..1200u64)
            .filter(|i| e.failed(start + ACCEPT_RETRY * (*i as u32)))
            .count();
        // 60 s of failures every 50 ms: the first, then one more a minute later.
        assert_eq!(logged, 1);
        assert!(
            e.failed(start + ACCEPT_REPORT_EVERY),
            "reported again after a minute"
        );
        let (count, _) = e.recovered().unwrap();
        assert_eq!(count, 1201);
        assert!(e.failed(start), "a new burst is logged at once");
    }
}
