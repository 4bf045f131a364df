//! The reconciliation of the job table with ATRIP's order list (`orderList.do`;
//! docs/design.md, R1-R6): page through the orders ATRIP created in a window, compare each with
//! its row, record evidence of payment for rows that wait in `paying` or `needs_review` while
//! ATRIP shows them paid, and report the rest. It never sends a `pay.do`, and writes nothing
//! else to the job table. Files: `compare` (the rule, pure), `paging` (reading every page
//! within bounds), `report` (a table for people, JSON), `daily` (the worker's daily run).

mod compare;
mod daily;
mod paging;
mod report;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

pub use compare::{compare, Kind};
pub use daily::{daily_loop, MAX_ATTEMPTS};
pub use paging::{stale_after_s, Bounds};
pub use report::{count, render_run, render_table};

use crate::atrip::{Client, ListedOrder};
use crate::jobs::{JobStore, ReconcileRow};

/// At most this many findings are kept in a run's record (the counts hold them all).
pub const MAX_FINDINGS_KEPT: usize = 2000;

/// At most this many notes are kept, in memory and in a run's record (`notes_left_out`
/// counts the rest): an answer of endless unreadable rows never grows the run's memory.
pub const MAX_NOTES_KEPT: usize = 100;

/// One thing the reconciliation found about one order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub order_no: String,
    /// The row's state when it was read (`None`: no row).
    pub table_state: Option<String>,
    /// ATRIP's `orderStatus` as listed.
    pub atrip_status: String,
    /// ATRIP's `paymentTimestamp`.
    pub atrip_paid_at: Option<DateTime<Utc>>,
    /// ATRIP's `errorCode` (cancelled orders).
    pub atrip_error_code: Option<String>,
    /// What was done or what to do, in words.
    pub detail: String,
}

/// A run's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub pages: i32,
    /// ATRIP's orders read in the window (each once).
    pub atrip_orders: i32,
    pub counts: BTreeMap<&'static str, i64>,
    pub findings: Vec<Finding>,
    /// What the run noticed about ATRIP's answers that is not a finding (rows it could not
    /// read, each naming the order and the field; pages counted from 0).
    pub notes: Vec<String>,
    /// The notes past the first `MAX_NOTES_KEPT`, counted, not kept.
    pub notes_left_out: u64,
    /// Why the run did not complete, when it did not.
    pub error: Option<String>,
}

impl Outcome {
    fn add(&mut self, finding: Finding) {
        *self.counts.entry(finding.kind.as_str()).or_default() += 1;
        if self.findings.len() < MAX_FINDINGS_KEPT {
            self.findings.push(finding);
        }
    }

    /// Notes one thing, within `MAX_NOTES_KEPT` (the rest are counted).
    pub(crate) fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES_KEPT {
            self.notes.push(note);
        } else {
            self.notes_left_out += 1;
        }
    }

    /// The counts by kind, every kind present (0 when none).
    pub fn counts_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for kind in Kind::ALL {
            m.insert(
                kind.as_str().into(),
                json!(self.counts.get(kind.as_str()).copied().unwrap_or(0)),
            );
        }
        Value::Object(m)
    }

    /// The findings, then the notes as findings of no kind, for the run's record.
    pub fn findings_json(&self) -> Value {
        let mut items: Vec<Value> = self
            .findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
            .collect();
        items.extend(self.notes.iter().map(|n| json!({"note": n})));
        if self.notes_left_out > 0 {
            items.push(json!({"note": format!(
                "{} more notes, not kept (the first {MAX_NOTES_KEPT} are)",
                self.notes_left_out
            )}));
        }
        Value::Array(items)
    }
}

