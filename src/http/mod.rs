//! The worker's HTTP side: liveness, readiness, Prometheus metrics, ATRIP's webhook, and the
//! operator console when it is enabled.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::jobs::{JobStore, Recorded};

pub mod scrape;
mod server;
pub use server::{serve_on, Limits};

#[derive(Clone)]
struct Ctx {
    store: JobStore,
    webhook_secret: Arc<SecretString>,
    /// A production worker's `card.allow_plain`: `/readyz` looks at the plain-card guard
    /// (rule P9a). `None` elsewhere.
    card_guard: Option<bool>,
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
    routes(store, webhook_secret, console, None)
}

fn routes(
    store: JobStore,
    webhook_secret: SecretString,
    console: Option<crate::console::Console>,
    card_guard: Option<bool>,
) -> Router {
    let _ = crate::metrics::global().pool.set(store.pool().clone());
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/webhooks/atrip",
            post(webhook).layer(DefaultBodyLimit::max(crate::webhook::MAX_BODY_BYTES)),
        )
        .with_state(Ctx {
            store,
            webhook_secret: Arc::new(webhook_secret),
            card_guard,
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
        let console = crate::console::Console::new(
            &settings.console,
            console_store(settings, store.db().is_pooled())?,
        )?;
        Some(console)
    } else {
        None
    };
    let limits = Limits::from_settings(&settings.http);
    // The console on a listener of its own (an internal address): the HTTP port, which ATRIP's
    // webhook makes reachable from the internet, then serves no console at all.
    let own = settings.console.listen.trim();
    let (console, apart) = match console {
        Some(console) if !own.is_empty() => {
            let listener = tokio::net::TcpListener::bind(own)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {own} (console.listen): {e}"))?;
            info!(addr = %listener.local_addr()?, "operator console listening at /console (console.listen); not on the HTTP port");
            let served = serve_on(listener, console.routes(), limits, shutdown.clone());
            (None, Some(served))
        }
        Some(console) => {
            info!("operator console at /console");
            (Some(console), None)
        }
        None => (None, None),
    };
    let card_guard = settings.production.then_some(settings.card.allow_plain);
    let app = routes(
        store,
        settings.http.webhook_secret.clone(),
        console,
        card_guard,
    );
    Ok(tokio::spawn(async move {
        let main = serve_on(listener, app, limits, shutdown);
        match apart {
            Some(apart) => {
                tokio::join!(main, apart);
            }
            None => main.await,
        }
    }))
}

/// The console's own small pool, so that pages never take a connection a worker's claim is
/// waiting for; its statements give up after a few seconds rather than pile up.
fn console_store(settings: &Settings, pooled: bool) -> anyhow::Result<JobStore> {
    use sqlx::postgres::PgPoolOptions;
    let mut database = settings.database.clone();
    database.statement_timeout_ms = 5000;
    let options = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10));
    if pooled {
        // Through a transaction pooler: set in each statement's transaction, not at startup.
        let pool = crate::surroundings::checked_pool(options, database.url_options()?, Vec::new());
        return Ok(JobStore::new(crate::surroundings::pooled_db(
            pool, &database,
        )));
    }
    let pool = crate::surroundings::checked_pool(
        options,
        database.connect_options()?,
        database.session_pins(),
    );
    Ok(JobStore::new(pool))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to work: the database answers and takes writes, the plain-card guard is in force
/// (production), claims succeed, and every migration is applied.
async fn readyz(AxumState(ctx): AxumState<Ctx>) -> Response {
    let m = crate::metrics::global();
    let not_ready = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response()
    };
    // Quickly, as a probe expects: a pool whose new connections are all refused would
    // otherwise wait for its acquire timeout; the refusal's reason is the answer then.
    let read_only = tokio::time::timeout(READY_WAIT, ctx.store.read_only()).await;
    match read_only {
        Ok(Ok(Some(why))) => {
            m.database_writable(false);
            return not_ready(why);
        }
        Ok(Ok(None)) => m.database_writable(true),
        _ => {
            if let Some(why) = m.database_refusal() {
                return not_ready(why);
            }
            if read_only.is_err() {
                return not_ready(format!(
                    "database unavailable (no answer within {} ms)",
                    READY_WAIT.as_millis()
                ));
            }
        }
    }
    if let Some(allow_plain) = ctx.card_guard {
        let guard = crate::surroundings::recheck_card_guard(&ctx.store, allow_plain);
        if let Ok(Err(why)) = tokio::time::timeout(READY_WAIT, guard).await {
            return not_ready(why);
        }
    }
    if let Some((n, why)) = m.claims_failing() {
        return not_ready(format!(
            "the last {n} claim rounds failed, the last with: {why}"
        ));
    }
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
        Err(e) => {
            // The error names the database, its host, the role: the log's, not a probe's.
            warn!(error = %e, "readyz: the database did not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                DATABASE_UNAVAILABLE_NOT_READY,
            )
                .into_response()
        }
    }
}

