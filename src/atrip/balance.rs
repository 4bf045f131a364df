//! `balance.do` (ATRIP's "Get Balance": `{"currency": "USD"}` →
//! `{"accountBalance": {"amount": 12308007.89, "currency": "USD"}, "status": 0}`), read as
//! every answer is: by `status`, untrusted, bounded. The worker only ever reads the balance
//! to say it (rule P6) or to hold a deposit payment back (rule P1e); a balance it cannot read
//! changes nothing.

use serde_json::Value;

/// What `balance.do` told.
#[derive(Debug, Clone, PartialEq)]
pub enum Balance {
    /// The deposit account holds `amount` in `currency`.
    Read { amount: f64, currency: String },
    /// No balance to go by: why, in words.
    Unread { reason: String },
}

impl Balance {
    /// In words, for a person: "12.00 USD" or why it could not be read.
    pub fn words(&self) -> String {
        match self {
            Balance::Read { amount, currency } => format!("{amount:.2} {currency}"),
            Balance::Unread { reason } => format!("not known ({reason})"),
        }
    }
}

/// Reads a `balance.do` answer for `currency`. ATRIP's schema types `amount` as a string and
/// its sample sends a number: both are read. A balance in another currency than asked, a
/// negative or non-finite amount, or anything but `status 0` is unread.
pub fn classify_balance(currency: &str, http: u16, body: &[u8]) -> Balance {
    let unread = |reason: String| Balance::Unread { reason };
    if http != 200 {
        return unread(format!("balance.do answered HTTP {http}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return unread("balance.do's answer is not JSON".into());
    };
    match v.get("status").and_then(Value::as_i64) {
        Some(0) => {}
        Some(status) => return unread(format!("balance.do answered status {status}")),
        None => return unread("balance.do's answer has no status".into()),
    }
    let account = &v["accountBalance"];
    let amount = account["amount"]
        .as_f64()
        .or_else(|| {
            account["amount"]
                .as_str()
                .and_then(|s| s.trim().parse().ok())
        })
        .filter(|a: &f64| a.is_finite() && *a >= 0.0 && *a < 1e15);
    let said = account["currency"].as_str().map(str::trim);
    match (amount, said) {
        (Some(amount), Some(c)) if c.eq_ignore_ascii_case(currency) => Balance::Read {
            amount,
            currency: currency.to_owned(),
        },
        (Some(_), Some(_)) => unread("balance.do answered for another currency".into()),
        _ => unread("balance.do's answer holds no readable accountBalance".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ATRIP's own sample answer (`atlas-doc/atlas-api-docs` @ 612cdbc1da44, `Atlas API _other
    /// functions.md`, "POST Get Balance"), kept in tests/fixtures/atrip/docs_balance.json.
    const DOCUMENTED: &str = include_str!("../../tests/fixtures/atrip/docs_balance.json");

    #[test]
    fn p6_atrips_documented_balance_answer_is_read() {
        assert_eq!(
            classify_balance("USD", 200, DOCUMENTED.as_bytes()),
            Balance::Read {
                amount: 12_308_007.89,
                currency: "USD".into()
            }
        );
    }

    #[test]
    fn p6_an_amount_sent_as_a_string_is_read_and_anything_unclear_is_unread() {
        let as_string =
            br#"{"status": 0, "accountBalance": {"amount": "12.50", "currency": "USD"}}"#;
        assert!(matches!(
            classify_balance("USD", 200, as_string),
            Balance::Read { amount, .. } if (amount - 12.5).abs() < 1e-9
        ));
        for body in [
            &b"<html>"[..],
            br#"{"status": 9999, "msg": "System error"}"#,
            br#"{"status": 0, "accountBalance": null}"#,
            br#"{"status": 0, "accountBalance": {"amount": "NaN", "currency": "USD"}}"#,
            br#"{"status": 0, "accountBalance": {"amount": -5, "currency": "USD"}}"#,
            br#"{"status": 0, "accountBalance": {"amount": 5, "currency": "EUR"}}"#,
        ] {
            assert!(
                matches!(classify_balance("USD", 200, body), Balance::Unread { .. }),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            classify_balance("USD", 502, DOCUMENTED.as_bytes()),
            Balance::Unread { .. }
        ));
    }
}
