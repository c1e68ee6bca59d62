//! Authentication: tenants' random 32-byte bearer tokens from the OS, of which the server
//! keeps only their SHA-256 (in the store and in memory) and maps a presented token to
//! its tenant; and the check of the admin token (`require_admin`). The rate limit and the
//! request extractor that combine these with the server's state are in `state`.
//! Registration needs a one-time invitation code unless the server runs with open
//! registration.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::accounts;
use super::error::ApiError;
use crate::matcher::{codes, Galleries, MatcherError, Store};

/// Who may register a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone who reaches the server (demos).
    Open,
    /// Holders of a one-time code from `blindface admin invite`.
    InviteOnly,
}

/// Token hashes -> tenant ids. Lookups take the read lock for a hash-map probe only;
/// registration serialises on `registering` (held across the store's fsync, on a blocking
/// thread) and takes the write lock only to insert.
pub struct Tokens {
    by_hash: RwLock<HashMap<[u8; 32], String>>,
    registering: Mutex<()>,
}

impl Tokens {
    /// The tenant a request's bearer token belongs to (the rate limit is the caller's).
    pub fn tenant_of(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = bearer(headers)?;
        self.lookup(token)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }

    pub fn load(store: &Store) -> Result<Self, MatcherError> {
        Ok(Tokens {
            by_hash: RwLock::new(store.tenants()?.into_iter().map(|(t, h)| (h, t)).collect()),
            registering: Mutex::new(()),
        })
    }

    pub fn tenants(&self) -> Vec<String> {
        self.by_hash
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The hash of the invitation code a registration must consume: `None` when
    /// registration is open; 403 when the server is invite-only and none was sent.
    pub fn invitation(
        registration: Registration,
        invite: Option<&str>,
    ) -> Result<Option<[u8; 32]>, ApiError> {
        match (registration, invite) {
            (Registration::Open, _) => Ok(None),
            (Registration::InviteOnly, Some(code)) => Ok(Some(hash_token(code))),
            (Registration::InviteOnly, None) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::INVITE_REQUIRED,
                "this server registers galleries by invitation only: send {\"invite\": CODE}",
            )),
        }
    }

    /// 409 once `max` tenants exist.
    pub fn check_room(&self, max: usize) -> Result<(), ApiError> {
        if self.by_hash.read().map_err(poisoned)?.len() >= max {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                codes::TENANT_LIMIT,
                format!("this server already has its maximum of {max} tenants"),
            ));
        }
        Ok(())
    }

    /// Records `tenant` with its token's hash (durably, within the memory budget,
    /// consuming the code `invite` if given) unless `max` tenants exist; `false`, with
    /// nothing changed, for an unknown or used code. The one registration step, which
    /// `changes::apply` runs.
    pub fn admit(
        &self,
        galleries: &Galleries,
        max: usize,
        tenant: &str,
        token_hash: [u8; 32],
        invite: Option<[u8; 32]>,
    ) -> Result<bool, ApiError> {
        let _one_at_a_time = self.registering.lock().map_err(poisoned)?;
        self.check_room(max)?;
        if !galleries.register_tenant(tenant, &token_hash, accounts::admit(invite))? {
            return Ok(false);
        }
        self.by_hash
            .write()
            .map_err(poisoned)?
            .insert(token_hash, tenant.to_string());
        Ok(true)
    }

    fn lookup(&self, token: &str) -> Option<String> {
        let hash = hash_token(token);
        self.by_hash.read().ok()?.get(&hash).cloned()
    }
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::from(MatcherError::Poisoned)
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("random generator failed: {e}"))?;
    Ok(hex::encode(b))
}

/// A fresh tenant id (16 random bytes, hex) and token (32 random bytes, hex).
pub fn new_tenant() -> Result<(String, String), ApiError> {
    Ok((
        random_hex(16).map_err(ApiError::internal)?,
        random_hex(32).map_err(ApiError::internal)?,
    ))
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing `Authorization: Bearer TOKEN` header; register with POST /v1/tenants",
            )
        })?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        // Exactly the token: no trimming (a padded token is another token).
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header; expected `Bearer TOKEN`")
        })
}

/// Passes requests bearing the admin token (whose hash is `admin_hash`) only.
pub fn require_admin(admin_hash: Option<[u8; 32]>, headers: &HeaderMap) -> Result<(), ApiError> {
    match (bearer(headers), admin_hash) {
        (Ok(token), Some(hash)) if hash_token(token) == hash => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::ADMIN_UNAUTHORIZED,
            "this route needs `Authorization: Bearer ADMIN_TOKEN`, the admin token",
        )),
    }
}
