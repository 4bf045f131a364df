//! One simulated order and the pure function that tells, from the clock alone, what its query
//! shows: progress is computed lazily at each read, so no timer can fire late or twice.

use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use super::card::CardBrand;
use super::faults::{Scenario, TicketShape};
use super::ledger::OrderLedger;
use super::payment::{Cancellation, Outcome, Payments};
use super::SimConfig;
use ticketing_tracker::atrip::codes::{OrderStatus, TICKET_ISSUED, TICKET_NOT_ISSUED};

/// The airline every simulated order flies: the sandbox examples use Cebu Pacific (`5J`).
pub(super) const AIRLINE_CODE: &str = "5J";
const AIRLINE_NAME: &str = "Cebu Pacific";
pub(super) const CURRENCY: &str = "USD";
/// `paymentMethod` 3, VCC pass-through: the one method `paymentAttempted` is documented for.
const VCC: i64 = 3;

/// The airline PNR the simulator gives a ticket: ATRIP's sandbox samples carry the same value
/// in `ticketNos` and `airlinePNRs` (its `order.ticketed` webhook sample: "S30814" in both).
fn pnr_of(ticket: &str) -> String {
    ticket.to_owned()
}

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
    /// A cancellation that happened without a charge (FR 415, a card declined by pay.do).
    pub cancelled: Option<Cancellation>,
    pub payments: Payments,
    pub scenario: Scenario,
    pub ledger: OrderLedger,
    /// Set once an answer showing the order paid was delivered; pay.do after that is counted.
    pub shown_paid: bool,
    /// Set once the final-state webhook was queued, so it is sent once.
    pub webhook_sent: bool,
    /// Voided or cancelled by the airline after it was ticketed
    /// (`/sim/orders/{orderNo}/after-ticketing`): what its query then shows.
    pub changed_after_ticketing: Option<Cancellation>,
}

