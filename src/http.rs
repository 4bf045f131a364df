//! The worker's HTTP side: liveness, readiness, Prometheus metrics, ATRIP's webhook, and the
//! operator console when it is enabled.

use std::sync::Arc;

use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::jobs::JobStore;

#[derive(Clone)]
struct Ctx {
    store: JobStore,
    webhook_secret: Arc<SecretString>,
}

/// The routes, for `run` and for tests.
pub fn router(store: JobStore, webhook_secret: SecretString) -> Router {
    router_with_console(store, webhook_secret, None)
}

/// The routes plus the operator console's under `/console`, when given one.
pub fn router_with_console(
    store: JobStore,
    webhook_secret: SecretString,
    console: Option<crate::console::Console>,
) -> Router {
    let _ = crate::metrics::global().pool.set(store.pool().clone());
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/atrip", post(webhook))
        .with_state(Ctx {
            store,
            webhook_secret: Arc::new(webhook_secret),
        });
    match console {
        Some(console) => base.merge(console.routes()),
        None => base,
    }
}

/// Binds `http.host:http.port` and serves until `shutdown`.
pub async fn serve(
    settings: &Settings,
    store: JobStore,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = format!("{}:{}", settings.http.host, settings.http.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http.host/http.port): {e}"))?;
    info!(addr = %listener.local_addr()?, "HTTP endpoints listening");
    let console = if settings.console.enabled {
        let console = crate::console::Console::new(&settings.console, console_store(settings)?)?;
        info!("operator console at /console");
        Some(console)
    } else {
        None
    };
    let app = router_with_console(store, settings.http.webhook_secret.clone(), console);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP server stopped");
        }
    }))
}

/// The console's own small pool, so that pages never take a connection a worker's claim is
/// waiting for; its statements give up after a few seconds rather than pile up.
fn console_store(settings: &Settings) -> anyhow::Result<JobStore> {
    use sqlx::postgres::PgPoolOptions;
    let options = settings.database.connect_options()?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with(options.options([("statement_timeout", "5s")]));
    Ok(JobStore::new(pool))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to work: the database answers and every migration is applied.
async fn readyz(AxumState(ctx): AxumState<Ctx>) -> Response {
    match ctx.store.migrations_applied().await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: migrations not applied\n",
        )
            .into_response(),
        // A database that answers but was never migrated has no migration table at all.
        Err(crate::jobs::Error::Database(sqlx::Error::Database(e)))
            if e.code().as_deref() == Some(UNDEFINED_TABLE) =>
        {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: migrations not applied (the database was never migrated)\n",
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: database unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// PostgreSQL's SQLSTATE for "relation does not exist".
const UNDEFINED_TABLE: &str = "42P01";

async fn metrics(AxumState(ctx): AxumState<Ctx>) -> Response {
    let (states, oldest) =
        match tokio::try_join!(ctx.store.count_by_state(), ctx.store.oldest_due_age()) {
            Ok(figures) => figures,
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("database unreachable: {e}\n"),
                )
                    .into_response()
            }
        };
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::global().render(&states, oldest),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct WebhookQuery {
    secret: Option<String>,
}

/// Compares the SHA-256 digests of the two secrets in constant time: the time taken tells
/// neither how much of a guess was right nor how long the secret is.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.ct_eq(&b).into()
}

/// ATRIP's webhook. ATRIP signs nothing, so the URL carries a shared secret (`?secret=`, or
/// the `x-webhook-secret` header). A webhook only makes its order due now and wakes a worker;
/// the order query decides everything.
async fn webhook(
    AxumState(ctx): AxumState<Ctx>,
    Query(q): Query<WebhookQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let expected = ctx.webhook_secret.expose_secret();
    if expected.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "webhook disabled (http.webhook_secret is empty)\n",
        )
            .into_response();
    }
    let given = headers
        .get("x-webhook-secret")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.secret)
        .unwrap_or_default();
    if !same_secret(&given, expected) {
        warn!("webhook refused: wrong or missing secret");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON\n").into_response();
    };
    let order_no = payload["data"]["orderNo"]
        .as_str()
        .or_else(|| payload["orderNo"].as_str())
        .filter(|o| crate::domain::OrderNo::parse(o).is_ok());
    let Some(order_no) = order_no else {
        return (StatusCode::BAD_REQUEST, "no valid data.orderNo\n").into_response();
    };
    let detail = json!({
        "type": payload["type"].as_str().map(|t| crate::domain::truncate(t, 40)),
        // An integer in webhooks, a string in order queries: ATRIP's advice is to accept both.
        "orderStatus": order_status(&payload["data"]["orderStatus"]),
    });
    match ctx.store.wake(order_no, &detail).await {
        Ok(true) => {
            info!(order_no, "webhook: order due for a query now");
            (StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response()
        }
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"accepted": false, "reason": "no order followed with that number"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// A webhook's `orderStatus`, as an integer whether it came as one or as a numeric string.
fn order_status(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
