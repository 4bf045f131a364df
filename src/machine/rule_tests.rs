//! One test per arm of the transition table (the rule it checks is in each name's comment).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::atrip::codes::OrderStatus;
use crate::atrip::{OrderView, PayAnswer, QueryAnswer};
use crate::config::{Settings, WorkerSettings};
use crate::domain::{PassengerTickets, State};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

fn settings() -> WorkerSettings {
    let mut s = Settings::defaults().worker;
    s.poll_randomization = 0.0;
    s
}

/// A `paying` row right after its first intent, one pay.do possibly sent.
fn paying() -> Facts {
    Facts {
        state: State::Paying,
        order_no: "TESTA20261130120000000".into(),
        pay_attempts: 1,
        pay_not_sent: 0,
        pay_permits: 1,
        paid: false,
        last_pay_outcome: Some(PayOutcome::OutcomeUnknown),
        error_streak: 0,
        poll_attempts: 0,
        tickets_seen: None,
        passengers: None,
        pay_started_at: t0(),
        pay_deadline: None,
        phase_started_at: t0(),
        now: t0() + chrono::Duration::seconds(5),
        intents_durable: true,
        paying_paused: None,
    }
}

fn ticketing() -> Facts {
    Facts {
        state: State::Ticketing,
        paid: true,
        last_pay_outcome: Some(PayOutcome::Accepted),
        ..paying()
    }
}

fn view(status: OrderStatus, tickets: Vec<(&str, &str)>) -> OrderView {
    OrderView {
        order_no: "TESTA20261130120000000".into(),
        pnr_code: Some("ABC123".into()),
        ticket_status: Some(
            if status == OrderStatus::Ticketed {
                "1"
            } else {
                "0"
            }
            .into(),
        ),
        order_status: status,
        tickets: tickets
            .into_iter()
            .map(|(name, ticket)| PassengerTickets {
                passenger: name.into(),
                ticket_numbers: if ticket.is_empty() {
                    vec![]
                } else {
                    vec![ticket.into()]
                },
                // The airline's PNR comes with the ticket (pnrCode is never one: rule F4).
                airline_pnrs: if ticket.is_empty() {
                    vec![]
                } else {
                    vec!["XYZ789".into()]
                },
            })
            .collect(),
        booking_pnrs: vec![],
        pay_deadline: None,
        payment_attempted: None,
        error_code: None,
        error_message: None,
        msg: None,
    }
}

fn query(f: &Facts, answer: QueryAnswer) -> Next {
    let s = settings();
    next(Event::Query(&answer), f, &Bounds { settings: &s })
}

fn pay(f: &Facts, answer: PayAnswer) -> Next {
    let s = settings();
    next(Event::Pay(&answer), f, &Bounds { settings: &s })
}

fn order(v: OrderView) -> QueryAnswer {
    QueryAnswer::Order(v)
}

#[test]
fn p1a_a_row_that_cannot_be_paid_fails_or_waits_for_a_key_without_sending() {
    let s = settings();
    let b = Bounds { settings: &s };
    let bad = NotSentReason::BadInput("card expired".into());
    assert!(matches!(
        next(Event::NotSent(&bad), &paying(), &b),
        Next::Failed(FailReason::NotSent(_))
    ));
    let key = NotSentReason::CardUnreadable("no key".into());
    assert!(matches!(
        next(Event::NotSent(&key), &paying(), &b),
        Next::Review(ReviewReason::CardUnreadable(_))
    ));
}

#[test]
fn p4a_an_accepted_payment_is_followed_with_its_evidence() {
    let accepted = |status| PayAnswer::Accepted {
        status,
        msg: None,
        pnr_code: None,
    };
    assert!(matches!(
        pay(&paying(), accepted(0)),
        Next::Paid {
            evidence: Evidence::PayAccepted,
            ..
        }
    ));
    assert!(matches!(
        pay(&paying(), accepted(615)),
        Next::Paid {
            evidence: Evidence::PnrPending,
            ..
        }
    ));
}

#[test]
fn p4b_already_paid_is_evidence_and_p4c_402_406_wait_for_the_query() {
    let npa = |status| PayAnswer::NeverPayAgain { status, msg: None };
    assert!(matches!(
        pay(&paying(), npa(404)),
        Next::Paid {
            evidence: Evidence::AlreadyPaid,
            ..
        }
    ));
    for status in [402, 406] {
        assert!(matches!(
            pay(&paying(), npa(status)),
            Next::StillPaying {
                why: Waiting::NeverPayAgain { .. },
                ..
            }
        ));
    }
}

