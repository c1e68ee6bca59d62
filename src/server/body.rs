//! Request bodies, read only after the request passed authentication (`TenantBody`
//! checks the token first; the `Admin` check is an earlier extractor): into one buffer sized from
//! `Content-Length` and bounded by the route's limit (413 beyond it), its bytes taken
//! first from the server-wide budget of bytes held by bodies in flight (503 with
//! `Retry-After` when it is spent), and within a deadline derived from its length (408
//! for a body that trickles in slower than the minimum rate). Each received frame is
//! copied into the buffer and dropped at once, so a body sent a byte at a time holds
//! only its own length.

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::error::ApiError;
use super::limits::BodyBudget;
use super::state::ServerState;
use crate::matcher::codes;

/// Time any body may take, on top of its length at `MIN_BODY_RATE`.
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// The slowest a body may arrive, in bytes per second.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

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

/// The announced body length, 413 beyond `max`.
fn announced(req: &Request, max: usize) -> Result<Option<usize>, ApiError> {
    let announced = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?,
        ),
    };
    match announced {
        Some(len) if len > max as u64 => Err(too_large(max)),
        other => Ok(other.map(|len| len as usize)),
    }
}

/// Reads `req`'s body (at most `max` bytes) into one buffer, or, when `refusal` is
/// given, reads it into nothing and answers that refusal afterwards, so an authenticated
/// client still sending its body hears the refusal (429, 503) instead of a broken pipe.
async fn read(
    req: Request,
    max: usize,
    budget: &BodyBudget,
    refusal: Option<ApiError>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), ApiError> {
    let announced = announced(&req, max)?;
    let body = req.into_body();
    // Without a length the body is empty, or chunked: then it may take up to `max`.
    let len = match announced {
        Some(len) => len,
        None if HttpBody::is_end_stream(&body) => 0,
        None => max,
    };
    let (refusal, permit) = match refusal {
        Some(e) => (Some(e), None),
        None => match budget.take(len) {
            Ok(p) => (None, p),
            Err(e) => (Some(e), None),
        },
    };
    let keep = refusal.is_none();
    let mut bytes = Vec::with_capacity(if keep && announced.is_some() { len } else { 0 });
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    let reading = async {
        while let Some(frame) = stream.next().await {
            let frame = frame
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            seen += frame.len();
            if seen > len {
                return Err(too_large(max));
            }
            if keep {
                bytes.extend_from_slice(&frame);
            }
        }
        Ok(())
    };
    let outcome = match tokio::time::timeout(body_deadline(len), reading).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::TIMEOUT,
            format!(
                "the request body arrived slower than {} KiB/s",
                MIN_BODY_RATE / 1024
            ),
        )),
    };
    if let Some(e) = refusal {
        return Err(e);
    }
    outcome?;
    Ok((bytes, permit))
}

impl<const MAX: usize> FromRequest<Arc<ServerState>> for Body<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let (bytes, budget) = read(req, MAX, &state.limits.body_bytes, None).await?;
        Ok(Body {
            bytes,
            _budget: budget,
        })
    }
}

/// A tenant's request body: the token is checked before any byte of it is read (401 at
/// once, the body unread); then the tenant's rate limit (429, after the body is read into
/// nothing); then the body is read as `Body`.
pub struct TenantBody<const MAX: usize> {
    pub tenant: String,
    pub body: Body<MAX>,
}

impl<const MAX: usize> FromRequest<Arc<ServerState>> for TenantBody<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let tenant = state.auth.tenant_of(req.headers())?;
        let refusal = state.limits.rate.check(&tenant).err();
        let (bytes, budget) = read(req, MAX, &state.limits.body_bytes, refusal).await?;
        Ok(TenantBody {
            tenant,
            body: Body {
                bytes,
                _budget: budget,
            },
        })
    }
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
