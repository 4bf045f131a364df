//! `orderList.do`'s answer, read for the reconciliation (docs/design.md, R1-R6): one page of
//! ATRIP's orders with the paging envelope around it.
//!
//! Where ATRIP's documentation is unsure the reading is tolerant: `page`, `pageSize` and the
//! total are typed as strings in the schema but integers in its example (both are read), and
//! the total is `totalRecords` in the documentation but read under the other names an envelope
//! may give it ([`TOTAL_FIELDS`]). Every row field the comparison needs is checked, and a row
//! that cannot be read is named (order and field) rather than guessed at. Like every answer,
//! the page is read keeping only these fields, the row list bounded ([`MAX_LIST_ROWS`]).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::prune::{Beyond, Keep, Unreadable};
use super::{describe_garbled, http_code, json_object, quote, rate_limit, text};
use crate::atrip::codes::OrderStatus;

/// At most this many rows in one page: the reconciliation asks for at most this many
/// (`reconcile.page_size`), and a page holding more than it asked for is refused.
pub const MAX_LIST_ROWS: usize = 500;

/// The names the total number of orders may come under: `totalRecords` is ATRIP's documented
/// one; the others are what paging envelopes commonly use, read when it is absent.
pub const TOTAL_FIELDS: [&str; 5] = [
    "totalRecords",
    "total",
    "totalCount",
    "totalSize",
    "totalNum",
];

static ROW_FIELDS: Keep = Keep::Object(&[
    ("orderNo", Keep::Scalar),
    ("pnrCode", Keep::Scalar),
    ("orderStatus", Keep::Scalar),
    ("orderCreateTimestamp", Keep::Scalar),
    ("paymentTimestamp", Keep::Scalar),
    ("errorCode", Keep::Scalar),
    ("errorMessage", Keep::Scalar),
]);

static LIST_FIELDS: Keep = Keep::Object(&[
    ("status", Keep::Scalar),
    ("msg", Keep::Scalar),
    ("code", Keep::Scalar),
    ("retryAfter", Keep::Scalar),
    ("page", Keep::Scalar),
    ("pageSize", Keep::Scalar),
    ("totalRecords", Keep::Scalar),
    ("total", Keep::Scalar),
    ("totalCount", Keep::Scalar),
    ("totalSize", Keep::Scalar),
    ("totalNum", Keep::Scalar),
    (
        "orders",
        Keep::List {
            max: MAX_LIST_ROWS,
            item: &ROW_FIELDS,
            beyond: Beyond::Refuse,
        },
    ),
]);

/// One order as `orderList.do` lists it: what the comparison reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedOrder {
    pub order_no: String,
    pub status: OrderStatus,
    pub created: Option<DateTime<Utc>>,
    /// `paymentTimestamp`: when the order was paid (UTC), `None` while unpaid.
    pub paid: Option<DateTime<Utc>>,
    pub pnr_code: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl ListedOrder {
    /// ATRIP shows the order paid now: a paid status (`1` ticketing, `2` ticketed), as an
    /// order query's `"1"`/`"2"` shows it (rule P5a). Only this is evidence of payment; a
    /// payment time beside another status (a paid order ATRIP then cancelled) is not.
    pub fn shows_paid(&self) -> bool {
        matches!(self.status, OrderStatus::Ticketing | OrderStatus::Ticketed)
    }

    /// ATRIP took a payment for the order at some time: a paid status, or a payment time
    /// (a paid order later cancelled still took money). Reported, never evidence by itself.
    pub fn was_paid(&self) -> bool {
        self.paid.is_some() || self.shows_paid()
    }
}

/// One page of `orderList.do`.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub rows: Vec<ListedOrder>,
    /// The total number of orders the query matches, under whichever name it came.
    pub total: Option<u64>,
    /// The page and page size the answer says it holds, when it says so.
    pub page: Option<i64>,
    pub page_size: Option<u64>,
    /// Rows that could not be read, each naming the order (or its place) and the field.
    pub unreadable: Vec<String>,
}

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ListError {
    /// ATRIP asks us to slow down: the same page may be asked again after this.
    RateLimited(Duration),
    /// Anything that may pass (a timeout, a 5xx, a reset): the same page may be asked again.
    Transient(String),
    /// An answer that will not become readable by asking again (a status refusing the
    /// request, a body that is not a page, a page over its bounds).
    Refused(String),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::RateLimited(d) => write!(
                f,
                "orderList.do is rate limited (retry after {} s)",
                d.as_secs()
            ),
            ListError::Transient(why) | ListError::Refused(why) => f.write_str(why),
        }
    }
}

