//! Serving HTTP/1.1 on a listener with the limits a public endpoint needs.
//!
//! `axum::serve` has no header-read timeout or connection cap, and a provider-facing port gets
//! slow clients and floods. This loop accepts connections under a cap, closes at once the
//! connections of a client address that already holds its share, gives each a deadline for its
//! request head, tells handlers the peer's address (`ConnectInfo<SocketAddr>` in the request's
//! extensions), turns a panicking handler into a 500 instead of a dropped connection, and
//! drains connections gracefully when `stop` is cancelled.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http_error::HttpError;

/// What a connection may buffer of a request line and headers: a head not complete by then is
/// answered with 431 before any handler runs. hyper checks between reads, and one read may take
/// the buffer past the limit, so a head up to twice this can still get through. hyper's default
/// (about 400 KiB) lets every slow client pin that much memory, and no provider sends heads
/// anywhere near this.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send its request line and headers.
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address (`client_key`) may hold at once; further ones are closed
    /// as soon as they are accepted, so one client cannot take the slots of `max_connections`.
    pub max_connections_per_ip: usize,
}

/// The address a per-client limit is kept for: an IPv4 address (also when it arrives mapped
/// into IPv6), or the /64 network of an IPv6 address, since one IPv6 client usually holds a
/// whole /64 and could otherwise take a fresh address for every connection.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// Open connections per client address.
///
/// Hand-written rather than a crate: it is one map of counters under a mutex, touched once when
/// a connection opens and once when it ends (never per request), and an entry is removed when
/// its count returns to zero, so the map only ever holds the addresses with a connection open
/// (at most `max_connections` of them).
#[derive(Debug)]
pub struct ConnectionsPerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address; dropping it gives the slot back.
#[derive(Debug)]
pub struct IpConnection {
    counts: Arc<ConnectionsPerIp>,
    key: IpAddr,
}

impl ConnectionsPerIp {
    pub fn new(limit: usize) -> Arc<ConnectionsPerIp> {
        Arc::new(ConnectionsPerIp {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`, or None when its address already holds `limit`.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<IpConnection> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpConnection {
            counts: Arc::clone(self),
            key,
        })
    }

    /// Connections open from `ip`'s address.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses with a connection open.
    pub fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for IpConnection {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves `router` until `stop` is cancelled, then lets open connections finish their
/// current request (up to `drain` long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    drain: Duration,
) {
    let router = router.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        panic_response,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = ConnectionsPerIp::new(limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over its address's share: closed before a byte of HTTP is read, and the global slot
        // (`permit`) goes back with it.
        let Some(ip_connection) = per_ip.try_open(peer.ip()) else {
            tracing::debug!(%peer, "closed a connection: its address holds max_connections_per_ip");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&router, request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log_connection_error(peer, &e);
            }
            drop(ip_connection);
            drop(permit);
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    if error.is_timeout() {
        tracing::debug!(%peer, "closed a connection that sent its request head too slowly");
    } else {
        tracing::debug!(%peer, error = %error, "connection ended with an error");
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    HttpError::internal("a request handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_closing_gives_slots_back() {
        let counts = ConnectionsPerIp::new(2);
        let first = counts.try_open(ip("127.0.0.2"));
        let second = counts.try_open(ip("127.0.0.2"));
        assert!(first.is_some() && second.is_some());
        assert!(counts.try_open(ip("127.0.0.2")).is_none(), "a third one");
        // Another address is not affected.
        let other = counts.try_open(ip("127.0.0.1"));
        assert!(other.is_some());
        assert_eq!(counts.open_from(ip("127.0.0.2")), 2);

        drop(first);
        assert_eq!(counts.open_from(ip("127.0.0.2")), 1);
        let again = counts.try_open(ip("127.0.0.2"));
        assert!(again.is_some());

        // Entries go away with their last connection: the map stays as small as what is open.
        drop((second, again, other));
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let counts = ConnectionsPerIp::new(1);
        let held = counts.try_open(ip("2001:db8:1:2::1"));
        assert!(held.is_some());
        assert!(counts.try_open(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(counts.try_open(ip("2001:db8:1:3::1")).is_some());
        // An IPv4 client seen through a dual-stack socket is the IPv4 address.
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }
}
