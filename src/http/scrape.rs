//! `/metrics`: the job table's figures, read at scrape time, then the process's own
//! ([`crate::metrics`], which knows nothing of the job table). Every replica reads the same
//! table, so alert rules take the max over replicas.

use std::fmt::Write;

use crate::domain::PauseScope;
use crate::metrics::{header, sample};

/// What `/metrics` reads from the database at scrape time: every replica reads the same, so
/// rules take the max over replicas.
pub struct Table<'a> {
    /// Rows per state.
    pub jobs_by_state: &'a [(String, i64)],
    /// How long the oldest due, unclaimed row has waited.
    pub oldest_due_s: f64,
    /// The pauses of paying in force (docs/design.md, S4).
    pub pauses: &'a [crate::jobs::Pause],
    /// The last finished reconciliation (docs/design.md, R6), if any.
    pub reconcile: Option<&'a crate::jobs::ReconcileFigures>,
    /// Daily reconciliation runs left `running` by a process that stopped and not taken over
    /// yet, and daily runs of the last week abandoned (rule R5); `None` when unread.
    pub reconcile_unfinished: Option<(i64, i64)>,
    /// Rows changed after ticketing, by change and check (rule W6).
    pub after_ticketing: &'a [(String, String, i64)],
}

/// The reconciliation's kinds of finding, as `ticketing_reconcile_mismatches{kind}` names them
/// (the same as `reconcile::Kind::as_str`; a unit test keeps them together).
pub const RECONCILE_KINDS: [&str; 4] = [
    "paid_not_in_table",
    "paid_unpaid_in_table",
    "paid_evidence_recorded",
    "ticketed_cancelled",
];

/// The exposition: the table's figures when they could be read (`None`: the database refused
/// the connection, and the process's own figures say why), then the process's.
pub fn render(table: Option<&Table<'_>>) -> String {
    let mut out = String::new();
    if let Some(table) = table {
        out.push_str(&render_table(table));
    }
    out.push_str(&crate::metrics::global().render());
    out
}

