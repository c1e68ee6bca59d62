//! The accept loop: TCP, then TLS (rustls, when configured), then HTTP/1.1 (hyper) into
//! the axum router, with the connection-level bounds axum's own `serve` lacks: at most
//! `max_connections` at once (more are closed at once), a deadline for the TLS handshake,
//! and hyper's header-read timeout, which also closes idle keep-alive connections. So a
//! slowloris (many connections that never finish their headers) costs each connection
//! `header_timeout` at most; a connection whose writes make no progress for
//! `write_timeout` (a client that stopped reading its responses) is closed (`stall`). One source address holds at most `max_per_address`
//! connections: beyond that, and at the global cap, a new connection closes an idle one
//! (no request in flight) first, else one that has been receiving a body for over a
//! second (the slowest), and is refused only if there is neither. Each request
//! carries its source address (`limits::Peer`) for the unauthenticated rate limit. Shutdown stops accepting, lets requests in flight finish,
//! and waits for them.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::limits::{BodyClock, Peer};
use super::metrics::Metrics;
use super::parse_reply::JsonReplies;
use super::stall::WriteDeadline;

/// Connection-level bounds.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Open connections at once from one source address.
    pub max_per_address: usize,
    /// The longest a write may make no progress before the connection is closed.
    pub write_timeout: Duration,
}

/// One open connection: how many of its requests are in flight (0: idle, including a
/// connection still in its handshake or headers), how long the body it is receiving has
/// taken, and how to close it.
struct Conn {
    in_flight: AtomicUsize,
    body: BodyClock,
    /// Closed (or told to close) to make room because it was slow at its body, not idle.
    evicted_slow: AtomicBool,
    close: Notify,
}

impl Conn {
    /// What its eviction is counted as in `/metrics`.
    fn eviction(&self) -> &'static str {
        if self.evicted_slow.load(Ordering::Acquire) {
            "evicted_slow_body"
        } else {
            "evicted_idle"
        }
    }
}

/// A connection receiving a body for longer than this may be closed to make room, when
/// none is idle (an honest body of at most 512 KiB takes far less).
const SLOW_BODY: Duration = Duration::from_secs(1);

/// The open connections by source address: one address holds at most `max_per_address`;
/// a new connection beyond that (or beyond the global cap) closes an idle one first, else
/// one slow at its body, and is refused only when there is neither.
#[derive(Default)]
struct Registry {
    by_addr: Mutex<HashMap<IpAddr, Vec<Arc<Conn>>>>,
}

impl Registry {
    /// Closes one connection from `ip` (any address when `None`: the one holding the
    /// most) to make room: the oldest idle one, else the one slowest at its body (for
    /// more than `SLOW_BODY`); false if there is none.
    fn evict(map: &mut HashMap<IpAddr, Vec<Arc<Conn>>>, ip: Option<IpAddr>) -> bool {
        let list = match ip {
            Some(ip) => map.get_mut(&ip),
            None => map.values_mut().max_by_key(|l| l.len()),
        };
        let Some(list) = list else { return false };
        let idle = list
            .iter()
            .position(|c| c.in_flight.load(Ordering::Acquire) == 0);
        let slow = || {
            list.iter()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.body.receiving_for()?)))
                .filter(|&(_, took)| took > SLOW_BODY)
                .max_by_key(|&(_, took)| took)
                .map(|(i, _)| i)
        };
        let (i, slow) = match idle {
            Some(i) => (Some(i), false),
            None => (slow(), true),
        };
        match i {
            Some(i) => {
                let c = list.remove(i);
                c.evicted_slow.store(slow, Ordering::Release);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Registers a connection from `ip`, making room if needed; None when refused.
    fn admit(
        &self,
        ip: IpAddr,
        limits: &ConnLimits,
        global_full: bool,
    ) -> Option<(Arc<Conn>, bool)> {
        let mut map = self.by_addr.lock().ok()?;
        let held = map.get(&ip).map_or(0, Vec::len);
        if held >= limits.max_per_address && !Self::evict(&mut map, Some(ip)) {
            return None;
        }
        let evicted = global_full && Self::evict(&mut map, None);
        if global_full && !evicted {
            return None;
        }
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            body: BodyClock::default(),
            evicted_slow: AtomicBool::new(false),
            close: Notify::new(),
        });
        map.entry(ip).or_default().push(conn.clone());
        Some((conn, evicted))
    }

    fn remove(&self, ip: IpAddr, conn: &Arc<Conn>) {
        if let Ok(mut map) = self.by_addr.lock() {
            if let Some(list) = map.get_mut(&ip) {
                list.retain(|c| !Arc::ptr_eq(c, conn));
                if list.is_empty() {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ip = peer.ip();
        let permit = slots.clone().try_acquire_owned().ok();
        let Some((conn_entry, evicted)) = registry.admit(ip, &limits, permit.is_none()) else {
            metrics.reject(if permit.is_none() {
                "connection_limit"
            } else {
                "address_connection_limit"
            });
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let metrics = metrics.clone();
        let registry = registry.clone();
        let slots = slots.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let entry = conn_entry.clone();
            let _registered = scopeguard::guard((), move |()| registry.remove(ip, &entry));
            // At the global cap, an idle connection was told to close: take its slot.
            let _permit = match permit {
                Some(p) => p,
                None if evicted => {
                    match tokio::time::timeout(Duration::from_secs(1), slots.acquire_owned()).await
                    {
                        Ok(Ok(p)) => p,
                        _ => return,
                    }
                }
                None => return,
            };
            let closed = conn_entry.clone();
            let tcp = WriteDeadline::new(tcp, limits.write_timeout);
            let io: Box<dyn Io> = match acceptor {
                None => Box::new(tcp),
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp));
                    let handshake = tokio::select! {
                        h = handshake => h,
                        _ = closed.close.notified() => {
                            metrics.reject(closed.eviction());
                            return;
                        }
                    };
                    match handshake {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics.reject("tls_handshake_timeout");
                            return;
                        }
                    }
                }
            };
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(
                    TokioIo::new(JsonReplies::new(io)),
                    hyper::service::service_fn({
                        let inner = TowerToHyperService::new(router);
                        let conn_entry = conn_entry.clone();
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(Peer(ip));
                            req.extensions_mut().insert(conn_entry.body.clone());
                            conn_entry.in_flight.fetch_add(1, Ordering::AcqRel);
                            let busy = InFlight(conn_entry.clone());
                            let fut = inner.call(req);
                            async move {
                                let _busy = busy;
                                fut.await
                            }
                        }
                    }),
                );
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                // Evicted, idle or slow at its body (another connection needed the room).
                _ = closed.close.notified() => {
                    metrics.reject(closed.eviction());
                    return;
                }
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.reject("header_timeout");
                } else if stalled(&e) {
                    metrics.reject("write_timeout");
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is done: wait for all of them.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
}

/// Whether a connection ended because a write made no progress (`stall`).
fn stalled(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

/// Completes once shutdown is signalled (never, if the sender is gone without it).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
