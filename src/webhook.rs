//! Reading ATRIP's webhook deliveries (docs/design.md, rules W3 and W6; docs/atrip.md,
//! "Webhooks"): which order a delivery names, what it reports, and its identity for
//! recording it once.
//!
//! ATRIP sends every event type of an account to one URL and signs nothing; its documented
//! types are `order.ticketed`, `order.cancelled`, `order.void`, `order.schedulechange`,
//! `email.schedulechange`, `abnormal.cancelled`, `airline.status` and `email.all`. A delivery
//! is untrusted input: only the few fields below are kept, each short, printable and without
//! NUL characters (which `jsonb` refuses), and none of the passengers' data is.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::OrderNo;
use crate::jobs::Change;

/// The largest body the endpoint reads (axum answers 413 past it). ATRIP's largest documented
/// delivery (`order.ticketed` with three passengers, `order.schedulechange` with its segments)
/// is under 3 KB; nine passengers with ancillaries stay well under this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The event types ATRIP documents; anything else is counted as `other`.
pub const TYPES: [&str; 8] = [
    "order.ticketed",
    "order.cancelled",
    "order.void",
    "order.schedulechange",
    "email.schedulechange",
    "abnormal.cancelled",
    "airline.status",
    "email.all",
];

/// `data.voidStatus` values that say the void did not happen: 4 rejected, 6 withdrawn.
const VOID_NOT_DONE: [i64; 2] = [4, 6];

/// One delivery, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// `type`, cleaned and cut short (`None` when absent or not a string).
    pub kind: Option<String>,
    /// `data.orderNo` (or a top-level `orderNo`) when it is a well-formed order number.
    pub order_no: Option<String>,
    /// What it reports about a ticketed order, if anything (rule W6).
    pub change: Option<Change>,
    /// The event's detail as recorded: the fields read, and `delivery`, its identity.
    pub detail: Value,
}

/// Why a body is not a delivery at all (answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBody(pub &'static str);

/// Reads a body. Only a JSON object is a delivery; a NUL byte outside a JSON string escape, or
/// anything else that is not JSON, is refused.
pub fn parse(body: &[u8]) -> Result<Parsed, BadBody> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|_| BadBody("the body is not JSON"))?;
    let Value::Object(top) = &payload else {
        return Err(BadBody("the body is not a JSON object"));
    };
    let empty = Map::new();
    let data = top.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let text = |v: Option<&Value>, max: usize| v.and_then(Value::as_str).map(|s| clean(s, max));
    let kind = text(top.get("type"), 40);
    let order_no = data
        .get("orderNo")
        .or_else(|| top.get("orderNo"))
        .and_then(Value::as_str)
        .filter(|o| OrderNo::parse(o).is_ok())
        .map(str::to_owned);
    let notification_id = text(top.get("notificationId"), 64);
    let void_status = integer(data.get("voidStatus"));
    let schedule_change_type = integer(data.get("scheduleChangeType"));
    let change = match kind.as_deref() {
        Some("order.void") if void_status.is_some_and(|s| VOID_NOT_DONE.contains(&s)) => None,
        Some("order.void") => Some(Change::Voided),
        Some("order.cancelled" | "abnormal.cancelled") => Some(Change::CancelledByAirline),
        // scheduleChangeType 2 is "flight cancel".
        Some("order.schedulechange") if schedule_change_type == Some(2) => {
            Some(Change::CancelledByAirline)
        }
        Some("order.schedulechange" | "email.schedulechange") => Some(Change::ScheduleChanged),
        _ => None,
    };
    let void_code = text(data.get("voidCode"), 40);
    let error_code = text(data.get("errorCode"), 16);
    let order_status = integer(data.get("orderStatus"));
    // What the delivery reports, and nothing its sender may vary freely (messages, segments,
    // passengers): another message about the same thing is the same event.
    let reported = json!({
        "voidStatus": void_status,
        "voidCode": void_code,
        "scheduleChangeType": schedule_change_type,
        "orderStatus": order_status,
        "errorCode": error_code,
    });
    let delivery = identity(
        kind.as_deref(),
        order_no.as_deref(),
        notification_id.as_deref(),
        &reported,
    );
    let mut detail = json!({
        "type": kind,
        "delivery": delivery,
        // An integer in webhooks, a string in order queries: ATRIP's advice is to accept both.
        "orderStatus": order_status,
    });
    let extra = [
        ("notificationId", notification_id.map(Value::from)),
        ("voidStatus", void_status.map(Value::from)),
        ("voidCode", void_code.map(Value::from)),
        ("scheduleChangeType", schedule_change_type.map(Value::from)),
        ("errorCode", error_code.map(Value::from)),
        (
            "errorMessage",
            text(data.get("errorMessage"), 200).map(Value::from),
        ),
        ("message", text(data.get("message"), 200).map(Value::from)),
        (
            "emailCategory",
            text(data.get("emailCategory"), 60).map(Value::from),
        ),
        ("change", change.map(|c| Value::from(c.as_str()))),
    ];
    if let Value::Object(map) = &mut detail {
        for (key, value) in extra {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
    }
    Ok(Parsed {
        kind,
        order_no,
        change,
        detail,
    })
}

