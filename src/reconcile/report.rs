//! A run as people read it: a header (window, outcome, pages, orders), the counts by kind,
//! then one line per finding. JSON is the run's record as it is (`--json`).

use std::fmt::Write as _;

use serde_json::Value;

use super::Kind;
use crate::domain::{printable, truncate};
use crate::jobs::ReconcileRun;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => printable(s),
        Some(Value::Null) | None => "-".into(),
        Some(other) => printable(&other.to_string()),
    }
}

/// How many orders of `kind` the run found (0 when its counts do not name the kind).
pub fn count(run: &ReconcileRun, kind: Kind) -> i64 {
    run.counts
        .get(kind.as_str())
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The header and the counts of a run.
pub fn render_run(run: &ReconcileRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reconcile run {} ({}{}) by {}: orders ATRIP created from {} to {}",
        run.id,
        run.trigger,
        run.day.map(|d| format!(" for {d}")).unwrap_or_default(),
        run.run_by,
        run.window_from.format("%Y-%m-%dT%H:%M:%SZ"),
        run.window_to.format("%Y-%m-%dT%H:%M:%SZ"),
    );
    let _ = writeln!(
        out,
        "{}: {} orders in {} pages, started {}{}",
        run.outcome,
        run.atrip_orders,
        run.pages,
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        run.finished_at
            .map(|t| format!(", finished {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default(),
    );
    if let Some(error) = &run.error {
        let _ = writeln!(out, "error: {}", printable(error));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<24} {:>7}", "KIND", "COUNT");
    for kind in Kind::ALL {
        let _ = writeln!(out, "{:<24} {:>7}", kind.as_str(), count(run, kind));
    }
    out.push_str(&render_table(&run.findings));
    out
}

/// One line per finding (and the notes after them).
pub fn render_table(findings: &Value) -> String {
    let items = findings.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    let (found, notes): (Vec<&Value>, Vec<&Value>) =
        items.iter().partition(|f| f.get("kind").is_some());
    if !found.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:<24} {:<13} {:<6} {:<21} DETAIL",
            "KIND", "ORDER", "TABLE STATE", "ATRIP", "ATRIP PAID AT"
        );
        for f in found {
            let status = match text(f, "atrip_error_code").as_str() {
                "-" => text(f, "atrip_status"),
                code => format!("{} ({code})", text(f, "atrip_status")),
            };
            let _ = writeln!(
                out,
                "{:<24} {:<24} {:<13} {:<6} {:<21} {}",
                text(f, "kind"),
                truncate(&text(f, "order_no"), 24),
                text(f, "table_state"),
                status,
                text(f, "atrip_paid_at"),
                truncate(&text(f, "detail"), 160),
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in notes {
            let _ = writeln!(out, "  {}", truncate(&text(n, "note"), 200));
        }
    }
    out
}
