//! Error replies: JSON `{"error": "..."}` with the status that fits (4xx for the client's
//! mistakes, 500 only for the server's own failures, which are logged).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::he::HeError;
use crate::matcher::MatcherError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<HeError> for ApiError {
    fn from(e: HeError) -> Self {
        let status = match e {
            HeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HeError::UnknownTemplate(_) => StatusCode::NOT_FOUND,
            HeError::DuplicateTemplate(_) => StatusCode::CONFLICT,
            HeError::KeyIo { .. } | HeError::KeyExists { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<MatcherError> for ApiError {
    fn from(e: MatcherError) -> Self {
        let status = match &e {
            MatcherError::Crypto(he) => {
                return match he {
                    HeError::UnknownTemplate(id) => ApiError::from(MatcherError::UnknownId(*id)),
                    _ => ApiError::from(match e {
                        MatcherError::Crypto(he) => he,
                        _ => unreachable!("matched Crypto above"),
                    }),
                }
            }
            MatcherError::UnknownId(_) => StatusCode::NOT_FOUND,
            MatcherError::GalleryFull { .. } => StatusCode::CONFLICT,
            MatcherError::LabelTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MatcherError::BadInput { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request rejected");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
