//! Card data: ATRIP's `creditCard` object, parsed and checked before use, never printed.
//!
//! A card reaches the worker as the `card` JSON of a row (methods 3 and 5 only). It is parsed
//! field by field rather than with `serde` so that an error can name the field without ever
//! quoting its value: serde's messages quote the offending value, which could be a card number.

use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::PaymentMethod;

/// Why a row's card cannot be used. Messages name the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("card data unusable: {0}")]
pub struct CardError(pub String);

/// ATRIP's `creditCard` object, checked. `Debug` shows only the brand and last four digits.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditCard {
    card_number: String,
    #[serde(rename = "cardCVV")]
    card_cvv: Option<String>,
    card_expire_month: String,
    card_expire_year: String,
    card_holder_first_name: String,
    card_holder_last_name: String,
    card_holder_country: Option<String>,
    card_holder_province: Option<String>,
    card_holder_city: Option<String>,
    card_holder_post_code: Option<String>,
    card_holder_address: Option<String>,
    card_holder_phone: Option<String>,
    card_holder_email: Option<String>,
    reusable: Option<bool>,
    payment_limit: Option<f64>,
    #[serde(rename = "threeDS")]
    three_ds: Option<ThreeDs>,
}

/// `threeDS`: the end user's device IP, for MoR risk checks.
#[derive(Clone, Serialize)]
pub struct ThreeDs {
    pub ip: String,
}

const STRING_FIELDS: &[&str] = &[
    "cardNumber",
    "cardCVV",
    "cardExpireMonth",
    "cardExpireYear",
    "cardHolderFirstName",
    "cardHolderLastName",
    "cardHolderCountry",
    "cardHolderProvince",
    "cardHolderCity",
    "cardHolderPostCode",
    "cardHolderAddress",
    "cardHolderPhone",
    "cardHolderEmail",
];
const OTHER_FIELDS: &[&str] = &["reusable", "paymentLimit", "threeDS"];

/// Longest text accepted in any card field; ATRIP's own fields are far shorter.
const MAX_FIELD_LEN: usize = 128;

