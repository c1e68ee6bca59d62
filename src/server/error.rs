//! Error replies: JSON `{"error": "...", "code": "..."}` (plus `id`, `max` or
//! `retry_after` where the code carries one: `crate::matcher::api::ErrorBody`) with the status that fits: 4xx for the
//! client's mistakes, 429/503 (with `Retry-After`) under load, 507 when the memory budget
//! is used up (these refusals are logged at INFO), 500 only for the server's own failures
//! (including a poisoned lock), which alone are logged at ERROR. Clients map the `code` (see `crate::matcher::codes`), never the text. The
//! code also travels in the response's extensions ([`ErrorCode`]) for the metrics.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::he::{HeError, TemplateId};
use crate::matcher::api::ErrorBody;
use crate::matcher::{codes, MatcherError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub id: Option<TemplateId>,
    pub max: Option<u64>,
    /// Seconds to wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Nothing was done and another cluster node may do it: sent as
    /// [`crate::matcher::api::RETRY_ELSEWHERE`].
    pub elsewhere: bool,
    /// `gallery_params`: the gallery's parameter version and the request's.
    pub params: Option<(u16, u16)>,
}

/// The `code` of an error reply, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            id: None,
            max: None,
            retry_after: None,
            elsewhere: false,
            params: None,
        }
    }

    /// 429 or 503 with a retry hint.
    pub fn busy(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        retry_after: u64,
    ) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(status, code, message)
        }
    }

    /// 503 from a cluster node that did nothing: the client may try another node.
    pub fn node_unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            elsewhere: true,
            ..Self::busy(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BUSY,
                message,
                retry_after,
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_INPUT, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// A refusal under load or at a bound (429, 503, 507): logged at INFO, never ERROR.
    fn is_expected_refusal(&self) -> bool {
        matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::INSUFFICIENT_STORAGE
        )
    }
}

impl From<HeError> for ApiError {
    fn from(e: HeError) -> Self {
        ApiError::from(MatcherError::Crypto(e))
    }
}

impl From<MatcherError> for ApiError {
    fn from(e: MatcherError) -> Self {
        // Normalise the core's id errors to the matcher's (one code each).
        let e = match e {
            MatcherError::Crypto(HeError::UnknownTemplate(id)) => MatcherError::UnknownId(id),
            MatcherError::Crypto(HeError::DuplicateTemplate(id)) => MatcherError::DuplicateId(id),
            e => e,
        };
        let status = match &e {
            MatcherError::UnknownId(_) => StatusCode::NOT_FOUND,
            MatcherError::DuplicateId(_)
            | MatcherError::GalleryFull { .. }
            | MatcherError::TenantQuota { .. }
            | MatcherError::GalleryParams { .. } => StatusCode::CONFLICT,
            MatcherError::MemoryBudget { .. } => StatusCode::INSUFFICIENT_STORAGE,
            MatcherError::LabelTooLarge { .. } | MatcherError::Crypto(HeError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            MatcherError::BadId(_) | MatcherError::BadInput { .. } => StatusCode::BAD_REQUEST,
            MatcherError::Crypto(HeError::KeyIo { .. } | HeError::KeyExists { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            MatcherError::Crypto(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let id = match &e {
            MatcherError::UnknownId(id)
            | MatcherError::DuplicateId(id)
            | MatcherError::BadId(id) => Some(*id),
            _ => None,
        };
        let max = match &e {
            MatcherError::GalleryFull { max } => Some(*max as u64),
            MatcherError::TenantQuota { max_bytes } => Some(*max_bytes),
            MatcherError::MemoryBudget { budget } => Some(*budget),
            _ => None,
        };
        let params = match &e {
            MatcherError::GalleryParams { gallery, given } => Some((*gallery, *given)),
            _ => None,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            id,
            max,
            retry_after: None,
            elsewhere: false,
            params,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.is_expected_refusal() {
            // Load shedding and quotas are the server working as meant: not an error.
            tracing::info!(
                status = self.status.as_u16(),
                code = self.code,
                retry_after = self.retry_after,
                "request refused"
            );
        } else if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, error = %self.message, "request failed");
        } else {
            tracing::debug!(
                status = self.status.as_u16(),
                code = self.code,
                "request rejected"
            );
        }
        let body = ErrorBody {
            code: self.code.to_string(),
            error: self.message,
            id: self.id,
            max: self.max,
            retry_after: self.retry_after,
            gallery_params: self.params.map(|p| p.0),
            given_params: self.params.map(|p| p.1),
        };
        let mut resp = match self.retry_after {
            Some(s) => (
                self.status,
                [(axum::http::header::RETRY_AFTER, s.to_string())],
                Json(body),
            )
                .into_response(),
            None => (self.status, Json(body)).into_response(),
        };
        if self.elsewhere {
            resp.headers_mut().insert(
                crate::matcher::api::RETRY_ELSEWHERE,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_a_server_error() {
        let e = ApiError::from(MatcherError::Poisoned);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, codes::INTERNAL);
    }

    #[test]
    fn ids_travel_with_their_code() {
        let e = ApiError::from(MatcherError::Crypto(HeError::UnknownTemplate(TemplateId(
            5,
        ))));
        assert_eq!(
            (e.status, e.code, e.id),
            (
                StatusCode::NOT_FOUND,
                codes::UNKNOWN_TEMPLATE,
                Some(TemplateId(5))
            )
        );
        let e = ApiError::from(MatcherError::GalleryFull { max: 3 });
        assert_eq!(
            (e.status, e.code, e.max),
            (StatusCode::CONFLICT, codes::GALLERY_FULL, Some(3))
        );
    }
}