#[test]
fn p4d_a_documented_refusal_fails_the_order() {
    let refused = PayAnswer::Refused {
        status: 413,
        msg: Some("Card not supported".into()),
    };
    assert!(matches!(
        pay(&paying(), refused),
        Next::Failed(FailReason::PayRefused { status: 413, .. })
    ));
}

#[test]
fn p4e_to_h_anything_else_waits_for_the_order_query() {
    for (answer, unclear) in [
        (
            PayAnswer::PaymentError {
                status: 411,
                msg: None,
            },
            false,
        ),
        (
            PayAnswer::Unauthorized {
                status: 900,
                msg: None,
            },
            false,
        ),
        (
            PayAnswer::NotSent {
                reason: "refused".into(),
            },
            true,
        ),
        (
            PayAnswer::OutcomeUnknown {
                status: Some(604),
                reason: "604".into(),
            },
            true,
        ),
    ] {
        let n = pay(&paying(), answer.clone());
        assert!(matches!(n, Next::StillPaying { .. }), "{answer:?}: {n:?}");
        assert_eq!(n.is_unclear(), unclear, "{answer:?}");
    }
}

#[test]
fn p5a_p5b_a_query_that_shows_paid_or_cancelled_decides() {
    for status in [OrderStatus::Ticketing, OrderStatus::Ticketed] {
        assert!(matches!(
            query(&paying(), order(view(status, vec![]))),
            Next::Paid {
                evidence: Evidence::QueryPaid,
                ..
            }
        ));
    }
    let mut cancelled = view(OrderStatus::Cancelled, vec![]);
    cancelled.error_code = Some("604".into());
    assert!(matches!(
        query(&paying(), order(cancelled)),
        Next::Failed(FailReason::Cancelled { error_code: Some(c), paid: false, .. }) if c == "604"
    ));
}

#[test]
fn p5c_unpaid_with_a_permit_left_makes_a_new_intent() {
    let mut f = paying();
    f.pay_not_sent = 1; // the first attempt's connection could not be opened
    f.last_pay_outcome = Some(PayOutcome::NotSent);
    assert_eq!(
        query(&f, order(view(OrderStatus::Unpaid, vec![]))),
        Next::NewIntent
    );
    // ... but not when ATRIP says it already tried the card, nor past the deadline, nor
    // after max_pay_attempts.
    let mut tried = view(OrderStatus::Unpaid, vec![]);
    tried.payment_attempted = Some(true);
    assert!(matches!(
        query(&f, order(tried)),
        Next::Review(ReviewReason::PaymentAttempted)
    ));
    let mut late = view(OrderStatus::Unpaid, vec![]);
    late.pay_deadline = Some(f.now - chrono::Duration::seconds(1));
    assert!(matches!(
        query(&f, order(late)),
        Next::Failed(FailReason::UnpaidPastDeadline { .. })
    ));
    f.pay_attempts = settings().max_pay_attempts;
    f.pay_not_sent = f.pay_attempts;
    assert!(matches!(
        query(&f, order(view(OrderStatus::Unpaid, vec![]))),
        Next::Review(ReviewReason::TooManyAttempts { .. })
    ));
    // Intents that may have reached ATRIP each had a permit (an operator's `--repay`): they do
    // not use up the bound on intents that never left.
    f.pay_not_sent = 0;
    f.pay_permits = f.pay_attempts + 1;
    assert!(matches!(
        query(&f, order(view(OrderStatus::Unpaid, vec![]))),
        Next::NewIntent
    ));
}

/// Rule P5d, what stands for assumption A5 (a charge ATRIP took but never shows goes to a person).
#[test]
fn p5d_unpaid_after_a_send_never_pays_again_and_goes_to_a_person_after_the_settle_time() {
    let f = paying();
    let unpaid = || order(view(OrderStatus::Unpaid, vec![]));
    assert!(matches!(
        query(&f, unpaid()),
        Next::StillPaying {
            why: Waiting::UnpaidAfterSend { .. },
            ..
        }
    ));
    // However old the attempt, never a new intent: a person decides.
    let mut old = paying();
    old.now = t0() + chrono::Duration::seconds(settings().unpaid_settle_s as i64);
    assert!(matches!(
        query(&old, unpaid()),
        Next::Review(ReviewReason::UnpaidAfterSend { .. })
    ));
    // Early when the payment deadline comes within the review margin.
    let mut close = view(OrderStatus::Unpaid, vec![]);
    close.pay_deadline = Some(f.now + chrono::Duration::seconds(60));
    assert!(matches!(
        query(&f, order(close)),
        Next::Review(ReviewReason::UnpaidAfterSend {
            deadline: Some(_),
            ..
        })
    ));
}

