//! The operator console's reads. Each one is served by an index (most by
//! `migrations/20261130000002_console_indexes.sql`) and bounded, so that a page costs
//! milliseconds with millions of finished rows. No statement here reads `card` or
//! `card_sealed` (a [`JobRow`] says only whether the row holds some): the console never holds
//! card data, so it cannot show it.

use super::rows::{job_rows, EventRow, JobRow};
use super::store::JobStore;
use super::Error;
use chrono::{DateTime, Utc};

/// A position in a newest-first list: the last row shown. The next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub updated_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    /// Before every row (the first page): far past any `updated_at` the table can hold.
    pub fn first() -> Cursor {
        Cursor {
            updated_at: DateTime::parse_from_rfc3339("9999-12-31T00:00:00Z")
                .expect("a valid time")
                .to_utc(),
            id: i64::MAX,
        }
    }

    /// The cursor after `row`.
    pub fn after(row: &JobRow) -> Cursor {
        Cursor {
            updated_at: row.updated_at,
            id: row.id,
        }
    }

    /// `MICROS.ID`, for a link.
    pub fn to_param(self) -> String {
        format!("{}.{}", self.updated_at.timestamp_micros(), self.id)
    }

    pub fn parse(param: &str) -> Option<Cursor> {
        let (micros, id) = param.split_once('.')?;
        Some(Cursor {
            updated_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// Orders paid and ticketed per time bucket since `start`, and enqueue → ticketed times.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub paid: Vec<i64>,
    pub ticketed: Vec<i64>,
    /// Median and 95th percentile of enqueue → ticketed (seconds) per bucket; `None` where
    /// nothing was ticketed.
    pub p50_s: Vec<Option<f64>>,
    pub p95_s: Vec<Option<f64>>,
    pub total_paid: i64,
    pub total_ticketed: i64,
    pub p50_total_s: Option<f64>,
    pub p95_total_s: Option<f64>,
}

/// How many answers of one class an endpoint gave.
#[derive(Debug, Clone)]
pub struct AnswerCount {
    /// `pay_answered` or `query_answered`.
    pub kind: String,
    /// The answer's class (`accepted`, `rate_limited`, ...).
    pub answer: String,
    pub n: i64,
}

/// The most recent answers the overview counts: past this, it says it counted only these.
pub const ANSWERS_COUNTED: i64 = 200_000;

/// How far back (in events) the overview looks for ATRIP's last clear answer.
pub const CLEAR_ANSWER_WINDOW: i64 = 20_000;

impl JobStore {
    /// The database's time (`ticketing_now()`), which every age on a page is measured from.
    pub async fn console_now(&self) -> Result<DateTime<Utc>, Error> {
        Ok(sqlx::query_scalar!(r#"SELECT ticketing_now() AS "now!""#)
            .fetch_one(self.db())
            .await?)
    }

    /// Rows per state, as `/metrics` counts them ([`JobStore::count_by_state`]: exact through
    /// the partial indexes, ticketed estimated on a large table), each shown up to `cap`.
    pub async fn console_state_counts(&self, cap: i64) -> Result<Vec<(String, i64)>, Error> {
        let counts = self.count_by_state().await?;
        Ok(crate::domain::State::ALL
            .iter()
            .map(|s| {
                let n = counts
                    .iter()
                    .find(|(state, _)| state == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s.as_str().to_owned(), n.min(cap))
            })
            .collect())
    }

    /// Paid and ticketed orders per bucket of `bucket_s` seconds from `start` (`buckets` of
    /// them), with enqueue → ticketed percentiles. Two index-only range scans.
    pub async fn console_throughput(
        &self,
        start: DateTime<Utc>,
        bucket_s: i64,
        buckets: usize,
    ) -> Result<Throughput, Error> {
        let index = |at: DateTime<Utc>| {
            usize::try_from((at - start).num_seconds() / bucket_s.max(1))
                .ok()
                .filter(|i| *i < buckets)
        };
        let mut out = Throughput {
            paid: vec![0; buckets],
            ticketed: vec![0; buckets],
            p50_s: vec![None; buckets],
            p95_s: vec![None; buckets],
            ..Throughput::default()
        };
        // Ticketed rows through their index (paid before they were ticketed), the few others
        // (a person's or still followed) through theirs.
        let paid = sqlx::query!(
            r#"SELECT date_bin($2::float8 * interval '1 second', paid_at, $1) AS "bucket!",
                      count(*) AS "n!"
               FROM (SELECT paid_at FROM ticketing_jobs
                     WHERE state = 'ticketed' AND ticketed_at >= $1 AND paid_at >= $1
                     UNION ALL
                     SELECT paid_at FROM ticketing_jobs
                     WHERE state IN ('failed', 'needs_review', 'cancelled') AND paid_at >= $1
                     UNION ALL
                     SELECT paid_at FROM ticketing_jobs
                     WHERE state IN ('pending', 'paying', 'ticketing') AND paid_at >= $1) p
               GROUP BY 1"#,
            start,
            bucket_s as f64
        )
        .fetch_all(self.db())
        .await?;
        for row in paid {
            out.total_paid += row.n;
            if let Some(i) = index(row.bucket) {
                out.paid[i] = row.n;
            }
        }
        let ticketed = sqlx::query!(
            r#"SELECT date_bin($2::float8 * interval '1 second', ticketed_at, $1) AS bucket,
                      count(*) AS "n!",
                      EXTRACT(EPOCH FROM percentile_cont(0.5) WITHIN GROUP
                              (ORDER BY ticketed_at - created_at))::float8 AS p50,
                      EXTRACT(EPOCH FROM percentile_cont(0.95) WITHIN GROUP
                              (ORDER BY ticketed_at - created_at))::float8 AS p95
               FROM ticketing_jobs WHERE ticketed_at >= $1 AND state = 'ticketed'
               GROUP BY GROUPING SETS ((1), ())"#,
            start,
            bucket_s as f64
        )
        .fetch_all(self.db())
        .await?;
        for row in ticketed {
            match row.bucket {
                // The grouping set () is the whole window.
                None => {
                    out.total_ticketed = row.n;
                    out.p50_total_s = row.p50;
                    out.p95_total_s = row.p95;
                }
                Some(bucket) => {
                    if let Some(i) = index(bucket) {
                        out.ticketed[i] = row.n;
                        out.p50_s[i] = row.p50;
                        out.p95_s[i] = row.p95;
                    }
                }
            }
        }
        Ok(out)
    }

    /// ATRIP's answers since `since` by endpoint and class, from the events (at most the
    /// [`ANSWERS_COUNTED`] most recent).
    pub async fn console_atrip_answers(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<AnswerCount>, Error> {
        let rows = sqlx::query_as!(
            AnswerCount,
            // The newest events by id (the primary key), at most the last ANSWERS_COUNTED.
            r#"SELECT kind AS "kind!", COALESCE(detail->>'answer', '') AS "answer!", count(*) AS "n!"
               FROM ticketing_events
               WHERE id > (SELECT COALESCE(max(id), 0) FROM ticketing_events) - $2
                 AND at >= $1 AND kind IN ('pay_answered', 'query_answered')
               GROUP BY 1, 2 ORDER BY 1, 3 DESC"#,
            since,
            ANSWERS_COUNTED
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows)
    }

    /// When ATRIP last gave a clear answer (an order query that showed the order or said it
    /// does not exist, or a `pay.do` answer with a documented code other than a refusal of our
    /// credentials, which means no order can move), among the last
    /// [`CLEAR_ANSWER_WINDOW`] events of any worker: `None` when none of them was clear.
    pub async fn console_last_clear_answer(&self) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(sqlx::query_scalar!(
            r#"SELECT max(at) FROM ticketing_events
               WHERE id > (SELECT COALESCE(max(id), 0) FROM ticketing_events) - $1
                 AND ((kind = 'query_answered' AND detail->>'answer' IN ('order', 'not_found'))
                      OR (kind = 'pay_answered' AND detail->>'answer' IN
                          ('accepted', 'never_pay_again', 'refused', 'payment_error')))"#,
            CLEAR_ANSWER_WINDOW
        )
        .fetch_one(self.db())
        .await?)
    }

    /// One order by its number.
    pub async fn console_order(&self, order_no: &str) -> Result<Option<JobRow>, Error> {
        Ok(job_rows!(r#"WHERE order_no = $1"#, order_no)
            .fetch_optional(self.db())
            .await?)
    }

    /// The `limit` most recent events of a row, oldest first.
    pub async fn console_events(&self, job_id: i64, limit: i64) -> Result<Vec<EventRow>, Error> {
        let mut rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id, job_id, order_no, at, kind, state, lease_token, worker, detail
               FROM ticketing_events WHERE job_id = $1
               ORDER BY id DESC LIMIT $2"#,
            job_id,
            limit
        )
        .fetch_all(self.db())
        .await?;
        rows.reverse();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_through_their_link_parameter() {
        let c = Cursor {
            updated_at: chrono::DateTime::from_timestamp_micros(1_764_480_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::parse(&c.to_param()), Some(c));
        assert_eq!(
            Cursor::parse(&Cursor::first().to_param()),
            Some(Cursor::first())
        );
        for bad in ["", "1", "x.1", "1.x", "1.2.3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
