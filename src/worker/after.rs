//! After ticketing (docs/design.md, rule W6): a ticketed order ATRIP reported voided,
//! cancelled by the airline or rescheduled is asked about by order query, which alone turns
//! the report into `confirmed` or `unconfirmed`. The row stays `ticketed` throughout: it is
//! paid and holds no permit, so nothing here can lead to a `pay.do`.

use std::time::Duration;

use tracing::{info, warn};

use super::Worker;
use crate::atrip::codes::OrderStatus;
use crate::atrip::QueryAnswer;
use crate::jobs::{self, Change, Finding};

/// How long after each re-check that still shows the order ticketed the next one comes. ATRIP
/// says a void's first result usually comes within about 5 minutes and its completion may take
/// longer; an airline's cancellation has no documented delay. After the last, the report stays
/// `unconfirmed`, on the console's list for a person.
pub const RECHECK_AFTER: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
];

/// At most this many re-checks per round.
const BATCH: i64 = 16;

/// What an order query shows of a report (rule W6). `checks` is how many re-checks of this
/// report came before this one.
pub fn finding(change: Change, checks: i32, answer: &QueryAnswer) -> Finding {
    let left = usize::try_from(checks)
        .ok()
        .and_then(|n| RECHECK_AFTER.get(n))
        .copied();
    let again = |note: String, after: Option<Duration>| match left {
        Some(wait) => Finding::Again {
            note,
            after: after.unwrap_or(wait),
        },
        None => Finding::Unconfirmed { note },
    };
    match answer {
        QueryAnswer::Order(view) if view.order_status == OrderStatus::Cancelled => {
            Finding::Confirmed {
                // A cancelled order after a schedule-change report: the airline cancelled it.
                change: if change == Change::ScheduleChanged {
                    Change::CancelledByAirline
                } else {
                    change
                },
                note: format!(
                    "the order query shows the order cancelled (orderStatus -3, errorCode {}: {})",
                    view.error_code.as_deref().unwrap_or("none"),
                    view.error_message.as_deref().unwrap_or("no message")
                ),
            }
        }
        QueryAnswer::Order(view) => {
            let shows = format!(
                "the order query still shows the order with orderStatus {}",
                view.order_status.wire()
            );
            if change.query_can_show() {
                again(shows, None)
            } else {
                Finding::Unconfirmed {
                    note: format!(
                        "{shows}; a schedule change shows in no field of the order query: see ATRIP's incident list (event/getPageList.do) and the airline's email"
                    ),
                }
            }
        }
        QueryAnswer::RateLimited { retry_after } => again(
            "ATRIP's rate limit; asked again later".into(),
            Some(*retry_after),
        ),
        other => again(
            format!(
                "the order query gave no answer to go by ({}{})",
                other.class_name(),
                other
                    .status()
                    .map(|s| format!(", status {s}"))
                    .unwrap_or_default()
            ),
            None,
        ),
    }
}

impl Worker {
    /// Asks ATRIP about the ticketed orders whose report of a change is due for its order
    /// query, and records what each showed (rule W6). Returns how many were asked. Part of
    /// the stepping API: [`Worker::run`] calls it every claim interval. First applies the
    /// marks of deliveries that found their row locked (rule W3). Each order is claimed on
    /// its own and held for two query timeouts (the rate limiter, not paused, waits a few of
    /// its intervals at most): the claim covers the one query made under it, and its result
    /// is written only under it.
    pub async fn recheck_after_ticketing(&self) -> Result<usize, jobs::Error> {
        let i = &self.inner;
        i.store.apply_deferred_marks(BATCH).await?;
        let mut asked = 0;
        for _ in 0..BATCH {
            if i.limiter.paused() {
                break;
            }
            let Some(r) = i
                .store
                .claim_rechecks(1, i.atrip.query_timeout() * 2)
                .await?
                .pop()
            else {
                break;
            };
            // Not paused, so the limiter's wait is a few intervals at most: within the hold.
            i.limiter.acquire().await;
            asked += 1;
            self.recheck_one(&r).await?;
        }
        Ok(asked)
    }

    /// One claimed re-check: the order query, and its finding written under the claim.
    async fn recheck_one(&self, r: &jobs::Recheck) -> Result<(), jobs::Error> {
        let i = &self.inner;
        {
            let Some(change) = Change::parse(&r.change) else {
                return Ok(());
            };
            let answer = i.atrip.query(&r.order_no).await;
            if let QueryAnswer::RateLimited { retry_after } = &answer {
                i.limiter.pause_for(*retry_after);
            }
            let found = finding(change, r.checks, &answer);
            match &found {
                Finding::Confirmed { change, note } => warn!(
                    order_no = %r.order_no,
                    change = change.as_str(),
                    note,
                    "an order ATRIP had ticketed is {} (confirmed by order query)",
                    change.words()
                ),
                Finding::Unconfirmed { note } => warn!(
                    order_no = %r.order_no,
                    change = %r.change,
                    note,
                    "ATRIP reported a change after ticketing that the order query does not show; a person should look"
                ),
                Finding::Again { note, after } => info!(
                    order_no = %r.order_no,
                    change = %r.change,
                    note,
                    again_in_s = after.as_secs(),
                    "a change after ticketing is not shown by the order query yet"
                ),
            }
            if !i.store.record_recheck(r, &found, &i.id).await? {
                info!(order_no = %r.order_no, "a newer report or claim came meanwhile; this re-check's finding was dropped");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atrip::answer::classify_query;

    fn answer(status: &str) -> QueryAnswer {
        let body = serde_json::json!({
            "status": 0, "orderNo": "TESTA1234567", "orderStatus": status,
            "ticketStatus": if status == "2" { "1" } else { "0" },
            "errorCode": if status == "-3" { Some("699") } else { None },
            "paxTicketInfos": [{"name": "A/B", "ticketNos": ["S12345"], "airlinePNRs": ["S12345"]}],
        });
        classify_query("TESTA1234567", 200, body.to_string().as_bytes())
    }

    #[test]
    fn w6_only_an_order_query_showing_the_order_cancelled_confirms_a_void_or_cancellation() {
        for change in [Change::Voided, Change::CancelledByAirline] {
            assert!(matches!(
                finding(change, 0, &answer("-3")),
                Finding::Confirmed { change: c, .. } if c == change
            ));
            assert!(matches!(
                finding(change, 0, &answer("2")),
                Finding::Again { after, .. } if after == RECHECK_AFTER[0]
            ));
            let last = RECHECK_AFTER.len() as i32;
            assert!(matches!(
                finding(change, last, &answer("2")),
                Finding::Unconfirmed { .. }
            ));
            let unclear = QueryAnswer::Retry {
                reason: "timeout".into(),
            };
            assert!(matches!(
                finding(change, 0, &unclear),
                Finding::Again { .. }
            ));
        }
    }

    #[test]
    fn w6_a_schedule_change_is_unconfirmed_by_a_ticketed_answer_and_a_cancelled_one_is_the_airlines(
    ) {
        assert!(matches!(
            finding(Change::ScheduleChanged, 0, &answer("2")),
            Finding::Unconfirmed { .. }
        ));
        assert!(matches!(
            finding(Change::ScheduleChanged, 0, &answer("-3")),
            Finding::Confirmed {
                change: Change::CancelledByAirline,
                ..
            }
        ));
    }
}