/// Reads a count that may come as an integer or as a string holding one (the schema types
/// `page`, `pageSize` and `totalRecords` as strings; the example sends integers).
fn count(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("orderList.do answer: {key} is not an integer")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            format!(
                "orderList.do answer: {key} is not an integer ({:?})",
                quote(s, 20)
            )
        }),
        Some(_) => Err(format!("orderList.do answer: {key} is not an integer")),
    }
}

/// `yyyy-MM-dd'T'HH:mm:ss'Z'` (ATRIP's documented form), or any RFC 3339 time; `None` for a
/// null or empty field.
pub fn utc_time(value: Option<&Value>) -> Result<Option<DateTime<Utc>>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ") {
                return Ok(Some(t.and_utc()));
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| "is not a UTC time (yyyy-MM-ddTHH:mm:ssZ)")
        }
        Some(_) => Err("is not a string"),
    }
}

/// One row, or why it cannot be read (naming the order when it has one, and the field).
fn row(i: usize, v: &Value) -> Result<ListedOrder, String> {
    let Value::Object(m) = v else {
        return Err(format!("orders[{i}] is not an object"));
    };
    let order_no = match m.get("orderNo") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => s.trim().to_owned(),
        _ => {
            return Err(format!(
                "orders[{i}].orderNo is missing or not an order number"
            ))
        }
    };
    let shown = quote(&order_no, 40);
    let status = match m.get("orderStatus") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => OrderStatus::from_wire(&n.to_string()),
            None => return Err(format!("order {shown}: orderStatus is not an integer")),
        },
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => OrderStatus::from_wire(s),
        _ => {
            return Err(format!(
                "order {shown}: orderStatus is missing or not an integer"
            ))
        }
    };
    let time = |field: &'static str| {
        utc_time(m.get(field)).map_err(|why| format!("order {shown}: {field} {why}"))
    };
    Ok(ListedOrder {
        created: time("orderCreateTimestamp")?,
        paid: time("paymentTimestamp")?,
        status,
        pnr_code: text(m, "pnrCode"),
        error_code: match m.get("errorCode") {
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => text(m, "errorCode").map(|c| quote(&c, 16)),
        },
        error_message: text(m, "errorMessage"),
        order_no,
    })
}

