//! Evidence of payment is never dropped (docs/design.md, rule P3a).
//!
//! A step's write is fenced by its lease and retried only while that lease can last. But an
//! answer that showed the order paid must reach the table whatever happened to the lease: if
//! it is lost, the order may later show unpaid (ATRIP's query lags behind payments), go to a
//! person, and be paid again on their `retry --repay`. So a write carrying evidence that did
//! not land (the lease was lost, the database was away too long) is handed to this keeper,
//! which writes the evidence alone, without a lease, until it lands, for as long as the
//! process lives, and until the durability gate says a failover would find it (rule P1b: a
//! write on a primary that its standby never received is forgotten by a failover; the keeper
//! then writes it again on the new primary). At shutdown, whatever it still holds is logged at
//! `error`, with the order and the evidence, for a person to record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::durable::Gate;
use crate::jobs::JobStore;
use crate::machine::Evidence;

/// Evidence waiting to be written.
#[derive(Debug, Clone)]
pub struct Kept {
    pub job_id: i64,
    pub order_no: String,
    pub evidence: Evidence,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    /// The lease of the step that saw it: the write ends that lease too, if the row still
    /// has it (nobody else took the row meanwhile).
    pub release_token: Option<i64>,
}

#[derive(Default)]
struct Shared {
    held: Mutex<HashMap<i64, Kept>>,
    added: Notify,
}

/// A handle to the keeper of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Keeper {
    shared: Arc<Shared>,
}

impl Keeper {
    /// Starts the keeper's task on the current runtime.
    pub fn start(store: JobStore, worker: String, gate: Gate) -> Keeper {
        let shared = Arc::new(Shared::default());
        tokio::spawn(run(store, worker, gate, shared.clone()));
        Keeper { shared }
    }

    /// Takes `kept` over: it is written as soon as the database takes it.
    pub fn keep(&self, kept: Kept) {
        warn!(
            order_no = %kept.order_no, evidence = kept.evidence.as_str(),
            "evidence of payment could not be written with its step; it is kept and written on its own until it lands"
        );
        let mut held = self.shared.held.lock().unwrap();
        held.insert(kept.job_id, kept);
        crate::metrics::global()
            .evidence_unrecorded
            .store(held.len() as i64, Ordering::Relaxed);
        drop(held);
        self.shared.added.notify_one();
    }

    /// What has not reached the table yet.
    pub fn unrecorded(&self) -> Vec<Kept> {
        self.shared.held.lock().unwrap().values().cloned().collect()
    }

    /// Says at `error` what never reached the table (at shutdown).
    pub fn report_unrecorded(&self) {
        for k in self.unrecorded() {
            error!(
                order_no = %k.order_no, job_id = k.job_id, evidence = k.evidence.as_str(),
                "evidence of payment never reached the job table before this process stopped: the order IS PAID; record it (a plain `retry` of the order follows it) and never `retry --repay` it"
            );
        }
    }
}

async fn run(store: JobStore, worker: String, gate: Gate, shared: Arc<Shared>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let items: Vec<Kept> = shared.held.lock().unwrap().values().cloned().collect();
        if items.is_empty() {
            shared.added.notified().await;
            pause = Duration::from_millis(100);
            continue;
        }
        let mut failed = false;
        for k in items {
            let written = store
                .record_evidence(
                    k.job_id,
                    k.evidence.as_str(),
                    &worker,
                    k.card_brand.as_deref(),
                    k.card_last4.as_deref(),
                    k.release_token,
                )
                .await;
            let outcome = match written {
                Ok((recorded, server)) => match gate.confirm(&server).await {
                    Ok(()) => Ok(recorded),
                    Err(why) => Err(format!(
                        "written, but not yet where a failover would find it: {why}"
                    )),
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(recorded) => {
                    info!(
                        order_no = %k.order_no, evidence = k.evidence.as_str(), recorded,
                        "evidence of payment is in the job table"
                    );
                    let mut held = shared.held.lock().unwrap();
                    held.remove(&k.job_id);
                    crate::metrics::global()
                        .evidence_unrecorded
                        .store(held.len() as i64, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(order_no = %k.order_no, error = %e, "writing evidence of payment failed; trying again");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shared.added.notified() => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}