/// Compares one page of ATRIP's orders with the job table: one read of their rows (no lock),
/// then, for each order, the finding, and evidence of payment written for the rows that wait
/// for it (rule R3). A database error ends the run (the next one finds what is left).
pub(crate) async fn check_page(
    store: &JobStore,
    run_by: &str,
    listed: &[ListedOrder],
    out: &mut Outcome,
) -> Result<(), crate::jobs::Error> {
    let numbers: Vec<String> = listed.iter().map(|o| o.order_no.clone()).collect();
    let rows: BTreeMap<String, ReconcileRow> = store
        .reconcile_rows(&numbers)
        .await?
        .into_iter()
        .map(|r| (r.order_no.clone(), r))
        .collect();
    for order in listed {
        let row = rows.get(&order.order_no);
        let Some(kind) = compare(order, row) else {
            continue;
        };
        let detail = match (kind, row) {
            (Kind::PaidEvidenceRecorded, Some(row)) => {
                let recorded = store.record_listed_evidence(row.id, run_by).await?;
                if recorded {
                    format!(
                        "evidence of payment recorded: {} → ticketing, followed by the worker; no pay.do",
                        row.state
                    )
                } else {
                    "a worker recorded its evidence of payment meanwhile".to_owned()
                }
            }
            // `failed` or `cancelled` rows ATRIP shows paid: the fact is recorded all the same
            // (it only adds paid_at and leaves no permit, so a later retry can never pay
            // again), and a person looks.
            (Kind::PaidUnpaidInTable, Some(row)) if order.shows_paid() => {
                if store.record_listed_evidence(row.id, run_by).await? {
                    format!(
                        "{} (evidence of payment recorded on the row)",
                        kind.advice()
                    )
                } else {
                    kind.advice().to_owned()
                }
            }
            _ => kind.advice().to_owned(),
        };
        out.add(Finding {
            kind,
            order_no: order.order_no.clone(),
            table_state: row.map(|r| r.state.clone()),
            atrip_status: order.status.wire().to_owned(),
            atrip_paid_at: order.paid,
            atrip_error_code: order.error_code.clone(),
            detail,
        });
    }
    Ok(())
}

/// Runs one reconciliation of `[from, to)` (ATRIP's creation times) and records it in run
/// `run_id`: reads every page, compares, records evidence, and writes the outcome. A run that
/// could not read every page is recorded as failed, with what it found up to there.
pub async fn run(
    store: &JobStore,
    atrip: &Client,
    bounds: &Bounds,
    run_id: i64,
    run_by: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Outcome {
    let out = paging::read_all(store, atrip, bounds, run_id, run_by, from, to).await;
    if let Err(e) = store
        .reconcile_finish(
            run_id,
            run_by,
            out.error.is_none(),
            out.pages,
            out.atrip_orders,
            &out.counts_json(),
            &out.findings_json(),
            out.error.as_deref(),
        )
        .await
    {
        tracing::error!(run = run_id, error = %e, "reconcile: the run's result could not be recorded");
    }
    match &out.error {
        None => tracing::info!(
            run = run_id, pages = out.pages, orders = out.atrip_orders,
            counts = %out.counts_json(), "reconcile: run completed"
        ),
        Some(error) => tracing::error!(
            run = run_id,
            pages = out.pages,
            error,
            "reconcile: run failed"
        ),
    }
    out
}

/// `reconcile`: runs one over `--since … --until …` and prints it, or prints the last one
/// (`--last`). A run that could not read every page is printed, then said as the error.
pub async fn command(
    a: crate::cli::ReconcileArgs,
    store: &JobStore,
    atrip: &Client,
    settings: &crate::config::ReconcileSettings,
    by: &str,
) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let print = |run: &crate::jobs::ReconcileRun| -> anyhow::Result<()> {
        if a.json {
            println!("{}", serde_json::to_string_pretty(run)?);
        } else {
            print!("{}", render_run(run));
        }
        Ok(())
    };
    if a.last {
        let runs = store.reconcile_runs(1).await?;
        let run = runs
            .first()
            .context("no reconciliation has run yet (`ticketing-tracker reconcile --since DAY`)")?;
        return print(run);
    }
    let since = a.since.context("--since is required")?;
    let now = store.reconcile_now().await?;
    let until = a.until.unwrap_or(now).min(now);
    if since >= until {
        bail!(
            "the window is empty: --since {} is not before --until {} (a time to come is cut to now)",
            since.format("%Y-%m-%dT%H:%M:%SZ"),
            until.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    let claim = store.reconcile_start_manual(since, until, by).await?;
    let out = run(
        store,
        atrip,
        &Bounds::from(settings),
        claim.id,
        by,
        claim.window_from,
        claim.window_to,
    )
    .await;
    match store.reconcile_run(claim.id).await? {
        Some(run) => print(&run)?,
        None => bail!("run {} is not recorded", claim.id),
    }
    match out.error {
        Some(e) => bail!("reconcile run {} did not complete: {e}", claim.id),
        None => Ok(()),
    }
}
