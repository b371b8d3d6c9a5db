//! `/readyz`: whether this node can serve — its database answers and, in a
//! cluster, Redis too. (`/healthz` only says that the process runs.)

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;

/// A dependency that takes longer than this to answer counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 `{"ready": true, "checks": {"database": "ok", ...}}`, or 503 with
/// `"failed"` against each dependency that did not answer.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let database = probe("database", app.natter.ping());
    let redis = async {
        if app.redis {
            Some(probe("redis", app.fanout.check()).await)
        } else {
            None
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let mut checks = Map::new();
    let mut ready = true;
    for (name, ok) in [("database", Some(database)), ("redis", redis)] {
        if let Some(ok) = ok {
            ready &= ok;
            checks.insert(name.into(), Value::from(if ok { "ok" } else { "failed" }));
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

/// Whether `check` succeeds in time; the reason it did not goes to the log only.
async fn probe<E: std::fmt::Display>(
    name: &str,
    check: impl Future<Output = Result<(), E>>,
) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "not ready");
            false
        }
        Err(_) => {
            tracing::warn!(check = name, "not ready: no answer in time");
            false
        }
    }
}
