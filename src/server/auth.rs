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

    /// Creates a tenant (durably, within the memory budget, consuming `invite` when the
    /// server is invite-only) unless `max` tenants exist; returns (tenant, token).
    pub fn register(
        &self,
        galleries: &Galleries,
        max: usize,
        registration: Registration,
        invite: Option<&str>,
    ) -> Result<(String, String), ApiError> {
        fn poisoned<T>(_: T) -> ApiError {
            ApiError::from(MatcherError::Poisoned)
        }
        let forbidden =
            |code, message: &str| ApiError::new(axum::http::StatusCode::FORBIDDEN, code, message);
        let invite_hash =
            match (registration, invite) {
                (Registration::Open, _) => None,
                (Registration::InviteOnly, Some(code)) => Some(hash_token(code)),
                (Registration::InviteOnly, None) => return Err(forbidden(
                    codes::INVITE_REQUIRED,
                    "this server registers galleries by invitation only: send {\"invite\": CODE}",
                )),
            };
        let _one_at_a_time = self.registering.lock().map_err(poisoned)?;
        if self.by_hash.read().map_err(poisoned)?.len() >= max {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                codes::TENANT_LIMIT,
                format!("this server already has its maximum of {max} tenants"),
            ));
        }
        let (tenant, token) = new_tenant()?;
        let hash = hash_token(&token);
        if !galleries.register_tenant(&tenant, &hash, accounts::admit(invite_hash))? {
            return Err(forbidden(
                codes::INVITE_INVALID,
                "unknown or already used invitation code",
            ));
        }
        self.by_hash
            .write()
            .map_err(poisoned)?
            .insert(hash, tenant.clone());
        Ok((tenant, token))
    }

    fn lookup(&self, token: &str) -> Option<String> {
        let hash = hash_token(token);
        self.by_hash.read().ok()?.get(&hash).cloned()
    }
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
pub fn require_admin(admin_hash: &[u8; 32], headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Ok(token) if hash_token(token) == *admin_hash => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::ADMIN_UNAUTHORIZED,
            "this route needs `Authorization: Bearer ADMIN_TOKEN`, the admin token",
        )),
    }
}
