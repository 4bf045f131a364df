//! Rows the database accepts but the worker must not pay: a card that fails the worker's
//! checks, or a payment deadline that passed before the worker got to the row. Each fails on
//! its own, with `last_error` naming the order and the field, before any `pay.do`; the good
//! order claimed in the same batch is ticketed.

use serde_json::{json, Value};
use ticketing_tracker::domain::State;

use super::world::{World, BAD};
use crate::support::app::{mor_card, vcc_card};

/// `card` with `field` set to `value`.
fn with(mut card: Value, field: &str, value: Value) -> Value {
    card[field] = value;
    card
}

/// `card` without `field`.
fn without(mut card: Value, field: &str) -> Value {
    card.as_object_mut().unwrap().remove(field);
    card
}

/// Enqueues `BAD` with `card` and `GOOD` (a valid card, same method) and runs the worker.
async fn refused_before_pay(method: i16, card: Value, says: &[&str]) {
    let w = World::new().await;
    w.enqueue(BAD, method, Some(card)).await;
    w.enqueue_good(method).await;

    let round = w.step().await;
    let bad = round.outcomes.iter().find(|o| o.order_no == BAD).unwrap();
    assert_eq!(
        (bad.to, bad.pay_sent),
        (Some(State::Failed), false),
        "{}",
        bad.note
    );
    w.settle().await;

    w.assert_refused_before_pay(says).await;
    assert_eq!(
        w.app.event_states(BAD).await,
        ["paying", "failed"],
        "claimed, then failed at once"
    );
    w.assert_good_ticketed().await;
}

/// Stamps one test per bad card: `name: method, card => [phrases last_error must contain]`.
macro_rules! refused_before_pay {
    ($($name:ident: $method:literal, $card:expr => [$($says:literal),+];)+) => {$(
        #[tokio::test]
        async fn $name() {
            refused_before_pay($method, $card, &[$($says),+]).await;
        }
    )+};
}

refused_before_pay! {
    a_card_number_failing_the_luhn_check_fails_only_its_order:
        3, with(vcc_card(), "cardNumber", json!("4532015112830367"))
        => ["card.cardNumber", "Luhn"];
    a_card_number_with_spaces_fails_only_its_order:
        3, with(vcc_card(), "cardNumber", json!("4532 0151 1283 0366"))
        => ["card.cardNumber", "12 to 19 digits"];
    a_card_number_sent_as_a_json_number_fails_only_its_order:
        3, with(vcc_card(), "cardNumber", json!(4532015112830366u64))
        => ["card.cardNumber must be a string"];
    an_expired_card_fails_only_its_order:
        5, with(with(mor_card(), "cardExpireYear", json!("2020")), "cardExpireMonth", json!("01"))
        => ["card has expired"];
    an_expiry_month_13_fails_only_its_order:
        3, with(vcc_card(), "cardExpireMonth", json!("13"))
        => ["card.cardExpireMonth", "\"01\" to \"12\""];
    a_three_digit_expiry_year_fails_only_its_order:
        3, with(vcc_card(), "cardExpireYear", json!("227"))
        => ["card.cardExpireYear", "2 or 4 digits"];
    a_card_without_the_holder_first_name_fails_only_its_order:
        5, without(mor_card(), "cardHolderFirstName")
        => ["card.cardHolderFirstName is missing"];
    a_vcc_card_without_its_cvv_fails_only_its_order:
        3, without(vcc_card(), "cardCVV")
        => ["card.cardCVV", "required for VCC"];
    a_card_with_an_unknown_field_fails_only_its_order:
        3, with(vcc_card(), "cardPin", json!("0000"))
        => ["unknown field", "cardPin"];
    a_500_character_holder_name_fails_only_its_order:
        5, with(mor_card(), "cardHolderLastName", json!("D".repeat(500)))
        => ["card.cardHolderLastName", "longer than 128 characters"];
    an_ansi_escape_sequence_in_a_card_field_fails_only_its_order:
        3, with(vcc_card(), "cardHolderCity", json!("MANILA\u{1b}[31m"))
        => ["card.cardHolderCity", "control characters"];
    a_c1_control_character_in_a_card_field_fails_only_its_order:
        3, with(vcc_card(), "cardHolderAddress", json!("1 RIZAL AVE\u{9b}2J"))
        => ["card.cardHolderAddress", "control characters"];
    a_mor_card_whose_three_ds_ip_is_not_an_address_fails_only_its_order:
        5, with(mor_card(), "threeDS", json!({"ip": "localhost; rm -rf /"}))
        => ["card.threeDS.ip"];
    a_negative_payment_limit_fails_only_its_order:
        3, with(vcc_card(), "paymentLimit", json!(-120))
        => ["card.paymentLimit"];
}

#[tokio::test]
async fn a_payment_deadline_that_passed_a_minute_ago_fails_its_order_without_sending_pay() {
    let w = World::new().await;
    let deadline = chrono::Utc::now() - chrono::Duration::minutes(1);
    w.app
        .store
        .enqueue(BAD, 1, None, Some(deadline))
        .await
        .expect("a deadline a minute ago is plausible: the database takes it");
    w.enqueue_good(1).await;

    w.settle().await;
    w.assert_refused_before_pay(&["payment deadline", "passed before payment"])
        .await;
    w.assert_good_ticketed().await;
}
