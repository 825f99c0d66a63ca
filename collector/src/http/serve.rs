//! Serving the console and API: the limits a service facing a network needs, which
//! `axum::serve` does not offer, and the headers every answer carries.
//!
//! - At most `max_connections` at once; past that, accepting waits (the kernel's backlog holds
//!   the rest), so a flood of idle sockets costs a bounded number of tasks and descriptors. At
//!   most `max_connections_per_address` from one client address: more are closed at once and
//!   counted, so one host cannot take the slots everyone else waits for.
//! - A request's headers must arrive within `header_read_timeout_secs`, a keep-alive connection's
//!   next request too (hyper arms the same timer while a connection is idle), so trickled
//!   headers and idle sockets are closed.
//! - A request must be answered within `request_timeout_secs`, its body read included; a
//!   stream (server-sent events) counts only until its headers are sent.
//! - Every answer carries a Content-Security-Policy that allows only the console's own files,
//!   refuses framing, and keeps referrers and MIME sniffing off.
//! - A state-changing request whose `Origin` (or, without one, `Referer`) names another host
//!   or port than its `Host` is refused: a page elsewhere cannot make an operator's browser
//!   acknowledge incidents. Requests with neither (scripts, operators' systems) pass to
//!   authentication as before, and so do requests with a bearer token whatever they name: a
//!   browser never adds a token on its own, so a token proves the caller chose to send it.
//!   A reverse proxy in front must pass the `Host` header on.

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_service::Service;

/// What the serving loop holds to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

impl Limits {
    pub fn new(config: &crate::config::HttpConfig) -> Limits {
        Limits {
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
        }
    }
}

/// Adds the request deadline, the origin check and the security headers to `router`.
pub fn harden(router: Router, limits: Limits) -> Router {
    router.layer(axum::middleware::from_fn_with_state(limits, guard))
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

async fn guard(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let mut response = if let Some(refused) = foreign_origin(&request) {
        (StatusCode::FORBIDDEN, format!("{refused}: cross-origin requests may not change anything\n")).into_response()
    } else {
        match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => (StatusCode::REQUEST_TIMEOUT, "request not completed in time\n").into_response(),
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The foreign origin a state-changing request names, if it names one. Origins are compared
/// by host and port, not scheme: behind a proxy that ends TLS, the browser's origin is https
/// while this server speaks http, and a page on this very host and port is this server's.
fn foreign_origin(request: &Request) -> Option<String> {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if bearer {
        return None;
    }
    let named = match headers.get(header::ORIGIN) {
        Some(origin) => origin.to_str().unwrap_or("?").to_string(),
        None => {
            let referer = headers.get(header::REFERER)?.to_str().unwrap_or("?");
            // scheme://host[:port] of the referring page.
            let after_scheme = referer.find("://").map_or(referer.len(), |i| i + 3);
            let end = referer[after_scheme..].find('/').map_or(referer.len(), |i| after_scheme + i);
            referer[..end].to_string()
        }
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let authority = named.split_once("://").map_or("", |(_, rest)| rest);
    (!authority.eq_ignore_ascii_case(host) || host.is_empty()).then_some(named)
}

/// Serves `router` on `listener` until `stopped` resolves, then gives open connections a few
/// seconds to finish. Each request carries its peer's address as `ConnectInfo`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Default::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(stopped);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut stopped => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        let Some(held) = Held::take(&per_address, peer.ip(), limits.max_connections_per_address) else {
            metrics.http_connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop((slot, held));
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// One connection counted against its address, until dropped.
struct Held {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Held {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, address: IpAddr, max: usize) -> Option<Held> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(address).or_default();
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(Held { counts: counts.clone(), address })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}