/// What the order looks like at one instant.
#[derive(Clone, Debug)]
pub(super) struct View {
    pub status: OrderStatus,
    /// Per passenger, the ticket number if already issued.
    pub tickets: Vec<Option<String>>,
    pub cancellation: Option<Cancellation>,
    /// The payment that paid the order (an index into its payments), once one has settled.
    pub paid: Option<usize>,
    /// Whether `payTime`/`paymentMethod` are shown (hidden while a payment in progress looks unpaid).
    pub shows_payment: bool,
    /// Inside the payment-in-progress window after the charge (pay.do answers 406).
    pub in_progress: bool,
    /// Payments taken and not settled yet: the order shows "0" while none has settled.
    pub processing: usize,
    /// No payment taken and past `tktLimitTime`.
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
            paid: None,
            shows_payment: false,
            in_progress: false,
            processing: self.payments.processing(now),
            expired: false,
        };
        if let Some(c) = &self.cancelled {
            view.status = OrderStatus::Cancelled;
            view.cancellation = Some(c.clone());
            return view;
        }
        let paying = self.payments.paying(now);
        let Some(payment) = paying.and_then(|i| self.payments.get(i)) else {
            // Unpaid. A payment taken before the deadline keeps the order "0" while it is
            // processing: it will settle, so the hold has not simply run out.
            if self.payments.is_empty() && now_utc >= self.deadline {
                view.expired = true;
                view.status = OrderStatus::from_wire(&config.expired_order_status);
                if view.status == OrderStatus::Cancelled {
                    // ATRIP documents errorCode only for issuance failures; an expired hold
                    // carries none, only the reason in words.
                    view.cancellation = Some(Cancellation {
                        error_code: None,
                        error_message: Some(
                            ticketing_tracker::atrip::codes::pay_msg(401).to_owned(),
                        ),
                        airline_message: None,
                    });
                }
            }
            return view;
        };
        view.paid = paying;
        let start = payment.settles_at + payment.in_progress;
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
                    if let Some(change) = &self.changed_after_ticketing {
                        if config.changed_order_status.trim() == OrderStatus::Cancelled.wire() {
                            view.status = OrderStatus::Cancelled;
                            view.cancellation = Some(change.clone());
                        }
                    }
                }
            }
        }
        view
    }

    /// Passenger `i`'s issued ticket numbers and airline PNRs, in the scenario's shape
    /// (empty until issued; PNRs withheld while the scenario says so).
    fn issued(&self, view: &View, i: usize) -> (Vec<String>, Vec<String>) {
        let first = view.tickets.first().cloned().flatten();
        let own = view.tickets.get(i).cloned().flatten();
        let tickets: Vec<String> = match (self.scenario.ticket_shape, own) {
            (_, None) => vec![],
            (TicketShape::PerPassenger, Some(t)) => vec![t],
            (TicketShape::Shared, Some(t)) => vec![first.unwrap_or(t)],
            (TicketShape::SplitRoundTrip, Some(t)) => vec![t.clone(), format!("{t}-R")],
        };
        let pnrs = if self.scenario.airline_pnr_withheld {
            vec![]
        } else {
            tickets.iter().map(|t| pnr_of(t)).collect()
        };
        (tickets, pnrs)
    }

    /// The per-passenger block shared by the query and the `order.ticketed` webhook.
    pub(super) fn pax_ticket_infos(&self, view: &View) -> Value {
        let infos: Vec<Value> = self
            .passengers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (tickets, pnrs) = self.issued(view, i);
                let unissued = tickets.is_empty() && self.scenario.unissued_tickets_null;
                json!({
                    "name": p.name,
                    "passengerType": p.passenger_type,
                    "gender": p.gender,
                    "birthday": p.birthday,
                    "ticketNos": if unissued { Value::Null } else { json!(tickets) },
                    "airlinePNRs": if unissued { Value::Null } else { json!(pnrs) },
                    "ancillaries": [],
                })
            })
            .collect();
        Value::Array(infos)
    }

    /// `airlineBookings`: one per booking (two for a split round trip), each with the airline
    /// PNR the passengers' `airlinePNRs` hold once the order is ticketed.
    fn airline_bookings(&self, view: &View, paid: Option<&super::payment::Payment>) -> Value {
        let ticketed = view.status == OrderStatus::Ticketed;
        let (_, pnrs) = self.issued(view, 0);
        let legs = if self.scenario.ticket_shape == TicketShape::SplitRoundTrip {
            2
        } else {
            1
        };
        let bookings: Vec<Value> = (0..legs)
            .map(|leg| {
                json!({
                    "airlineCode": AIRLINE_CODE,
                    "airlineName": AIRLINE_NAME,
                    "airlinePnr": if ticketed { pnrs.get(leg).cloned() } else { None },
                    "tailDigitsOfPaymentCard": paid.and_then(|p| p.card_tail.clone()),
                })
            })
            .collect();
        Value::Array(bookings)
    }

    /// The query's passenger block: [`Order::pax_ticket_infos`] less the passengers the
    /// scenario leaves out (`omit_passengers`).
    fn listed_pax_ticket_infos(&self, view: &View) -> Value {
        let mut infos = self.pax_ticket_infos(view);
        if let Value::Array(list) = &mut infos {
            let omit = usize::try_from(self.scenario.omit_passengers).unwrap_or(usize::MAX);
            list.truncate(list.len().saturating_sub(omit));
        }
        infos
    }

    /// The `queryOrderDetails.do` answer body (status 0) for this view.
    pub(super) fn query_answer(&self, view: &View) -> Value {
        let paid = view
            .paid
            .filter(|_| view.shows_payment)
            .and_then(|i| self.payments.get(i));
        let ticketed = view.status == OrderStatus::Ticketed;
        let cancel = view.cancellation.clone().unwrap_or_default();
        // ATRIP documents `paymentAttempted` as "VCC only: Atlas has already tried charging the
        // airline with your card", which says nothing of the result. So it is `true` from the
        // moment a VCC (method 3) pay.do was taken, while the order still shows "0" too, and
        // `null` otherwise, MoR (5) included: the documentation names no MoR meaning, and
        // inventing one would let the worker lean on a field ATRIP never promised it.
        let vcc_attempted = self.payments.attempted_with(VCC);
        json!({
            "status": ticketing_tracker::atrip::codes::query_status::OK,
            "msg": ticketing_tracker::atrip::codes::query_status::msg(ticketing_tracker::atrip::codes::query_status::OK),
            "orderNo": self.order_no,
            "pnrCode": self.pnr_code,
            "orderStatus": view.status.wire(),
            "ticketStatus": if ticketed { TICKET_ISSUED } else { TICKET_NOT_ISSUED },
            "createdTime": sgt(self.created_at),
            "payTime": paid.map(|p| sgt(p.pay_time)),
            "tktLimitTime": sgt(self.deadline),
            "paymentMethod": paid.map(|p| p.method),
            "supportPaymentMethods": self.support_payment_methods,
            "paxTicketInfos": self.listed_pax_ticket_infos(view),
            "airlineBookings": self.airline_bookings(view, paid),
            "errorCode": cancel.error_code,
            "errorMessage": cancel.error_message,
            "airlineMessage": cancel.airline_message,
            "paymentAttempted": vcc_attempted.then_some(true),
            "totalPrice": self.total_price,
            "totalTransactionFee": self.total_transaction_fee(),
            "currency": CURRENCY,
            // The price per method while the order can be paid; once paid, the one used.
            "paymentOptions": (view.status == OrderStatus::Unpaid).then(|| self.payment_options()),
            "payment": paid.map(|p| self.payment_option(p.method)),
        })
    }
}
