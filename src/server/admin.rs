//! The operator's side of the server: one admin token (32 random bytes, printed once when
//! it is created, only its SHA-256 kept in the store, through the ledger) that creates one-time registration
//! codes (`POST /v1/admin/invites`) and reads `/metrics`. Codes are 16 random bytes, hex;
//! the store keeps their hashes and drops each in the transaction that uses it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::auth::{hash_token, random_hex};
use super::body::{Body, SMALL_BODY_LIMIT};
use super::changes;
use super::error::ApiError;
use super::ledger::{Ledger, Op};
use super::state::{Admin, ServerState};
use crate::matcher::api::{InviteReply, InviteRequest};

/// Most codes one request creates.
pub const MAX_INVITES_PER_REQUEST: usize = 100;

/// Makes sure an admin token exists, creating one if there is none (or `rotate`: a new
/// one replaces it); returns the new token so it can be printed, once. On a cluster the
/// token is the cluster's: the first node to start creates it, the others adopt it.
pub async fn ensure_admin_token(
    s: &Arc<ServerState>,
    rotate: bool,
) -> Result<Option<String>, ApiError> {
    if s.admin_hash.read().is_some() && !rotate {
        return Ok(None);
    }
    let token = random_hex(32).map_err(ApiError::internal)?;
    let op = Op::AdminToken {
        hash: hash_token(&token),
    };
    let created = match (&s.ledger, rotate) {
        (Ledger::Cluster(node), false) => node.create_once(op).await?,
        _ => {
            changes::write(s, op).await?;
            true
        }
    };
    Ok(created.then_some(token))
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
    // At most MAX_INVITES_PER_REQUEST codes from the OS's generator and their hashes:
    // microseconds, no need for a blocking thread.
    let codes = (0..req.count)
        .map(|_| random_hex(16).map_err(ApiError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| hash_token(c)).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    changes::write(&s, Op::Invites { hashes, now }).await?;
    tracing::info!(count = codes.len(), "invitation codes created");
    Ok((StatusCode::CREATED, Json(InviteReply { codes })))
}
