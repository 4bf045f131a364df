//! What the lists show of a row, and how their parameters and exports are read and written:
//! the kind of a row's reason and its short form, time spans and times as a person types them,
//! and CSV. Shared by the review list, the state lists, the search and the order page.

use std::fmt::Write as _;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::jobs::JobRow;
use crate::machine::{kind_of, ReasonKind};

/// A short reason is at most this many characters.
pub const SHORT_REASON_CHARS: usize = 80;

/// `30m`, `4h`, `2d` as seconds (at most a year).
pub fn parse_span(field: &str, v: &str) -> Result<i64, String> {
    let bad = || {
        format!("The {field} must be a number of minutes, hours or days, like 30m, 4h or 2d (at most 365d); it is “{v}”.")
    };
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let s = match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if !(0..=365 * 86_400).contains(&s) {
        return Err(bad());
    }
    Ok(s)
}

/// `2026-12-04`, `2026-12-04T10:30`, `2026-12-04T10:30:00` (UTC) or RFC 3339.
pub fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.to_utc());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "The {field} must be a date (2026-12-04) or a time (2026-12-04T10:30, UTC); it is “{v}”."
    ))
}

/// A row's kind of reason.
pub fn kind(row: &JobRow) -> ReasonKind {
    kind_of(
        row.last_error.as_deref(),
        row.order_status.as_deref(),
        row.needs_card(),
    )
}

/// A row's reason in at most [`SHORT_REASON_CHARS`] characters: its kind, and ATRIP's status
/// and message where they say more.
pub fn short_reason(row: &JobRow, kind: ReasonKind) -> String {
    if kind == ReasonKind::Other {
        // A reason this release has no kind for: its own words, cut short.
        if let Some(e) = row.last_error.as_deref() {
            let why = e
                .strip_prefix("order ")
                .and_then(|rest| rest.split_once(": "))
                .map_or(e, |(_, why)| why);
            return crate::domain::truncate(why, SHORT_REASON_CHARS - 1);
        }
    }
    let mut text = kind.label().to_owned();
    if matches!(
        kind,
        ReasonKind::CardRefused | ReasonKind::PaymentRefused | ReasonKind::OutOfScope
    ) {
        if let Some(status) = row.atrip_status {
            let _ = write!(text, ": {status}");
            if let Some(m) = row.atrip_message.as_deref().filter(|m| !m.is_empty()) {
                let _ = write!(text, " {m}");
            }
        }
    }
    crate::domain::truncate(&text, SHORT_REASON_CHARS - 1)
}

/// One CSV cell: quoted, quotes doubled, and a cell a spreadsheet would read as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) led by a `'`.
pub fn csv_cell(v: &str) -> String {
    let guarded = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The columns of every CSV export: no card data (not even brand or last four digits).
const CSV_HEAD: &[&str] = &[
    "order_no",
    "client_order_no",
    "state",
    "payment_method",
    "created_at",
    "updated_at",
    "pay_deadline",
    "pay_do_sent",
    "paid_at",
    "paid_evidence",
    "last_pay_outcome",
    "atrip_status",
    "atrip_message",
    "order_status",
    "atrip_reference",
    "airline_pnr",
    "tickets",
    "reason_kind",
    "reason",
];

/// `rows` as CSV (RFC 4180, CRLF line ends), as a download named `name`.
pub fn csv_response(name: &str, rows: &[JobRow]) -> Response {
    let mut out = CSV_HEAD
        .iter()
        .map(|h| csv_cell(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    let t = |v: Option<DateTime<Utc>>| v.map(|t| t.to_rfc3339()).unwrap_or_default();
    for r in rows {
        let tickets = match &r.ticket_numbers {
            Some(serde_json::Value::Array(ps)) => ps
                .iter()
                .map(|p| {
                    let numbers: Vec<&str> = p["ticket_numbers"]
                        .as_array()
                        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
                        .unwrap_or_default();
                    format!(
                        "{} {}",
                        p["passenger"].as_str().unwrap_or("?"),
                        numbers.join(" ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        };
        let kind = self::kind(r);
        let cells = [
            r.order_no.clone(),
            r.client_order_no.clone().unwrap_or_default(),
            r.state.clone(),
            r.payment_method.to_string(),
            r.created_at.to_rfc3339(),
            r.updated_at.to_rfc3339(),
            t(r.pay_deadline),
            r.pay_sends.to_string(),
            t(r.paid_at),
            r.paid_evidence.clone().unwrap_or_default(),
            r.last_pay_outcome.clone().unwrap_or_default(),
            r.atrip_status.map(|s| s.to_string()).unwrap_or_default(),
            r.atrip_message.clone().unwrap_or_default(),
            r.order_status.clone().unwrap_or_default(),
            r.atrip_pnr.clone().unwrap_or_default(),
            r.pnr.clone().unwrap_or_default(),
            tickets,
            if matches!(r.state.as_str(), "failed" | "needs_review") {
                kind.as_str().to_owned()
            } else {
                String::new()
            },
            r.last_error.clone().unwrap_or_default(),
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times_parse_or_name_their_field() {
        assert_eq!(parse_span("age", "30m"), Ok(1800));
        assert_eq!(parse_span("age", "4h"), Ok(14_400));
        assert_eq!(parse_span("age", "2d"), Ok(172_800));
        for bad in ["", "h", "4", "4x", "-1h", "9999d", "1.5h"] {
            assert!(parse_span("age", bad).unwrap_err().contains("age"), "{bad}");
        }
        assert!(parse_time("from", "2026-12-04").is_ok());
        assert!(parse_time("from", "2026-12-04T10:30").is_ok());
        assert!(parse_time("from", "2026-12-04T10:30:00Z").is_ok());
        assert!(parse_time("until", "yesterday")
            .unwrap_err()
            .contains("until"));
    }

    #[test]
    fn a_short_reason_stays_short() {
        let row = JobRow {
            payment_method: 3,
            atrip_status: Some(413),
            atrip_message: Some("x".repeat(500)),
            last_error: Some(
                "order A: ATRIP refused the payment with status 413 (x); nothing was charged"
                    .into(),
            ),
            ..JobRow::default()
        };
        let k = kind(&row);
        assert_eq!(k, ReasonKind::CardRefused);
        let text = short_reason(&row, k);
        assert!(text.starts_with("card refused: 413"), "{text}");
        assert!(text.chars().count() <= SHORT_REASON_CHARS, "{text}");
        let other = JobRow {
            last_error: Some(format!("order A: something new {}", "y".repeat(200))),
            ..JobRow::default()
        };
        let text = short_reason(&other, kind(&other));
        assert!(text.starts_with("something new y"), "{text}");
        assert!(text.chars().count() <= SHORT_REASON_CHARS, "{text}");
    }

    #[test]
    fn csv_cells_are_quoted_and_a_formula_is_led_by_a_quote() {
        assert_eq!(csv_cell("plain"), r#""plain""#);
        assert_eq!(csv_cell(r#"say "hi", then"#), r#""say ""hi"", then""#);
        for lead in ["=", "+", "-", "@", "\t", "\r"] {
            assert_eq!(csv_cell(&format!("{lead}1")), format!("\"'{lead}1\""));
        }
        assert_eq!(csv_cell(""), r#""""#);
    }
}
