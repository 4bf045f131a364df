//! The enqueue API is a plain INSERT into `ticketing_jobs`: every bad row is refused by a named
//! constraint that says what is wrong, good rows start `pending`, and an insert wakes the workers.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::{PgListener, PgQueryResult};
use sqlx::PgPool;

use crate::support::app::{mor_card, vcc_card};
use crate::support::db::TestDb;

/// SQLSTATE of a violated CHECK constraint.
const CHECK_VIOLATION: &str = "23514";
/// SQLSTATE of a violated unique constraint.
const UNIQUE_VIOLATION: &str = "23505";

/// The SQLSTATE and the constraint named by a refused statement; panics when the statement was
/// accepted or failed for another reason (a test of a refusal must see the refusal).
fn refusal(result: Result<PgQueryResult, sqlx::Error>, what: &str) -> (String, String) {
    match result {
        Ok(done) => panic!(
            "{what}: the INSERT was accepted ({} rows)",
            done.rows_affected()
        ),
        Err(sqlx::Error::Database(e)) => {
            let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = e
                .constraint()
                .unwrap_or_else(|| panic!("{what}: refused without naming a constraint: {e}"))
                .to_owned();
            (code, constraint)
        }
        Err(other) => panic!("{what}: not a database refusal: {other}"),
    }
}

/// Runs `sql` (an INSERT with literal values) and returns the CHECK constraint that refused it.
async fn refused_by_check(pool: &PgPool, sql: &str) -> String {
    let (code, constraint) = refusal(sqlx::query(sql).execute(pool).await, sql);
    assert_eq!(code, CHECK_VIOLATION, "{sql}: refused by {constraint}");
    constraint
}

/// An INSERT of a card row for `method` with the card bound as JSON.
async fn insert_card_row(
    pool: &PgPool,
    order_no: &str,
    method: i16,
    card: Option<&Value>,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query("INSERT INTO ticketing_jobs (order_no, payment_method, card) VALUES ($1, $2, $3)")
        .bind(order_no)
        .bind(method)
        .bind(card)
        .execute(pool)
        .await
}

async fn row_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ticketing_jobs")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unknown_payment_method_is_refused_by_payment_method_is_known() {
    let db = TestDb::new().await;
    for method in [2, 0, 7] {
        let sql = format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ('ORDER{method}00', {method})"
        );
        assert_eq!(
            refused_by_check(db.pool(), &sql).await,
            "payment_method_is_known"
        );
    }
    assert_eq!(row_count(db.pool()).await, 0);
}

#[tokio::test]
async fn a_card_is_required_for_vcc_and_mor_and_refused_for_deposit_and_byoa() {
    let db = TestDb::new().await;
    for method in [3, 5] {
        let (code, constraint) = refusal(
            insert_card_row(db.pool(), "CARDLESS01", method, None).await,
            &format!("method {method} without a card"),
        );
        assert_eq!(
            (code.as_str(), constraint.as_str()),
            (CHECK_VIOLATION, "card_required_for_vcc_and_mor")
        );
    }
    for method in [1, 4] {
        let (code, constraint) = refusal(
            insert_card_row(db.pool(), "CARDFUL01", method, Some(&vcc_card())).await,
            &format!("method {method} with a card"),
        );
        assert_eq!(
            (code.as_str(), constraint.as_str()),
            (CHECK_VIOLATION, "card_only_for_vcc_and_mor")
        );
    }
    assert_eq!(row_count(db.pool()).await, 0);
}

#[tokio::test]
async fn a_malformed_order_number_is_refused_by_order_no_is_well_formed() {
    let db = TestDb::new().await;
    let too_long = "A".repeat(41);
    for bad in ["", "testa2026082417", "TESTA-20260824", "SHORT", &too_long] {
        let (code, constraint) = refusal(
            insert_card_row(db.pool(), bad, 1, None).await,
            &format!("order_no {bad:?}"),
        );
        assert_eq!(
            (code.as_str(), constraint.as_str()),
            (CHECK_VIOLATION, "order_no_is_well_formed"),
            "order_no {bad:?}"
        );
    }
    // The limits themselves are accepted: 6 and 40 characters.
    for good in ["ABC123", &"A".repeat(40)] {
        insert_card_row(db.pool(), good, 1, None)
            .await
            .unwrap_or_else(|e| panic!("order_no {good:?} refused: {e}"));
    }
    assert_eq!(row_count(db.pool()).await, 2);
}

