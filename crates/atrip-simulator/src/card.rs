//! Card checks the simulator applies to `pay.do` (Luhn, brand by number range, expiry), so the
//! worker meets the same refusals it would meet on the sandbox before any money moves.

use chrono::{DateTime, Datelike, Utc};

/// The card brands ATRIP accepts for MoR (`payment.cardType` of `order.do`), spelled as ATRIP
/// spells them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CardBrand {
    Amex,
    Visa,
    MasterCard,
    Jcb,
    Discover,
    DinersClub,
}

impl CardBrand {
    pub(super) const ALL: [CardBrand; 6] = [
        CardBrand::Amex,
        CardBrand::Visa,
        CardBrand::MasterCard,
        CardBrand::Jcb,
        CardBrand::Discover,
        CardBrand::DinersClub,
    ];

    /// The wire name (`order.do`'s `payment.cardType`).
    pub(super) fn name(self) -> &'static str {
        match self {
            CardBrand::Amex => "Amex",
            CardBrand::Visa => "Visa",
            CardBrand::MasterCard => "MasterCard",
            CardBrand::Jcb => "JCB",
            CardBrand::Discover => "Discover",
            CardBrand::DinersClub => "DinersClub",
        }
    }

    /// Reads a wire name; case-insensitive because agencies are not consistent about `JCB`/`Jcb`.
    pub(super) fn parse(value: &str) -> Option<CardBrand> {
        let value = value.trim();
        CardBrand::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(value))
    }

    /// The brand of a card number by its issuer range (IIN), the way a payment gateway tells it;
    /// `None` for ranges outside the six brands (the order then answers 413).
    pub(super) fn detect(digits: &str) -> Option<CardBrand> {
        let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
        let in_range =
            |n: usize, lo: u32, hi: u32| prefix(n).is_some_and(|p| (lo..=hi).contains(&p));
        if in_range(2, 34, 34) || in_range(2, 37, 37) {
            Some(CardBrand::Amex)
        } else if in_range(3, 300, 305) || in_range(2, 36, 36) || in_range(2, 38, 38) {
            Some(CardBrand::DinersClub)
        } else if in_range(4, 3528, 3589) {
            Some(CardBrand::Jcb)
        } else if in_range(1, 4, 4) {
            Some(CardBrand::Visa)
        } else if in_range(2, 51, 55) || in_range(4, 2221, 2720) {
            Some(CardBrand::MasterCard)
        } else if in_range(4, 6011, 6011) || in_range(2, 65, 65) || in_range(3, 644, 649) {
            Some(CardBrand::Discover)
        } else {
            None
        }
    }
}

/// The card number's digits when it is a plausible PAN (12–19 digits, spaces and dashes
/// tolerated as people type them) that passes the Luhn check ATRIP documents.
pub(super) fn valid_pan(number: &str) -> Option<String> {
    let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    (sum % 10 == 0).then_some(digits)
}

/// The last four digits: the only part of a card the simulator keeps (ledger, order query),
/// because nothing in a test ever needs the rest and a stored PAN is a liability even in a fake.
pub(super) fn last4(number: &str) -> Option<String> {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 4).then(|| digits[digits.len() - 4..].iter().collect())
}

/// Why an expiry is refused, naming the field as ATRIP's 400 `msg` does.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExpiryError {
    Month,
    Year,
    Past,
}

/// Checks `cardExpireMonth` ("01"–"12") and `cardExpireYear` (two digits per the spec text,
/// four per every example: both accepted) and that the card is still valid this month.
pub(super) fn check_expiry(month: &str, year: &str, now: DateTime<Utc>) -> Result<(), ExpiryError> {
    let month_num = (month.len() == 2)
        .then(|| month.parse::<u32>().ok())
        .flatten()
        .filter(|m| (1..=12).contains(m))
        .ok_or(ExpiryError::Month)?;
    if !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExpiryError::Year);
    }
    let year_num: i32 = match year.len() {
        2 => 2000 + year.parse::<i32>().map_err(|_| ExpiryError::Year)?,
        4 => year.parse().map_err(|_| ExpiryError::Year)?,
        _ => return Err(ExpiryError::Year),
    };
    // A card is valid through the last day of its expiry month.
    if (year_num, month_num) < (now.year(), now.month()) {
        return Err(ExpiryError::Past);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn luhn_accepts_documented_test_cards_and_rejects_a_typo() {
        assert!(valid_pan("4532015112830366").is_some());
        assert!(valid_pan("4111 1111 1111 1111").is_some());
        assert!(valid_pan("4532015112830367").is_none());
        assert!(valid_pan("4111").is_none());
    }

    #[test]
    fn brands_follow_issuer_ranges() {
        assert_eq!(CardBrand::detect("4111111111111111"), Some(CardBrand::Visa));
        assert_eq!(
            CardBrand::detect("5555555555554444"),
            Some(CardBrand::MasterCard)
        );
        assert_eq!(
            CardBrand::detect("2221000000000009"),
            Some(CardBrand::MasterCard)
        );
        assert_eq!(CardBrand::detect("378282246310005"), Some(CardBrand::Amex));
        assert_eq!(
            CardBrand::detect("6011111111111117"),
            Some(CardBrand::Discover)
        );
        assert_eq!(
            CardBrand::detect("6451111111111117"),
            Some(CardBrand::Discover)
        );
        assert_eq!(CardBrand::detect("3530111333300000"), Some(CardBrand::Jcb));
        assert_eq!(
            CardBrand::detect("30569309025904"),
            Some(CardBrand::DinersClub)
        );
        assert_eq!(
            CardBrand::detect("38520000023237"),
            Some(CardBrand::DinersClub)
        );
        assert_eq!(CardBrand::detect("9999999999999995"), None);
        assert_eq!(CardBrand::parse("jcb"), Some(CardBrand::Jcb));
    }

    #[test]
    fn expiry_checks_name_the_field() {
        let now = Utc.with_ymd_and_hms(2026, 5, 10, 0, 0, 0).unwrap();
        assert_eq!(check_expiry("05", "2026", now), Ok(()));
        assert_eq!(check_expiry("12", "27", now), Ok(()));
        assert_eq!(check_expiry("04", "2026", now), Err(ExpiryError::Past));
        assert_eq!(check_expiry("13", "2027", now), Err(ExpiryError::Month));
        assert_eq!(check_expiry("7", "2027", now), Err(ExpiryError::Month));
        assert_eq!(check_expiry("07", "202", now), Err(ExpiryError::Year));
        assert_eq!(last4("4532 0151 1283 0366").as_deref(), Some("0366"));
    }
}