impl CreditCard {
    /// Parses and checks the `card` JSON of a row for `method`, as of `now` (for expiry).
    pub fn from_json(
        value: &Value,
        method: PaymentMethod,
        now: DateTime<Utc>,
    ) -> Result<Self, CardError> {
        let obj = value
            .as_object()
            .ok_or_else(|| CardError("card is not a JSON object".into()))?;
        for key in obj.keys() {
            if !STRING_FIELDS.contains(&key.as_str()) && !OTHER_FIELDS.contains(&key.as_str()) {
                // Digits masked: a card keyed by its own number must not be quoted back.
                return Err(CardError(format!(
                    "card has an unknown field {:?}",
                    crate::domain::truncate(&key.replace(|c: char| c.is_ascii_digit(), "#"), 40)
                )));
            }
        }
        let number = required(obj, "cardNumber")?;
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError("card.cardNumber must be 12 to 19 digits".into()));
        }
        if !luhn_valid(&number) {
            return Err(CardError(
                "card.cardNumber is not a valid card number (Luhn check failed)".into(),
            ));
        }
        let cvv = optional(obj, "cardCVV")?;
        match (&cvv, method) {
            (None, PaymentMethod::Vcc) => {
                return Err(CardError(
                    "card.cardCVV is required for VCC (method 3)".into(),
                ))
            }
            (Some(c), _)
                if !(3..=4).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_digit()) =>
            {
                return Err(CardError("card.cardCVV must be 3 or 4 digits".into()))
            }
            _ => {}
        }
        let month = required(obj, "cardExpireMonth")?;
        let month_num: u32 = match (month.len(), month.parse::<u32>()) {
            (2, Ok(m)) if (1..=12).contains(&m) => m,
            _ => {
                return Err(CardError(
                    "card.cardExpireMonth must be \"01\" to \"12\"".into(),
                ))
            }
        };
        let year = required(obj, "cardExpireYear")?;
        let year_num: i32 = match (year.len(), year.parse::<i32>()) {
            (2, Ok(y)) => 2000 + y,
            (4, Ok(y)) => y,
            _ => {
                return Err(CardError(
                    "card.cardExpireYear must be 2 or 4 digits".into(),
                ))
            }
        };
        // A card is valid through the last day of its expiry month.
        if (year_num, month_num) < (now.year(), now.month()) {
            return Err(CardError(
                "card has expired (cardExpireYear/cardExpireMonth are in the past)".into(),
            ));
        }
        let first = required(obj, "cardHolderFirstName")?;
        let last = required(obj, "cardHolderLastName")?;
        let reusable = match obj.get("reusable") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(CardError(
                    "card.reusable must be true, false or null".into(),
                ))
            }
        };
        let payment_limit = match obj.get("paymentLimit") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v > 0.0 && v < 1e9) => n.as_f64(),
            Some(_) => {
                return Err(CardError(
                    "card.paymentLimit must be a positive number or null".into(),
                ))
            }
        };
        // threeDS is MoR only (ATRIP: "relevant for MoR only"): for VCC it is dropped, not sent.
        let three_ds = match obj.get("threeDS") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => match o.get("ip") {
                Some(Value::String(ip)) if ip.parse::<std::net::IpAddr>().is_ok() => {
                    Some(ThreeDs { ip: ip.clone() })
                }
                _ => return Err(CardError("card.threeDS.ip must be an IP address".into())),
            },
            Some(_) => return Err(CardError("card.threeDS must be an object or null".into())),
        }
        .filter(|_| method == PaymentMethod::Mor);
        Ok(CreditCard {
            card_number: number,
            card_cvv: cvv,
            card_expire_month: month,
            card_expire_year: year,
            card_holder_first_name: first,
            card_holder_last_name: last,
            card_holder_country: optional(obj, "cardHolderCountry")?,
            card_holder_province: optional(obj, "cardHolderProvince")?,
            card_holder_city: optional(obj, "cardHolderCity")?,
            card_holder_post_code: optional(obj, "cardHolderPostCode")?,
            card_holder_address: optional(obj, "cardHolderAddress")?,
            card_holder_phone: optional(obj, "cardHolderPhone")?,
            card_holder_email: optional(obj, "cardHolderEmail")?,
            reusable,
            payment_limit,
            three_ds,
        })
    }

    /// The brand, from the number's prefix (what ATRIP checks against the order's card type).
    pub fn brand(&self) -> &'static str {
        card_brand(&self.card_number).unwrap_or("Unknown")
    }

    /// The last four digits: what may be kept once the payment is resolved.
    pub fn last4(&self) -> &str {
        &self.card_number[self.card_number.len() - 4..]
    }

    pub fn has_three_ds(&self) -> bool {
        self.three_ds.is_some()
    }
}

impl fmt::Debug for CreditCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CreditCard({} ending {}, [redacted])",
            self.brand(),
            self.last4()
        )
    }
}

fn field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, CardError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_FIELD_LEN => Err(CardError(format!(
            "card.{name} is longer than {MAX_FIELD_LEN} characters"
        ))),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(CardError(format!(
            "card.{name} contains control characters"
        ))),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(CardError(format!("card.{name} must be a string"))),
    }
}

fn required(obj: &Map<String, Value>, name: &str) -> Result<String, CardError> {
    field(obj, name)?.ok_or_else(|| CardError(format!("card.{name} is missing")))
}

fn optional(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, CardError> {
    field(obj, name)
}

/// The brand and last four digits of a row's card JSON, whatever else is wrong with it: what
/// the row keeps once its card data is erased.
pub fn summary(value: &Value) -> (Option<String>, Option<String>) {
    let number = value
        .get("cardNumber")
        .and_then(Value::as_str)
        .filter(|n| n.len() >= 12 && n.bytes().all(|b| b.is_ascii_digit()));
    match number {
        Some(n) => (
            card_brand(n).map(str::to_owned),
            Some(n[n.len() - 4..].to_owned()),
        ),
        None => (None, None),
    }
}

/// The Luhn check every card number passes (ATRIP refuses others with 400).
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// The most separators between two digit groups of one card number.
const MAX_GAP: usize = 3;

/// What may stand between the digit groups of a written card number: spaces (a no-break one
/// too, or a tab), dashes, dots, slashes, underscores.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{a0}' | '\u{2007}' | '\u{202f}' | '-' | '.' | '/' | '_'
    )
}

