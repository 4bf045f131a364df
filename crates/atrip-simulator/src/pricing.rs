//! What an order costs by payment method, in ATRIP's `PaymentOption` shape: one per supported
//! method in `order.do`'s and the unpaid query's `paymentOptions`, and the one used as the
//! query's `payment` once paid. ATRIP's own client refuses an `order.do` answer without a
//! `totalTransactionFee` and offers deposit only when a `paymentOptions` entry has method 1.

use serde_json::{json, Value};

use super::order::{Order, CURRENCY};

/// ATRIP's technical service fee per passenger (`transactionFeePerPax` 2 in the sandbox's own
/// `order.do` example), charged to the deposit whatever the method.
const SERVICE_FEE_PER_PASSENGER: f64 = 2.0;
/// MoR card handling fee (`routing.cardChargeList[].percentage` 0.03 in the same example).
const MOR_CARD_FEE: f64 = 0.03;

fn amount(amount: f64, deduct_from: &str) -> Value {
    // Cents, as ATRIP writes amounts.
    let amount = (amount * 100.0).round() / 100.0;
    json!({"amount": amount, "currency": CURRENCY, "deductFrom": deduct_from})
}

impl Order {
    /// `totalTransactionFee`: the service fee for all passengers. `totalPrice` excludes it, as
    /// in the sandbox example (ticket fare 300.35 = totalPrice, service fee 2 beside it).
    pub(super) fn total_transaction_fee(&self) -> f64 {
        SERVICE_FEE_PER_PASSENGER * self.passengers.len() as f64
    }

    /// The `PaymentOption` of one method.
    pub(super) fn payment_option(&self, method: i64) -> Value {
        let fare = self.total_price;
        let service_fee = amount(self.total_transaction_fee(), "DEPOSIT");
        let (fare_from, payment_fee, card_type) = match method {
            // As the sandbox example writes it: a zero payment fee, "CARD" and all.
            1 => ("DEPOSIT", amount(0.0, "CARD"), None),
            // VCC: the airline charges the card; ATRIP takes only its service fee.
            3 => ("CARD", Value::Null, None),
            // MoR: ATRIP charges the card, plus a handling fee; `cardType` is filled only for
            // MoR, from order.do's `payment.cardType`.
            5 => (
                "CARD",
                amount(fare * MOR_CARD_FEE, "CARD"),
                self.mor_card_type.clone(),
            ),
            // BYOA (4) is undocumented beyond its number: the fare is paid outside the deposit,
            // like VCC, which is the closest of the two documented `deductFrom` values.
            _ => ("CARD", Value::Null, None),
        };
        json!({
            "paymentMethod": method,
            "ticketFare": amount(fare, fare_from),
            "serviceFee": service_fee,
            "paymentFee": payment_fee,
            "cardType": card_type,
        })
    }

    /// `paymentOptions`: one per supported method.
    pub(super) fn payment_options(&self) -> Value {
        self.support_payment_methods
            .iter()
            .map(|&method| self.payment_option(method))
            .collect()
    }
}