#[tokio::test]
async fn a_card_that_is_not_a_small_json_object_is_refused() {
    let db = TestDb::new().await;
    for not_an_object in [json!([vcc_card()]), json!("4532015112830366"), json!(42)] {
        let (code, constraint) = refusal(
            insert_card_row(db.pool(), "ARRAYCARD01", 3, Some(&not_an_object)).await,
            &format!("card {not_an_object}"),
        );
        assert_eq!(
            (code.as_str(), constraint.as_str()),
            (CHECK_VIOLATION, "card_is_an_object")
        );
    }
    // Random hex so that no compression can bring it under the 4 KB limit.
    let mut huge = vcc_card();
    huge["cardHolderAddress"] = json!((0..1000)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect::<String>());
    let (code, constraint) = refusal(
        insert_card_row(db.pool(), "HUGECARD01", 3, Some(&huge)).await,
        "a 16 KB card",
    );
    assert_eq!(
        (code.as_str(), constraint.as_str()),
        (CHECK_VIOLATION, "card_is_small")
    );
    assert_eq!(row_count(db.pool()).await, 0);
}

#[tokio::test]
async fn an_implausible_pay_deadline_is_refused_by_pay_deadline_is_plausible() {
    let db = TestDb::new().await;
    for (order_no, deadline) in [
        ("FARFUTURE01", "now() + interval '10 years'"),
        ("LONGPAST01", "now() - interval '1 year'"),
        ("MONTHOUT01", "now() + interval '31 days'"),
    ] {
        let sql = format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline) \
             VALUES ('{order_no}', 1, {deadline})"
        );
        assert_eq!(
            refused_by_check(db.pool(), &sql).await,
            "pay_deadline_is_plausible"
        );
    }
    // A deadline in the usual window (ATRIP holds 30 minutes) is fine.
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline) \
         VALUES ('SOONDUE01', 1, now() + interval '30 minutes')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(row_count(db.pool()).await, 1);
}

