//! The balance pre-check's one write (docs/design.md, rule P1e): pending deposit orders are
//! weighed against the balance; those it covers are cleared for the claim, the others wait,
//! saying why. It writes only `pending` rows (no lease, no intent) and the check's own row: it
//! can delay a `pay.do`, never cause one.

use std::time::Duration;

use super::store::{millis, JobStore};
use super::Error;

/// At most this many pending deposit orders are weighed against the balance in one check (in
/// the claim's order: the first ones are the ones the next claims would pay).
const WEIGHED: i64 = 10_000;

impl JobStore {
    /// One check: beats `ticketing_balance_checks` (the claim holds priced deposit orders
    /// back while it is beaten), then weighs every `pending` deposit order (method 1) with a
    /// `price`, due before `every` has passed, in the claim's order. An order whose price, with
    /// those of the deposit orders before it and of those being paid now (`paying`, not shown
    /// paid yet), fits in `balance` is cleared for the claim (`price_cleared_at`); one that does
    /// not waits `every` (`run_at`), uncleared, and `last_error` says why. With no balance (it
    /// could not be read) every order is cleared: an unread balance holds nothing back. Rows a
    /// claim holds locked are skipped. Returns the order numbers held.
    pub async fn weigh_balance(
        &self,
        balance: Option<f64>,
        currency: &str,
        every: Duration,
    ) -> Result<Vec<String>, Error> {
        let held = sqlx::query_scalar!(
            r#"
WITH beat AS (
    INSERT INTO ticketing_balance_checks (only_row, beat_at, every_ms, amount, currency)
    VALUES (true, ticketing_now(), $3, $1::float8::numeric, $2)
    ON CONFLICT (only_row) DO UPDATE SET
        beat_at = EXCLUDED.beat_at, every_ms = EXCLUDED.every_ms,
        amount = EXCLUDED.amount, currency = EXCLUDED.currency
    RETURNING 1
), flight AS (
    SELECT COALESCE(sum(price), 0) AS paying FROM ticketing_jobs
    WHERE state = 'paying' AND payment_method = 1 AND price IS NOT NULL AND paid_at IS NULL
), due AS (
    SELECT d.id, d.price,
           sum(d.price) OVER (ORDER BY d.priority, d.pay_deadline, d.run_at, d.id)
               + (SELECT paying FROM flight) AS needed
    FROM (SELECT id, price, priority, pay_deadline, run_at FROM ticketing_jobs
          WHERE state = 'pending' AND payment_method = 1 AND price IS NOT NULL
            AND run_at <= ticketing_now() + $3::bigint * interval '1 millisecond'
          ORDER BY priority, pay_deadline, run_at, id
          LIMIT $4) d
), weighed AS (
    SELECT j.id, due.price, due.needed,
           ($1::float8 IS NULL OR due.needed <= $1::float8::numeric) AS fits
    FROM ticketing_jobs j JOIN due ON due.id = j.id
    WHERE j.state = 'pending'
    FOR NO KEY UPDATE OF j SKIP LOCKED
), u AS (
    UPDATE ticketing_jobs j SET
        price_cleared_at = CASE WHEN w.fits THEN ticketing_now() END,
        run_at = CASE WHEN w.fits THEN j.run_at
                      ELSE ticketing_now() + $3::bigint * interval '1 millisecond' END,
        updated_at = ticketing_now(),
        last_error = CASE
            WHEN w.fits AND j.last_error LIKE '%(rule P1e)' THEN NULL
            WHEN w.fits THEN j.last_error
            ELSE format('order %s waits for the deposit: balance.do gives %s %s, and this order '
                        || '(%s) with the deposit orders paid or due before it needs %s; no '
                        || 'pay.do is sent until the balance covers it (checked again at %s; '
                        || 'rule P1e)',
                        j.order_no, round($1::float8::numeric, 2), $2::text, w.price, w.needed,
                        ticketing_now() + $3::bigint * interval '1 millisecond')
        END
    FROM weighed w
    WHERE j.id = w.id AND NOT (w.fits AND j.price_cleared_at IS NOT NULL)
    RETURNING j.order_no, w.fits
)
SELECT order_no AS "order_no!" FROM u WHERE NOT fits AND EXISTS (SELECT 1 FROM beat)
"#,
            balance,
            currency,
            millis(every),
            WEIGHED,
        )
        .fetch_all(self.db())
        .await?;
        Ok(held)
    }
}