/// `text` with every card number in it masked but its last four digits: 13 to 19 digits that
/// pass the Luhn check, written as one group or as groups joined by one to three separators
/// ([`is_separator`]: `4532 0151`, `4532  0151`, `4532 - 0151`).
/// For text that comes from outside (ATRIP's messages and bodies), which could echo a card.
///
/// Groups, not single digits, are where a number may start and end: a card quoted with its
/// expiry ("4532015112830366 07 2031") is a run of 22 digits that is no card, yet its first
/// group is; while any 13 digits inside a longer group (an order number, a timestamp) are not
/// taken for one, which would mask them by the Luhn check's one chance in ten.
pub fn mask_card_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run: digits, and gaps of one to three separators only between two digits
        // (`4532 0151`, `4532  0151`, `4532 - 0151`, a no-break space).
        let mut end = i;
        while end < chars.len() {
            if chars[end].is_ascii_digit() {
                end += 1;
                continue;
            }
            let gap = chars[end..]
                .iter()
                .take(MAX_GAP + 1)
                .take_while(|c| is_separator(**c))
                .count();
            if (1..=MAX_GAP).contains(&gap)
                && chars.get(end + gap).is_some_and(char::is_ascii_digit)
            {
                end += gap;
                continue;
            }
            break;
        }
        let run = &chars[i..end];
        out.extend(mask_run(run));
        i = end;
    }
    out
}

/// Words from outside (ATRIP's answers, webhook deliveries) as they may be stored and shown:
/// cut to `max` characters, any card data in them masked ([`mask_card_data`]), control
/// characters written out ([`crate::domain::printable`]). Only the head is looked at: a card
/// number (at most 19 digits and 18 separators) that starts within the first `max` characters
/// ends within the first `max + 40`, so masking that much masks all that is kept, and a
/// megabyte of message costs no more than a short one.
pub fn outside_words(s: &str, max: usize) -> String {
    let head = match s.char_indices().nth(max.saturating_add(40)) {
        Some((at, _)) => &s[..at],
        None => s,
    };
    // Masking keeps the number of characters, so a longer text is still cut (and marked).
    // Control characters (terminal escapes, a CR that would forge a log line, bidi overrides)
    // are written out, so that outside words cannot drive an operator's terminal.
    crate::domain::truncate(&crate::domain::printable(&mask_card_data(head)), max)
}

/// `text` with the card data an outside party may echo masked: card numbers (as
/// [`mask_card_numbers`]) and security codes, the 3 or 4 digits that follow a CVV-like word
/// (`cvv`, `cvc`, `cvn`, `cv2`, `cid`, `csc`, `security code`, as in `"cardCVV":"987"` or
/// `cvv=987`) within a few quotes, colons, equals signs or spaces.
pub fn mask_card_data(text: &str) -> String {
    mask_security_codes(&mask_card_numbers(text))
}

fn mask_security_codes(text: &str) -> String {
    const WORDS: [&str; 7] = ["cvv", "cvc", "cvn", "cv2", "cid", "csc", "security code"];
    let mut out: Vec<char> = text.chars().collect();
    let lower: Vec<char> = out.iter().map(|c| c.to_ascii_lowercase()).collect();
    let mut i = 0;
    while i < lower.len() {
        // A word starts here: after a non-alphanumeric, or as a capital in camelCase
        // (`cardCVV`); not inside another word or code (a PNR `SCID12`).
        let starts = i == 0 || !out[i - 1].is_alphanumeric() || out[i].is_ascii_uppercase();
        let word = WORDS.iter().find(|w| {
            starts
                && lower.len() - i >= w.len()
                && lower[i..]
                    .iter()
                    .copied()
                    .zip(w.chars())
                    .all(|(a, b)| a == b)
        });
        let Some(word) = word else {
            i += 1;
            continue;
        };
        // The words are ASCII: their length in chars is their length in bytes.
        let mut j = i + word.len();
        // `cvv2`, `CVC2`.
        if out.get(j) == Some(&'2') {
            j += 1;
        }
        // At least one separator and a few at most: `": "`, ` = `, `\":\"`, `" : "`.
        let from = j;
        while j < out.len() && j - from < 6 && matches!(out[j], '"' | '\'' | ':' | '=' | ' ' | '\\')
        {
            j += 1;
        }
        let digits = out[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if j > from && (3..=4).contains(&digits) {
            for c in &mut out[j..j + digits] {
                *c = '*';
            }
        }
        i = j.max(i + 1);
    }
    out.into_iter().collect()
}

/// One run of digit groups, with every card number in it (a sequence of whole groups)
/// masked. At each group, the longest sequence from it that is a card number is masked.
fn mask_run(run: &[char]) -> Vec<char> {
    // The groups' [start, end) in the run.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (k, c) in run.iter().enumerate() {
        if !c.is_ascii_digit() {
            // Several separators in a row make one gap, not empty groups.
            if k > start {
                groups.push((start, k));
            }
            start = k + 1;
        }
    }
    if run.len() > start {
        groups.push((start, run.len()));
    }
    let mut out: Vec<char> = run.to_vec();
    let mut g = 0;
    while g < groups.len() {
        let mut digits = String::new();
        let mut found = None;
        for (h, &(from, to)) in groups.iter().enumerate().skip(g) {
            digits.extend(&run[from..to]);
            if digits.len() > 19 {
                break;
            }
            if digits.len() >= 13 && luhn_valid(&digits) {
                found = Some(h);
            }
        }
        match found {
            Some(last) => {
                let (from, to) = (groups[g].0, groups[last].1);
                let mut keep = 4;
                for c in out[from..to].iter_mut().rev() {
                    if c.is_ascii_digit() {
                        if keep > 0 {
                            keep -= 1;
                        } else {
                            *c = '*';
                        }
                    }
                }
                g = last + 1;
            }
            None => g += 1,
        }
    }
    out
}

