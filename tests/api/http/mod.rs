//! The worker's HTTP side, served for real on a local port: liveness, readiness, Prometheus
//! metrics that follow the table, and ATRIP's webhook, which only ever makes an order due.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::support::app::{wait_until, TestApp};
use crate::support::db::TestDb;
use ticketing_tracker::jobs::JobStore;

const SECRET: &str = "s3cret-webhook-token";

/// Serves the router for `store` on 127.0.0.1 at a free port; returns its base URL. The
/// server lives as long as the test's runtime.
async fn serve(store: JobStore, secret: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ticketing_tracker::http::router(store, SecretString::from(secret));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The router on this test's database, with [`SECRET`].
async fn serve_app(app: &TestApp) -> String {
    serve(app.store.clone(), SECRET).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition strictly enough to catch what a scraper would reject: every
/// sample line is `name{labels} value` with a float value; a family's `# TYPE` comes once and
/// before its samples, which are contiguous; histogram buckets are cumulative and end with
/// `+Inf` equal to `_count`. Panics naming the offending line.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let parts: Vec<&str> = comment.split_whitespace().collect();
            if parts.first() == Some(&"TYPE") {
                assert_eq!(parts.len(), 3, "bad TYPE line: {line}");
                let (family, kind) = (parts[1], parts[2]);
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "unknown type: {line}"
                );
                assert!(
                    types.insert(family.to_owned(), kind.to_owned()).is_none(),
                    "second TYPE for {family}: {line}"
                );
                assert!(
                    !samples
                        .iter()
                        .any(|s: &Sample| family_of(&s.name, &types) == family),
                    "TYPE after samples of {family}: {line}"
                );
            } else {
                assert!(parts.first() == Some(&"HELP"), "unknown comment: {line}");
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "empty line in the exposition");
        let sample = parse_sample(line);
        assert!(valid_name(&sample.name), "bad metric name in {line:?}");
        let family = family_of(&sample.name, &types);
        assert!(
            types.contains_key(&family),
            "sample before (or without) its family's TYPE: {line}"
        );
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !finished_families.contains(&family),
                "samples of {family} are not contiguous: {line}"
            );
            if let Some(previous) = current.replace(family.clone()) {
                finished_families.push(previous);
            }
        }
        samples.push(sample);
    }
    check_histograms(&samples, &types);
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its name, or for histograms the name without the suffix.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

fn parse_sample(line: &str) -> Sample {
    let (head, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("value is not a float in {line:?}")),
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
            (name, parse_labels(body, line))
        }
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(valid_name(key), "bad label name {key:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('"' | '\\'))) => value.push(c),
                    _ => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "label {key} twice in {line:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// A sample's labels, by name.
type Labels = BTreeMap<String, String>;

fn check_histograms(samples: &[Sample], types: &BTreeMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        // Group the buckets by their labels other than `le`.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s.labels.get("le").expect("a bucket without le");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a float")
            };
            let mut key = s.labels.clone();
            key.remove("le");
            series.entry(key).or_default().push((bound, s.value));
        }
        assert!(!series.is_empty(), "histogram {family} has no buckets");
        for (labels, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{labels:?}: buckets not increasing and cumulative: {buckets:?}"
            );
            let (last_bound, last) = *buckets.last().unwrap();
            assert_eq!(last_bound, f64::INFINITY, "{family}{labels:?} lacks +Inf");
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .unwrap_or_else(|| panic!("{family}{labels:?} has no _count"));
            assert_eq!(
                count.value, last,
                "{family}{labels:?}: +Inf bucket != _count"
            );
        }
    }
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

async fn scrape(base: &str) -> Vec<Sample> {
    let resp = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&resp.text().await.unwrap())
}

