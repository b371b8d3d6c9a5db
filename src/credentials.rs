//! What a request carries to say who it is and where it comes from, read the
//! same way by the HTTP side and the Socket.IO handshake: the session cookie,
//! a bearer token, the scheme the client used, and the same-origin rule that
//! stands in for CSRF tokens (a state-changing request, or a
//! cookie-authenticated socket, must come from our own pages).

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, REFERER};
use axum_extra::extract::cookie::{Cookie, SameSite};
use ipnet::IpNet;

/// How the client reached us: we serve plain HTTP ourselves, so `https` only
/// when a trusted proxy says so (the first `X-Forwarded-Proto` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The scheme of a request whose TCP peer is `peer`.
    pub fn of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Scheme {
        let from_proxy =
            peer.is_some_and(|p| trusted.iter().any(|net| net.contains(&p.to_canonical())));
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        match forwarded {
            Some(proto) if from_proxy && proto.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => Scheme::Http,
        }
    }
}

pub const SESSION_COOKIE: &str = "natter_session";

/// The value of one cookie in a request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The token a request carries: the bearer header wins over the cookie.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    bearer_token(headers)
        .map(str::to_owned)
        .or_else(|| cookie_value(headers, SESSION_COOKIE))
}

/// True unless the request says it comes from another origin: `Origin` (or,
/// without it, `Referer`) must name our scheme, host and port.
///
/// Browsers send `Origin` on every cross-origin request (and on WebSocket
/// handshakes); a request without `Origin` or `Referer` is not a browser acting
/// for another site. `Origin: null` (sandboxed frames, privacy redirects) is refused.
/// `scheme` is how the client reached us (see [`Scheme`]); absent, plain http.
pub fn same_origin(headers: &HeaderMap, scheme: Option<&Scheme>) -> bool {
    let Some(source) = headers.get(ORIGIN).or_else(|| headers.get(REFERER)) else {
        return true;
    };
    let (Some(host), Ok(source)) = (headers.get(HOST), source.to_str()) else {
        return false;
    };
    let scheme = scheme.copied().unwrap_or(Scheme::Http);
    let (Ok(host), Ok(source)) = (host.to_str(), url::Url::parse(source)) else {
        return false;
    };
    let Ok(ours) = url::Url::parse(&format!("{}://{host}/", scheme.as_str())) else {
        return false;
    };
    source.scheme() == ours.scheme()
        && source.host_str().is_some()
        && source.host_str() == ours.host_str()
        && source.port_or_known_default() == ours.port_or_known_default()
}

/// The session cookie: not readable by scripts, not sent on cross-site
/// requests, `Secure` when the client came over https (or `force_secure`).
pub fn session_cookie(
    token: String,
    scheme: Option<&Scheme>,
    force_secure: bool,
) -> Cookie<'static> {
    private_cookie(SESSION_COOKIE, token, "/", scheme, force_secure)
}

/// A cookie of ours (the session, a page's one-time notice): no script reads
/// it, other sites' requests do not carry it, and over https (or with
/// `--secure-cookies`) it never travels in clear.
pub fn private_cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    scheme: Option<&Scheme>,
    force_secure: bool,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(force_secure || scheme == Some(&Scheme::Https))
        .build()
}