#[test]
fn p6_411_then_unpaid_asks_for_a_balance_check_and_p4f_refused_credentials_ask_for_a_retry() {
    let mut f = paying();
    f.last_pay_outcome = Some(PayOutcome::PaymentError);
    let n = query(&f, order(view(OrderStatus::Unpaid, vec![])));
    assert!(
        matches!(n, Next::Review(ReviewReason::PaymentError { .. })),
        "{n:?}"
    );
    let Next::Review(reason) = n else {
        unreachable!()
    };
    assert!(reason.to_string().contains("deposit balance"), "{reason}");
    f.last_pay_outcome = Some(PayOutcome::Unauthorized);
    assert!(matches!(
        query(&f, order(view(OrderStatus::Unpaid, vec![]))),
        Next::Review(ReviewReason::CredentialsRefused)
    ));
}

#[test]
fn p5e_not_found_and_unclear_answers_wait_within_bounds() {
    let not_found = QueryAnswer::NotFound {
        status: 800,
        msg: None,
    };
    let n = query(&paying(), not_found.clone());
    assert!(
        matches!(
            n,
            Next::StillPaying {
                why: Waiting::Unclear(_),
                ..
            }
        ),
        "{n:?}"
    );
    let mut streak = paying();
    streak.error_streak = settings().max_error_streak - 1;
    assert!(matches!(
        query(&streak, not_found.clone()),
        Next::Review(ReviewReason::Unclear { .. })
    ));
    let mut long = paying();
    long.now = t0() + chrono::Duration::seconds(settings().paying_deadline_s as i64);
    assert!(matches!(
        query(&long, not_found),
        Next::Review(ReviewReason::Unclear { .. })
    ));
    let limited = QueryAnswer::RateLimited {
        retry_after: Duration::from_secs(30),
    };
    assert!(matches!(
        query(&paying(), limited.clone()),
        Next::StillPaying { query_in, .. } if query_in >= Duration::from_secs(30)
    ));
    assert!(matches!(
        query(&ticketing(), limited),
        Next::Following { poll_in, .. } if poll_in >= Duration::from_secs(30)
    ));
    let garbled = QueryAnswer::Invalid {
        status: None,
        reason: "html".into(),
    };
    assert!(matches!(
        query(&paying(), garbled),
        Next::StillPaying { .. }
    ));
    let odd = view(OrderStatus::Unknown("7".into()), vec![]);
    assert!(query(&paying(), order(odd)).is_unclear());
}

#[test]
fn f1_f2_tickets_are_final_when_seen_identically_twice() {
    let v = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S1")]);
    let Next::SeenOnce { tickets, pnr, .. } = query(&ticketing(), order(v.clone())) else {
        panic!()
    };
    assert_eq!(pnr, "XYZ789", "the airline's PNR, never pnrCode");
    let mut f = ticketing();
    f.tickets_seen = Some(serde_json::to_value(&tickets).unwrap());
    assert!(matches!(query(&f, order(v)), Next::Ticketed { .. }));
    // A different set the second time starts over.
    let other = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S2")]);
    assert!(matches!(query(&f, order(other)), Next::SeenOnce { .. }));
}

#[test]
fn f1b_an_answer_that_leaves_a_passenger_out_is_not_final() {
    let one = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S1")]);
    let mut two_booked = ticketing();
    two_booked.passengers = Some(2);
    let Next::Following {
        why: Waiting::PassengersLeftOut { listed, passengers },
        ..
    } = query(&two_booked, order(one.clone()))
    else {
        panic!("one of two passengers ticketed is not final")
    };
    assert_eq!((listed, passengers), (1, 2));
    // Seen once already, the same short set is still not final.
    two_booked.tickets_seen = Some(json!([{"passenger": "DOE/JANE"}]));
    assert!(!matches!(
        query(&two_booked, order(one.clone())),
        Next::Ticketed { .. } | Next::SeenOnce { .. }
    ));
    // With one passenger booked (or none known yet), the same answer is final once seen twice.
    let mut one_booked = ticketing();
    one_booked.passengers = Some(1);
    assert!(matches!(
        query(&one_booked, order(one)),
        Next::SeenOnce { .. }
    ));
}

#[test]
fn f3_a_cancelled_paid_order_fails_and_says_where_the_money_goes() {
    let Next::Failed(reason) = query(&ticketing(), order(view(OrderStatus::Cancelled, vec![])))
    else {
        panic!()
    };
    assert!(reason.to_string().contains("refund"), "{reason}");
}

