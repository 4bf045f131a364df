//! The reconciliation with ATRIP's order list (docs/design.md, R1-R6), against a real
//! PostgreSQL and the simulator over HTTP: each kind of mismatch found and nothing else (R2),
//! rows waiting for a payment ATRIP shows settled by evidence and followed to their tickets
//! without a `pay.do` (R3), ATRIP's paging variants read whole and a hostile list ended with an
//! error (R4), the daily run claimed by one replica (R5), the figures on `/metrics`, the
//! console page and the command line (R6), and 10,000 orders (R1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atrip_simulator::{SeedOrder, Seeded, SimConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use ticketing_tracker::atrip::Client;
use ticketing_tracker::jobs::DailyClaim;
use ticketing_tracker::reconcile::{self, Bounds, Kind, Outcome};

use crate::support::app::TestApp;

/// ATRIP's creation times of the orders of these tests: one past day.
fn day() -> (DateTime<Utc>, DateTime<Utc>) {
    let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    (from, from + chrono::Duration::days(1))
}

fn number(i: usize) -> String {
    format!("TESTR{i:017}")
}

/// How a test wants one order to stand: at ATRIP, and in the job table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Atrip {
    Unpaid,
    Ticketing,
    Ticketed,
    CancelledAfterPayment,
    CancelledUnpaid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Row {
    None,
    Pending,
    Paying,
    NeedsReview,
    Ticketing,
    Ticketed,
    Failed,
    Cancelled,
}

fn seed(i: usize, atrip: Atrip) -> SeedOrder {
    let created = day().0 + chrono::Duration::seconds((i % 86_000) as i64);
    let paid_at = created + chrono::Duration::seconds(60);
    SeedOrder {
        order_no: number(i),
        created_at: created,
        state: match atrip {
            Atrip::Unpaid => Seeded::Unpaid,
            Atrip::Ticketing => Seeded::Ticketing { paid_at },
            Atrip::Ticketed => Seeded::Ticketed { paid_at },
            Atrip::CancelledAfterPayment => Seeded::CancelledAfterPayment {
                paid_at,
                error_code: "604".into(),
                error_message: "Payment declined by airline".into(),
            },
            Atrip::CancelledUnpaid => Seeded::CancelledUnpaid {
                error_code: "401".into(),
            },
        },
    }
}

/// The columns a worker leaves in each state (as the console tests park rows).
fn set_for(row: Row) -> Option<&'static str> {
    Some(match row {
        Row::None | Row::Pending => return None,
        Row::Paying => {
            "state = 'paying', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'outcome_unknown', run_at = ticketing_now() + interval '1 hour'"
        }
        Row::NeedsReview => {
            "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'outcome_unknown', order_status = '0', finalized_at = ticketing_now(),
             last_error = 'order ' || order_no || ': pay.do timed out and the order still shows unpaid; check it in ATRIP'"
        }
        Row::Ticketing => {
            "state = 'ticketing', pay_attempts = 1, pay_started_at = ticketing_now(),
             paid_at = ticketing_now(), paid_evidence = 'pay_accepted', last_pay_outcome = 'accepted',
             run_at = ticketing_now() + interval '1 hour'"
        }
        Row::Ticketed => {
            "state = 'ticketed', pay_attempts = 1, pay_started_at = ticketing_now(),
             paid_at = ticketing_now(), paid_evidence = 'pay_accepted', last_pay_outcome = 'accepted',
             ticketed_at = ticketing_now(), finalized_at = ticketing_now(), order_status = '2',
             pnr = 'S' || right(order_no, 5),
             ticket_numbers = '[{\"passenger\": \"TEST/TRAVELLER\", \"ticket_numbers\": [\"S00001\"], \"airline_pnrs\": []}]'"
        }
        Row::Failed => {
            "state = 'failed', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'refused', atrip_status = 413, finalized_at = ticketing_now(),
             last_error = 'order ' || order_no || ': ATRIP refused the payment with status 413; nothing was charged'"
        }
        Row::Cancelled => "state = 'cancelled', finalized_at = ticketing_now()",
    })
}

/// Puts these orders at ATRIP (the simulator) and their rows in the job table, in bulk.
async fn world(app: &TestApp, orders: &[(usize, Atrip, Row)]) {
    let seeds: Vec<SeedOrder> = orders.iter().map(|(i, a, _)| seed(*i, *a)).collect();
    app.sim.seed_orders(&seeds);
    let rows: Vec<String> = orders
        .iter()
        .filter(|(_, _, r)| *r != Row::None)
        .map(|(i, _, _)| number(*i))
        .collect();
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method) SELECT unnest($1::text[]), 1",
    )
    .bind(&rows)
    .execute(app.pool())
    .await
    .unwrap();
    for state in [
        Row::Paying,
        Row::NeedsReview,
        Row::Ticketing,
        Row::Ticketed,
        Row::Failed,
        Row::Cancelled,
    ] {
        let these: Vec<String> = orders
            .iter()
            .filter(|(_, _, r)| *r == state)
            .map(|(i, _, _)| number(*i))
            .collect();
        if these.is_empty() {
            continue;
        }
        sqlx::query(&format!(
            "UPDATE ticketing_jobs SET {}, updated_at = ticketing_now() WHERE order_no = ANY($1)",
            set_for(state).unwrap()
        ))
        .bind(&these)
        .execute(app.pool())
        .await
        .unwrap();
    }
}

