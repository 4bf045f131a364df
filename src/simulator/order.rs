//! One simulated order and the pure function that tells, from the clock alone, what its query
//! shows: progress is computed lazily at each read, so no timer can fire late or twice.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use super::card::CardBrand;
use super::faults::Scenario;
use super::ledger::OrderLedger;
use super::SimConfig;
use crate::atrip::codes::{OrderStatus, TICKET_ISSUED, TICKET_NOT_ISSUED};

/// The airline every simulated order flies: the sandbox examples use Cebu Pacific (`5J`).
pub(super) const AIRLINE_CODE: &str = "5J";
const AIRLINE_NAME: &str = "Cebu Pacific";
pub(super) const CURRENCY: &str = "USD";

/// ATRIP writes every time (`tktLimitTime`, `payTime`) in Singapore time without an offset.
pub(super) fn sgt(t: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    t.with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[derive(Clone, Debug)]
pub(super) struct Passenger {
    pub name: String,
    pub passenger_type: i64,
    pub gender: String,
    pub birthday: String,
}

impl Passenger {
    /// The traveller the sandbox's own examples use when `order.do` names none.
    pub(super) fn default_traveller() -> Passenger {
        Passenger {
            name: "TEST/TRAVELLER".into(),
            passenger_type: 0,
            gender: "M".into(),
            birthday: "19900101".into(),
        }
    }
}

/// Why an order is cancelled, as the query's `errorCode`/`errorMessage`/`airlineMessage` say.
#[derive(Clone, Debug, Default)]
pub(super) struct Cancellation {
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub airline_message: Option<String>,
}

/// How ticketing will end, fixed at the charge so that a scenario posted later cannot change
/// an outcome the worker may already have seen.
#[derive(Clone, Debug)]
pub(super) enum Outcome {
    /// One ticket number per passenger, revealed at their time.
    Tickets(Vec<String>),
    /// The order ends `"-3"` with this reason.
    Fails(Cancellation),
}

/// The accepted payment of an order: there is at most one, which is the pay-once invariant the
/// whole simulator exists to check.
#[derive(Clone, Debug)]
pub(super) struct Payment {
    pub charged_at: Instant,
    pub pay_time: DateTime<Utc>,
    pub method: i64,
    /// The "payment operation in progress" window after the charge (406 on pay.do).
    pub in_progress: Duration,
    /// From the end of the in-progress window to the final state.
    pub ticketing_delay: Duration,
    pub outcome: Outcome,
    /// The only card data kept: last four digits, also shown as `tailDigitsOfPaymentCard`.
    pub card_tail: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Order {
    pub order_no: String,
    pub pnr_code: String,
    pub passengers: Vec<Passenger>,
    pub total_price: f64,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub support_payment_methods: Vec<i64>,
    pub accepted_brands: Vec<CardBrand>,
    /// `payment.cardType` given to `order.do` (MoR): pay.do's card must be this brand (414).
    pub mor_card_type: Option<String>,
    /// FR flow where the traveller never confirmed: pay.do answers 415 and cancels.
    pub fr_flow: bool,
    pub missing_passenger_data: bool,
    /// A cancellation that happened without a charge (the FR 415 case).
    pub cancelled: Option<Cancellation>,
    pub payment: Option<Payment>,
    pub scenario: Scenario,
    pub ledger: OrderLedger,
    /// Set once an answer showing the order paid was delivered; pay.do after that is counted.
    pub shown_paid: bool,
    /// Set once the final-state webhook was queued, so it is sent once.
    pub webhook_sent: bool,
}

/// What the order looks like at one instant.
#[derive(Clone, Debug)]
pub(super) struct View {
    pub status: OrderStatus,
    /// Per passenger, the ticket number if already issued.
    pub tickets: Vec<Option<String>>,
    pub cancellation: Option<Cancellation>,
    /// Whether `payTime`/`paymentMethod` are shown (hidden while a payment in progress looks unpaid).
    pub shows_payment: bool,
    /// Inside the payment-in-progress window (pay.do answers 406).
    pub in_progress: bool,
    /// Unpaid and past `tktLimitTime`.
    pub expired: bool,
}

impl View {
    pub(super) fn is_final(&self) -> bool {
        matches!(self.status, OrderStatus::Ticketed | OrderStatus::Cancelled)
    }
}

impl Order {
    /// The order at `now`. Pure: the same inputs always give the same view, and every state
    /// only moves forward with time, so once final an order answers identically forever.
    pub(super) fn view(&self, config: &SimConfig, now: Instant, now_utc: DateTime<Utc>) -> View {
        let mut view = View {
            status: OrderStatus::Unpaid,
            tickets: vec![None; self.passengers.len()],
            cancellation: None,
            shows_payment: false,
            in_progress: false,
            expired: false,
        };
        if let Some(c) = &self.cancelled {
            view.status = OrderStatus::Cancelled;
            view.cancellation = Some(c.clone());
            return view;
        }
        let Some(payment) = &self.payment else {
            if now_utc >= self.deadline {
                view.expired = true;
                view.status = OrderStatus::from_wire(&config.expired_order_status);
                if view.status == OrderStatus::Cancelled {
                    // ATRIP documents errorCode only for issuance failures; an expired hold
                    // carries none, only the reason in words.
                    view.cancellation = Some(Cancellation {
                        error_code: None,
                        error_message: Some(crate::atrip::codes::pay_msg(401).to_owned()),
                        airline_message: None,
                    });
                }
            }
            return view;
        };
        let start = payment.charged_at + payment.in_progress;
        if now < start {
            view.in_progress = true;
            view.shows_payment = !config.unpaid_while_in_progress;
            view.status = if config.unpaid_while_in_progress {
                OrderStatus::Unpaid
            } else {
                OrderStatus::Ticketing
            };
            return view;
        }
        view.shows_payment = true;
        view.status = OrderStatus::Ticketing;
        let elapsed = now - start;
        let delay = payment.ticketing_delay;
        match &payment.outcome {
            Outcome::Fails(reason) => {
                if elapsed >= delay {
                    view.status = OrderStatus::Cancelled;
                    view.cancellation = Some(reason.clone());
                }
            }
            Outcome::Tickets(numbers) => {
                let n = numbers.len().max(1) as u32;
                for (i, number) in numbers.iter().enumerate() {
                    let due = if config.one_passenger_at_a_time {
                        delay * (i as u32 + 1) / n
                    } else {
                        delay
                    };
                    if elapsed >= due {
                        view.tickets[i] = Some(number.clone());
                    }
                }
                if view.tickets.iter().all(Option::is_some) {
                    view.status = OrderStatus::Ticketed;
                }
            }
        }
        view
    }

    /// The per-passenger block shared by the query and the `order.ticketed` webhook.
    pub(super) fn pax_ticket_infos(&self, view: &View) -> Value {
        let infos: Vec<Value> = self
            .passengers
            .iter()
            .zip(&view.tickets)
            .map(|(p, ticket)| {
                let issued: Vec<&str> = ticket.iter().map(String::as_str).collect();
                json!({
                    "name": p.name,
                    "passengerType": p.passenger_type,
                    "gender": p.gender,
                    "birthday": p.birthday,
                    "ticketNos": issued,
                    "airlinePNRs": issued,
                    "ancillaries": [],
                })
            })
            .collect();
        Value::Array(infos)
    }

    /// The `queryOrderDetails.do` answer body (status 0) for this view.
    pub(super) fn query_answer(&self, view: &View) -> Value {
        let paid = view
            .shows_payment
            .then_some(self.payment.as_ref())
            .flatten();
        let ticketed = view.status == OrderStatus::Ticketed;
        let cancel = view.cancellation.clone().unwrap_or_default();
        let card_method = paid.is_some_and(|p| matches!(p.method, 3 | 5));
        json!({
            "status": crate::atrip::codes::query::OK,
            "msg": crate::atrip::codes::query::msg(crate::atrip::codes::query::OK),
            "orderNo": self.order_no,
            "pnrCode": self.pnr_code,
            "orderStatus": view.status.wire(),
            "ticketStatus": if ticketed { TICKET_ISSUED } else { TICKET_NOT_ISSUED },
            "createdTime": sgt(self.created_at),
            "payTime": paid.map(|p| sgt(p.pay_time)),
            "tktLimitTime": sgt(self.deadline),
            "paymentMethod": paid.map(|p| p.method),
            "supportPaymentMethods": self.support_payment_methods,
            "paxTicketInfos": self.pax_ticket_infos(view),
            "airlineBookings": [{
                "airlineCode": AIRLINE_CODE,
                "airlineName": AIRLINE_NAME,
                "airlinePnr": if ticketed { view.tickets.first().cloned().flatten() } else { None },
                "tailDigitsOfPaymentCard": paid.and_then(|p| p.card_tail.clone()),
            }],
            "errorCode": cancel.error_code,
            "errorMessage": cancel.error_message,
            "airlineMessage": cancel.airline_message,
            // ATRIP fills this for card payments only: "we tried your card", not the result.
            "paymentAttempted": card_method.then_some(true),
            "totalPrice": self.total_price,
            "currency": CURRENCY,
        })
    }
}