#[tokio::test]
async fn a_row_whose_columns_contradict_its_state_is_refused_by_the_state_checks() {
    let db = TestDb::new().await;
    let pool = db.pool();
    let insert = |columns: &str, values: &str| {
        format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, {columns}) \
             VALUES ('STATEROW01', 1, {values})"
        )
    };

    // Several checks tie 'ticketed' to its columns; whichever Postgres evaluates first fires.
    let bare_ticketed = refused_by_check(pool, &insert("state", "'ticketed'")).await;
    assert!(
        [
            "tickets_exactly_when_ticketed",
            "finalized_exactly_when_finished",
            "paid_states_have_paid_at",
        ]
        .contains(&bare_ticketed.as_str()),
        "a bare ticketed row was refused by {bare_ticketed}"
    );
    let cases = [
        // Everything of 'ticketed' but the tickets.
        (
            insert(
                "state, paid_at, finalized_at, pay_attempts, pay_started_at",
                "'ticketed', now(), now(), 1, now()",
            ),
            "tickets_exactly_when_ticketed",
        ),
        // Tickets on a row that is still being followed.
        (
            insert(
                "state, paid_at, pnr, ticket_numbers, ticketed_at, pay_attempts, pay_started_at",
                "'ticketing', now(), 'S12345', '[]', now(), 1, now()",
            ),
            "tickets_exactly_when_ticketed",
        ),
        // The pay-once rules, held by the table itself: never more pay.do than permits, and
        // no permit left once an answer showed the order paid.
        (
            insert("state, pay_attempts, pay_started_at", "'paying', 2, now()"),
            "pay_sends_within_permits",
        ),
        (
            insert(
                "state, paid_at, pay_attempts, pay_started_at, pay_permits",
                "'ticketing', now(), 1, now(), 2",
            ),
            "paid_orders_have_no_permit_left",
        ),
        (
            insert("state, pay_permits", "'pending', 2"),
            "pending_rows_start_clean",
        ),
        // A lease no worker took: the row would wait for it to run out, uncancellable.
        (
            insert("lease_owner, lease_expires_at", "'ghost', '2099-01-01'"),
            "pending_rows_hold_no_lease",
        ),
        (
            insert(
                "state, paid_evidence, pay_attempts, pay_started_at",
                "'paying', 'query_paid', 1, now()",
            ),
            "paid_evidence_says_when",
        ),
        (
            insert(
                "state, last_pay_outcome, pay_attempts, pay_started_at",
                "'paying', 'maybe', 1, now()",
            ),
            "last_pay_outcome_is_known",
        ),
        (insert("state", "'ticketing'"), "paid_states_have_paid_at"),
        (
            insert("state, pay_attempts", "'pending', 1"),
            "pending_was_never_paid",
        ),
        (
            insert("state, pay_started_at", "'pending', now()"),
            "pending_was_never_paid",
        ),
        (
            insert("state, pay_attempts", "'paying', 1"),
            "paying_has_an_intent",
        ),
        (
            insert("state, pay_started_at", "'paying', now()"),
            "paying_has_an_intent",
        ),
        (insert("state", "'done'"), "state_is_known"),
        (insert("state", "'Pending'"), "state_is_known"),
        (
            insert("state, finalized_at", "'failed', now()"),
            "failures_say_why",
        ),
        (
            insert("state, finalized_at", "'needs_review', now()"),
            "failures_say_why",
        ),
        (
            insert("state, last_error", "'failed', 'refused'"),
            "finalized_exactly_when_finished",
        ),
        (
            insert("finalized_at", "now()"),
            "finalized_exactly_when_finished",
        ),
        (
            insert(
                "state, finalized_at, lease_owner, lease_expires_at",
                "'cancelled', now(), 'w1', now()",
            ),
            "finished_rows_have_no_lease",
        ),
        (
            insert(
                "state, paid_at, poll_attempts, pay_attempts, pay_started_at",
                "'ticketing', now(), -1, 1, now()",
            ),
            "counters_are_not_negative",
        ),
        (insert("priority", "101"), "priority_is_in_range"),
        (insert("client_order_no", "''"), "client_order_no_is_short"),
    ];
    for (sql, expected) in cases {
        assert_eq!(refused_by_check(pool, &sql).await, expected, "{sql}");
    }
    assert_eq!(row_count(pool).await, 0);

    // The same states with consistent columns are accepted: the checks refuse contradictions,
    // not states.
    let consistent = [
        (
            "GOODTKT01",
            "'ticketed', now(), now(), now(), 'S12345', '[]', NULL",
        ),
        (
            "GOODFAIL01",
            "'failed', NULL, now(), NULL, NULL, NULL, 'refused 413'",
        ),
        ("GOODPAY01", "'paying', NULL, NULL, NULL, NULL, NULL, NULL"),
    ];
    for (order_no, values) in consistent {
        let attempts = if order_no == "GOODFAIL01" {
            "0, NULL"
        } else {
            "1, now()"
        };
        sqlx::query(&format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, state, paid_at, finalized_at, \
             ticketed_at, pnr, ticket_numbers, last_error, pay_attempts, pay_started_at) \
             VALUES ('{order_no}', 1, {values}, {attempts})"
        ))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{order_no} refused: {e}"));
    }
    assert_eq!(row_count(pool).await, 3);
}

#[tokio::test]
async fn a_duplicate_order_number_is_refused_by_order_no_is_unique_or_ignored_on_conflict() {
    let db = TestDb::new().await;
    let pool = db.pool();
    insert_card_row(pool, "DUPLICATE01", 1, None).await.unwrap();

    let (code, constraint) = refusal(
        insert_card_row(pool, "DUPLICATE01", 4, None).await,
        "the same order_no twice",
    );
    assert_eq!(
        (code.as_str(), constraint.as_str()),
        (UNIQUE_VIOLATION, "order_no_is_unique")
    );

    let ignored = sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ('DUPLICATE01', 4) \
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(ignored.rows_affected(), 0);

    let rows: Vec<(String, i16)> =
        sqlx::query_as("SELECT order_no, payment_method FROM ticketing_jobs")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![("DUPLICATE01".to_owned(), 1)],
        "the first row is kept"
    );
}

