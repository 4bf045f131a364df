//! One catalogue case's world: a fresh database, the rogue ATRIP, a worker pointed at it (three
//! unclear answers in a row send a row to review), and the assertions every case shares.

use serde_json::Value;
use ticketing_tracker::config::Settings;
use ticketing_tracker::jobs::JobRow;
use ticketing_tracker::worker::{RoundReport, Worker};

use super::rogue::{Call, Rogue, TICKET};
use crate::support::app::{mor_card, test_settings, vcc_card, TestApp};

/// The order each case is about, and the good one enqueued next to it.
pub const BAD: &str = "BADORDER20261125000001";
pub const GOOD: &str = "GOODORDER20261125000002";

/// The card number of `vcc_card()`, which no error may quote, not even in part.
pub const CARD_DIGITS: &str = "453201511283";

pub struct World {
    pub app: TestApp,
    pub rogue: Rogue,
    pub worker: Worker,
}

impl World {
    pub async fn new() -> World {
        Self::tuned(|_| {}).await
    }

    /// A world whose worker settings `tune` adjusts.
    pub async fn tuned(tune: impl FnOnce(&mut Settings)) -> World {
        let app = TestApp::new().await;
        let rogue = Rogue::start().await;
        let mut settings = test_settings(&app.db.url(), rogue.base_url());
        settings.worker.max_error_streak = 3;
        tune(&mut settings);
        let worker = app.worker_with(&settings, "bad-input-worker");
        World { app, rogue, worker }
    }

    /// Inserts a row the way an enqueuer does.
    pub async fn enqueue(&self, order_no: &str, method: i16, card: Option<Value>) {
        self.app.enqueue(order_no, method, card).await;
    }

    /// Enqueues the good order, paid with `method` (and a valid card when it needs one).
    pub async fn enqueue_good(&self, method: i16) {
        let card = match method {
            3 => Some(vcc_card()),
            5 => Some(mor_card()),
            _ => None,
        };
        self.enqueue(GOOD, method, card).await;
    }

    /// One worker round; both orders are due, so both are in it.
    pub async fn step(&self) -> RoundReport {
        let round = self.worker.step().await.unwrap();
        assert_eq!(round.claimed, 2, "the bad and the good order in one batch");
        round
    }

    /// Steps the worker until no row is left to work on.
    pub async fn settle(&self) {
        self.app.settle(&self.worker, 300).await;
    }

    pub async fn job(&self, order_no: &str) -> JobRow {
        self.app.job(order_no).await
    }

    /// `BAD`'s row; its `last_error` names the order and contains every one of `says`.
    pub async fn bad_row_saying(&self, says: &[&str]) -> JobRow {
        let row = self.job(BAD).await;
        let error = row.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(BAD),
            "last_error must name the order: {error:?}"
        );
        for phrase in says {
            assert!(
                error.contains(phrase),
                "last_error must say {phrase:?}: {error:?}"
            );
        }
        assert!(
            !error.contains(CARD_DIGITS),
            "last_error quotes the card number"
        );
        row
    }

    /// `BAD` failed before anything was sent: the reason, no `pay.do`, card data erased.
    pub async fn assert_refused_before_pay(&self, says: &[&str]) {
        let mut says = says.to_vec();
        says.push("pay.do was not sent");
        let row = self.bad_row_saying(&says).await;
        assert_eq!(row.state, "failed", "{:?}", row.last_error);
        assert_eq!(self.rogue.pays(BAD), 0, "pay.do was sent");
        assert_eq!(self.rogue.queries(BAD), 0, "nothing to query");
        assert!(!row.card_plain, "card data kept after the refusal");
        assert!(row.paid_at.is_none() && row.ticket_numbers.is_none());
    }

    /// `BAD` went to review after `max_error_streak` (3) unclear answers, the last of which
    /// said each of `says`; it was paid once and never ticketed.
    pub async fn assert_reviewed_after_three_unclear_answers(&self, says: &[&str]) {
        let row = self.bad_row_saying(says).await;
        assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
        assert_eq!(row.error_streak, 3, "every unclear answer counted");
        assert!(row.ticket_numbers.is_none() && row.ticketed_at.is_none());
        assert_eq!(self.rogue.pays(BAD), 1, "{:?}", self.rogue.calls(BAD));
        assert_eq!(row.pay_attempts, 1);
    }

    /// `GOOD` was paid once and ticketed, whatever happened to `BAD`.
    pub async fn assert_good_ticketed(&self) {
        let row = self.job(GOOD).await;
        assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
        assert_eq!(row.pnr.as_deref(), Some(TICKET));
        assert!(
            row.ticket_numbers
                .as_ref()
                .unwrap()
                .to_string()
                .contains(TICKET),
            "{:?}",
            row.ticket_numbers
        );
        assert_eq!(row.error_streak, 0);
        assert_eq!(self.rogue.pays(GOOD), 1);
        assert_eq!(self.rogue.calls(GOOD)[0], Call::Pay);
    }
}