#[test]
fn the_prometheus_parser_refuses_what_a_scraper_would() {
    let good = "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 2\na{x=\"q\\\"\"} 3.5\n";
    let parsed = parse_prometheus(good);
    assert_eq!(parsed[1].labels["x"], "q\"");
    for bad in [
        "a 1\n",                                           // no TYPE
        "# TYPE a gauge\na one\n",                         // not a float
        "# TYPE a gauge\na{x=\"1\" 1\n",                   // unclosed labels
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n", // not contiguous
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        let refused = std::panic::catch_unwind(|| parse_prometheus(bad)).is_err();
        assert!(refused, "accepted: {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Liveness and readiness

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new().await;
    let base = serve_app(&app).await;
    let resp = http().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn readyz_is_ready_only_while_the_database_answers_and_is_fully_migrated() {
    let app = TestApp::new().await;
    let base = serve_app(&app).await;
    let resp = http().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // One migration forgotten: not ready.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let resp = http().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("migrations"));

    // Never migrated at all: not ready either, and not reported as unreachable.
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(app.pool())
        .await
        .unwrap();
    let resp = http().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("migrations not applied"), "{body}");
}

#[tokio::test]
async fn readyz_and_metrics_answer_503_when_the_database_is_gone() {
    // A database that was dropped, and a port where nothing listens.
    let dropped = {
        let db = TestDb::new().await;
        db.url()
    };
    let nothing = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    };
    let mut bases = Vec::new();
    for url in [&dropped, &nothing] {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(url)
            .unwrap();
        bases.push(serve(JobStore::new(pool), SECRET).await);
    }
    let client = http();
    let checks = bases.iter().flat_map(|base| {
        ["readyz", "metrics", "healthz"].map(|path| {
            let client = client.clone();
            let url = format!("{base}/{path}");
            async move {
                let resp = client.get(&url).send().await.unwrap();
                let status = resp.status().as_u16();
                (url, status, resp.text().await.unwrap())
            }
        })
    });
    // The answer is generic: the database's name, host and the driver's words stay in the log.
    let name = dropped
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    for (url, status, body) in futures_util::future::join_all(checks).await {
        let expected = if url.ends_with("/healthz") { 200 } else { 503 };
        assert_eq!(status, expected, "{url}");
        if expected == 503 {
            assert!(body.contains("database unavailable"), "{url}: {body}");
            for leak in [name, "does not exist", "127.0.0.1", "error", "postgres"] {
                assert!(!body.contains(leak), "{url} shows {leak:?}: {body}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn metrics_are_prometheus_text_that_follows_the_orders() {
    let app = TestApp::new().await;
    let base = serve_app(&app).await;
    let before = scrape(&base).await;
    for state in [
        "pending",
        "paying",
        "ticketing",
        "ticketed",
        "failed",
        "needs_review",
        "cancelled",
    ] {
        assert_eq!(
            value(&before, "ticketing_jobs", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    let accepted_before = value(
        &before,
        "ticketing_pay_outcomes_total",
        &[("class", "accepted")],
    );
    let pay_calls_before = value(
        &before,
        "ticketing_atrip_request_seconds_count",
        &[("endpoint", "pay.do")],
    );

    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(app.order_and_enqueue(1, None, json!({})).await);
    }
    let queued = scrape(&base).await;
    assert_eq!(
        value(&queued, "ticketing_jobs", &[("state", "pending")]),
        3.0
    );
    assert_eq!(
        value(&queued, "ticketing_jobs", &[("state", "ticketed")]),
        0.0
    );
    assert!(value(&queued, "ticketing_oldest_due_seconds", &[]) >= 0.0);

    app.settle(&app.worker(), 200).await;
    let done = scrape(&base).await;
    assert_eq!(
        value(&done, "ticketing_jobs", &[("state", "ticketed")]),
        3.0
    );
    assert_eq!(value(&done, "ticketing_jobs", &[("state", "pending")]), 0.0);
    assert_eq!(value(&done, "ticketing_oldest_due_seconds", &[]), 0.0);
    // Process-wide counters: other tests pay too, so at least our three.
    assert!(
        value(
            &done,
            "ticketing_pay_outcomes_total",
            &[("class", "accepted")]
        ) - accepted_before
            >= 3.0
    );
    assert!(
        value(
            &done,
            "ticketing_atrip_request_seconds_count",
            &[("endpoint", "pay.do")]
        ) - pay_calls_before
            >= 3.0
    );
}

// ---------------------------------------------------------------------------------------------
// The webhook

/// A paid order the worker follows, due only in an hour: only a webhook makes it due sooner.
/// The simulator tickets it `ticketing_delay_ms` after the payment.
async fn ticketing_order(app: &TestApp, ticketing_delay_ms: u64) -> String {
    let order = app.create_order(json!({})).await;
    app.scenario(&order, json!({ "ticketing_delay_ms": ticketing_delay_ms }))
        .await;
    app.enqueue(&order, 1, None).await;
    let report = app.worker().step().await.unwrap();
    assert_eq!(report.claimed, 1, "{report:?}");
    let row = app.job(&order).await;
    assert_eq!(row.state, "ticketing", "{:?}", row.last_error);
    sqlx::query("UPDATE ticketing_jobs SET run_at = now() + interval '1 hour' WHERE order_no = $1")
        .bind(&order)
        .execute(app.pool())
        .await
        .unwrap();
    order
}

fn webhook_body(order: &str) -> Value {
    json!({"cid": "x", "type": "order.ticketed", "status": -1,
           "data": {"orderNo": order, "orderStatus": 2}})
}

async fn post_webhook(
    base: &str,
    secret: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = http()
        .post(format!("{base}/webhooks/atrip"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        req = req.header("x-webhook-secret", secret);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn queries(app: &TestApp, order: &str) -> i64 {
    app.ledger(order)["queries"].as_i64().unwrap_or(0)
}

/// Waits until some backend of this test's database is LISTENing (the worker's listener).
async fn wait_for_listener(app: &TestApp) {
    wait_until(Duration::from_secs(5), "the worker's LISTEN", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(app.pool())
        .await
        .unwrap()
            > 0
    })
    .await;
}

#[tokio::test]
async fn an_authenticated_webhook_wakes_a_sleeping_worker_and_each_delivery_causes_one_query() {
    let app = TestApp::new().await;
    let order = ticketing_order(&app, 600_000).await;
    let base = serve_app(&app).await;
    // A worker that, without a NOTIFY, would not look at the table for a minute.
    let mut settings = app.settings.clone();
    settings.worker.claim_interval_ms = 60_000;
    let worker = app.worker_with(&settings, "sleepy-worker");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    wait_for_listener(&app).await;

    for delivery in 1..=3 {
        let before = queries(&app, &order);
        let polls_before = app.job(&order).await.poll_attempts;
        let sent = Instant::now();
        // Distinct deliveries (a replay of one would change nothing: rule W3).
        let mut body = webhook_body(&order);
        body["notificationId"] = json!(format!("N{delivery}"));
        let (status, body) = post_webhook(&base, Some(SECRET), body.to_string()).await;
        assert_eq!(status, 202, "delivery {delivery}: {body}");
        wait_until(
            Duration::from_millis(1500),
            "the order query a webhook asks for",
            || async { queries(&app, &order) > before },
        )
        .await;
        // The step records its answer and lets go of the row before the next delivery.
        wait_until(
            Duration::from_secs(2),
            "the poll to be recorded",
            || async {
                let row = app.job(&order).await;
                row.poll_attempts > polls_before && row.lease_owner.is_none()
            },
        )
        .await;
        assert_eq!(
            queries(&app, &order),
            before + 1,
            "delivery {delivery} caused one query, {:?} after it was sent",
            sent.elapsed()
        );
    }
    let row = app.job(&order).await;
    assert_eq!(row.state, "ticketing");
    assert_eq!(app.pay_requests(&order), 1);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_webhook_only_makes_the_order_due_and_the_order_query_alone_changes_its_state() {
    let app = TestApp::new().await;
    let order = ticketing_order(&app, 200).await;
    let base = serve_app(&app).await;
    let before = app.job(&order).await;
    let events_before = app.store.events(&order).await.unwrap().len();
    let queried = queries(&app, &order);

    // "Ticketed", says the webhook, with the secret in the URL this time.
    let resp = http()
        .post(format!("{base}/webhooks/atrip?secret={SECRET}"))
        .json(&webhook_body(&order))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let row = app.job(&order).await;
    assert_eq!(row.state, "ticketing", "a webhook never changes a state");
    assert!(row.ticket_numbers.is_none() && row.pnr.is_none());
    assert!(row.run_at < before.run_at && row.run_at <= app.db_now().await);
    let events = app.store.events(&order).await.unwrap();
    assert_eq!(events.len(), events_before + 1);
    let received = events.last().unwrap();
    assert_eq!(received.kind, "webhook_received");
    assert_eq!(received.state, before.state);
    assert_eq!(received.detail["type"], "order.ticketed");
    assert_eq!(received.detail["orderStatus"], 2);
    assert_eq!(
        queries(&app, &order),
        queried,
        "the webhook itself queries nothing"
    );

    // ATRIP sends orderStatus as an integer in webhooks but as a string in queries: both are
    // understood, so the same report as a string is the same delivery (rule W3: its identity
    // is what it reports), and another status as a string is a new one.
    let mut as_string = webhook_body(&order);
    as_string["data"]["orderStatus"] = json!("2");
    let (status, text) = post_webhook(&base, Some(SECRET), as_string.to_string()).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("duplicate"), "{text}");
    assert_eq!(
        app.store.events(&order).await.unwrap().len(),
        events_before + 1
    );
    as_string["data"]["orderStatus"] = json!("1");
    let (status, text) = post_webhook(&base, Some(SECRET), as_string.to_string()).await;
    assert_eq!(status, 202, "{text}");
    let events = app.store.events(&order).await.unwrap();
    assert_eq!(events.len(), events_before + 2);
    assert_eq!(events.last().unwrap().detail["orderStatus"], 1);
    assert_eq!(app.job(&order).await.state, "ticketing");

    // The worker's next step is a query; it alone moves the order on.
    app.settle(&app.worker(), 200).await;
    assert!(queries(&app, &order) > queried);
    let events = app.store.events(&order).await.unwrap();
    let mut state = before.state.clone();
    for e in &events[events_before..] {
        if e.state != state {
            assert_eq!(
                e.kind, "query_answered",
                "the state changed to {} by a {} event",
                e.state, e.kind
            );
            state = e.state.clone();
        }
    }
    assert_eq!(state, "ticketed");
}

#[tokio::test]
async fn a_webhook_without_the_right_secret_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let order = ticketing_order(&app, 600_000).await;
    let base = serve_app(&app).await;
    let before = app.job(&order).await;
    let events_before = app.store.events(&order).await.unwrap().len();
    let queries_before = queries(&app, &order);
    let body = webhook_body(&order).to_string();

    let wrong = [
        post_webhook(&base, Some("wrong"), body.clone()).await,
        post_webhook(&base, Some(&format!("{SECRET}x")), body.clone()).await,
        post_webhook(&base, Some(""), body.clone()).await,
        post_webhook(&base, None, body.clone()).await,
    ];
    let in_url = http()
        .post(format!("{base}/webhooks/atrip?secret=wrong"))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    for (status, text) in wrong {
        assert_eq!(status, 401, "{text}");
    }
    assert_eq!(in_url, 401);

    let after = app.job(&order).await;
    assert_eq!(after.run_at, before.run_at);
    assert_eq!(after.updated_at, before.updated_at);
    let events = app.store.events(&order).await.unwrap();
    assert_eq!(events.len(), events_before, "{:?}", events.last());
    assert!(!events.iter().any(|e| e.kind == "webhook_received"));
    assert_eq!(queries(&app, &order), queries_before);
    // Nothing was made due: a worker finds no work.
    let report = app.worker().step().await.unwrap();
    assert_eq!(report.claimed, 0, "{report:?}");
}

#[tokio::test]
async fn w3_a_replayed_delivery_adds_no_event_and_makes_nothing_due_again() {
    let app = TestApp::new().await;
    let order = ticketing_order(&app, 600_000).await;
    let base = serve_app(&app).await;
    let events_before = app.store.events(&order).await.unwrap().len();
    let body = webhook_body(&order).to_string();
    let (status, text) = post_webhook(&base, Some(SECRET), body.clone()).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("woken"), "{text}");
    // The worker asks once; the row is then due at its next poll, in the future.
    let report = app.worker().step().await.unwrap();
    assert_eq!(report.claimed, 1, "{report:?}");
    let after_query = app.job(&order).await;
    for _ in 0..3 {
        let (status, text) = post_webhook(&base, Some(SECRET), body.clone()).await;
        assert_eq!(status, 202, "{text}");
        assert!(text.contains("duplicate"), "{text}");
    }
    assert_eq!(
        app.job(&order).await.run_at,
        after_query.run_at,
        "a replay wakes nothing"
    );
    let events = app.store.events(&order).await.unwrap();
    let received = events
        .iter()
        .filter(|e| e.kind == "webhook_received")
        .count();
    assert_eq!(received, 1, "{events:?}");
    assert!(events.len() > events_before);
}

#[tokio::test]
async fn the_webhook_is_disabled_when_no_secret_is_configured() {
    let app = TestApp::new().await;
    let order = ticketing_order(&app, 600_000).await;
    let base = serve(app.store.clone(), "").await;
    let before = app.job(&order).await;
    for secret in [None, Some(""), Some(SECRET)] {
        let (status, text) = post_webhook(&base, secret, webhook_body(&order).to_string()).await;
        assert_eq!(status, 404, "{secret:?}: {text}");
    }
    assert_eq!(app.job(&order).await.run_at, before.run_at);
}

mod limits;