#[tokio::test]
async fn a_good_row_for_each_payment_method_is_accepted_as_pending() {
    let db = TestDb::new().await;
    let pool = db.pool();
    let rows = [
        ("GOODDEPOSIT01", 1, None),
        ("GOODVCC01", 3, Some(vcc_card())),
        ("GOODBYOA01", 4, None),
        ("GOODMOR01", 5, Some(mor_card())),
    ];
    for (order_no, method, card) in &rows {
        insert_card_row(pool, order_no, *method, card.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{order_no} (method {method}) refused: {e}"));
    }
    // The optional enqueuer columns are accepted too.
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, client_order_no, pay_deadline, \
         priority, run_at) VALUES ('GOODEXTRAS01', 1, 'agency-ref-7', now() + interval '25 minutes', \
         -5, now() + interval '1 minute')",
    )
    .execute(pool)
    .await
    .unwrap();

    /// order_no, payment_method, state, has a card, pay_attempts, lease_token, lease_owner.
    type Stored = (String, i16, String, bool, i32, i64, Option<String>);
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT order_no, payment_method, state, card IS NOT NULL, pay_attempts, lease_token, \
         lease_owner FROM ticketing_jobs ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 5);
    for (i, (order_no, method, card)) in rows.iter().enumerate() {
        let (s_no, s_method, state, has_card, attempts, token, owner) = &stored[i];
        assert_eq!((s_no, s_method), (&order_no.to_string(), method));
        assert_eq!(state, "pending", "{order_no}");
        assert_eq!(*has_card, card.is_some(), "{order_no}");
        assert_eq!((*attempts, *token, owner.as_deref()), (0, 0, None));
    }
    assert_eq!(stored[4].2, "pending");
}

/// The payload of the next notification, waiting at most five seconds for it.
async fn next_payload(listener: &mut PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("the listener connection is alive")
        .payload()
        .to_owned()
}

#[tokio::test]
async fn an_insert_wakes_the_workers_once_per_statement_and_a_refused_one_not_at_all() {
    let db = TestDb::new().await;
    let mut listener = PgListener::connect(&db.url()).await.unwrap();
    listener.listen("ticketing_jobs").await.unwrap();
    insert_card_row(db.pool(), "NOTIFIED01", 1, None)
        .await
        .unwrap();
    assert_eq!(next_payload(&mut listener).await, "insert");

    // A refused insert rolls back its notification; a three-row insert sends one. The marker,
    // sent after both, proves nothing else arrived in between (one session's notifications
    // arrive in commit order).
    assert!(insert_card_row(db.pool(), "NOTIFIED01", 1, None)
        .await
        .is_err());
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method) \
         VALUES ('BULK000001', 1), ('BULK000002', 4), ('BULK000003', 1)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('ticketing_jobs', 'marker')")
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut listener).await, "insert");
    assert_eq!(
        next_payload(&mut listener).await,
        "marker",
        "a bulk insert (or the refused one) sent more than one notification"
    );
}

#[tokio::test]
async fn the_claim_reads_partial_indexes_that_leave_finished_rows_out() {
    let db = TestDb::new().await;
    let pool = db.pool();
    // Payments (rule S1) and follow-ups (S2) each have theirs, in claim order.
    for (index, columns, states) in [
        (
            "ticketing_jobs_pay_due",
            "(priority, pay_deadline, run_at, id)",
            &["'pending'"][..],
        ),
        (
            "ticketing_jobs_follow_due",
            "(priority, run_at, id)",
            &["'paying'", "'ticketing'"][..],
        ),
        // The counts of live rows (metrics, KEDA, the previous release's claim) read this one.
        (
            "ticketing_jobs_due",
            "(priority, run_at, id)",
            &["'pending'", "'paying'", "'ticketing'"][..],
        ),
    ] {
        let indexdef: String =
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = $1")
                .bind(index)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("the index {index} exists: {e}"));
        assert!(indexdef.contains(columns), "{indexdef}");
        let predicate = indexdef.split(" WHERE ").nth(1).expect("a partial index");
        for state in states {
            assert!(predicate.contains(state), "{indexdef}");
        }
        for state in ["'ticketed'", "'failed'", "'needs_review'", "'cancelled'"] {
            assert!(!predicate.contains(state), "{indexdef}");
        }
    }
}
