//! The console's filtered lists: the orders that need a person (filtered and sorted as an
//! operator with a few hundred of them asks), and finding orders by the start of a number, a
//! ticket, a passenger, ATRIP's reference or request id, within a time range. Every statement
//! is bounded by a LIMIT and served by an index (`migrations/…_console_indexes.sql`,
//! `migrations/…_console_find_indexes.sql`); none selects card data.

use chrono::{DateTime, Utc};

use super::rows::{job_rows, JobRow};
use super::store::JobStore;
use super::Error;
use crate::domain::State;

/// Which payment deadlines a list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineFilter {
    /// Not yet passed, and passing within this many seconds.
    Within(i64),
    /// Passed (by the database's time).
    Passed,
    /// No payment deadline on the row.
    None,
}

/// How the review list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewSort {
    /// Soonest payment deadline first (rows without one last), then longest waiting.
    #[default]
    Deadline,
    /// Longest waiting first (oldest `updated_at`).
    Age,
    /// By order number.
    OrderNo,
}

impl ReviewSort {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewSort::Deadline => "deadline",
            ReviewSort::Age => "age",
            ReviewSort::OrderNo => "order",
        }
    }
}

/// The review list's filters, all optional. Times are compared with the database's.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// `needs_review` or `failed`; both when `None`.
    pub state: Option<State>,
    pub method: Option<i16>,
    /// Waiting at least this many seconds (since the row's last change).
    pub older_than_s: Option<i64>,
    pub deadline: Option<DeadlineFilter>,
    /// Last changed at or after / before.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Failed rows the review list considers when no `from` is given: failed rows stay until the
/// retention prunes them, and the list is for what still needs a person.
pub const FAILED_DEFAULT_WINDOW_DAYS: i32 = 7;

/// The most rows each way of finding an order hands on before the time range is applied: a
/// short prefix matches most of the table, and this bounds what it reads. A prefix keeps its
/// highest numbers (the newest, as order numbers grow).
pub const CANDIDATES: i64 = 5000;

/// What a search looks for. Codes are compared in upper case.
#[derive(Debug, Clone, Default)]
pub struct FindQuery {
    /// The start of an order number or client order number, ATRIP's reference, an airline
    /// PNR, a ticket number, a passenger (`DOE/JANE`) or ATRIP's request id.
    pub text: String,
    /// Enqueued at or after / before.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl JobStore {
    /// `needs_review` rows and (within the time range, by default the last
    /// [`FAILED_DEFAULT_WINDOW_DAYS`] days) `failed` ones, filtered and sorted, at most `limit`:
    /// a range scan of `ticketing_jobs_attention` per state.
    pub async fn console_review(
        &self,
        f: &ReviewFilter,
        sort: ReviewSort,
        limit: i64,
    ) -> Result<Vec<JobRow>, Error> {
        let states: Vec<String> = match f.state {
            Some(s) => vec![s.as_str().to_owned()],
            None => vec!["needs_review".into(), "failed".into()],
        };
        let (deadline, within_s) = match f.deadline {
            None => ("any", 0_i64),
            Some(DeadlineFilter::Within(s)) => ("within", s),
            Some(DeadlineFilter::Passed) => ("passed", 0),
            Some(DeadlineFilter::None) => ("none", 0),
        };
        Ok(job_rows!(
            r#"WHERE state = ANY($1::text[]) AND state IN ('needs_review', 'failed')
                 AND (state = 'needs_review' OR $5::timestamptz IS NOT NULL
                      OR updated_at >= ticketing_now() - $10::integer * interval '1 day')
                 AND ($2::smallint IS NULL OR payment_method = $2)
                 AND ($3::bigint IS NULL OR updated_at <= ticketing_now() - $3 * interval '1 second')
                 AND CASE $4::text
                       WHEN 'within' THEN pay_deadline > ticketing_now()
                            AND pay_deadline <= ticketing_now() + $7::bigint * interval '1 second'
                       WHEN 'passed' THEN pay_deadline <= ticketing_now()
                       WHEN 'none' THEN pay_deadline IS NULL
                       ELSE true END
                 AND ($5::timestamptz IS NULL OR updated_at >= $5)
                 AND ($6::timestamptz IS NULL OR updated_at < $6)
               ORDER BY CASE WHEN $8::text = 'deadline' THEN pay_deadline END ASC NULLS LAST,
                        CASE WHEN $8::text = 'order' THEN order_no END ASC,
                        updated_at ASC, id ASC
               LIMIT $9"#,
            &states,
            f.method,
            f.older_than_s,
            deadline,
            f.from,
            f.until,
            within_s,
            sort.as_str(),
            limit,
            FAILED_DEFAULT_WINDOW_DAYS,
        )
        .fetch_all(self.db())
        .await?)
    }

