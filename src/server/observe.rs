//! The handlers of observability: the middleware that counts, times and logs every routed
//! request (`observe`), and `GET /metrics` for the admin (`scrape`). The metrics
//! themselves are in `metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::state::ServerState;

/// Counts, times and logs every routed request (route pattern, status, milliseconds,
/// error code: nothing a client sent).
pub async fn observe(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    let m = &state.metrics;
    m.request(&route, status, elapsed);
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(code) = code {
        m.reject(code);
    }
    tracing::info!(
        %method,
        route,
        status,
        code = code.unwrap_or(""),
        ms = format_args!("{:.2}", elapsed * 1e3),
        "request"
    );
    resp
}

/// `GET /metrics`: the Prometheus text format, for the admin token only.
pub async fn scrape(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.require_admin(&headers)?;
    let body = state.metrics.render(&state.galleries, &state.ledger.view());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