/// Classifies an `orderList.do` HTTP answer.
pub fn classify_list(http: u16, body: &[u8]) -> Result<ListPage, ListError> {
    let obj = json_object(body, &LIST_FIELDS);
    if let Some(retry_after) = rate_limit(http, obj.as_ref().ok()) {
        return Err(ListError::RateLimited(retry_after));
    }
    if http >= 500 || http == 408 {
        return Err(ListError::Transient(format!(
            "orderList.do answered HTTP {http}"
        )));
    }
    if http != 200 {
        return Err(ListError::Refused(http_code("orderList.do", http)));
    }
    let m = match obj {
        Ok(m) => m,
        Err(Unreadable::Garbled) => {
            return Err(ListError::Refused(format!(
                "orderList.do: {}",
                describe_garbled(body)
            )))
        }
        Err(Unreadable::Bound(why)) => {
            return Err(ListError::Refused(format!(
                "orderList.do answer refused: {why}"
            )))
        }
    };
    let Some(status) = m.get("status").and_then(Value::as_i64) else {
        return Err(ListError::Refused(
            "orderList.do answer has no integer status".into(),
        ));
    };
    if status != 0 {
        let msg = text(&m, "msg");
        let why = format!(
            "orderList.do answered status {status} ({})",
            msg.as_deref().unwrap_or("no message")
        );
        // ATRIP's generic "system error" and timeout codes may pass; anything else will not.
        return Err(if matches!(status, -1 | 2 | 705 | 9999) {
            ListError::Transient(why)
        } else {
            ListError::Refused(why)
        });
    }
    let mut total = None;
    for key in TOTAL_FIELDS {
        if let Some(n) = count(&m, key).map_err(ListError::Refused)? {
            total = Some(u64::try_from(n).map_err(|_| {
                ListError::Refused(format!("orderList.do answer: {key} is negative"))
            })?);
            break;
        }
    }
    let page_size =
        match count(&m, "pageSize").map_err(ListError::Refused)? {
            Some(n) => Some(u64::try_from(n).map_err(|_| {
                ListError::Refused("orderList.do answer: pageSize is negative".into())
            })?),
            None => None,
        };
    let mut page = ListPage {
        total,
        page: count(&m, "page").map_err(ListError::Refused)?,
        page_size,
        ..ListPage::default()
    };
    match m.get("orders") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match row(i, item) {
                    Ok(r) => page.rows.push(r),
                    Err(why) => page.unreadable.push(why),
                }
            }
        }
        Some(_) => {
            return Err(ListError::Refused(
                "orderList.do answer: orders is not a list".into(),
            ))
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ATRIP's own sample answer (see tests/fixtures/atrip/README.md).
    const DOCS_SAMPLE: &str = include_str!("../../../tests/fixtures/atrip/docs_order_list.json");

    #[test]
    fn atrips_documented_sample_reads_as_two_ticketed_paid_orders() {
        let page = classify_list(200, DOCS_SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.total, Some(2));
        assert_eq!((page.page, page.page_size), (Some(1), Some(20)));
        assert!(page.unreadable.is_empty(), "{:?}", page.unreadable);
        assert_eq!(page.rows.len(), 2);
        let first = &page.rows[0];
        assert_eq!(first.order_no, "TESTA20241122090710695");
        assert_eq!(first.status, OrderStatus::Ticketed);
        assert_eq!(
            first.paid.unwrap().to_rfc3339(),
            "2024-11-22T01:07:11+00:00"
        );
        assert!(first.shows_paid());
    }

    #[test]
    fn counts_may_be_strings_and_the_total_may_have_another_name() {
        let body = br#"{"status": 0, "page": "0", "pageSize": "50", "total": "7", "orders": []}"#;
        let page = classify_list(200, body).unwrap();
        assert_eq!(
            (page.total, page.page, page.page_size),
            (Some(7), Some(0), Some(50))
        );
    }

    #[test]
    fn a_row_that_cannot_be_read_names_the_order_and_the_field() {
        let body = br#"{"status": 0, "totalRecords": 3, "orders": [
            {"orderNo": "TESTA1", "orderStatus": 1, "paymentTimestamp": "yesterday"},
            {"orderNo": "TESTA2", "orderStatus": "x"},
            {"orderStatus": 0}]}"#;
        let page = classify_list(200, body).unwrap();
        assert!(page.rows.is_empty());
        assert_eq!(
            page.unreadable,
            vec![
                "order TESTA1: paymentTimestamp is not a UTC time (yyyy-MM-ddTHH:mm:ssZ)",
                "order TESTA2: orderStatus is missing or not an integer",
                "orders[2].orderNo is missing or not an order number",
            ]
        );
    }

    #[test]
    fn a_cancelled_order_keeps_its_error_code_and_an_unpaid_one_is_not_paid() {
        let body = br#"{"status": 0, "orders": [
            {"orderNo": "TESTA1", "orderStatus": -3, "paymentTimestamp": null, "errorCode": "604", "errorMessage": "Payment declined"},
            {"orderNo": "TESTA2", "orderStatus": 0, "paymentTimestamp": ""}]}"#;
        let page = classify_list(200, body).unwrap();
        assert_eq!(page.rows[0].status, OrderStatus::Cancelled);
        assert_eq!(page.rows[0].error_code.as_deref(), Some("604"));
        assert!(!page.rows[0].shows_paid() && !page.rows[1].shows_paid());
    }

    #[test]
    fn refusals_rate_limits_and_oversized_pages_are_told_apart() {
        assert_eq!(
            classify_list(200, br#"{"status": 900, "msg": "no access"}"#).unwrap_err(),
            ListError::Refused("orderList.do answered status 900 (no access)".into())
        );
        assert!(matches!(
            classify_list(429, br#"{"code": 429, "retryAfter": 2}"#),
            Err(ListError::RateLimited(_))
        ));
        assert!(matches!(
            classify_list(502, b""),
            Err(ListError::Transient(_))
        ));
        let many = format!(
            r#"{{"status": 0, "orders": [{}]}}"#,
            vec![r#"{"orderNo": "A"}"#; MAX_LIST_ROWS + 1].join(",")
        );
        assert!(matches!(
            classify_list(200, many.as_bytes()),
            Err(ListError::Refused(why)) if why.contains("orders")
        ));
        assert!(matches!(
            classify_list(200, b"<html>"),
            Err(ListError::Refused(_))
        ));
    }
}