    /// Orders found by `q`, newest first, at most `limit`: each way of finding one through its
    /// own index (finished rows through the partial indexes of migration 16 and the console's
    /// GIN index; the few rows still followed through the claim's index), then the time range.
    pub async fn console_search(&self, q: &FindQuery, limit: i64) -> Result<Vec<JobRow>, Error> {
        let text = q.text.trim();
        let code = text.to_uppercase();
        let ticket = serde_json::json!([{ "ticket_numbers": [text] }]);
        let passenger = serde_json::json!([{ "passenger": code }]);
        // A prefix as a range of the text_pattern_ops indexes (`~>=~`, `~<~`: byte order),
        // read from its highest value down: a prepared statement's generic plan cannot turn a
        // LIKE of a parameter into an index range, and a short prefix matches most rows.
        // chr(1114111) is the highest code point: every text starting with the prefix sorts
        // below the prefix followed by it. The ids found are an array looked up by primary key
        // (`= ANY(ARRAY(…))`): as `IN (…)` a generic plan may walk the whole primary key.
        let mut rows = job_rows!(
            r#"WHERE id = ANY(ARRAY(
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                      AND order_no ~>=~ $1 AND order_no ~<~ ($1 || chr(1114111))
                    ORDER BY order_no USING ~>~ LIMIT $8)
                   UNION
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                      AND upper(client_order_no) ~>=~ $1
                      AND upper(client_order_no) ~<~ ($1 || chr(1114111))
                    ORDER BY upper(client_order_no) USING ~>~ LIMIT $8)
                   UNION
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                      AND (string_to_array(COALESCE(pnr, ''), ' ')
                           || ARRAY[atrip_pnr, upper(client_order_no)]) @> ARRAY[$1::text]
                    LIMIT $8)
                   UNION
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                      AND ticket_numbers @> $2::jsonb
                    LIMIT $8)
                   UNION
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                      AND ticket_numbers @> $3::jsonb
                    LIMIT $8)
                   UNION
                   (SELECT job_id FROM ticketing_events
                    WHERE detail->>'request_id' = $4 AND detail ? 'request_id'
                    LIMIT $8)
                   UNION
                   (SELECT id FROM ticketing_jobs
                    WHERE state IN ('pending', 'paying', 'ticketing')
                      AND (starts_with(order_no, $1) OR starts_with(upper(client_order_no), $1)
                           OR atrip_pnr = $1 OR ticket_numbers @> $2::jsonb
                           OR ticket_numbers @> $3::jsonb)
                    LIMIT $8)))
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
                 AND ($6::timestamptz IS NULL OR created_at < $6)
               ORDER BY id DESC
               LIMIT $7"#,
            code,
            ticket,
            passenger,
            text,
            q.from,
            q.until,
            limit,
            CANDIDATES,
        )
        .fetch_all(self.db())
        .await?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.id));
        Ok(rows)
    }

    /// One state's rows last changed within `[from, until)`, newest first, after `before`, at
    /// most `limit` (the lists' time range and their CSV export). Ticketed rows through their
    /// index (a ticketed row's `updated_at` is its `ticketed_at`), the states a person looks
    /// at through `ticketing_jobs_attention`, the few rows still followed through the claim's.
    pub async fn console_in_state_between(
        &self,
        state: State,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        before: super::Cursor,
        limit: i64,
    ) -> Result<Vec<JobRow>, Error> {
        if state == State::Ticketed {
            return Ok(job_rows!(
                r#"WHERE state = 'ticketed'
                     AND ($1::timestamptz IS NULL OR ticketed_at >= $1)
                     AND ($2::timestamptz IS NULL OR ticketed_at < $2)
                     AND (ticketed_at, id) < ($3, $4)
                   ORDER BY ticketed_at DESC, id DESC
                   LIMIT $5"#,
                from,
                until,
                before.updated_at,
                before.id,
                limit,
            )
            .fetch_all(self.db())
            .await?);
        }
        Ok(job_rows!(
            r#"WHERE state = $1
                 AND ($2::timestamptz IS NULL OR updated_at >= $2)
                 AND ($3::timestamptz IS NULL OR updated_at < $3)
                 AND (updated_at, id) < ($4, $5)
               ORDER BY updated_at DESC, id DESC
               LIMIT $6"#,
            state.as_str(),
            from,
            until,
            before.updated_at,
            before.id,
            limit,
        )
        .fetch_all(self.db())
        .await?)
    }
}
