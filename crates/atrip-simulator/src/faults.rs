//! The faults a request can suffer, chosen per request from the order's scenario (deterministic,
//! for tests) or from chaos mode (random, for soak runs), before any state is touched.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use ticketing_tracker::atrip::codes::query_status;

/// How long a scenario's `timeout_after_charge` holds a request. "Until the client gives up"
/// in practice; the cap only stops a forgotten request from living forever.
const SCENARIO_HOLD: Duration = Duration::from_secs(600);
/// Chaos holds are shorter so a soak run does not pile up open connections.
const CHAOS_HOLD: Duration = Duration::from_secs(30);

/// What a test asks of one order (`POST /sim/orders/{orderNo}/scenario`). Counters are "the next
/// N requests"; each request consumes at most one connection-level fault, in the order the
/// fields are listed, so `reset_before_charge: 1, drop_after_charge: 1` means "first pay.do is
/// reset, the second is charged and its answer lost". Unknown fields are refused so a typo in
/// a test fails loudly instead of testing nothing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Scenario {
    /// Next N pay.do: connection closed without an answer, nothing charged.
    pub reset_before_charge: u32,
    /// Next N pay.do: HTTP 502 with an HTML page, nothing charged.
    pub fail_before_charge: u32,
    /// Next N pay.do: processed normally (charged if payable), then the connection is closed.
    pub drop_after_charge: u32,
    /// Next N pay.do: processed normally, then never answered.
    pub timeout_after_charge: u32,
    /// Every request for this order waits this long before it is processed.
    pub delay_ms: u64,
    /// Per-order processing time, overriding `SimConfig::payment_processing`: from pay.do's
    /// decision to the charge, while the request is held and the query shows "0".
    pub payment_processing_ms: Option<u64>,
    /// After a charge, this long of "payment in progress" (406; query "0" or "1").
    pub payment_in_progress_ms: u64,
    /// Ticketing ends `"-3"` with this `errorCode` instead of `"2"`.
    pub fail_ticketing: Option<String>,
    /// Per-order ticketing delay, overriding the simulator's.
    pub ticketing_delay_ms: Option<u64>,
    /// Next N answers of any endpoint: HTTP 200 with a body that is not valid ATRIP JSON.
    pub garbled: u32,
    /// The next pay.do answers this status; it charges only when the code means "accepted".
    pub pay_status: Option<i64>,
    /// Next N queries answer `query_status_code` (705 when left at 0).
    pub query_status: u32,
    pub query_status_code: i64,
    /// Next N queries answer HTTP 429 with ATRIP's rate-limit body.
    pub rate_limit_queries: u32,
    /// pay.do answers 615 (charged, PNR pending) and ticketing takes five times longer.
    pub pnr_pending: bool,
    /// While set, the order's answers carry no airline PNR (empty `airlinePNRs`, a null
    /// `airlineBookings[].airlinePnr`) even once ticketed: the airline has not given one yet
    /// and ATRIP pursues it. Only `pnrCode`, ATRIP's own reference, is there.
    pub airline_pnr_withheld: bool,
    /// While set, the query's `paxTicketInfos` leaves out this many of the order's last
    /// passengers (an answer that omits a passenger), tickets or not.
    pub omit_passengers: u32,
    /// Next N queries answer without `ticketStatus`.
    pub omit_ticket_status: u32,
    /// How the issued tickets look in `paxTicketInfos` and `airlineBookings`.
    pub ticket_shape: TicketShape,
    /// Before issue, `ticketNos` and `airlinePNRs` are `null` (not `[]`): ATRIP's documents
    /// say only "empty until ticketing completes".
    pub unissued_tickets_null: bool,
}

/// The shapes ATRIP's ticketed answers take (`Scenario::ticket_shape`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum TicketShape {
    /// One ticket number and one airline PNR per passenger, one airline booking.
    #[default]
    PerPassenger,
    /// One ticket number and PNR shared by every passenger, as low-cost carriers issue them
    /// (ATRIP's `order.ticketed` webhook sample has `ticketNos` equal to `airlinePNRs`).
    Shared,
    /// A round trip split into two bookings: each passenger holds two ticket numbers and two
    /// airline PNRs (outbound first), and `airlineBookings` lists both bookings.
    SplitRoundTrip,
}

/// A fault that stops the request before the business logic runs: nothing is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Before {
    Reset,
    ServerError,
}

/// A fault applied to the answer after the business logic ran (and maybe charged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum After {
    Drop,
    Hold(Duration),
    Garble,
}

/// A query answer replaced by a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryOverride {
    RateLimited,
    Status(i64),
    Garble,
}

#[derive(Debug, Default)]
pub(super) struct PayPlan {
    pub delay: Duration,
    pub before: Option<Before>,
    pub after: Option<After>,
    pub pay_status: Option<i64>,
    pub in_progress: Option<Duration>,
    pub faults: u64,
}

#[derive(Debug, Default)]
pub(super) struct QueryPlan {
    pub delay: Duration,
    pub before: Option<Before>,
    pub answer: Option<QueryOverride>,
    pub faults: u64,
    /// The answer leaves `ticketStatus` out.
    pub omit_ticket_status: bool,
}

