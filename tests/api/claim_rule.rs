//! The claim statement is `machine::claim`, in SQL: over every shape of row (each state, due or
//! not, leased or not) and every kind of claim (pay and/or follow), the statement takes exactly
//! the rows `machine::claim::claims` says, with the effect `machine::claim::on_claim` says. The
//! model check (`tests/model`) decides claims with those functions; this ties them to the SQL.

use std::collections::HashMap;
use std::time::Duration;

use ticketing_tracker::domain::State;
use ticketing_tracker::machine::claim::{self, Shape, Wants};

use crate::support::app::TestApp;

/// The columns a row of `state` needs to satisfy the table's CHECKs.
pub(crate) fn columns(state: State) -> &'static str {
    match state {
        State::Pending => "",
        State::Paying => ", pay_attempts = 1, pay_started_at = ticketing_now()",
        State::Ticketing => {
            ", pay_attempts = 1, pay_started_at = ticketing_now(), paid_at = ticketing_now(), paid_evidence = 'query_paid'"
        }
        State::Ticketed => {
            ", pay_attempts = 1, pay_started_at = ticketing_now(), paid_at = ticketing_now(), paid_evidence = 'query_paid', finalized_at = ticketing_now(), ticketed_at = ticketing_now(), pnr = 'ABC123', ticket_numbers = '[]'"
        }
        State::Failed | State::NeedsReview => ", finalized_at = ticketing_now(), last_error = 'x'",
        State::Cancelled => ", finalized_at = ticketing_now()",
    }
}

#[tokio::test]
async fn the_claim_statement_takes_exactly_the_rows_machine_claim_says() {
    let app = TestApp::new().await;
    let pool = app.db.pool().clone();
    let sql = |q: String| {
        let pool = pool.clone();
        async move { sqlx::raw_sql(&q).execute(&pool).await.map(|_| ()) }
    };
    let lease = Duration::from_secs(60);
    let mut checked = 0;
    for wants in [
        Wants {
            pay: true,
            follow: true,
        },
        Wants {
            pay: true,
            follow: false,
        },
        Wants {
            pay: false,
            follow: true,
        },
        Wants {
            pay: false,
            follow: false,
        },
    ] {
        sql("DELETE FROM ticketing_events".into()).await.unwrap();
        sql("DELETE FROM ticketing_jobs".into()).await.unwrap();
        let mut shapes: HashMap<String, Shape> = HashMap::new();
        for (i, state) in State::ALL.into_iter().enumerate() {
            for due in [true, false] {
                // No lease; one that ran out (its owner still named, as a crashed worker
                // leaves it); one still running.
                for (l, lease_sql) in [
                    "",
                    ", lease_owner = 'gone', lease_expires_at = ticketing_now() - interval '1 second'",
                    ", lease_owner = 'someone', lease_expires_at = ticketing_now() + interval '1 hour'",
                ]
                .into_iter()
                .enumerate()
                {
                    let lease_live = l == 2;
                    if l > 0 && (state.is_finished() || state == State::Pending) {
                        continue; // CHECKs: a finished or pending row holds no lease
                    }
                    let order_no = format!("CLAIM{i}{}{l}", u8::from(due));
                    sql(format!(
                        "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ('{order_no}', 1)"
                    ))
                    .await
                    .unwrap();
                    let run_at = if due {
                        "ticketing_now() - interval '1 second'"
                    } else {
                        "ticketing_now() + interval '1 hour'"
                    };
                    sql(format!(
                        "UPDATE ticketing_jobs SET state = '{}', run_at = {run_at}{}{lease_sql} WHERE order_no = '{order_no}'",
                        state.as_str(),
                        columns(state)
                    ))
                    .await
                        .unwrap_or_else(|e| panic!("{order_no} as {state}: {e}"));
                    shapes.insert(
                        order_no,
                        Shape {
                            state,
                            due,
                            lease_live,
                        },
                    );
                }
            }
        }
        let claimed = app
            .store
            .claim(
                "claim-rule",
                1000,
                lease,
                wants.pay,
                wants.follow,
                "claim-rule",
            )
            .await
            .unwrap();
        let taken: HashMap<&str, _> = claimed.iter().map(|j| (j.order_no.as_str(), j)).collect();
        for (order_no, shape) in &shapes {
            let says = claim::claims(*shape, wants);
            assert_eq!(
                taken.contains_key(order_no.as_str()),
                says,
                "{order_no} {shape:?} with {wants:?}: the statement and machine::claim disagree"
            );
            if let Some(job) = taken.get(order_no.as_str()) {
                let (to, intent) = claim::on_claim(shape.state);
                assert_eq!(job.claimed_from, shape.state, "{order_no}");
                assert_eq!(
                    job.lease().state(),
                    to,
                    "{order_no}: the state after the claim"
                );
                let before = i32::from(matches!(
                    shape.state,
                    State::Paying | State::Ticketing | State::Ticketed
                ));
                assert_eq!(
                    job.pay_attempts - before,
                    i32::from(intent),
                    "{order_no}: the intent"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} shapes checked");
}
