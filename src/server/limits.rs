//! Bounded work per request: a per-tenant request rate (token bucket), a cap on
//! concurrent matching with a short admission queue, and the whole-request timeout. Each
//! refuses at once with a status the client can act on (429 or 503 with `Retry-After`,
//! 408) instead of queueing without bound; and a per-address limit on requests that fail
//! authentication (429); a per-tenant cap on verifies and identifies in flight, from
//! admission to the response's last byte (429); and the budget of bytes held by request
//! bodies and identify responses in flight (503), which `body` and the identify route
//! draw on. Connection-level bounds (header-read, TLS handshake and write-stall
//! timeouts, the connection caps) are in `listen`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::matcher::codes;

/// The per-request bounds the routes share.
pub struct Limits {
    pub rate: RateLimiter,
    /// Failed authentications per source address.
    pub unauthenticated: RateLimiter,
    pub matching: MatchSlots,
    /// Verifies and identifies in flight per tenant.
    pub per_tenant: TenantSlots,
    /// Bytes held by request bodies and identify responses in flight.
    pub buffered: BufferBudget,
}

/// The source address of a request (set by `listen` on every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// A connection's body clock (one per connection, set by `listen` on each of its
/// requests): when the body now being read started arriving, if one is. `body` starts it;
/// `listen` closes the connection slowest at its body first when an address or the
/// server runs out of connections and none is idle.
#[derive(Debug, Clone, Default)]
pub struct BodyClock(Arc<AtomicU64>);

/// Stops a `BodyClock` when dropped.
pub struct Receiving(Arc<AtomicU64>);

/// Milliseconds since the first clock was read (0 means "not receiving").
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

impl BodyClock {
    /// Marks a body as arriving until the guard is dropped.
    pub fn start(&self) -> Receiving {
        self.0.store(now_ms(), Ordering::Release);
        Receiving(self.0.clone())
    }