/// What a client reads when the database fails: the error itself (database name, host, role)
/// goes to the log only, as the port is often reachable from the internet.
const DATABASE_UNAVAILABLE: &str = "database unavailable\n";
const DATABASE_UNAVAILABLE_NOT_READY: &str = "not ready: database unavailable\n";

/// How long `/readyz` waits for the database.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long `/metrics` waits for the table's figures: within a scraper's timeout (Prometheus'
/// default is 10 s), with room for the writability check before it.
const METRICS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// PostgreSQL's SQLSTATE for "relation does not exist".
const UNDEFINED_TABLE: &str = "42P01";

async fn metrics(AxumState(ctx): AxumState<Ctx>) -> Response {
    let m = crate::metrics::global();
    let process_only = || {
        (
            [("content-type", "text/plain; version=0.0.4")],
            scrape::render(None),
        )
            .into_response()
    };
    if let Ok(Ok(read_only)) = tokio::time::timeout(READY_WAIT, ctx.store.read_only()).await {
        m.database_writable(read_only.is_none());
    }
    // Every read of the table within one deadline, shorter than a scraper's own (Prometheus
    // gives up after 10 s by default): a database that does not answer is said to be
    // unavailable in time, not by a scrape that timed out. When the database refuses new
    // connections for a reason the worker knows (it takes no writes, a session setting is
    // not in force), the reads that find no open connection would wait for the pool's
    // acquire timeout: the wait is `/readyz`'s then, and the process's figures, which say
    // why, are the answer without the table's.
    let wait = if m.database_refusal().is_some() {
        READY_WAIT
    } else {
        METRICS_WAIT
    };
    let table = tokio::time::timeout(wait, async {
        // The last reconciliation's figures (rule R6), when they can be read: their absence
        // (no run yet, a role without SELECT on the runs) leaves the rest as they are.
        let reconcile = ctx.store.reconcile_figures().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "metrics: the last reconciliation could not be read");
            None
        });
        let reconcile_unfinished = match ctx.store.reconcile_unfinished(7).await {
            Ok(counts) => Some(counts),
            Err(e) => {
                tracing::debug!(error = %e, "metrics: the reconciliation's unfinished runs could not be read");
                None
            }
        };
        let figures = tokio::try_join!(
            ctx.store.count_by_state(),
            ctx.store.oldest_due_age(),
            ctx.store.pauses_in_force(),
            ctx.store.count_changed_after_ticketing()
        );
        (reconcile, reconcile_unfinished, figures)
    })
    .await;
    let (reconcile, reconcile_unfinished, (states, oldest, pauses, after_ticketing)) = match table {
        Ok((reconcile, unfinished, Ok(figures))) => (reconcile, unfinished, figures),
        // Refused meanwhile: as above.
        _ if m.database_refusal().is_some() => return process_only(),
        Ok((_, _, Err(e))) => {
            warn!(error = %e, "metrics: the table's figures could not be read");
            return (StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE).into_response();
        }
        Err(_) => {
            warn!(
                wait_ms = wait.as_millis() as u64,
                "metrics: the table's figures were not read in time"
            );
            return (StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE).into_response();
        }
    };
    (
        [("content-type", "text/plain; version=0.0.4")],
        scrape::render(Some(&scrape::Table {
            jobs_by_state: &states,
            oldest_due_s: oldest,
            pauses: &pauses,
            reconcile: reconcile.as_ref(),
            reconcile_unfinished,
            after_ticketing: &after_ticketing,
        })),
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

/// ATRIP's webhook (rules W3, W6). ATRIP signs nothing and cannot send a header of ours, so
/// the URL registered with it carries a shared secret (`?secret=`; the `x-webhook-secret`
/// header is taken too). Every authenticated delivery that is a JSON object is answered 202,
/// whatever it says: ATRIP sends every event type of the account here, and refusing one tells
/// it nothing it can act on. A delivery naming a known order is recorded once as an event of
/// that order (a replay adds nothing; past the hour's cap per order, `capped`, nothing
/// either); it makes a `ticketing` order (or a `paying` one whose permits are used) due now,
/// and marks a void or cancellation of a ticketed order for an order query to confirm. A
/// locked row is never waited for (`busy`). Nothing else: no state changes here. Garbage (not JSON, a NUL byte, not an object) is 400, an
/// oversized body 413, both before anything is written.
async fn webhook(
    AxumState(ctx): AxumState<Ctx>,
    Query(q): Query<WebhookQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let m = crate::metrics::global();
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
        m.webhook("unauthorized");
        warn!("webhook refused: wrong or missing secret");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    }
    let parsed = match crate::webhook::parse(&body) {
        Ok(parsed) => parsed,
        Err(crate::webhook::BadBody(why)) => {
            m.webhook("bad_body");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let kind = crate::webhook::type_label(parsed.kind.as_deref());
    let accepted = |outcome: &'static str| {
        m.webhook(outcome);
        (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": true, "outcome": outcome})),
        )
            .into_response()
    };
    let Some(order_no) = parsed.order_no.as_deref() else {
        info!(kind, "webhook names no order; nothing to record");
        return accepted("no_order");
    };
    let delivery = crate::jobs::Delivery {
        order_no,
        detail: &parsed.detail,
        change: parsed.change,
    };
    match ctx.store.record_webhook(&delivery).await {
        Ok(Recorded::UnknownOrder) => {
            info!(
                order_no,
                kind, "webhook for an order this worker does not have"
            );
            accepted("unknown_order")
        }
        Ok(Recorded::Duplicate { .. }) => accepted("duplicate"),
        Ok(Recorded::Capped { state }) => {
            warn!(
                order_no,
                kind,
                state,
                cap = crate::jobs::WEBHOOKS_PER_ORDER_PER_HOUR,
                "webhook not recorded: the order had its hour's deliveries already"
            );
            accepted("capped")
        }
        Ok(Recorded::Busy { recorded: true }) => {
            warn!(
                order_no,
                kind,
                "webhook found its order's row locked by another session; recorded, answered without waiting"
            );
            accepted("busy")
        }
        Ok(Recorded::Busy { recorded: false }) => {
            // Nothing could be recorded without waiting (the row is held FOR UPDATE): a 503
            // tells a sender that retries to come back, where a 2xx would lose the delivery.
            m.webhook("busy");
            warn!(
                order_no,
                kind,
                "webhook found its order's row held FOR UPDATE by another session; nothing recorded, answered 503 to be sent again"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                Json(json!({"accepted": false, "outcome": "busy"})),
            )
                .into_response()
        }
        Ok(Recorded::New {
            state,
            woken,
            marked,
        }) => {
            let outcome = if marked {
                warn!(order_no, kind, change = ?parsed.change, "webhook: a ticketed order was reported changed; an order query will confirm it");
                "marked"
            } else if woken {
                "woken"
            } else {
                "recorded"
            };
            info!(order_no, kind, state, outcome, "webhook recorded");
            accepted(outcome)
        }
        Err(e) if e.is_refused_character() => {
            // Every field is cleaned of NUL before it is recorded; should one ever slip
            // through, it is the delivery's fault, not the database's.
            m.webhook("bad_body");
            (
                StatusCode::BAD_REQUEST,
                "a field holds a character that cannot be stored (NUL)\n",
            )
                .into_response()
        }
        Err(e) => {
            m.webhook("database_error");
            warn!(order_no, error = %e, "webhook: the delivery could not be recorded");
            (StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE).into_response()
        }
    }
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