#[test]
fn f4_tickets_without_a_pnr_lags_and_unclear_answers_are_followed() {
    // Tickets without an airline PNR, whether or not ATRIP's own pnrCode is there.
    let mut v = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S1")]);
    v.tickets[0].airline_pnrs.clear();
    for pnr_code in [Some("ABC123".to_owned()), None] {
        v.pnr_code = pnr_code;
        assert!(matches!(
            query(&ticketing(), order(v.clone())),
            Next::Following {
                why: Waiting::TicketsWithoutPnr,
                ..
            }
        ));
    }
    // An answer without a ticketStatus is unclear (ATRIP's own client refuses it), even
    // with every ticket in it; counted toward a person.
    let mut no_status = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S1")]);
    no_status.ticket_status = None;
    assert!(query(&ticketing(), order(no_status)).is_unclear());
    for lag in [OrderStatus::Unpaid, OrderStatus::Ticketing] {
        assert!(matches!(
            query(&ticketing(), order(view(lag, vec![]))),
            Next::Following {
                why: Waiting::Ticketing { .. },
                ..
            }
        ));
    }
    let not_found = QueryAnswer::NotFound {
        status: 800,
        msg: None,
    };
    assert!(query(&ticketing(), not_found).is_unclear());
    let partial = view(OrderStatus::Ticketed, vec![("A/B", "S1"), ("C/D", "")]);
    assert!(matches!(
        query(&ticketing(), order(partial)),
        Next::Following { .. }
    ));
}

#[test]
fn f5_t2_past_the_ticketing_deadline_counted_from_the_phase_a_person_looks() {
    let mut f = ticketing();
    f.now =
        f.phase_started_at + chrono::Duration::seconds(settings().ticketing_deadline_s as i64 + 1);
    let v = view(OrderStatus::Ticketing, vec![]);
    assert!(matches!(
        query(&f, order(v.clone())),
        Next::Review(ReviewReason::TicketingDeadline { .. })
    ));
    // After an operator's retry the phase starts again: the same answer is followed.
    f.phase_started_at = f.now - chrono::Duration::seconds(1);
    assert!(matches!(query(&f, order(v)), Next::Following { .. }));
    // Complete tickets seen twice are done even on a retried row.
    let done = view(OrderStatus::Ticketed, vec![("DOE/JANE", "S1")]);
    let Next::SeenOnce { tickets, .. } = query(&f, order(done.clone())) else {
        panic!()
    };
    f.tickets_seen = Some(json!(tickets));
    assert!(matches!(query(&f, order(done)), Next::Ticketed { .. }));
}

#[test]
fn a_state_and_an_answer_that_should_never_meet_are_reported_on_the_row() {
    let accepted = PayAnswer::Accepted {
        status: 0,
        msg: None,
        pnr_code: None,
    };
    assert!(matches!(
        pay(&ticketing(), accepted),
        Next::Review(ReviewReason::NoSuchTransition { .. })
    ));
}

#[test]
fn a_row_may_send_only_with_a_permit_left_and_no_evidence_of_payment() {
    let mut f = paying();
    assert!(!f.may_send(), "the one permit is used by the first intent");
    f.pay_not_sent = 1;
    assert!(
        f.may_send(),
        "an intent that never left gives its permit back"
    );
    f.paid = true;
    assert!(!f.may_send(), "evidence of payment closes the payment");
}

#[test]
fn p3a_the_evidence_an_answer_carries_is_what_next_records() {
    let accepted = |status| PayAnswer::Accepted {
        status,
        msg: None,
        pnr_code: None,
    };
    let cases = [
        (accepted(0), Some(Evidence::PayAccepted)),
        (accepted(615), Some(Evidence::PnrPending)),
        (
            PayAnswer::NeverPayAgain {
                status: 404,
                msg: None,
            },
            Some(Evidence::AlreadyPaid),
        ),
        (
            PayAnswer::NeverPayAgain {
                status: 406,
                msg: None,
            },
            None,
        ),
        (
            PayAnswer::OutcomeUnknown {
                status: None,
                reason: "reset".into(),
            },
            None,
        ),
    ];
    for (answer, evidence) in cases {
        assert_eq!(evidence_in(Event::Pay(&answer)), evidence, "{answer:?}");
        match pay(&paying(), answer.clone()) {
            Next::Paid { evidence: e, .. } => assert_eq!(Some(e), evidence),
            other => assert_eq!(evidence, None, "{answer:?} → {other:?}"),
        }
    }
    let paid = order(view(OrderStatus::Ticketing, vec![]));
    assert_eq!(evidence_in(Event::Query(&paid)), Some(Evidence::QueryPaid));
    let unpaid = order(view(OrderStatus::Unpaid, vec![]));
    assert_eq!(evidence_in(Event::Query(&unpaid)), None);
}

