//! JSON bodies for the replies hyper makes by itself. When a request cannot be parsed
//! (bad request line or header: 400; headers too large: 431; URI too long: 414) hyper
//! answers before any route runs, with an empty body and no way to change it. `JsonReplies`
//! sits between hyper and the connection and replaces exactly those replies (an empty
//! 400/414/431, which no route ever sends) with the JSON error every other reply has:
//! `{"code": "bad_input" | "too_large", "error": "..."}`, then the connection closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::matcher::api::ErrorBody;
use crate::matcher::codes;

/// An I/O stream whose writes of hyper's empty parse-error replies become JSON replies.
pub struct JsonReplies<T> {
    inner: T,
    /// A replacement reply not yet fully written.
    pending: Vec<u8>,
    sent: usize,
}

impl<T> JsonReplies<T> {
    pub fn new(inner: T) -> Self {
        JsonReplies {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

/// The JSON reply replacing `head` when it is one of hyper's automatic ones.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (status, code, message) = if head.starts_with(b"HTTP/1.1 400 ") {
        (
            "400 Bad Request",
            codes::BAD_INPUT,
            "malformed HTTP request (request line or a header)",
        )
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            "431 Request Header Fields Too Large",
            codes::TOO_LARGE,
            "request headers too large",
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        ("414 URI Too Long", codes::TOO_LARGE, "request URI too long")
    } else {
        return None;
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let lower = head[..end].to_ascii_lowercase();
    // Only hyper's own replies: an empty body. (Every route's error reply has JSON.)
    if end != head.len() || !lower.windows(19).any(|w| w == b"\r\ncontent-length: 0") {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody {
        code: code.into(),
        error: message.into(),
        id: None,
        max: None,
        retry_after: None,
        gallery_params: None,
        given_params: None,
    })
    .ok()?;
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> JsonReplies<T> {
    /// Writes what is left of a replacement reply.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonReplies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonReplies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(reply) = replacement(buf) {
            this.pending = reply;
            this.sent = 0;
            // The original is taken whole; the replacement goes out now or on flush.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_parse_error_replies_are_replaced() {
        let hyper431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let r = String::from_utf8(replacement(hyper431).unwrap()).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        assert!(r.ends_with(r#"{"code":"too_large","error":"request headers too large"}"#));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 40\r\n\r\n";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
