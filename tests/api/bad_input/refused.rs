//! Rows the database refuses at INSERT, with the name of the constraint that says what is
//! wrong (or, for text JSON cannot hold, PostgreSQL's own jsonb error): nothing reaches the
//! worker, and the rows already there are untouched.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::postgres::PgQueryResult;
use sqlx::PgPool;

use crate::support::app::{mor_card, vcc_card};
use crate::support::db::TestDb;

/// SQLSTATEs: a violated CHECK, a violated unique index, and jsonb's refusals.
const CHECK_VIOLATION: &str = "23514";
const UNIQUE_VIOLATION: &str = "23505";
const UNTRANSLATABLE_CHARACTER: &str = "22P05";
const INVALID_TEXT_REPRESENTATION: &str = "22P02";

const ORDER: &str = "TESTA20260824171418381";

/// One enqueuer INSERT; every column an enqueuer may write.
#[derive(Clone)]
struct Row {
    order_no: String,
    method: i16,
    card: Option<Value>,
    pay_deadline: Option<DateTime<Utc>>,
    client_order_no: Option<String>,
    priority: i16,
}

fn row(method: i16, card: Option<Value>) -> Row {
    Row {
        order_no: ORDER.to_owned(),
        method,
        card,
        pay_deadline: None,
        client_order_no: None,
        priority: 0,
    }
}

async fn insert(pool: &PgPool, r: &Row) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticketing_jobs
             (order_no, payment_method, card, pay_deadline, client_order_no, priority)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.order_no)
    .bind(r.method)
    .bind(&r.card)
    .bind(r.pay_deadline)
    .bind(&r.client_order_no)
    .bind(r.priority)
    .execute(pool)
    .await
}

