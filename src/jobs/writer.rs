//! A writer task: the results of steps that finish together go to the database in one
//! statement and one commit ([`super::JobStore::apply_many`]), each row still fenced by its own
//! lease token. A step hands its write over and waits for its own result, so nothing that
//! depends on a write (the next call, the step's report) runs before it has landed.
//!
//! Batching is natural: while one batch is being written, the writes that arrive queue up and
//! form the next one; an idle writer writes a lone write at once. `wait` adds an optional
//! pause to gather more (0 by default: measured in the bench, it only delays).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::rows::ItemResult;
use super::rows::Lease;
use super::store::{Applied, JobStore};
use super::write::Write;
use super::Error;

/// The most writes one statement carries.
const MAX_BATCH: usize = 512;

struct Item {
    lease: Lease,
    write: Write,
    done: oneshot::Sender<ItemResult>,
}

/// A handle to the writer task of one worker. Cheap to clone; the task ends with the last one.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Item>,
}

impl Writer {
    /// Starts the writer for `worker`'s writes on the current runtime.
    pub fn spawn(store: JobStore, worker: String, wait: Duration) -> Writer {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(store, worker, wait, rx));
        Writer { tx }
    }

    /// Writes `write` for `lease`, with whatever other writes are waiting. Like
    /// [`JobStore::apply`]: zero rows is `LeaseLost`, a row another session holds locked is
    /// `RowBusy` (nothing written; the caller writes it again).
    pub async fn apply(&self, lease: &mut Lease, write: &Write) -> Result<Applied, Error> {
        let (done, result) = oneshot::channel();
        let item = Item {
            lease: lease.clone(),
            write: write.clone(),
            done,
        };
        let gone = || Error::Database(sqlx::Error::Protocol("the writer task stopped".to_owned()));
        self.tx.send(item).await.map_err(|_| gone())?;
        let landed = result.await.map_err(|_| gone())??;
        lease.outcome(write, landed)
    }
}

async fn run(store: JobStore, worker: String, wait: Duration, mut rx: mpsc::Receiver<Item>) {
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let items: Vec<(&Lease, &str, &Write)> = batch
            .iter()
            .map(|i| (&i.lease, worker.as_str(), &i.write))
            .collect();
        let results = store.apply_many(&items).await;
        drop(items);
        match results {
            Ok(results) => {
                for (item, result) in batch.drain(..).zip(results) {
                    let _ = item.done.send(result);
                }
            }
            Err(e) => {
                // The database's trouble: every step hears it and retries its own write.
                let message = e.to_string();
                for item in batch.drain(..) {
                    let _ = item
                        .done
                        .send(Err(Error::Database(sqlx::Error::Protocol(message.clone()))));
                }
            }
        }
    }
}