#[test]
fn p4f_a_900_for_this_order_alone_goes_to_a_person_naming_the_code() {
    let b = settings();
    for (f, on_pay) in [(paying(), true), (paying(), false), (ticketing(), false)] {
        let next = next(
            Event::OutOfScope {
                status: 900,
                on_pay,
            },
            &f,
            &Bounds { settings: &b },
        );
        let Next::Review(reason @ ReviewReason::OutOfScope { .. }) = &next else {
            panic!("{next:?}");
        };
        let said = reason.to_string();
        assert!(
            said.contains("900") && said.contains("this order only"),
            "{said}"
        );
    }
}

#[test]
fn w5_a_deadline_at_the_calendars_end_is_past_and_never_panics() {
    let b = settings();
    let mut f = paying();
    f.last_pay_outcome = Some(PayOutcome::OutcomeUnknown);
    let mut v = view(OrderStatus::Unpaid, vec![]);
    v.pay_deadline = Some(DateTime::<Utc>::MIN_UTC);
    // Unpaid after a send, with a deadline that cannot have the margin taken off: a person.
    assert!(matches!(
        query(&f, order(v.clone())),
        Next::Review(ReviewReason::UnpaidAfterSend { .. })
    ));
    f.pay_deadline = Some(DateTime::<Utc>::MIN_UTC);
    let _ = query(&f, QueryAnswer::Retry { reason: "x".into() });
    let mut t = ticketing();
    t.phase_started_at = DateTime::<Utc>::MAX_UTC;
    let _ = next(Event::Query(&order(v)), &t, &Bounds { settings: &b });
}

#[test]
fn p1b_no_new_intent_while_intents_cannot_be_made_durable() {
    let mut f = paying();
    f.pay_not_sent = 1;
    f.last_pay_outcome = Some(PayOutcome::NotSent);
    let unpaid = order(view(OrderStatus::Unpaid, vec![]));
    assert_eq!(query(&f, unpaid.clone()), Next::NewIntent);
    f.intents_durable = false;
    let next = query(&f, unpaid.clone());
    assert!(
        matches!(
            &next,
            Next::StillPaying {
                why: Waiting::IntentsNotDurable,
                ..
            }
        ),
        "{next:?}"
    );
    assert!(
        !next.is_unclear(),
        "waiting for a standby is no unclear answer"
    );
    // The payment deadline still decides.
    f.pay_deadline = Some(f.now - chrono::Duration::seconds(1));
    assert!(matches!(
        query(&f, unpaid),
        Next::Failed(FailReason::UnpaidPastDeadline { .. })
    ));
}

#[test]
fn s4_no_new_intent_while_paying_the_method_is_paused() {
    let mut f = paying();
    f.pay_not_sent = 1;
    f.last_pay_outcome = Some(PayOutcome::NotSent);
    let unpaid = order(view(OrderStatus::Unpaid, vec![]));
    f.paying_paused = Some("paying every method has been paused since t by alice: incident".into());
    let next = query(&f, unpaid.clone());
    match &next {
        Next::StillPaying {
            why: Waiting::PayingPaused(paused),
            query_in,
        } => {
            assert!(paused.contains("alice: incident"), "{paused}");
            assert!(*query_in > Duration::ZERO);
            let said = Waiting::PayingPaused(paused.clone()).to_string();
            assert!(said.contains("until it is resumed"), "{said}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!next.is_unclear(), "a pause is no unclear answer");
    // The payment deadline still decides: the row fails, nothing sent.
    f.pay_deadline = Some(f.now - chrono::Duration::seconds(1));
    assert!(matches!(
        query(&f, unpaid.clone()),
        Next::Failed(FailReason::UnpaidPastDeadline { .. })
    ));
    // A paid order is never held by a pause: evidence is evidence.
    f.pay_deadline = None;
    assert!(matches!(
        query(&f, order(view(OrderStatus::Ticketing, vec![]))),
        Next::Paid { .. }
    ));
    // Without a permit the pause changes nothing (P5d decides as before).
    f.pay_not_sent = 0;
    f.last_pay_outcome = Some(PayOutcome::OutcomeUnknown);
    assert!(matches!(
        query(&f, unpaid),
        Next::StillPaying {
            why: Waiting::UnpaidAfterSend { .. },
            ..
        }
    ));
}