fn render_table(table: &Table<'_>) -> String {
    let mut out = String::new();
    let &Table {
        jobs_by_state,
        oldest_due_s,
        pauses,
        reconcile,
        reconcile_unfinished,
        after_ticketing,
    } = table;
    if let Some((stale, abandoned)) = reconcile_unfinished {
        sample(
            &mut out,
            "ticketing_reconcile_stale_runs",
            "gauge",
            "Daily reconciliation runs still `running` whose heartbeat is older than their stale threshold: their process stopped and no replica with reconcile.daily took them over yet.",
            stale,
        );
        sample(
            &mut out,
            "ticketing_reconcile_abandoned_runs",
            "gauge",
            "Daily reconciliation runs of the last 7 days left stale as many times as a day is tried, marked failed (abandoned): run their window by hand.",
            abandoned,
        );
    }
    // The last finished reconciliation (rule R6), read from its record, so every
    // replica reports the same.
    if let Some(r) = reconcile {
        header(
            &mut out,
            "ticketing_reconcile_mismatches",
            "gauge",
            "What the last reconciliation with ATRIP's order list found, by kind (paid_evidence_recorded: settled by itself; the others need a person: `ticketing-tracker reconcile --last`).",
        );
        for kind in RECONCILE_KINDS {
            let n = r
                .counts
                .get(kind)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            let _ = writeln!(out, "ticketing_reconcile_mismatches{{kind=\"{kind}\"}} {n}");
        }
        sample(
            &mut out,
            "ticketing_reconcile_last_run_timestamp_seconds",
            "gauge",
            "When the last reconciliation ended (the database's time).",
            r.finished_at.timestamp(),
        );
        sample(
            &mut out,
            "ticketing_reconcile_last_run_ok",
            "gauge",
            "Whether the last reconciliation read every page of ATRIP's order list (0: it failed; `ticketing-tracker reconcile --last` says why).",
            u8::from(r.completed),
        );
    }
    header(
        &mut out,
        "ticketing_jobs",
        "gauge",
        "Rows in the job table, by state.",
    );
    for state in crate::domain::State::ALL {
        let n = jobs_by_state
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "ticketing_jobs{{state=\"{state}\"}} {n}");
    }
    sample(
        &mut out,
        "ticketing_oldest_due_seconds",
        "gauge",
        "How long the oldest due, unclaimed row has waited (orders of a paused method not counted: they wait for the resume).",
        oldest_due_s,
    );
    // Every scope, 0 when not paused, so that a rule sees the series before a pause.
    let paused = |scope: PauseScope| pauses.iter().find(|p| p.scope() == scope);
    header(
        &mut out,
        "ticketing_paying_paused",
        "gauge",
        "1 while paying is paused for the method (all: every method): no pay.do leaves for its orders (docs/design.md S4).",
    );
    for scope in PauseScope::ALL {
        let _ = writeln!(
            out,
            "ticketing_paying_paused{{method=\"{}\"}} {}",
            scope.label(),
            u8::from(paused(scope).is_some())
        );
    }
    header(
        &mut out,
        "ticketing_paying_paused_seconds",
        "gauge",
        "How long paying has been paused for the method, in the database's time (0 when it is not).",
    );
    for scope in PauseScope::ALL {
        let _ = writeln!(
            out,
            "ticketing_paying_paused_seconds{{method=\"{}\"}} {}",
            scope.label(),
            paused(scope).map_or(0.0, |p| p.seconds.round())
        );
    }
    header(
        &mut out,
        "ticketing_changed_after_ticketing",
        "gauge",
        "Ticketed orders ATRIP reported voided, cancelled by the airline or rescheduled, by change and by what the order query made of the report: reported (query pending), confirmed, unconfirmed (docs/design.md W6).",
    );
    for change in crate::jobs::Change::ALL {
        for check in crate::jobs::CHECKS {
            let n = after_ticketing
                .iter()
                .find(|(c, k, _)| c == change.as_str() && k == check)
                .map_or(0, |(_, _, n)| *n);
            let _ = writeln!(
                out,
                "ticketing_changed_after_ticketing{{change=\"{}\",check=\"{check}\"}} {n}",
                change.as_str()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_in_force_shows_for_its_method_and_every_other_reads_zero() {
        let now = chrono::Utc::now();
        let pause = crate::jobs::Pause {
            id: 1,
            method: 3,
            reason: "card processor incident".into(),
            paused_by: "cli:alice".into(),
            paused_at: now,
            resumed_by: None,
            resumed_at: None,
            seconds: 125.4,
        };
        let out = render(Some(&Table {
            jobs_by_state: &[],
            oldest_due_s: 0.0,
            pauses: &[pause],
            reconcile: None,
            reconcile_unfinished: None,
            after_ticketing: &[],
        }));
        assert!(!out.contains("ticketing_reconcile_mismatches{"), "{out}");
        assert!(
            out.contains("ticketing_paying_paused{method=\"3\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("ticketing_paying_paused{method=\"all\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("ticketing_paying_paused_seconds{method=\"3\"} 125\n"),
            "{out}"
        );
        assert!(
            out.contains("ticketing_paying_paused_seconds{method=\"1\"} 0\n"),
            "{out}"
        );
        assert!(!out.contains("incident"), "no reason in a label: {out}");
    }

    #[test]
    fn r6_the_last_reconciliation_shows_every_kind_and_the_kinds_match_the_report() {
        let figures = crate::jobs::ReconcileFigures {
            counts: serde_json::json!({"paid_not_in_table": 2, "ticketed_cancelled": 1}),
            finished_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            completed: true,
        };
        let out = render(Some(&Table {
            jobs_by_state: &[],
            oldest_due_s: 0.0,
            pauses: &[],
            reconcile: Some(&figures),
            reconcile_unfinished: Some((1, 0)),
            after_ticketing: &[],
        }));
        for line in [
            "ticketing_reconcile_mismatches{kind=\"paid_not_in_table\"} 2\n",
            "ticketing_reconcile_mismatches{kind=\"paid_unpaid_in_table\"} 0\n",
            "ticketing_reconcile_mismatches{kind=\"paid_evidence_recorded\"} 0\n",
            "ticketing_reconcile_mismatches{kind=\"ticketed_cancelled\"} 1\n",
            "ticketing_reconcile_last_run_timestamp_seconds 1800000000\n",
            "ticketing_reconcile_last_run_ok 1\n",
            "ticketing_reconcile_stale_runs 1\n",
            "ticketing_reconcile_abandoned_runs 0\n",
        ] {
            assert!(out.contains(line), "{line}: {out}");
        }
        let kinds: Vec<&str> = crate::reconcile::Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(kinds, RECONCILE_KINDS);
    }
}