    /// How long the body now arriving has taken, if one is.
    pub fn receiving_for(&self) -> Option<Duration> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(now_ms().saturating_sub(since))),
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Token buckets by tenant: `per_second` requests on average, bursts of `burst`.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` 0 turns the limit off.
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `tenant`'s bucket, or says how long to wait (429). Only
    /// authenticated tenants have buckets, so the map is bounded by the tenant count.
    pub fn check(&self, tenant: &str) -> Result<(), ApiError> {
        self.take(tenant, 1.0)
    }

    /// Whether `key` has a request left, without taking it.
    pub fn peek(&self, key: &str) -> Result<(), ApiError> {
        self.take(key, 0.0)
    }

    fn take(&self, key: &str, cost: f64) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ApiError::from(crate::matcher::MatcherError::Poisoned))?;
        if buckets.len() > MAX_BUCKETS {
            // Keyed by address, the map could grow without bound: forget the buckets
            // that have refilled (they would start full anyway).
            let full = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
        Err(ApiError::busy(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!(
                "more than {} requests per second from this gallery",
                self.per_second
            ),
            wait,
        ))
    }
}

/// Buckets kept before the refilled ones are forgotten.
const MAX_BUCKETS: usize = 16_384;

/// The unauthenticated rate limit: a source address whose requests failed authentication
/// (401) more often than the limit is answered 429 (with `Retry-After`) without any work
/// or body read, until its bucket refills. Health checks are exempt, and so is a request
/// whose token is valid (`authenticated`, asked only of requests from an address over
/// the limit): an honest client behind the same address as an attacker (a shared NAT) is
/// not locked out with it.
pub async fn unauthenticated(
    limiter: &RateLimiter,
    authenticated: impl Fn(&HeaderMap) -> bool,
    req: Request,
    next: Next,
) -> Response {
    let Some(Peer(ip)) = req.extensions().get::<Peer>().copied() else {
        return next.run(req).await;
    };
    if req.uri().path() == crate::matcher::api::paths::HEALTH {
        return next.run(req).await;
    }
    let key = ip.to_string();
    // The token is looked up only where it decides something: from an address over the
    // limit, and for a 401 (a valid token refused by a route, e.g. a tenant's on an admin
    // route, is not a failed authentication of the address).
    let token = req.headers().get(header::AUTHORIZATION).cloned();
    let mut valid = None;
    if let Err(mut e) = limiter.peek(&key) {
        if !authenticated(req.headers()) {
            e.message = "too many requests that failed authentication from this address".into();
            return e.into_response();
        }
        valid = Some(true);
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let valid = valid.unwrap_or_else(|| {
            let mut headers = HeaderMap::new();
            if let Some(token) = token {
                headers.insert(header::AUTHORIZATION, token);
            }
            authenticated(&headers)
        });
        if !valid {
            let _ = limiter.check(&key);
        }
    }
    resp
}

/// At most `running` verifies and identifies at once, `queued` more waiting; beyond that,
/// 503 at once.
pub struct MatchSlots {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

/// Held for as long as the matching runs (moved into its blocking closure).
pub struct MatchPermit {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl MatchSlots {
    pub fn new(running: usize, queued: usize) -> Self {
        let running = running.max(1);
        MatchSlots {
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(Semaphore::new(running + queued)),
        }
    }

    /// A slot to match in, after waiting in the queue if there is room in it.
    pub async fn enter(&self) -> Result<MatchPermit, ApiError> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            ApiError::busy(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BUSY,
                "every matching slot and its queue are taken",
                1,
            )
        })?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("matching slots closed"))?;
        Ok(MatchPermit {
            _admitted: admitted,
            _running: running,
        })
    }

    /// A slot again for a match that gave its own back while waiting, if one is free now.
    pub fn try_resume(&self) -> Option<MatchPermit> {
        let admitted = self.admitted.clone().try_acquire_owned().ok()?;
        let running = self.running.clone().try_acquire_owned().ok()?;
        Some(MatchPermit {
            _admitted: admitted,
            _running: running,
        })
    }
}

/// At most `max` verifies and identifies per tenant in flight, each counted from its
/// admission until its response's last byte is handed to the connection (or the
/// connection is gone): a tenant that opens identifies and never reads them holds at
/// most `max` responses; beyond that, 429 at once.
pub struct TenantSlots {
    max: usize,
    held: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
}

/// One of a tenant's slots, given back on drop.
pub struct TenantSlot {
    tenant: String,
    held: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
}

impl TenantSlots {
    pub fn new(max: usize) -> Self {
        TenantSlots {
            max: max.max(1),
            held: Arc::default(),
        }
    }

    /// One of `tenant`'s slots, or 429 when all are taken.
    pub fn take(&self, tenant: &str) -> Result<TenantSlot, ApiError> {
        let mut held = self.held.lock();
        let n = held.entry(tenant.to_string()).or_insert(0);
        if *n >= self.max {
            return Err(ApiError::busy(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!(
                    "this gallery already has {} verifies or identifies in flight",
                    self.max
                ),
                1,
            ));
        }
        *n += 1;
        Ok(TenantSlot {
            tenant: tenant.to_string(),
            held: self.held.clone(),
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        if let Some(n) = held.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

/// The bytes request bodies and identify responses in flight may hold at once, across
/// all connections.
pub struct BufferBudget {
    bytes: Arc<Semaphore>,
}

impl BufferBudget {
    pub fn new(max_bytes: usize) -> Self {
        let max = max_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        BufferBudget {
            bytes: Arc::new(Semaphore::new(max)),
        }
    }

    /// `n` bytes of the budget, or 503 at once when they are not free.
    pub fn take(&self, n: usize) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if n == 0 {
            return Ok(None);
        }
        u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::busy(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::BUSY,
                    "the server holds as many requests and responses in flight as it may; retry shortly",
                    1,
                )
            })
    }
}

/// Ends any request that takes longer than the limit (reading its body included) with
/// 408; matching already started finishes on its blocking thread, holding its slot.
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::TIMEOUT,
            format!(
                "the request took longer than the server's {} s limit",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let r = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            r.check("a").unwrap();
        }
        let e = r.check("a").unwrap_err();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, Some(1))
        );
        r.check("b").unwrap();
        RateLimiter::new(0.0, 1).check("a").unwrap();
    }

    #[test]
    fn the_body_clock_runs_only_while_a_body_arrives() {
        let clock = BodyClock::default();
        assert_eq!(clock.receiving_for(), None);
        let guard = clock.start();
        std::thread::sleep(Duration::from_millis(20));
        let took = clock.receiving_for().unwrap();
        assert!(took >= Duration::from_millis(19), "{took:?}");
        drop(guard);
        assert_eq!(clock.receiving_for(), None);
    }

    #[test]
    fn a_tenant_holds_at_most_its_slots_and_gets_them_back_on_drop() {
        let slots = TenantSlots::new(2);
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        let e = slots.take("a").err().unwrap();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, Some(1))
        );
        // Another tenant is not affected.
        let _b = slots.take("b").unwrap();
        drop(a1);
        let _a3 = slots.take("a").unwrap();
        drop((_a2, _a3, _b));
        assert!(
            slots.held.lock().is_empty(),
            "no entry left for idle tenants"
        );
    }

    #[test]
    fn the_budget_refuses_beyond_its_bytes_and_frees_on_drop() {
        let b = BufferBudget::new(100);
        let first = b.take(60).unwrap();
        let e = b.take(60).unwrap_err();
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        drop(first);
        b.take(100).unwrap();
        assert!(b.take(0).unwrap().is_none());
    }

    #[tokio::test]
    async fn matching_beyond_slots_and_queue_is_refused_at_once() {
        let slots = MatchSlots::new(1, 1);
        let first = slots.enter().await.unwrap();
        let queued = tokio::spawn({
            let running = slots.running.clone();
            let admitted = slots.admitted.clone();
            async move { MatchSlots { running, admitted }.enter().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let e = slots.enter().await.err().expect("refused");
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        drop(first);
        queued.await.unwrap().unwrap();
    }
}
