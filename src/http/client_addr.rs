//! Which address a request comes from: the TCP peer, or — when the peer is a
//! proxy named by `--trusted-proxies` — the nearest untrusted hop of
//! `X-Forwarded-For`. Clients cannot spoof it: the header is ignored unless a
//! trusted proxy sent it, and only the hops trusted proxies added are believed.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::AppState;
use crate::credentials::Scheme;

/// The client's address; `None` only when the server was not told its peers.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(ClientAddr(peer.map(|peer| {
            client_address(peer, &parts.headers, &app.trusted_proxies)
        })))
    }
}

/// Labels every request with its [`Scheme`] (a request extension), for the
/// same-origin rule of forms and of cookie-authenticated sockets, and for
/// cookies' `Secure` flag. Must wrap the Socket.IO layer too.
pub async fn label_scheme(
    axum::extract::State(trusted): axum::extract::State<Arc<[IpNet]>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let scheme = Scheme::of(peer, request.headers(), &trusted);
    request.extensions_mut().insert(scheme);
    next.run(request).await
}

/// Walks `X-Forwarded-For` from the nearest hop back while the hops are
/// trusted proxies; the first untrusted one is the client. An unreadable entry
/// stops the walk at the last proxy known.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Several headers read as one list, in order: the last entry is the nearest hop.
    for header in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(list) = header.to_str() else {
            return client;
        };
        for hop in list.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_trusted;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_unless_a_trusted_proxy_sent_it() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &[]),
            ip("198.51.100.1")
        );
        let trusted = [parse_trusted("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn only_hops_added_by_trusted_proxies_are_believed() {
        let trusted = [
            parse_trusted("10.0.0.1").unwrap(),
            parse_trusted("10.0.0.2").unwrap(),
        ];
        // The client wrote "1.1.1.1" itself; 203.0.113.9 is what our first proxy saw.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "10.0.0.1"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &headers, &trusted),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last proxy known.
        let headers = forwarded(&["nonsense, 10.0.0.1"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &headers, &trusted),
            ip("10.0.0.1")
        );
        // Mapped IPv4 peers match IPv4 networks.
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }
}