fn bounds() -> Bounds {
    Bounds {
        page_size: 100,
        max_pages: 2000,
        first_page: 1,
        max_run: Duration::from_secs(120),
        page_tries: 3,
    }
}

/// One run over the test day, recorded like the command's.
async fn reconcile_with(app: &TestApp, atrip: &Client, bounds: &Bounds) -> Outcome {
    let (from, to) = day();
    let claim = app
        .store
        .reconcile_start_manual(from, to, "test")
        .await
        .unwrap();
    reconcile::run(&app.store, atrip, bounds, claim.id, "test", from, to).await
}

async fn reconcile_day(app: &TestApp) -> Outcome {
    reconcile_with(app, &app.atrip, &bounds()).await
}

fn pay_requests(app: &TestApp) -> usize {
    app.sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == "pay.do")
        .count()
}

/// The order numbers found, by kind.
fn found(out: &Outcome, kind: Kind) -> Vec<String> {
    let mut v: Vec<String> = out
        .findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.order_no.clone())
        .collect();
    v.sort();
    v
}

fn numbers(is: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = is.iter().map(|i| number(*i)).collect();
    v.sort();
    v
}

/// Every agreeing combination, then one order of each mismatch (and its variants).
fn mixed() -> Vec<(usize, Atrip, Row)> {
    vec![
        // Agreeing.
        (0, Atrip::Ticketed, Row::Ticketed),
        (1, Atrip::Ticketing, Row::Ticketing),
        (2, Atrip::Unpaid, Row::Pending),
        (3, Atrip::Unpaid, Row::None),
        (4, Atrip::CancelledUnpaid, Row::None),
        (5, Atrip::CancelledUnpaid, Row::Failed),
        (6, Atrip::Unpaid, Row::NeedsReview),
        (7, Atrip::Unpaid, Row::Paying),
        (8, Atrip::CancelledAfterPayment, Row::Ticketing),
        // paid_not_in_table: paid and ticketed, ticketing, paid then cancelled.
        (10, Atrip::Ticketed, Row::None),
        (11, Atrip::Ticketing, Row::None),
        (12, Atrip::CancelledAfterPayment, Row::None),
        // paid_unpaid_in_table: failed or cancelled here, or paid then cancelled at ATRIP.
        (21, Atrip::Ticketed, Row::Failed),
        (22, Atrip::Ticketing, Row::Cancelled),
        (23, Atrip::CancelledAfterPayment, Row::Pending),
        // paid_evidence_recorded: pending (its claim would pay without asking), needs_review,
        // paying.
        (20, Atrip::Ticketed, Row::Pending),
        (30, Atrip::Ticketed, Row::NeedsReview),
        (31, Atrip::Ticketing, Row::Paying),
        // ticketed_cancelled.
        (40, Atrip::CancelledAfterPayment, Row::Ticketed),
    ]
}

#[tokio::test]
async fn r2_each_kind_of_mismatch_is_found_and_nothing_else_and_no_pay_do_is_sent() {
    let app = TestApp::new().await;
    world(&app, &mixed()).await;
    let out = reconcile_day(&app).await;
    assert_eq!(out.error, None, "{out:#?}");
    assert_eq!(out.atrip_orders, 19);
    assert_eq!(found(&out, Kind::PaidNotInTable), numbers(&[10, 11, 12]));
    assert_eq!(found(&out, Kind::PaidUnpaidInTable), numbers(&[21, 22, 23]));
    assert_eq!(
        found(&out, Kind::PaidEvidenceRecorded),
        numbers(&[20, 30, 31])
    );
    assert_eq!(found(&out, Kind::TicketedCancelled), numbers(&[40]));
    assert_eq!(out.findings.len(), 10, "{:#?}", out.findings);
    let cancelled = out
        .findings
        .iter()
        .find(|f| f.kind == Kind::TicketedCancelled)
        .unwrap();
    assert_eq!(cancelled.atrip_status, "-3");
    assert_eq!(cancelled.atrip_error_code.as_deref(), Some("604"));
    // Reported rows keep their state; only the evidence rows moved. A failed row ATRIP shows
    // paid keeps the fact (no retry can pay it again); one paid and then cancelled at ATRIP
    // gets no evidence (it is not paid now).
    assert_eq!(app.job(&number(20)).await.state, "ticketing");
    let failed = app.job(&number(21)).await;
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.paid_evidence.as_deref(), Some("query_paid"));
    let refunded = app.job(&number(23)).await;
    assert_eq!(
        (refunded.state.as_str(), refunded.paid_at),
        ("pending", None)
    );
    assert_eq!(app.job(&number(40)).await.state, "ticketed");
    assert_eq!(pay_requests(&app), 0);
    // The run is recorded with its counts for `reconcile --last`, the console and /metrics.
    let runs = app.store.reconcile_runs(1).await.unwrap();
    assert_eq!(runs[0].outcome, "completed");
    assert_eq!(
        runs[0].counts,
        json!({"paid_not_in_table": 3, "paid_unpaid_in_table": 3,
               "paid_evidence_recorded": 3, "ticketed_cancelled": 1})
    );
}

