//! One HTTP request, in its text form, through the real router (pages, JSON
//! API, assets, the same-origin and body-limit layers) in-process: the real
//! extractors decode paths, query strings, form and JSON bodies.
//!
//! Input: a request line `METHOD TARGET`, header lines `Name: value`, an
//! empty line, the body (see the placeholders in the harness).
//!
//! Invariants: nothing panics; no 500; an error under `/api/v1/` is the contract's
//! `{"error": {"code"}}` with a known code (but for HEAD, whose answers have no
//! body); every response carries the security headers.

#![no_main]

use axum::body::Body;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use natter_fuzz::{MAX_BODY_BYTES, contract_code, run};
use tower::ServiceExt as _;

fuzz_target!(|input: &[u8]| {
    run(|world| async move {
        let input = world.expand(input);
        let (head, body) = match input.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&input[..at], input[at + 2..].to_vec()),
            None => (&input[..], Vec::new()),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.splitn(2, |&b| b == b' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or(b"/");
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "natter.test");
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let value = line[colon + 1..].trim_ascii_start();
            request = request.header(&line[..colon], value);
        }
        // Requests a client could not send (bad method, URI or header) never reach us.
        let Ok(request) = request.body(Body::from(body)) else {
            return;
        };
        // A HEAD response has no body by definition (axum drops it).
        let api = request.uri().path().starts_with("/api/v1/")
            && request.method() != axum::http::Method::HEAD;
        let response = world
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        assert_ne!(status.as_u16(), 500, "internal error");
        for name in [
            header::CONTENT_SECURITY_POLICY,
            header::X_CONTENT_TYPE_OPTIONS,
            header::X_FRAME_OPTIONS,
        ] {
            assert!(response.headers().contains_key(&name), "no {name}");
        }
        if api && (status.is_client_error() || status.is_server_error()) {
            let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY_BYTES)
                .await
                .expect("body");
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{status}: not JSON: {bytes:?}"));
            let code = json["error"]["code"].as_str().unwrap_or_default();
            assert!(contract_code(code), "{status}: {json}");
        }
    });
});
