//! The SQL of pausing paying (docs/design.md, rule S4): pause, resume, the pauses in force and
//! their history. A row of `ticketing_pauses` is a pause; setting `resumed_at` ends it, and the
//! rows that stay are the record of who paused and resumed, when and why. The claim
//! (`ticketing_due()`) reads the pauses in force itself; nothing here touches a claimed row.

use chrono::{DateTime, Utc};

use super::store::JobStore;
use super::Error;
use crate::domain::PauseScope;

/// The longest reason a pause takes: it is shown in one line on every console page and in the
/// worker's log.
pub const MAX_REASON_CHARS: usize = 500;

/// The longest name `paused_by`/`resumed_by` takes.
pub const MAX_BY_CHARS: usize = 100;

/// One pause, in force or ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pause {
    pub id: i64,
    /// The column: 0 for every method, else the method's code (see [`Pause::scope`]).
    pub method: i32,
    pub reason: String,
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
    pub resumed_by: Option<String>,
    pub resumed_at: Option<DateTime<Utc>>,
    /// How long it has lasted (in force) or lasted (ended), in the database's time.
    pub seconds: f64,
}

impl Pause {
    /// Every method, or one. The table's CHECK holds `method` to the known values; a value
    /// that slipped past it is read as every method, the stricter reading.
    pub fn scope(&self) -> PauseScope {
        PauseScope::from_code(self.method).unwrap_or(PauseScope::Every)
    }

    /// Whether it is still in force.
    pub fn in_force(&self) -> bool {
        self.resumed_at.is_none()
    }