#[tokio::test]
async fn r3_rows_pending_paying_or_in_review_that_atrip_shows_paid_are_followed_to_their_tickets_without_a_pay_do(
) {
    let app = TestApp::new().await;
    world(
        &app,
        &[
            (30, Atrip::Ticketed, Row::NeedsReview),
            (31, Atrip::Ticketed, Row::Paying),
            (32, Atrip::Unpaid, Row::NeedsReview),
            // Paid at ATRIP (by hand, during a pause), still pending here: its claim would
            // send a pay.do without asking first.
            (33, Atrip::Ticketed, Row::Pending),
        ],
    )
    .await;
    let out = reconcile_day(&app).await;
    assert_eq!(
        found(&out, Kind::PaidEvidenceRecorded),
        numbers(&[30, 31, 33])
    );
    for i in [30, 31, 33] {
        let row = app.job(&number(i)).await;
        assert_eq!(row.state, "ticketing", "{row:?}");
        assert_eq!(row.paid_evidence.as_deref(), Some("query_paid"));
        assert!(
            row.pay_attempts - row.pay_not_sent >= row.pay_permits,
            "no permit is left: nothing can pay it (P3): {row:?}"
        );
        assert_eq!(row.last_error, None);
    }
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM ticketing_events WHERE order_no = $1 ORDER BY id")
            .bind(number(30))
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(kinds.last().map(String::as_str), Some("evidence_recorded"));
    // The one ATRIP shows unpaid stays with its person.
    assert_eq!(app.job(&number(32)).await.state, "needs_review");
    // A second run finds them agreeing: evidence is written once.
    let again = reconcile_day(&app).await;
    assert!(again.findings.is_empty(), "{:#?}", again.findings);
    // The worker follows them by order query to their tickets; no pay.do ever leaves.
    let worker = app.worker();
    for _ in 0..60 {
        let states: Vec<String> = sqlx::query_scalar(
            "SELECT state FROM ticketing_jobs WHERE order_no = ANY($1) ORDER BY order_no",
        )
        .bind(numbers(&[30, 31, 33]))
        .fetch_all(app.pool())
        .await
        .unwrap();
        if states.iter().all(|s| s == "ticketed") {
            break;
        }
        worker.step().await.unwrap();
        app.advance(Duration::from_millis(500)).await;
    }
    for i in [30, 31, 33] {
        assert_eq!(app.job(&number(i)).await.state, "ticketed");
    }
    assert_eq!(pay_requests(&app), 0);
}

/// The same world read through each reading of ATRIP's paging envelope.
#[tokio::test]
async fn r4_pages_from_zero_or_one_counts_as_strings_and_any_total_name_are_read_whole() {
    let orders: Vec<(usize, Atrip, Row)> = (0..250)
        .map(|i| match i % 50 {
            0 => (i, Atrip::Ticketed, Row::None),
            1 => (i, Atrip::Ticketed, Row::NeedsReview),
            _ => (i, Atrip::Ticketed, Row::Ticketed),
        })
        .collect();
    let cases: [(i64, &str, bool, i64); 6] = [
        // (simulator's first page, its total's name, counts as strings, our first page)
        (1, "totalRecords", false, 1),
        (0, "totalRecords", true, 1),
        (1, "total", true, 0),
        (0, "", false, 0),
        (1, "", true, 1),
        (0, "", true, 1),
    ];
    for (sim_first, total, strings, ours) in cases {
        let app = TestApp::with_sim(SimConfig {
            list_first_page: sim_first,
            list_total_field: total.into(),
            list_counts_as_strings: strings,
            ..SimConfig::default()
        })
        .await;
        world(&app, &orders).await;
        let bounds = Bounds {
            page_size: 30,
            first_page: ours,
            ..bounds()
        };
        let out = reconcile_with(&app, &app.atrip, &bounds).await;
        let case = format!("sim from {sim_first}, total {total:?}, strings {strings}, ours {ours}");
        assert_eq!(out.error, None, "{case}: {out:#?}");
        assert_eq!(out.atrip_orders, 250, "{case}");
        assert_eq!(
            found(&out, Kind::PaidNotInTable),
            numbers(&[0, 50, 100, 150, 200]),
            "{case}"
        );
        assert_eq!(
            found(&out, Kind::PaidEvidenceRecorded),
            numbers(&[1, 51, 101, 151, 201]),
            "{case}"
        );
        assert_eq!(out.findings.len(), 10, "{case}");
    }
}