/// A delivery's identity: its type, its order and ATRIP's `notificationId` when it sends one
/// (incident and email events); otherwise what it reports (`reported`: `voidStatus`,
/// `voidCode`, `scheduleChangeType`, `orderStatus`, `errorCode`; `order.ticketed` and
/// `order.void` carry no notificationId): the same report sent again, whatever its message or
/// other fields, is the same event, a void whose `voidStatus` moved on is a new one. A digest,
/// so that the key is short whatever was sent. What a sender can still vary (a notificationId)
/// is bounded by the cap per order ([`crate::jobs::WEBHOOKS_PER_ORDER_PER_HOUR`]).
fn identity(
    kind: Option<&str>,
    order_no: Option<&str>,
    notification_id: Option<&str>,
    reported: &Value,
) -> String {
    let mut h = Sha256::new();
    h.update(kind.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(order_no.unwrap_or("").as_bytes());
    h.update([0]);
    match notification_id {
        Some(id) => {
            h.update(b"notificationId\0");
            h.update(id.as_bytes());
        }
        // serde_json's maps are ordered by key: the same report gives the same bytes.
        None => h.update(reported.to_string().as_bytes()),
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A whole number sent as a number or as a numeric string.
fn integer(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Text from a delivery as it may be stored and shown: no NUL (text and jsonb refuse it), card
/// data masked, control characters written out, cut short: as ATRIP's words in its answers
/// ([`crate::card::outside_words`]).
fn clean(s: &str, max: usize) -> String {
    crate::card::outside_words(&s.replace('\0', ""), max)
}

/// The label a delivery's type is counted under.
pub fn type_label(kind: Option<&str>) -> &'static str {
    kind.and_then(|k| TYPES.into_iter().find(|t| *t == k))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w6_each_documented_type_reports_what_it_says() {
        let cases = [
            (
                json!({"type": "order.void", "data": {"orderNo": "TESTA20250512100600259", "voidStatus": 2}}),
                Some(Change::Voided),
            ),
            (
                json!({"type": "order.void", "data": {"orderNo": "TESTA20250512100600259", "voidStatus": 4}}),
                None,
            ),
            (
                json!({"type": "order.cancelled", "data": {"orderNo": "TESTA20250512100600259"}}),
                Some(Change::CancelledByAirline),
            ),
            (
                json!({"type": "abnormal.cancelled", "notificationId": "1", "data": {"orderNo": "TESTA20250512100600259"}}),
                Some(Change::CancelledByAirline),
            ),
            (
                json!({"type": "order.schedulechange", "data": {"orderNo": "TESTA20250512100600259", "scheduleChangeType": 1}}),
                Some(Change::ScheduleChanged),
            ),
            (
                json!({"type": "order.schedulechange", "data": {"orderNo": "TESTA20250512100600259", "scheduleChangeType": 2}}),
                Some(Change::CancelledByAirline),
            ),
            (
                json!({"type": "email.schedulechange", "data": {"orderNo": "TESTA20250512100600259"}}),
                Some(Change::ScheduleChanged),
            ),
            (
                json!({"type": "order.ticketed", "data": {"orderNo": "TESTA20250512100600259", "orderStatus": 2}}),
                None,
            ),
            (
                json!({"type": "email.all", "data": {"orderNo": "TESTA20250512100600259"}}),
                None,
            ),
        ];
        for (body, change) in cases {
            let parsed = parse(body.to_string().as_bytes()).unwrap();
            assert_eq!(parsed.change, change, "{body}");
            assert_eq!(parsed.order_no.as_deref(), Some("TESTA20250512100600259"));
        }
    }

    /// ATRIP's documented samples, verbatim (tests/fixtures/atrip/README.md names each source).
    #[test]
    fn w6_atrips_documented_samples_are_read_as_they_say() {
        let fixture = |name: &str| {
            let path = format!("{}/tests/fixtures/atrip/{name}", env!("CARGO_MANIFEST_DIR"));
            parse(&std::fs::read(&path).unwrap()).unwrap()
        };
        let cases = [
            (
                "webhook_order_ticketed.json",
                "order.ticketed",
                Some("TESTL20230922153224323"),
                None,
            ),
            (
                "webhook_order_void.json",
                "order.void",
                Some("TESTA20250512100600259"),
                Some(Change::Voided),
            ),
            (
                "webhook_order_void_retry_failure.json",
                "order.void",
                Some("TESTA20250512100600259"),
                None,
            ),
            (
                "webhook_abnormal_cancelled.json",
                "abnormal.cancelled",
                Some("RQWUV20230617185232880"),
                Some(Change::CancelledByAirline),
            ),
            (
                "webhook_order_schedulechange.json",
                "order.schedulechange",
                Some("ATXFQ20230720193244809"),
                Some(Change::ScheduleChanged),
            ),
            (
                "webhook_email_schedulechange.json",
                "email.schedulechange",
                Some("TESTS20230323103458265"),
                Some(Change::ScheduleChanged),
            ),
            ("webhook_email_all.json", "email.all", Some("XXXXXX"), None),
            ("webhook_airline_status.json", "airline.status", None, None),
            // ATRIP's placeholder "{canceled order no}" is no order number.
            (
                "webhook_order_cancelled.json",
                "order.cancelled",
                None,
                Some(Change::CancelledByAirline),
            ),
        ];
        for (name, kind, order_no, change) in cases {
            let parsed = fixture(name);
            assert_eq!(parsed.kind.as_deref(), Some(kind), "{name}");
            assert_eq!(parsed.order_no.as_deref(), order_no, "{name}");
            assert_eq!(parsed.change, change, "{name}");
            assert_eq!(type_label(parsed.kind.as_deref()), kind);
        }
        // The ticketed sample's passengers' documents are not kept.
        assert!(!fixture("webhook_order_ticketed.json")
            .detail
            .to_string()
            .contains("123458"));
        assert_eq!(
            fixture("webhook_email_all.json").detail["notificationId"],
            "20240105105430470MJMOR"
        );
    }

    #[test]
    fn w3_a_replay_has_the_same_identity_and_a_new_event_another() {
        let a = json!({"type": "order.void", "data": {"orderNo": "TESTA1234567", "voidStatus": 0}});
        let b = json!({"type": "order.void", "data": {"orderNo": "TESTA1234567", "voidStatus": 2}});
        let id = |v: &Value| parse(v.to_string().as_bytes()).unwrap().detail["delivery"].clone();
        assert_eq!(id(&a), id(&a));
        assert_ne!(id(&a), id(&b));
        // With a notificationId, that identifies it whatever else differs.
        let n1 = json!({"type": "email.all", "notificationId": "N1", "status": -1, "data": {"orderNo": "TESTA1234567"}});
        let n1_again = json!({"type": "email.all", "notificationId": "N1", "status": 0, "data": {"orderNo": "TESTA1234567"}});
        assert_eq!(id(&n1), id(&n1_again));
        // Without one, only what it reports: another message, another byte elsewhere, is the
        // same event.
        let v = json!({"type": "order.void", "data": {"orderNo": "TESTA1234567", "voidStatus": 2, "message": "voided"}});
        let v2 = json!({"type": "order.void", "x": 1, "data": {"orderNo": "TESTA1234567", "voidStatus": "2", "message": "voided!", "segments": [1]}});
        assert_eq!(id(&v), id(&v2));
    }

    #[test]
    fn w3_card_data_in_a_delivery_is_masked_as_in_atrips_answers() {
        let parsed = parse(
            br#"{"type": "order.void", "data": {"orderNo": "TESTA1234567", "message": "card 4532015112830366 cvv=987", "errorMessage": "4532-0151-1283-0366"}}"#,
        )
        .unwrap();
        let detail = parsed.detail.to_string();
        assert!(!detail.contains("4532015112830366"), "{detail}");
        assert!(!detail.contains("4532-0151-1283-0366"), "{detail}");
        assert!(!detail.contains("987"), "{detail}");
        assert!(detail.contains("0366"), "{detail}");
    }

    #[test]
    fn w3_garbage_is_not_a_delivery_and_nul_never_reaches_the_detail() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[1, 2]").is_err());
        assert!(parse(b"{\"type\": \"order.void\"\0}").is_err());
        let parsed = parse(
            br#"{"type": "order.void\u0000", "data": {"orderNo": "TESTA1234567", "message": "a\u0000b"}}"#,
        )
        .unwrap();
        assert!(
            !parsed.detail.to_string().contains("\\u0000"),
            "{}",
            parsed.detail
        );
        assert_eq!(parsed.kind.as_deref(), Some("order.void"));
        // Not a well-formed order number: no order is named.
        let parsed = parse(br#"{"data": {"orderNo": "TESTA\u00001234567"}}"#).unwrap();
        assert_eq!(parsed.order_no, None);
    }
}
