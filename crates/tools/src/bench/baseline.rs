//! The SQL-only baseline: the least an order can cost this schema, written as plain SQL with
//! no worker, no ATRIP and no history. Each order is four autocommit statements on
//! `ticketing_jobs` (with its constraints and indexes): the enqueuer's INSERT, then the intent
//! (`paying`), the payment (`ticketing`) and the tickets (`ticketed`). The worker does all of
//! that plus the events, the queries and the leases; a ratio above 1 means it batches well
//! enough to be cheaper per order than this.

use std::time::{Duration, Instant};

use sqlx::Connection;

use super::database::Scratch;

pub struct Baseline {
    pub orders: usize,
    pub elapsed: Duration,
}

impl Baseline {
    pub fn per_s(&self) -> f64 {
        self.orders as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(db: &Scratch, orders: usize, clients: usize) -> anyhow::Result<Baseline> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(sqlx::PgConnection::connect(&db.url).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (client, mut conn) in conns.into_iter().enumerate() {
        let share = orders / clients + usize::from(client < orders % clients);
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                lifecycle(&mut conn, &format!("BASE{client:03}{i:012}")).await?;
            }
            conn.close().await?;
            Ok::<_, sqlx::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(Baseline {
        orders,
        elapsed: started.elapsed(),
    })
}

async fn lifecycle(conn: &mut sqlx::PgConnection, order_no: &str) -> Result<(), sqlx::Error> {
    let id = sqlx::query_scalar!(
        "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ($1, 1) RETURNING id",
        order_no
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE ticketing_jobs SET state = 'paying', pay_attempts = 1, pay_started_at = now(),
                lease_token = lease_token + 1, lease_owner = 'baseline',
                lease_expires_at = now() + interval '30 seconds'
         WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE ticketing_jobs SET state = 'ticketing', paid_at = now(),
                paid_evidence = 'pay_accepted', lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE ticketing_jobs SET state = 'ticketed', pnr = 'S10000', ticket_numbers = '[]',
                ticketed_at = now(), finalized_at = now()
         WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
