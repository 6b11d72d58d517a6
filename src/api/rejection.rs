//! Requests hyper refuses before they reach the handler, answered in JSON like every other error.
//!
//! hyper answers a request it cannot parse (a malformed request line or header, conflicting
//! `Content-Length`, a folded header line, a control character in the target, more than 100
//! headers, a head over the 16 KiB buffer) itself, with an empty body and no `Content-Type`, and
//! then closes the connection; it offers no hook to change that answer. This wrapper sits under
//! hyper on the connection's I/O, recognises that answer as hyper writes it (a 4xx head with
//! `content-length: 0`, which our own handler never sends: every error it makes has a JSON body,
//! and raw CR LF never occurs in a JSON or text body) and writes our answer in its place. A head
//! that overflowed the buffer before its first line ended is a request target that is too long:
//! 414, not hyper's 431.
//!
//! The cost on the hit path is one check of the first bytes of each write and, per request, a
//! search for the first line end in the bytes read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::api::error::ApiError;

/// An I/O stream whose hyper-made error answers are replaced by JSON ones.
pub struct JsonRejections<S> {
    inner: S,
    /// A first line end was read since the last response was written: the current head is
    /// past its request line.
    line_ended: bool,
    /// Our answer being written in place of hyper's, and how many of hyper's bytes it stands for.
    replacing: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<S> JsonRejections<S> {
    pub fn new(inner: S) -> Self {
        JsonRejections {
            inner,
            line_ended: false,
            replacing: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRejections<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        // memchr's SIMD search: the core slice search cost ~150 instructions per request here.
        if !this.line_ended && memchr::memchr(b'\n', &buf.filled()[before..]).is_some() {
            this.line_ended = true;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRejections<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            match hyper_rejection(buf) {
                None => {
                    let r = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
                    if matches!(r, Ok(n) if n > 0) {
                        // A response went out: the next bytes read start a new head.
                        this.line_ended = false;
                    }
                    return Poll::Ready(r);
                }
                Some((start, status)) => {
                    let error = match status {
                        431 if !this.line_ended => ApiError::TargetTooLong,
                        431 => ApiError::HeadersTooLarge,
                        _ => ApiError::MalformedRequest,
                    };
                    let mut bytes = buf[..start].to_vec();
                    bytes.extend_from_slice(&raw_response(&error));
                    tracing::debug!(
                        status = error.status().as_u16(),
                        parser_status = status,
                        answer = error.label(),
                        "request refused by the parser"
                    );
                    this.replacing = Some(Replacement {
                        bytes,
                        written: 0,
                        stands_for: buf.len(),
                    });
                }
            }
        }
        let Some(rep) = this.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while rep.written < rep.bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &rep.bytes[rep.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            rep.written += n;
        }
        let n = rep.stands_for;
        this.replacing = None;
        Poll::Ready(Ok(n))
    }

    /// A response with a body comes as its head and the body's bytes in separate slices (hyper
    /// writes vectored when the stream can, so a large secret is not copied into a buffer the
    /// connection keeps). hyper's own refusals have no body: a write of one slice, checked as
    /// above.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut slices = bufs.iter().filter(|b| !b.is_empty());
        let (first, more) = (slices.next(), slices.next().is_some());
        if !more || self.replacing.is_some() {
            return self.poll_write(cx, first.map_or(&[][..], |b| &b[..]));
        }
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        if matches!(r, Ok(n) if n > 0) {
            this.line_ended = false;
        }
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where hyper's own error answer starts in `buf`, and its status, if `buf` ends with one: the
/// last head in the buffer is a bodiless 4xx (`content-length: 0`). Earlier responses of a
/// pipelined batch may come first in the same buffer.
fn hyper_rejection(buf: &[u8]) -> Option<(usize, u16)> {
    const STATUS_LINE: &[u8] = b"HTTP/1.1 4";
    // hyper's answers are small; ours are never bodiless 4xx. Skip everything else quickly.
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = buf
        .windows(STATUS_LINE.len())
        .rposition(|w| w == STATUS_LINE)?;
    let head = &buf[start..];
    // One head only: no blank line before the end.
    if head[..head.len() - 4].windows(4).any(|w| w == b"\r\n\r\n") {
        return None;
    }
    let has_empty_body = head
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    if !has_empty_body {
        return None;
    }
    let status = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    Some((start, status))
}

/// Our answer for `error` as raw HTTP/1.1 bytes; the connection is closed after it.
fn raw_response(error: &ApiError) -> Vec<u8> {
    let status = error.status();
    let body = error.body();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hyper_bodiless_error_heads() {
        let hyper400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
                         date: Tue, 01 Dec 2026 12:04:40 GMT\r\n\r\n";
        assert_eq!(hyper_rejection(hyper400), Some((0, 400)));
        let mut pipelined = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nhealthy".to_vec();
        let first = pipelined.len();
        pipelined.extend_from_slice(hyper400);
        assert_eq!(hyper_rejection(&pipelined), Some((first, 400)));
        // Our own errors carry a body; a 200 is never touched.
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                     content-length: 60\r\n\r\n";
        assert_eq!(hyper_rejection(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_rejection(ok), None);
    }

    #[test]
    fn answer_is_json_with_its_length() {
        let raw = String::from_utf8(raw_response(&ApiError::TargetTooLong)).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["__type"], "UriTooLongException");
    }
}
