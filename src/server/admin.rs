//! The operator's side of the server: one admin token (32 random bytes, printed once when
//! it is created, only its SHA-256 kept in the store) that creates one-time registration
//! codes (`POST /v1/admin/invites`) and reads `/metrics`. Codes are 16 random bytes, hex;
//! the store keeps their hashes and drops each in the transaction that uses it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::accounts;
use super::auth::{hash_token, random_hex};
use super::body::{Body, SMALL_BODY_LIMIT};
use super::error::ApiError;
use super::state::{blocking, Admin, ServerState};
use crate::matcher::api::{InviteReply, InviteRequest};
use crate::matcher::{MatcherError, Store};

/// Most codes one request creates.
pub const MAX_INVITES_PER_REQUEST: usize = 100;

/// The admin token's hash, creating a token first if there is none (or `rotate`); the new
/// token is returned so it can be printed, once.
pub fn admin_token(
    store: &Store,
    rotate: bool,
) -> Result<([u8; 32], Option<String>), MatcherError> {
    if let (Some(hash), false) = (accounts::admin_token_hash(store)?, rotate) {
        return Ok((hash, None));
    }
    let token = random_hex(32).map_err(|e| MatcherError::BadInput {
        what: "random generator",
        detail: e,
    })?;
    let hash = hash_token(&token);
    accounts::set_admin_token_hash(store, &hash)?;
    Ok((hash, Some(token)))
}

/// `POST /v1/admin/invites` `{count}` -> 201 `{codes: [...]}`.
pub async fn create_invites(
    State(s): State<Arc<ServerState>>,
    _: Admin,
    body: Body<SMALL_BODY_LIMIT>,
) -> Result<(StatusCode, Json<InviteReply>), ApiError> {
    let req: InviteRequest = if body.is_empty() {
        InviteRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected JSON {{\"count\": N}}: {e}")))?
    };
    if !(1..=MAX_INVITES_PER_REQUEST).contains(&req.count) {
        return Err(ApiError::bad_request(format!(
            "count must lie in [1, {MAX_INVITES_PER_REQUEST}]"
        )));
    }
    let codes = blocking(move || {
        let codes = (0..req.count)
            .map(|_| random_hex(16).map_err(ApiError::internal))
            .collect::<Result<Vec<_>, _>>()?;
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| hash_token(c)).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        accounts::add_invites(s.galleries.store(), &hashes, now)?;
        Ok(codes)
    })
    .await?;
    tracing::info!(count = codes.len(), "invitation codes created");
    Ok((StatusCode::CREATED, Json(InviteReply { codes })))
}