/// The brand of a card number by its prefix, with ATRIP's brand names.
pub fn card_brand(number: &str) -> Option<&'static str> {
    let p = |n: usize| {
        number
            .get(..n)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    if number.starts_with('4') {
        Some("Visa")
    } else if (51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4)) {
        Some("MasterCard")
    } else if matches!(p(2), 34 | 37) {
        Some("Amex")
    } else if p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) {
        Some("Discover")
    } else if (3528..=3589).contains(&p(4)) {
        Some("JCB")
    } else if (300..=305).contains(&p(3)) || matches!(p(2), 36 | 38) {
        Some("DinersClub")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn card_data_echoed_in_any_common_writing_is_masked() {
        let masked = mask_card_data(
            "declined card 4532.0151.1283.0366 CVV 987 exp 07/2029 {\"cardNumber\":\"4532015112830366\",\"cardCVV\":\"987\"} cvv=1234 cvc: 321",
        );
        assert!(!masked.contains("4532"), "{masked}");
        assert!(!masked.contains("987"), "{masked}");
        assert!(
            !masked.contains("1234") && !masked.contains("321"),
            "{masked}"
        );
        assert!(
            masked.contains("0366") && masked.contains("07/2029"),
            "{masked}"
        );
        // Numbers that are not card data stay.
        assert_eq!(
            mask_card_data("errorCode 604, amount 123.45"),
            "errorCode 604, amount 123.45"
        );
        assert_eq!(mask_card_data("cid 12 is short"), "cid 12 is short");
        for echo in [
            "cvv2=987",
            "{\"cardCVV2\":\"987\"}",
            "CVC2: 987",
            "{\"cardCVV\" : \"987\"}",
            "{\\\"cvv\\\":\\\"987\\\"}",
        ] {
            assert!(
                !mask_card_data(echo).contains("987"),
                "{echo} -> {}",
                mask_card_data(echo)
            );
        }
        // Codes that merely begin like the words stay: a PNR, an order reference.
        for code in ["CID123", "SCID12", "pnrCode CSC482", "CSC4821"] {
            assert_eq!(mask_card_data(code), code);
        }
    }

    #[test]
    fn card_numbers_written_with_wide_or_unusual_gaps_are_masked() {
        for written in [
            "4532  0151  1283  0366",
            "4532 - 0151 - 1283 - 0366",
            "4532\u{a0}0151\u{a0}1283\u{a0}0366",
            "4532\t0151\t1283\t0366",
            "card: 4532 / 0151 / 1283 / 0366.",
        ] {
            let masked = mask_card_data(written);
            assert!(
                !masked.contains("4532") && !masked.contains("0151") && masked.contains("0366"),
                "{written:?} -> {masked:?}"
            );
        }
        // Groups further apart are separate numbers, and short numbers stay.
        assert_eq!(
            mask_card_data("order 4532 at gate 0151, seats 12 - 14"),
            "order 4532 at gate 0151, seats 12 - 14"
        );
    }

    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-25T00:00:00Z".parse().unwrap()
    }

    fn card() -> Value {
        json!({
            "cardNumber": "4532015112830366", "cardCVV": "123",
            "cardExpireMonth": "07", "cardExpireYear": "2027",
            "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
            "threeDS": {"ip": "203.0.113.7"}
        })
    }

    fn err_of(v: Value, m: PaymentMethod) -> String {
        CreditCard::from_json(&v, m, now()).unwrap_err().0
    }

    #[test]
    fn a_good_card_parses_and_prints_only_brand_and_last_four() {
        let c = CreditCard::from_json(&card(), PaymentMethod::Vcc, now()).unwrap();
        let shown = format!("{c:?}");
        assert_eq!(shown, "CreditCard(Visa ending 0366, [redacted])");
        assert!(!c.has_three_ds(), "threeDS is dropped for VCC");
        let mor = CreditCard::from_json(&card(), PaymentMethod::Mor, now()).unwrap();
        assert!(mor.has_three_ds());
    }

    #[test]
    fn bad_cards_are_refused_naming_the_field_never_the_value() {
        let cases = [
            ("cardNumber", json!("4532015112830367"), "Luhn"),
            (
                "cardNumber",
                json!(4532015112830366u64),
                "cardNumber must be a string",
            ),
            ("cardNumber", json!("4532-0151"), "12 to 19 digits"),
            ("cardCVV", json!("12"), "cardCVV must be"),
            ("cardExpireMonth", json!("13"), "cardExpireMonth"),
            ("cardExpireYear", json!("227"), "cardExpireYear"),
            ("cardExpireYear", json!("2020"), "expired"),
            ("cardHolderAddress", json!("x".repeat(500)), "longer than"),
            ("threeDS", json!({"ip": "not-an-ip"}), "threeDS.ip"),
            ("bogus", json!("x"), "unknown field"),
        ];
        for (field, value, expect) in cases {
            let mut v = card();
            v[field] = value;
            let e = err_of(v, PaymentMethod::Mor);
            assert!(e.contains(expect), "{field}: {e}");
            assert!(
                !e.contains("4532015112830366") && !e.contains("123\""),
                "{e}"
            );
        }
        let mut v = card();
        v.as_object_mut().unwrap().remove("cardHolderLastName");
        assert!(err_of(v, PaymentMethod::Vcc).contains("cardHolderLastName is missing"));
        let mut v = card();
        v["cardCVV"] = Value::Null;
        assert!(err_of(v.clone(), PaymentMethod::Vcc).contains("required for VCC"));
        assert!(CreditCard::from_json(&v, PaymentMethod::Mor, now()).is_ok());
        assert!(err_of(json!([1]), PaymentMethod::Vcc).contains("not a JSON object"));
    }

    #[test]
    fn brands_follow_the_number_prefixes() {
        assert_eq!(card_brand("5555555555554444"), Some("MasterCard"));
        assert_eq!(card_brand("378282246310005"), Some("Amex"));
        assert_eq!(card_brand("6011111111111117"), Some("Discover"));
        assert_eq!(card_brand("3566002020360505"), Some("JCB"));
        assert_eq!(card_brand("30569309025904"), Some("DinersClub"));
        assert!(luhn_valid("4054695723100768") && !luhn_valid("4054695723100769"));
    }

    #[test]
    fn card_numbers_in_outside_text_are_masked_but_their_last_four() {
        assert_eq!(
            mask_card_numbers("card 4054695723100768 declined"),
            "card ************0768 declined"
        );
        assert_eq!(
            mask_card_numbers("4111 1111 1111 1111, 3782-822463-10005."),
            "**** **** **** 1111, ****-******-*0005."
        );
        // Not a card: too short, failing Luhn, codes and dates stay as they are.
        for kept in [
            "status 411, order 202611300001",
            "4054695723100769",
            "2026-11-30 07:42:59",
            "ticket 784-2345678901",
            "order TESTA20261130120000000 and 2026113012000000000000",
            "",
        ] {
            assert_eq!(mask_card_numbers(kept), kept);
        }
        // A card quoted with its expiry, as a card gateway's message may: the digits run on,
        // the card is masked all the same.
        assert_eq!(
            mask_card_numbers("Card 4532015112830366 07 2031 not supported"),
            "Card ************0366 07 2031 not supported"
        );
        assert_eq!(
            mask_card_numbers("7 4111 1111 1111 1111 12"),
            "7 **** **** **** 1111 12"
        );
    }
}