/// An `orderList.do` that never ends: full pages of new orders and no total.
async fn endless_atrip() -> String {
    use axum::routing::post;
    async fn page(body: axum::body::Bytes) -> axum::Json<Value> {
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let page = req["page"].as_i64().unwrap_or(0);
        let size = req["pageSize"].as_i64().unwrap_or(20);
        let orders: Vec<Value> = (0..size)
            .map(|i| json!({"orderNo": format!("TESTE{:017}", page * size + i), "orderStatus": 0}))
            .collect();
        axum::Json(json!({"status": 0, "page": page, "orders": orders}))
    }
    let router = axum::Router::new().route("/orderList.do", post(page));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn r4_an_order_list_that_never_ends_ends_the_run_with_an_error_that_says_so() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.atrip.base_url = endless_atrip().await;
    let atrip = Client::new(&settings.atrip).unwrap();
    let started = Instant::now();
    let out = reconcile_with(
        &app,
        &atrip,
        &Bounds {
            max_pages: 20,
            ..bounds()
        },
    )
    .await;
    let error = out.error.clone().expect("the run fails");
    assert!(
        error.contains("20 pages") && error.contains("reconcile.max_pages"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let run = &app.store.reconcile_runs(1).await.unwrap()[0];
    assert_eq!((run.outcome.as_str(), run.pages), ("failed", 20));
    assert_eq!(run.error.as_deref(), Some(error.as_str()));
    // The same ATRIP answering a page that ignores `page`: the same orders again.
    async fn same(_body: axum::body::Bytes) -> axum::Json<Value> {
        axum::Json(json!({"status": 0, "totalRecords": 500,
            "orders": (0..100).map(|i| json!({"orderNo": format!("TESTS{i:017}"), "orderStatus": 0})).collect::<Vec<_>>()}))
    }
    let router = axum::Router::new().route("/orderList.do", axum::routing::post(same));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    settings.atrip.base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let out = reconcile_with(&app, &Client::new(&settings.atrip).unwrap(), &bounds()).await;
    let error = out.error.expect("the run fails");
    assert!(error.contains("does not page as asked"), "{error}");
}

#[tokio::test]
async fn r5_one_replica_claims_the_days_run_and_a_dead_ones_run_is_taken_over() {
    let app = TestApp::new().await;
    // The database's time starts at the next noon (UTC), so that no step of the test crosses
    // a day whatever the hour it runs at.
    let start = app.db_now().await;
    let mut noon = start.date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    if noon <= start {
        noon += chrono::Duration::days(1);
    }
    app.advance((noon - start).to_std().unwrap()).await;
    let claim = DailyClaim {
        after_hour_utc: 0,
        lookback_days: 2,
        stale_after_s: 600,
        max_attempts: 3,
        retry_after_s: 3600,
    };
    let a = app
        .store
        .reconcile_claim_daily("worker:a", claim)
        .await
        .unwrap();
    let b = app
        .store
        .reconcile_claim_daily("worker:b", claim)
        .await
        .unwrap();
    let a = a.expect("the first replica claims the day");
    assert!(b.is_none(), "a second replica does not");
    let now = app.db_now().await;
    let today = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert_eq!(
        (a.window_from, a.window_to),
        (today - chrono::Duration::days(2), today)
    );
    // The database's hour decides whether it is due.
    let later = DailyClaim {
        after_hour_utc: 23,
        ..claim
    };
    sqlx::query("DELETE FROM ticketing_reconcile_runs")
        .execute(app.pool())
        .await
        .unwrap();
    assert!(app
        .store
        .reconcile_claim_daily("worker:a", later)
        .await
        .unwrap()
        .is_none());
    let again = app
        .store
        .reconcile_claim_daily("worker:a", claim)
        .await
        .unwrap();
    assert!(again.is_some());
    // worker:a dies mid-run: its heartbeat ages (the database's time moves) and b takes over.
    app.advance(Duration::from_secs(601)).await;
    let taken = app
        .store
        .reconcile_claim_daily("worker:b", claim)
        .await
        .unwrap();
    assert!(
        taken.is_some(),
        "a run left by a dead process is taken over"
    );
    let run = &app.store.reconcile_runs(1).await.unwrap()[0];
    assert_eq!((run.run_by.as_str(), run.attempts), ("worker:b", 2));
    // The old owner's heartbeat no longer lands: it stops.
    assert!(!app
        .store
        .reconcile_heartbeat(run.id, "worker:a", 1, 1)
        .await
        .unwrap());
}

#[tokio::test]
async fn r6_the_command_metrics_and_console_show_the_last_run() {
    let app = TestApp::new().await;
    world(&app, &mixed()).await;
    let (from, to) = day();
    let mut cmd = crate::cli::command(Some(&app.db.url()));
    cmd.env("APP_ATRIP__BASE_URL", app.sim.base_url()).args([
        "reconcile",
        "--since",
        &from.to_rfc3339(),
        "--until",
        &to.format("%Y-%m-%d").to_string(),
    ]);
    let run = crate::cli::finish(cmd, None).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("completed: 19 orders in 1 pages"),
        "{}",
        run.stdout
    );
    for (kind, n) in [("paid_not_in_table", "3"), ("ticketed_cancelled", "1")] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [kind, n]),
            "{kind} {n}: {}",
            run.stdout
        );
    }
    assert!(run.stdout.contains(&number(40)), "{}", run.stdout);
    let last = crate::cli::cli(&app, &["reconcile", "--last", "--json"]).await;
    last.assert_code(0);
    let v: Value = serde_json::from_str(&last.stdout).unwrap();
    assert_eq!(v["outcome"], "completed");
    assert_eq!(v["counts"]["paid_unpaid_in_table"], 3);
    assert_eq!(pay_requests(&app), 0);
    // /metrics, read from the run's record.
    let router =
        ticketing_tracker::http::router_with_console(app.store.clone(), String::new().into(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "ticketing_reconcile_mismatches{kind=\"paid_not_in_table\"} 3",
        "ticketing_reconcile_mismatches{kind=\"paid_evidence_recorded\"} 3",
        "ticketing_reconcile_last_run_ok 1",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    // The console's page, server-rendered.
    let base = crate::console::serve(&app, 50).await;
    let (viewer, _) =
        crate::console::Client::logged_in(&base, "vera", crate::console::VIEWER_PASSWORD).await;
    let page = viewer.get("/console/reconcile").await;
    assert_eq!(page.status, reqwest::StatusCode::OK);
    assert!(page.body.contains(r#"id="findings""#), "{}", page.body);
    assert_eq!(page.body.matches(r#"<tr class="finding">"#).count(), 10);
    assert!(
        page.body.contains(&format!(
            r#"<a href="/console/orders/{0}">{0}</a>"#,
            number(40)
        )),
        "{}",
        page.body
    );
    // A failed run says so on the command line, with its error.
    let none = crate::cli::cli(
        &app,
        &[
            "reconcile",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-01",
        ],
    )
    .await;
    none.assert_code(1);
    assert!(
        none.stderr.contains("the window is empty"),
        "{}",
        none.stderr
    );
}

/// R1 at scale: 10,000 orders of one day, with mismatches of each kind spread through them.
#[tokio::test]
async fn r1_ten_thousand_orders_with_injected_mismatches_are_found_exactly_and_settled_without_pay_do(
) {
    let app = TestApp::new().await;
    let mut orders = Vec::with_capacity(10_000);
    let mut expected: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for i in 0..10_000 {
        let (atrip, row, kind) = match i % 997 {
            13 => (Atrip::Ticketed, Row::None, Some(Kind::PaidNotInTable)),
            101 => (
                Atrip::Ticketed,
                Row::Pending,
                Some(Kind::PaidEvidenceRecorded),
            ),
            102 => (
                Atrip::CancelledAfterPayment,
                Row::Pending,
                Some(Kind::PaidUnpaidInTable),
            ),
            202 => (Atrip::Ticketing, Row::Failed, Some(Kind::PaidUnpaidInTable)),
            303 => (
                Atrip::Ticketed,
                Row::NeedsReview,
                Some(Kind::PaidEvidenceRecorded),
            ),
            404 => (
                Atrip::Ticketing,
                Row::Paying,
                Some(Kind::PaidEvidenceRecorded),
            ),
            505 => (
                Atrip::CancelledAfterPayment,
                Row::Ticketed,
                Some(Kind::TicketedCancelled),
            ),
            606 => (Atrip::Unpaid, Row::None, None),
            707 => (Atrip::CancelledUnpaid, Row::Failed, None),
            _ => (Atrip::Ticketed, Row::Ticketed, None),
        };
        if let Some(kind) = kind {
            expected.entry(kind.as_str()).or_default().push(i);
        }
        orders.push((i, atrip, row));
    }
    let seeded = Instant::now();
    world(&app, &orders).await;
    let seeding = seeded.elapsed();
    let started = Instant::now();
    let out = reconcile_day(&app).await;
    let took = started.elapsed();
    assert_eq!(out.error, None);
    assert_eq!((out.atrip_orders, out.pages), (10_000, 100));
    for kind in Kind::ALL {
        let want = expected.get(kind.as_str()).cloned().unwrap_or_default();
        assert_eq!(found(&out, kind), numbers(&want), "{}", kind.as_str());
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(out.findings.len(), total);
    let review: Vec<String> = numbers(&expected[Kind::PaidEvidenceRecorded.as_str()]);
    let states: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT state FROM ticketing_jobs WHERE order_no = ANY($1)")
            .bind(&review)
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(states, vec!["ticketing".to_string()]);
    assert_eq!(pay_requests(&app), 0);
    println!(
        "reconcile figures: 10000 orders, {} pages, {} findings; seeding {:.1} s, run {:.2} s ({:.0} orders/s)",
        out.pages,
        out.findings.len(),
        seeding.as_secs_f64(),
        took.as_secs_f64(),
        10_000.0 / took.as_secs_f64()
    );
}

/// The simulator's `orderList.do` as documented: the creation range (both ends included), the
/// status filter, integer statuses, UTC payment times, the cancelled order's error code, and a
/// refused time format.
#[tokio::test]
async fn the_simulator_serves_order_list_filters_and_rows_as_atrip_documents_them() {
    let app = TestApp::new().await;
    world(
        &app,
        &[
            (0, Atrip::Ticketed, Row::None),
            (1, Atrip::Unpaid, Row::None),
            (2, Atrip::CancelledAfterPayment, Row::None),
            (90_000, Atrip::Ticketed, Row::None),
        ],
    )
    .await;
    let ask = |body: Value| {
        let url = format!("{}/orderList.do", app.sim.base_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-atlas-client-id", "sim-client")
                .header("x-atlas-client-secret", "sim-secret")
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let all = ask(json!({"createTimeRangeFrom": "2026-11-01T00:00:00Z",
                         "createTimeRangeTo": "2026-11-01T00:00:02Z", "page": 1, "pageSize": 20}))
    .await;
    assert_eq!(all["totalRecords"], 3, "{all}");
    assert_eq!(all["orders"][0]["orderNo"], number(0));
    assert_eq!(all["orders"][0]["orderStatus"], 2);
    assert_eq!(all["orders"][0]["paymentTimestamp"], "2026-11-01T00:01:00Z");
    assert_eq!(
        all["orders"][0]["orderCreateTimestamp"],
        "2026-11-01T00:00:00Z"
    );
    assert_eq!(all["orders"][1]["paymentTimestamp"], Value::Null);
    assert_eq!(all["orders"][2]["orderStatus"], -3);
    assert_eq!(all["orders"][2]["errorCode"], "604");
    assert_eq!(all["orders"][0]["errorCode"], Value::Null);
    let cancelled = ask(json!({"orderStatus": [-3, 0], "page": 1, "pageSize": 20})).await;
    let listed: Vec<&str> = cancelled["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderNo"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [number(1), number(2)]);
    let second = ask(json!({"page": 2, "pageSize": 3})).await;
    assert_eq!(
        (
            second["totalRecords"].as_i64(),
            second["orders"].as_array().unwrap().len()
        ),
        (Some(4), 1)
    );
    let refused = ask(json!({"createTimeRangeFrom": "2026-11-01 00:00:00"})).await;
    assert_eq!(refused["status"], 400, "{refused}");
}

/// Moves the database's time to the next noon (UTC): no step of a test crosses a day.
async fn at_next_noon(app: &TestApp) -> DateTime<Utc> {
    let start = app.db_now().await;
    let mut noon = start.date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    if noon <= start {
        noon += chrono::Duration::days(1);
    }
    app.advance((noon - start).to_std().unwrap()).await;
    noon
}

/// A daily run of an earlier day, left `running` by a process that died just before midnight
/// or `failed`, is taken over or tried again once the UTC day has changed (and before the new
/// day's hour has come); each takeover counts as a try, and a run left stale once it has had
/// them all is marked failed, abandoned, said on `/metrics`' counts, never taken over again.
#[tokio::test]
async fn r5_a_stale_or_failed_run_of_an_earlier_day_is_taken_over_or_retried_after_midnight_within_its_tries(
) {
    let app = TestApp::new().await;
    let noon = at_next_noon(&app).await;
    let claim = DailyClaim {
        after_hour_utc: 3,
        lookback_days: 2,
        stale_after_s: 600,
        max_attempts: 3,
        retry_after_s: 3600,
    };
    let a = app
        .store
        .reconcile_claim_daily("worker:a", claim)
        .await
        .unwrap()
        .expect("worker:a claims the day");
    // worker:a dies; the database's day changes (00:30 the next day, before the new day's
    // hour 3): its run is taken over, its own window kept.
    app.advance(Duration::from_secs(12 * 3600 + 1800)).await;
    assert_eq!(app.store.reconcile_unfinished(7).await.unwrap(), (1, 0));
    let b = app
        .store
        .reconcile_claim_daily("worker:b", claim)
        .await
        .unwrap()
        .expect("the earlier day's stale run is taken over after midnight");
    assert_eq!(
        (b.id, b.window_from, b.window_to),
        (a.id, a.window_from, a.window_to)
    );
    assert_eq!(app.store.reconcile_unfinished(7).await.unwrap(), (0, 0));
    let run = app.store.reconcile_run(a.id).await.unwrap().unwrap();
    assert_eq!((run.run_by.as_str(), run.attempts), ("worker:b", 2));
    assert_eq!(run.day, Some(noon.date_naive()));
    // worker:b's run fails: it is tried again an hour on (01:31), still before the new day's
    // hour.
    app.store
        .reconcile_finish(
            a.id,
            "worker:b",
            false,
            1,
            0,
            &json!({}),
            &json!([]),
            Some("boom"),
        )
        .await
        .unwrap();
    assert!(app
        .store
        .reconcile_claim_daily("worker:c", claim)
        .await
        .unwrap()
        .is_none());
    app.advance(Duration::from_secs(3601)).await;
    let c = app
        .store
        .reconcile_claim_daily("worker:c", claim)
        .await
        .unwrap()
        .expect("the earlier day's failed run is tried again after midnight");
    assert_eq!(c.id, a.id);
    let run = app.store.reconcile_run(a.id).await.unwrap().unwrap();
    assert_eq!((run.run_by.as_str(), run.attempts), ("worker:c", 3));
    // worker:c dies too: its third try is its last. The run is not taken over a fourth time,
    // it is marked abandoned, naming the window to run by hand.
    app.advance(Duration::from_secs(601)).await;
    assert_eq!(app.store.reconcile_unfinished(7).await.unwrap(), (1, 0));
    assert!(app
        .store
        .reconcile_claim_daily("worker:d", claim)
        .await
        .unwrap()
        .is_none());
    let run = app.store.reconcile_run(a.id).await.unwrap().unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.run_by.as_str(), run.attempts),
        ("failed", "worker:c", 3)
    );
    let error = run.error.unwrap();
    assert!(
        error.starts_with("abandoned after 3 attempts")
            && error.contains(&format!(
                "--since {}",
                a.window_from.format("%Y-%m-%dT%H:%M:%SZ")
            )),
        "{error}"
    );
    assert_eq!(app.store.reconcile_unfinished(7).await.unwrap(), (0, 1));
    // Nothing takes it over later, and the new day's own run comes at its hour.
    app.advance(Duration::from_secs(2 * 3600)).await;
    let today = app
        .store
        .reconcile_claim_daily("worker:d", claim)
        .await
        .unwrap()
        .expect("the new day's run");
    assert_ne!(today.id, a.id);
    assert_eq!(today.window_to, a.window_to + chrono::Duration::days(1));
}

/// A live run whose page takes long (ATRIP rate-limits it again and again) beats its
/// heartbeat before every call, so after every wait: a replica looking meanwhile never finds
/// it stale, though the database's time moves past the old fixed 600 s between two pages.
/// The threshold comes from the settings and covers the longest silence of a live run.
#[tokio::test]
async fn r5_a_live_run_beats_through_its_waits_and_a_replica_never_takes_it_over() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let app = TestApp::new().await;
    at_next_noon(&app).await;
    let stale_after_s = reconcile::stale_after_s(&app.settings);
    assert!(stale_after_s >= 600, "{stale_after_s}");
    let claim = DailyClaim {
        after_hour_utc: 0,
        lookback_days: 1,
        stale_after_s,
        max_attempts: 3,
        retry_after_s: 3600,
    };
    let run = app
        .store
        .reconcile_claim_daily("worker:a", claim)
        .await
        .unwrap()
        .expect("worker:a claims the day");
    // Each call to ATRIP takes (in the database's time) most of the threshold; the first four
    // are rate-limited. Meanwhile worker:b looks whether the day's run is free.
    #[derive(Clone)]
    struct World {
        pool: sqlx::PgPool,
        store: ticketing_tracker::jobs::JobStore,
        calls: Arc<AtomicUsize>,
        taken: Arc<AtomicUsize>,
        step_ms: i64,
        claim: DailyClaim,
    }
    async fn list(
        axum::extract::State(w): axum::extract::State<World>,
        _body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        sqlx::query(
            "INSERT INTO ticketing_test_clock (shift) VALUES ($1 * interval '1 millisecond')
             ON CONFLICT (only_row) DO UPDATE SET shift = ticketing_test_clock.shift + EXCLUDED.shift",
        )
        .bind(w.step_ms)
        .execute(&w.pool)
        .await
        .unwrap();
        if w.store
            .reconcile_claim_daily("worker:b", w.claim)
            .await
            .unwrap()
            .is_some()
        {
            w.taken.fetch_add(1, Ordering::SeqCst);
        }
        if w.calls.fetch_add(1, Ordering::SeqCst) < 4 {
            return (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"retryAfter": 0})),
            )
                .into_response();
        }
        axum::Json(json!({"status": 0, "totalRecords": 0, "orders": []})).into_response()
    }
    let world = World {
        pool: app.pool().clone(),
        store: app.store.clone(),
        calls: Arc::default(),
        taken: Arc::default(),
        step_ms: stale_after_s * 1000 * 2 / 3,
        claim,
    };
    let router = axum::Router::new()
        .route("/orderList.do", axum::routing::post(list))
        .with_state(world.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut settings = app.settings.clone();
    settings.atrip.base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let atrip = Client::new(&settings.atrip).unwrap();
    let out = reconcile::run(
        &app.store,
        &atrip,
        &Bounds {
            page_tries: 10,
            ..bounds()
        },
        run.id,
        "worker:a",
        run.window_from,
        run.window_to,
    )
    .await;
    assert_eq!(world.calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        world.taken.load(Ordering::SeqCst),
        0,
        "a live run was taken over: {:?}",
        out.error
    );
    assert_eq!(out.error, None);
    let recorded = app.store.reconcile_run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (
            recorded.outcome.as_str(),
            recorded.run_by.as_str(),
            recorded.attempts
        ),
        ("completed", "worker:a", 1)
    );
}

/// An `orderList.do` whose rows cannot be read: the same page of them again and again (an
/// ATRIP ignoring `page`), or new ones without end.
async fn unreadable_atrip(repeat: bool) -> String {
    async fn same(body: axum::body::Bytes) -> axum::Json<Value> {
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let size = req["pageSize"].as_i64().unwrap_or(20);
        let orders: Vec<Value> = (0..size)
            .map(|i| json!({"orderNo": format!("TESTU{i:017}"), "orderStatus": "unknown"}))
            .collect();
        axum::Json(json!({"status": 0, "orders": orders}))
    }
    async fn endless(body: axum::body::Bytes) -> axum::Json<Value> {
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let page = req["page"].as_i64().unwrap_or(0);
        let size = req["pageSize"].as_i64().unwrap_or(20);
        let orders: Vec<Value> = (0..size)
            .map(|i| json!({"orderNo": format!("TESTU{:017}", page * size + i), "orderStatus": "unknown"}))
            .collect();
        axum::Json(json!({"status": 0, "orders": orders}))
    }
    let router = if repeat {
        axum::Router::new().route("/orderList.do", axum::routing::post(same))
    } else {
        axum::Router::new().route("/orderList.do", axum::routing::post(endless))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Rows that cannot be read still tell whether a page moved on: the same unreadable page
/// again ends the run at once; new unreadable rows without end end it at `max_pages`, the run
/// keeping the first notes only and counting the rest.
#[tokio::test]
async fn r4_unreadable_rows_keep_the_repeated_page_check_and_their_notes_are_bounded() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.atrip.base_url = unreadable_atrip(true).await;
    let atrip = Client::new(&settings.atrip).unwrap();
    let hostile = Bounds {
        max_pages: 20,
        ..bounds()
    };
    let out = reconcile_with(&app, &atrip, &hostile).await;
    let error = out.error.clone().expect("the run fails");
    assert!(error.contains("does not page as asked"), "{error}");
    assert_eq!(out.pages, 2);
    assert_eq!(out.notes.len(), 100);
    assert_eq!(out.notes_left_out, 0);

    settings.atrip.base_url = unreadable_atrip(false).await;
    let atrip = Client::new(&settings.atrip).unwrap();
    let out = reconcile_with(&app, &atrip, &hostile).await;
    let error = out.error.clone().expect("the run fails");
    assert!(error.contains("reconcile.max_pages"), "{error}");
    assert_eq!(out.pages, 20);
    assert_eq!(out.notes.len(), reconcile::MAX_NOTES_KEPT);
    assert_eq!(out.notes_left_out, 2000 - 100);
    let run = &app.store.reconcile_runs(1).await.unwrap()[0];
    let notes = run.findings.as_array().unwrap();
    assert_eq!(notes.len(), 101);
    assert!(
        notes[100]["note"]
            .as_str()
            .unwrap()
            .starts_with("1900 more notes, not kept"),
        "{}",
        notes[100]
    );
}