/// Takes one from a "next N" counter.
fn take(counter: &mut u32) -> bool {
    let hit = *counter > 0;
    *counter = counter.saturating_sub(1);
    hit
}

impl Scenario {
    /// The plan for the next pay.do, consuming the counters it uses.
    pub(super) fn take_pay_plan(&mut self) -> PayPlan {
        let mut plan = PayPlan {
            delay: Duration::from_millis(self.delay_ms),
            ..PayPlan::default()
        };
        if take(&mut self.reset_before_charge) {
            plan.before = Some(Before::Reset);
        } else if take(&mut self.fail_before_charge) {
            plan.before = Some(Before::ServerError);
        }
        if plan.before.is_some() {
            // The request never reached the payment logic: the other counters wait for one
            // that does.
            plan.faults = 1;
            return plan;
        }
        if take(&mut self.drop_after_charge) {
            plan.after = Some(After::Drop);
        } else if take(&mut self.timeout_after_charge) {
            plan.after = Some(After::Hold(SCENARIO_HOLD));
        } else if take(&mut self.garbled) {
            plan.after = Some(After::Garble);
        }
        plan.pay_status = self.pay_status.take();
        plan.faults = u64::from(plan.after.is_some()) + u64::from(plan.pay_status.is_some());
        plan
    }

    /// The plan for the next query, consuming the counters it uses.
    pub(super) fn take_query_plan(&mut self) -> QueryPlan {
        let mut plan = QueryPlan {
            delay: Duration::from_millis(self.delay_ms),
            ..QueryPlan::default()
        };
        if take(&mut self.rate_limit_queries) {
            plan.answer = Some(QueryOverride::RateLimited);
        } else if take(&mut self.query_status) {
            let code = if self.query_status_code == 0 {
                query_status::TIMEOUT
            } else {
                self.query_status_code
            };
            plan.answer = Some(QueryOverride::Status(code));
        } else if take(&mut self.garbled) {
            plan.answer = Some(QueryOverride::Garble);
        }
        plan.faults = u64::from(plan.answer.is_some());
        plan.omit_ticket_status = take(&mut self.omit_ticket_status);
        plan
    }
}

/// Chaos mode: each pay.do or query gets, with probability `rate`, one random fault. Seeded so
/// a failing soak run can be replayed (as far as request interleaving allows).
pub(super) struct Chaos {
    rate: f64,
    rng: Mutex<StdRng>,
}

impl Chaos {
    pub(super) fn new(rate: f64, seed: Option<u64>) -> Chaos {
        let rng = seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64);
        Chaos {
            rate: rate.clamp(0.0, 1.0),
            rng: Mutex::new(rng),
        }
    }

    /// Rolls a fault for a pay.do the scenario left alone (a scenario fault wins, so tests stay
    /// deterministic even with chaos on).
    pub(super) fn roll_pay(&self, plan: &mut PayPlan) {
        if self.rate <= 0.0 || plan.before.is_some() || plan.after.is_some() {
            return;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if !rng.gen_bool(self.rate) {
            return;
        }
        match rng.gen_range(0..7) {
            0 => plan.before = Some(Before::Reset),
            1 => plan.before = Some(Before::ServerError),
            2 => plan.after = Some(After::Drop),
            3 => plan.after = Some(After::Hold(CHAOS_HOLD)),
            4 => plan.delay += Duration::from_millis(rng.gen_range(200..=2000)),
            5 => plan.in_progress = Some(Duration::from_millis(rng.gen_range(500..=3000))),
            _ => plan.after = Some(After::Garble),
        }
        plan.faults += 1;
    }

    /// Rolls a fault for a query the scenario left alone.
    pub(super) fn roll_query(&self, plan: &mut QueryPlan) {
        if self.rate <= 0.0 || plan.before.is_some() || plan.answer.is_some() {
            return;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if !rng.gen_bool(self.rate) {
            return;
        }
        match rng.gen_range(0..6) {
            0 => plan.before = Some(Before::Reset),
            1 => plan.before = Some(Before::ServerError),
            2 => plan.delay += Duration::from_millis(rng.gen_range(200..=2000)),
            3 => plan.answer = Some(QueryOverride::Garble),
            4 => plan.answer = Some(QueryOverride::Status(query_status::TIMEOUT)),
            _ => plan.answer = Some(QueryOverride::RateLimited),
        }
        plan.faults += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_counters_are_consumed_one_fault_per_request() {
        let mut s = Scenario {
            reset_before_charge: 1,
            drop_after_charge: 1,
            ..Scenario::default()
        };
        assert_eq!(s.take_pay_plan().before, Some(Before::Reset));
        let second = s.take_pay_plan();
        assert_eq!((second.before, second.after), (None, Some(After::Drop)));
        let third = s.take_pay_plan();
        assert_eq!((third.before, third.after, third.faults), (None, None, 0));
    }

    #[test]
    fn seeded_chaos_repeats_itself() {
        let run = || {
            let chaos = Chaos::new(0.5, Some(7));
            (0..50)
                .map(|_| {
                    let mut plan = PayPlan::default();
                    chaos.roll_pay(&mut plan);
                    format!("{plan:?}")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
