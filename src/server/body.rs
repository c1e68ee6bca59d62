//! Request bodies, read only after the request passed authentication (`TenantBody`
//! checks the token first; the `Admin` check is an earlier extractor): into one buffer sized from
//! `Content-Length` and bounded by the route's limit (413 beyond it), its bytes taken
//! first from the server-wide budget of bytes held by bodies in flight (503 with
//! `Retry-After` when it is spent), and within a deadline derived from its length (408
//! for a body that trickles in slower than the minimum rate). Each received frame is
//! copied into the buffer and dropped at once, so a body sent a byte at a time holds
//! only its own length.
//!
//! A refused request's body is not read into anything, but it is not left unread either:
//! `linger` (a middleware around every route) reads what is left of it into nothing,
//! for at most `DRAIN_TIME`, before the refusal is sent. Closing a connection with
//! unread bytes makes the kernel reset it, and a client still uploading (a stale token
//! with a probe) would then see a broken pipe instead of its 401.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::error::ApiError;
use super::limits::{BodyClock, BufferBudget};
use super::state::ServerState;
use crate::matcher::codes;

/// Time any body may take, on top of its length at `MIN_BODY_RATE`.
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// The slowest a body may arrive, in bytes per second.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

/// Largest registration or invitation body.
pub const SMALL_BODY_LIMIT: usize = 1024;

/// The longest a refused request's body is read into nothing before the refusal is sent.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);
/// The most bytes of a refused request's body read into nothing (the largest any route
/// accepts is half this); a body announced larger is refused without reading it.
pub const DRAIN_MAX: u64 = 1 << 20;

/// The deadline for a body of `len` bytes.
pub fn body_deadline(len: usize) -> Duration {
    BODY_GRACE + Duration::from_secs_f64(len as f64 / MIN_BODY_RATE as f64)
}

/// A request body of at most `MAX` bytes, holding its share of the body budget until it
/// is dropped.
pub struct Body<const MAX: usize> {
    bytes: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl<const MAX: usize> std::ops::Deref for Body<MAX> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::TOO_LARGE,
        format!("request body too large for this route (at most {max} bytes)"),
    )
}

/// The `Content-Length` a request announces, if any.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("Content-Length is not a number")),
    }
}

/// The announced body length, 413 beyond `max`.
fn announced(req: &Request, max: usize) -> Result<Option<usize>, ApiError> {
    match content_length(req.headers())? {
        Some(len) if len > max as u64 => Err(too_large(max)),
        other => Ok(other.map(|len| len as usize)),
    }
}

/// Reads `req`'s body (at most `max` bytes) into one buffer, its length taken from
/// `budget` first.
async fn read(
    req: Request,
    max: usize,
    budget: &BufferBudget,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), ApiError> {
    let announced = announced(&req, max)?;
    let _receiving = req.extensions().get::<BodyClock>().map(BodyClock::start);
    let body = req.into_body();
    // Without a length the body is empty, or chunked: then it may take up to `max`.
    let len = match announced {
        Some(len) => len,
        None if HttpBody::is_end_stream(&body) => 0,
        None => max,
    };
    let permit = budget.take(len)?;
    let mut bytes = Vec::with_capacity(if announced.is_some() { len } else { 0 });
    let mut stream = body.into_data_stream();
    let reading = async {
        while let Some(frame) = stream.next().await {
            let frame = frame
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            if bytes.len() + frame.len() > len {
                return Err(too_large(max));
            }
            bytes.extend_from_slice(&frame);
        }
        Ok(())
    };
    match tokio::time::timeout(body_deadline(len), reading).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                codes::TIMEOUT,
                format!(
                    "the request body arrived slower than {} KiB/s",
                    MIN_BODY_RATE / 1024
                ),
            ))
        }
    }
    Ok((bytes, permit))
}

impl<const MAX: usize> FromRequest<Arc<ServerState>> for Body<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let (bytes, budget) = read(req, MAX, &state.limits.buffered).await?;
        Ok(Body {
            bytes,
            _budget: budget,
        })
    }
}

/// A tenant's request body: the token and the tenant's rate limit are checked before any
/// byte of it is read (401 or 429, the body then read into nothing by `linger`); then the
/// body is read as `Body`.
pub struct TenantBody<const MAX: usize> {
    pub tenant: String,
    pub body: Body<MAX>,
}

impl<const MAX: usize> FromRequest<Arc<ServerState>> for TenantBody<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let tenant = state.tenant_of(req.headers()).await?;
        let (bytes, budget) = read(req, MAX, &state.limits.buffered).await?;
        Ok(TenantBody {
            tenant,
            body: Body {
                bytes,
                _budget: budget,
            },
        })
    }
}

/// A request body that, dropped before its end, hands what is left of it back to `linger`.
struct Returning {
    inner: Option<AxumBody>,
    back: Option<oneshot::Sender<AxumBody>>,
    /// The body ended, or failed: nothing is left to read.
    done: bool,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, HttpBody::size_hint)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if self.is_end_stream() {
            return;
        }
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            let _ = back.send(inner);
        }
    }
}

/// Middleware around every route: when the handler answers without reading the whole
/// body (a refusal: 401, 429, 503, 404, ...), reads the rest into nothing, at most
/// `DRAIN_MAX` bytes for at most `DRAIN_TIME`, before the answer is sent, so the client
/// can read it instead of a reset connection. A body announced larger than `DRAIN_MAX`,
/// or one the handler gave up on for its slowness (408), is not waited for.
pub async fn linger(req: Request, next: Next) -> Response {
    let limit = match content_length(req.headers()) {
        Ok(Some(n)) if n > DRAIN_MAX => return next.run(req).await,
        Ok(Some(n)) => n,
        _ => DRAIN_MAX,
    };
    // A body read into nothing counts as arriving too: slow at it, its connection may be
    // closed to make room (`listen`).
    let clock = req.extensions().get::<BodyClock>().cloned();
    let (back, mut rest) = oneshot::channel();
    let req = req.map(|inner| {
        AxumBody::new(Returning {
            inner: Some(inner),
            back: Some(back),
            done: false,
        })
    });
    let resp = next.run(req).await;
    if resp.status() == StatusCode::REQUEST_TIMEOUT {
        return resp;
    }
    // The request is dropped by the time its handler answers; a body kept alive past
    // that (none is) is simply not waited for.
    if let Ok(body) = rest.try_recv() {
        let _receiving = clock.as_ref().map(BodyClock::start);
        drain(body, limit).await;
    }
    resp
}

/// Reads `body` into nothing: at most `limit` bytes, for at most `DRAIN_TIME`.
async fn drain(body: AxumBody, limit: u64) {
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = stream.next().await {
            seen += frame.len() as u64;
            if seen > limit {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_length() {
        assert_eq!(body_deadline(0), BODY_GRACE);
        assert_eq!(
            body_deadline(32 * 1024),
            BODY_GRACE + Duration::from_secs(2)
        );
    }
}
