//! What the server's handlers share (`ServerState`: the galleries, tokens, limits and
//! metrics), the request-level checks made against it (`require_admin`, `tenant_of`,
//! the `Tenant` and `Admin` extractors, which run before any body is read, and the
//! failed-authentication limit, which lets valid tokens through), and `blocking`, which
//! runs heavy work off the executor.
//!
//! Only the handlers (`routes`, `admin`) and `mod.rs` import this file; the parts it
//! holds (`auth`, `limits`, `metrics`) know nothing of it.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{self, Registration};
use super::error::ApiError;
use super::ledger::Ledger;
use super::{limits, metrics};
use crate::matcher::Galleries;

/// Shared server state.
pub(crate) struct ServerState {
    pub galleries: Galleries,
    pub auth: auth::Tokens,
    pub max_tenants: usize,
    pub registration: Registration,
    /// The admin token's hash (`None` until one is set: every admin request refused).
    pub admin_hash: parking_lot::RwLock<Option<[u8; 32]>>,
    /// Where every write goes: applied here, or through the cluster's log.
    pub ledger: Ledger,
    /// The data directory (the store, the self-signed certificate).
    pub data: PathBuf,
    pub limits: limits::Limits,
    pub metrics: Arc<metrics::Metrics>,
}

/// Runs CPU-heavy or blocking (fsync) work off the async executor.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

impl ServerState {
    /// Passes requests bearing the admin token only.
    pub fn require_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        auth::require_admin(*self.admin_hash.read(), headers)
    }

    /// Whether a request bears a valid token (a tenant's or the admin's).
    pub fn authenticates(&self, headers: &HeaderMap) -> bool {
        self.auth.tenant_of(headers).is_ok() || self.require_admin(headers).is_ok()
    }

    /// The tenant a request's bearer token belongs to, within its rate limit. Routes with a
    /// body check the same (as `body::TenantBody`) before reading any of it: an
    /// unauthenticated client costs no body buffer (issue #20); its body is then read into
    /// nothing (`body::linger`) so it hears the 401 rather than a reset connection.
    ///
    /// On a cluster node a token it does not know yet may have been registered through
    /// another node a moment ago: it first catches up with the cluster's registrations.
    pub async fn tenant_of(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let tenant = match self.auth.tenant_of(headers) {
            Err(e)
                if matches!(self.ledger, Ledger::Cluster(_)) && auth::bearer(headers).is_ok() =>
            {
                self.ledger.fresh_tenants().await?;
                self.auth.tenant_of(headers).map_err(|_| e)?
            }
            found => found?,
        };
        self.limits.rate.check(&tenant)?;
        Ok(tenant)
    }
}

/// The authenticated tenant of a request (token and rate limit checked).
pub struct Tenant(pub String);

impl FromRequestParts<Arc<ServerState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ServerState>,
    ) -> Result<Self, Self::Rejection> {
        state.tenant_of(&parts.headers).await.map(Tenant)
    }
}

/// A request bearing the admin token.
pub struct Admin;

impl FromRequestParts<Arc<ServerState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ServerState>,
    ) -> Result<Self, Self::Rejection> {
        state.require_admin(&parts.headers).map(|()| Admin)
    }
}

/// The per-address limit on failed authentications (`limits::unauthenticated`), as a
/// middleware: a request with a valid token passes even from an address over the limit.
pub async fn unauthenticated(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Response {
    limits::unauthenticated(
        &state.limits.unauthenticated,
        |headers| state.authenticates(headers),
        req,
        next,
    )
    .await
}