    /// One line for people: `paying every method paused since 2026-12-04 10:00:00 UTC by
    /// cli:alice: card processor incident`.
    pub fn describe(&self) -> String {
        format!(
            "paying {} paused since {} by {}: {}",
            self.scope(),
            self.paused_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.paused_by,
            self.reason
        )
    }
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Resumed {
    /// The pause it ended.
    pub pause: Pause,
    /// `paying` rows of that scope that may still pay (an operator's retry waiting for the
    /// resume), due now.
    pub woken: i64,
}

/// A reason as it is kept: whitespace runs (newlines included) made one space, trimmed.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a pause's reason and who gives it, as the table will (and a little more: one line,
/// a length a page can show).
fn checked(reason: &str, by: &str) -> Result<(String, String), Error> {
    let refuse = |why: String| Err(Error::PauseRefused(why));
    // Control characters are written out: the reason is shown on every page and terminal.
    let (reason, by) = (
        crate::domain::printable(&one_line(reason)),
        crate::domain::printable(&one_line(by)),
    );
    if reason.is_empty() {
        return refuse(
            "the reason is empty: say why paying is paused (everyone who looks sees it); nothing was paused".into(),
        );
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return refuse(format!(
            "the reason has {} characters, more than {MAX_REASON_CHARS}: it is shown in one line on every page; nothing was paused",
            reason.chars().count()
        ));
    }
    if by.is_empty() || by.chars().count() > MAX_BY_CHARS {
        return refuse(format!(
            "who pauses must be named in 1 to {MAX_BY_CHARS} characters (--by); nothing was paused"
        ));
    }
    Ok((reason, by))
}

/// The pauses in force, as a clause for a refusal: ` (in force: paying method 3 paused since
/// … by …: …)`, or nothing.
fn in_force_clause(pauses: &[Pause]) -> String {
    if pauses.is_empty() {
        return " (no pause is in force)".into();
    }
    let list: Vec<String> = pauses.iter().map(Pause::describe).collect();
    format!(" (in force: {})", list.join("; "))
}

impl JobStore {
    /// Pauses paying for `scope`: from this commit on, no claim records a pay intent for a
    /// `pending` row it holds, but for one whose payment deadline has passed, which fails
    /// without a send (rule S4). Refused when that scope is paused already (the table's unique
    /// index of pauses in force decides between two operators at once): nothing changes, and
    /// the refusal names the pause in force.
    pub async fn pause(&self, scope: PauseScope, reason: &str, by: &str) -> Result<Pause, Error> {
        let (reason, by) = checked(reason, by)?;
        let made = sqlx::query_as!(
            Pause,
            r#"INSERT INTO ticketing_pauses (method, reason, paused_by) VALUES ($1, $2, $3)
               RETURNING id, method, reason, paused_by, paused_at, resumed_by, resumed_at,
                         0::float8 AS "seconds!""#,
            scope.code(),
            reason,
            by
        )
        .fetch_one(self.db())
        .await;
        match made {
            Ok(pause) => Ok(pause),
            Err(sqlx::Error::Database(e))
                if e.constraint() == Some("ticketing_pauses_in_force") =>
            {
                let held = self.pauses_in_force().await?;
                let since = held
                    .iter()
                    .find(|p| p.method == scope.code())
                    .map(|p| {
                        format!(
                            ", since {} by {}: {}",
                            p.paused_at.format("%Y-%m-%d %H:%M:%S UTC"),
                            p.paused_by,
                            p.reason
                        )
                    })
                    .unwrap_or_default();
                Err(Error::PauseRefused(format!(
                    "paying {scope} is paused already{since}; nothing was changed (resume it first to pause it with another reason)"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the pause of `scope` (only that one: a pause of every method and one of a single
    /// method are ended each by its own resume). In the same statement the `paying` rows of
    /// that scope that may still pay (an operator's retry or a `pay.do` that never left, which
    /// waited for the resume) are made due now; the table's trigger wakes the workers. Refused
    /// when that scope is not paused, naming what is.
    pub async fn resume(&self, scope: PauseScope, by: &str) -> Result<Resumed, Error> {
        let by = one_line(by);
        if by.is_empty() || by.chars().count() > MAX_BY_CHARS {
            return Err(Error::PauseRefused(format!(
                "who resumes must be named in 1 to {MAX_BY_CHARS} characters (--by); nothing was resumed"
            )));
        }
        let ended = sqlx::query!(
            r#"
WITH r AS (
    UPDATE ticketing_pauses SET resumed_at = ticketing_now(), resumed_by = $2
    WHERE method = $1 AND resumed_at IS NULL
    RETURNING id, method, reason, paused_by, paused_at, resumed_by, resumed_at
), woken AS (
    UPDATE ticketing_jobs j SET run_at = LEAST(j.run_at, ticketing_now())
    WHERE EXISTS (SELECT 1 FROM r)
      AND j.state = 'paying' AND j.paid_at IS NULL
      AND j.pay_attempts - j.pay_not_sent < j.pay_permits
      AND ($1 = 0 OR j.payment_method = $1)
    RETURNING j.id
)
SELECT id AS "id!", method AS "method!", reason AS "reason!", paused_by AS "paused_by!",
       paused_at AS "paused_at!", resumed_by, resumed_at,
       EXTRACT(EPOCH FROM (resumed_at - paused_at))::float8 AS "seconds!",
       (SELECT count(*) FROM woken) AS "woken!"
FROM r"#,
            scope.code(),
            by
        )
        .fetch_optional(self.db())
        .await?;
        match ended {
            Some(r) => Ok(Resumed {
                pause: Pause {
                    id: r.id,
                    method: r.method,
                    reason: r.reason,
                    paused_by: r.paused_by,
                    paused_at: r.paused_at,
                    resumed_by: r.resumed_by,
                    resumed_at: r.resumed_at,
                    seconds: r.seconds,
                },
                woken: r.woken,
            }),
            None => {
                let held = self.pauses_in_force().await?;
                Err(Error::PauseRefused(format!(
                    "paying {scope} is not paused; nothing was resumed{}",
                    in_force_clause(&held)
                )))
            }
        }
    }

    /// The pauses in force, every method first, then by method.
    pub async fn pauses_in_force(&self) -> Result<Vec<Pause>, Error> {
        let rows = sqlx::query_as!(
            Pause,
            r#"SELECT id, method, reason, paused_by, paused_at, resumed_by, resumed_at,
                      GREATEST(EXTRACT(EPOCH FROM (ticketing_now() - paused_at))::float8, 0) AS "seconds!"
               FROM ticketing_pauses WHERE resumed_at IS NULL ORDER BY method"#
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows)
    }

    /// The last `limit` pauses, in force or ended, newest first: who paused and resumed, when
    /// and why.
    pub async fn pause_history(&self, limit: i64) -> Result<Vec<Pause>, Error> {
        let rows = sqlx::query_as!(
            Pause,
            r#"SELECT id, method, reason, paused_by, paused_at, resumed_by, resumed_at,
                      GREATEST(EXTRACT(EPOCH FROM (COALESCE(resumed_at, ticketing_now()) - paused_at))::float8, 0) AS "seconds!"
               FROM ticketing_pauses ORDER BY id DESC LIMIT $1"#,
            limit
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows)
    }

    /// Whether paying `method` is paused now, and if so the pause in words, as the claim words
    /// it for a row it fails (rule S4). Asked only where a step would record a new intent for a
    /// `paying` row (an operator's retry, a `pay.do` that never left), so the claim's hot path
    /// runs no statement of its own for it.
    pub async fn paused_for(&self, method: i16) -> Result<Option<String>, Error> {
        let paused = sqlx::query_scalar!(
            r#"SELECT format('paying %s has been paused since %s by %s: %s',
                             CASE WHEN p.method = 0 THEN 'every method' ELSE 'method ' || p.method END,
                             p.paused_at, p.paused_by, p.reason) AS "paused!"
               FROM ticketing_pauses p
               WHERE p.resumed_at IS NULL AND p.method IN (0, $1::integer)
               ORDER BY p.paused_at LIMIT 1"#,
            i32::from(method)
        )
        .fetch_optional(self.db())
        .await?;
        Ok(paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_kept_on_one_line_and_an_empty_or_long_one_is_refused() {
        let (reason, by) = checked("  card processor\n incident ", "cli:alice").unwrap();
        assert_eq!(reason, "card processor incident");
        assert_eq!(by, "cli:alice");
        for bad in ["", "   \n\t", &"x".repeat(MAX_REASON_CHARS + 1)] {
            let err = checked(bad, "cli:alice").unwrap_err().to_string();
            assert!(err.contains("nothing was paused"), "{err}");
        }
        assert!(checked("why", " ").is_err());
    }
}