/// The SQLSTATE and constraint of a refused statement; panics when it was accepted.
fn refusal(result: Result<PgQueryResult, sqlx::Error>, what: &str) -> (String, Option<String>) {
    match result {
        Ok(done) => panic!("{what}: accepted ({} rows)", done.rows_affected()),
        Err(sqlx::Error::Database(e)) => (
            e.code().map(|c| c.into_owned()).unwrap_or_default(),
            e.constraint().map(str::to_owned),
        ),
        Err(other) => panic!("{what}: not a database refusal: {other}"),
    }
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ticketing_jobs")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts each of `bad` into a fresh database and asserts that `constraint` refused every
/// one of them, that no row was written, and that a good row inserts fine afterwards.
async fn refused_by(constraint: &str, bad: Vec<Row>) {
    let db = TestDb::new().await;
    for (i, r) in bad.iter().enumerate() {
        let what = format!("case {i} (order_no {:?}, method {})", r.order_no, r.method);
        let (code, named) = refusal(insert(db.pool(), r).await, &what);
        assert_eq!(
            (code.as_str(), named.as_deref()),
            (CHECK_VIOLATION, Some(constraint)),
            "{what}"
        );
    }
    assert_eq!(rows(db.pool()).await, 0);
    insert(db.pool(), &row(3, Some(vcc_card()))).await.unwrap();
}

/// Stamps one test per refused row: `name: constraint, [rows]`.
macro_rules! refused_by {
    ($($name:ident: $constraint:literal, $rows:expr;)+) => {$(
        #[tokio::test]
        async fn $name() {
            refused_by($constraint, $rows).await;
        }
    )+};
}

fn with_order_no(order_no: &str) -> Row {
    Row {
        order_no: order_no.to_owned(),
        ..row(1, None)
    }
}

fn with_deadline(from_now: Duration) -> Row {
    Row {
        pay_deadline: Some(Utc::now() + from_now),
        ..row(1, None)
    }
}

refused_by! {
    an_unknown_payment_method_is_refused_by_payment_method_is_known:
        "payment_method_is_known", vec![row(0, None), row(2, None), row(6, None), row(-1, None)];
    a_vcc_order_without_a_card_is_refused_by_card_required_for_vcc_and_mor:
        "card_required_for_vcc_and_mor", vec![row(3, None)];
    a_mor_order_without_a_card_is_refused_by_card_required_for_vcc_and_mor:
        "card_required_for_vcc_and_mor", vec![row(5, None)];
    a_deposit_order_with_a_card_is_refused_by_card_only_for_vcc_and_mor:
        "card_only_for_vcc_and_mor", vec![row(1, Some(vcc_card()))];
    a_byoa_order_with_a_card_is_refused_by_card_only_for_vcc_and_mor:
        "card_only_for_vcc_and_mor", vec![row(4, Some(mor_card()))];
    a_ten_kilobyte_card_is_refused_by_card_is_small:
        "card_is_small", vec![row(3, Some({
            let mut card = vcc_card();
            // Varied text, so that compression could not hide the size either.
            card["cardHolderAddress"] =
                json!((0..2600).map(|i| format!("{:04x}", i * 7919 % 65521)).collect::<String>());
            assert!(card.to_string().len() > 10_000);
            card
        }))];
    a_card_that_is_not_a_json_object_is_refused_by_card_is_an_object:
        "card_is_an_object", vec![
            row(3, Some(json!("4532015112830366"))),
            row(5, Some(json!([mor_card()]))),
            row(3, Some(json!(4532015112830366u64))),
            row(3, Some(Value::Null)),
        ];
    a_pay_deadline_two_days_past_is_refused_by_pay_deadline_is_plausible:
        "pay_deadline_is_plausible", vec![with_deadline(Duration::days(-2))];
    a_pay_deadline_a_year_ahead_is_refused_by_pay_deadline_is_plausible:
        "pay_deadline_is_plausible", vec![with_deadline(Duration::days(365))];
    a_malformed_order_number_is_refused_by_order_no_is_well_formed:
        "order_no_is_well_formed", vec![
            with_order_no("testa20260824171418381"),
            with_order_no("TESTA 20260824171418381"),
            with_order_no("TESTA20260824171418381\n"),
            with_order_no("TESTA2026'; DROP TABLE ticketing_jobs; --"),
            with_order_no("TESTA２０２６０８２４"),
            with_order_no("ABC12"),
            with_order_no(&"A".repeat(41)),
            with_order_no(""),
        ];
    an_overlong_agency_reference_is_refused_by_client_order_no_is_short:
        "client_order_no_is_short", vec![
            Row { client_order_no: Some("R".repeat(129)), ..row(1, None) },
            Row { client_order_no: Some(String::new()), ..row(1, None) },
        ];
    a_priority_out_of_range_is_refused_by_priority_is_in_range:
        "priority_is_in_range", vec![
            Row { priority: 101, ..row(1, None) },
            Row { priority: -101, ..row(1, None) },
        ];
}

#[tokio::test]
async fn a_second_row_for_the_same_order_is_refused_by_order_no_is_unique() {
    let db = TestDb::new().await;
    insert(db.pool(), &row(3, Some(vcc_card()))).await.unwrap();
    let (code, named) = refusal(
        insert(db.pool(), &row(1, None)).await,
        "the same order_no again",
    );
    assert_eq!(
        (code.as_str(), named.as_deref()),
        (UNIQUE_VIOLATION, Some("order_no_is_unique"))
    );
    // An enqueuer that wants "at most once" says ON CONFLICT DO NOTHING: nothing changes.
    let ignored = sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ($1, 4)
         ON CONFLICT (order_no) DO NOTHING",
    )
    .bind(ORDER)
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(ignored.rows_affected(), 0);
    let (method, state): (i16, String) =
        sqlx::query_as("SELECT payment_method, state FROM ticketing_jobs WHERE order_no = $1")
            .bind(ORDER)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        (method, state.as_str()),
        (3, "pending"),
        "the first row is kept as it was"
    );
}

#[tokio::test]
async fn a_nul_character_in_a_card_field_is_refused_by_jsonb_itself() {
    // jsonb cannot hold U+0000: PostgreSQL refuses the value before any constraint runs, so
    // the refusal names no constraint; the SQLSTATE says what is wrong.
    let db = TestDb::new().await;
    let mut card = vcc_card();
    card["cardHolderFirstName"] = json!("JANE\u{0}");
    let (code, named) = refusal(
        insert(db.pool(), &row(3, Some(card))).await,
        "a NUL in cardHolderFirstName",
    );
    assert_eq!((code.as_str(), named), (UNTRANSLATABLE_CHARACTER, None));
    assert_eq!(rows(db.pool()).await, 0);
}

#[tokio::test]
async fn a_lone_surrogate_escape_in_a_card_is_refused_by_jsonb_itself() {
    // Written as JSON text by a client that does not check its UTF-16 escapes.
    let db = TestDb::new().await;
    let result = sqlx::query(
        r#"INSERT INTO ticketing_jobs (order_no, payment_method, card)
           VALUES ($1, 3, '{"cardNumber": "4532015112830366", "cardHolderCity": "\ud800"}'::jsonb)"#,
    )
    .bind(ORDER)
    .execute(db.pool())
    .await;
    let (code, named) = refusal(result, "a lone surrogate in cardHolderCity");
    assert_eq!((code.as_str(), named), (INVALID_TEXT_REPRESENTATION, None));
    assert_eq!(rows(db.pool()).await, 0);
}
