//! Frozen workers. The pause: one worker SIGSTOPped for two leases, preferably while it waits
//! on a slow ATRIP call (so that on SIGCONT it holds an answer to record under a lease that is
//! gone), then SIGCONTed. The stops before pay.do: a worker whose failpoint stopped it right
//! before a pay.do is held past its lease until another worker has taken the row over, then
//! SIGCONTed, and sends its pay.do late. For both, what it held and what was taken over
//! meanwhile is kept for the checks.

use std::time::{Duration, Instant};

use atrip_simulator::LoggedRequest;
use chrono::Utc;
use sqlx::{PgPool, Row};

use super::checks::{Pause, PauseKind};
use super::orders::Order;
use super::procs::Fleet;
use super::program::say;

/// The paused worker, while it is frozen.
pub struct Frozen {
    pub slot: usize,
    pub since: Instant,
    pub pause: Pause,
}

/// A request this recent for a slow order is still being answered (the simulator holds slow
/// orders' requests for `SLOW_MS`).
const IN_FLIGHT: Duration = Duration::from_millis(400);

/// The worker to pause, not one of `avoid`: one whose request for a slow order arrived just now
/// (it is waiting on the answer), else, when `fallback`, the one holding the most live leases.
pub async fn pick(
    pool: &PgPool,
    fleet: &Fleet,
    orders: &[Order],
    fresh: &[LoggedRequest],
    fallback: bool,
    avoid: &[usize],
) -> Option<(usize, String)> {
    let mut candidates = fleet.killable();
    candidates.retain(|s| !avoid.contains(s));
    let slot_of = |id: &str| {
        candidates
            .iter()
            .copied()
            .find(|&s| fleet.slots[s].id == id)
    };
    let now = Utc::now();
    let bait = fresh.iter().rev().find_map(|q| {
        let order = orders
            .iter()
            .find(|o| o.slow && Some(&o.no) == q.order_no.as_ref())?;
        let recent = (now - q.at).to_std().unwrap_or_default() < IN_FLIGHT;
        let slot = slot_of(q.worker.as_deref()?)?;
        recent.then(|| {
            (
                slot,
                format!("waiting on {} for slow order {}", q.endpoint, order.no),
            )
        })
    });
    if bait.is_some() || !fallback {
        return bait;
    }
    let rows = sqlx::query(
        "SELECT lease_owner, count(*) AS n FROM ticketing_jobs
         WHERE lease_owner IS NOT NULL AND lease_expires_at > now() GROUP BY lease_owner",
    )
    .fetch_all(pool)
    .await
    .ok()?;
    rows.iter()
        .filter_map(|r| {
            let n: i64 = r.get("n");
            Some((n, slot_of(r.get::<String, _>("lease_owner").as_str())?))
        })
        .max()
        .map(|(n, slot)| (slot, format!("holding {n} leases")))
}

/// SIGSTOPs the worker in `slot` and records which rows it held once its last statements have
/// landed.
pub async fn freeze(
    pool: &PgPool,
    fleet: &mut Fleet,
    slot: usize,
    why: &str,
    started: Instant,
) -> Result<Frozen, String> {
    let stopped_at = Utc::now();
    fleet.pause(slot)?;
    frozen(
        pool,
        fleet,
        slot,
        PauseKind::Frozen,
        stopped_at,
        why,
        started,
    )
    .await
}

/// Takes charge of the worker in `slot`, which its failpoint just stopped before a pay.do:
/// holds it (no kill, no pause) and records what it held and which order it was about to pay.
pub async fn adopt(
    pool: &PgPool,
    fleet: &mut Fleet,
    slot: usize,
    started: Instant,
) -> Result<Frozen, String> {
    let stopped_at = Utc::now();
    fleet.hold(slot);
    let order = stop_order(&fleet.slots[slot].log);
    let why = format!(
        "stopped itself before pay.do for {}",
        order.as_deref().unwrap_or("an order its log does not name")
    );
    let mut f = frozen(
        pool,
        fleet,
        slot,
        PauseKind::StopBeforePay,
        stopped_at,
        &why,
        started,
    )
    .await?;
    f.pause.order = order;
    Ok(f)
}

/// The order of the last `stop-before-pay` line of a worker's log (`order_no=CHAOS000123`).
fn stop_order(log: &std::path::Path) -> Option<String> {
    let line = super::procs::grep(log, "failpoint stop-before-pay").pop()?;
    let at = line.find("CHAOS")?;
    let no: String = line[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some(no)
}

async fn frozen(
    pool: &PgPool,
    fleet: &mut Fleet,
    slot: usize,
    kind: PauseKind,
    stopped_at: chrono::DateTime<Utc>,
    why: &str,
    started: Instant,
) -> Result<Frozen, String> {
    let worker = fleet.slots[slot].id.clone();
    let since = Instant::now();
    // A claim statement sent just before the stop still commits: let it land, then look.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<(i64, String, i64)> =
        sqlx::query("SELECT id, order_no, lease_token FROM ticketing_jobs WHERE lease_owner = $1")
            .bind(&worker)
            .fetch_all(pool)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| (r.get("id"), r.get("order_no"), r.get("lease_token")))
            .collect();
    say(
        started,
        format!("SIGSTOP {worker} ({why}); it holds {} rows", held.len()),
    );
    Ok(Frozen {
        slot,
        since,
        pause: Pause {
            kind,
            worker,
            log: fleet.slots[slot].log.clone(),
            stopped_at,
            resumed_at: stopped_at,
            held,
            reclaimed: Default::default(),
            order: None,
        },
    })
}

/// Whether the row a stopped worker was about to pay has been claimed by another worker (its
/// lease token moved on); `None` when that cannot be told (no order named, a database cut).
pub async fn stop_row_taken(pool: &PgPool, f: &Frozen) -> Option<bool> {
    let no = f.pause.order.as_deref()?;
    let (_, _, token) = f.pause.held.iter().find(|(_, o, _)| o == no)?;
    let now: i64 = sqlx::query_scalar("SELECT lease_token FROM ticketing_jobs WHERE order_no = $1")
        .bind(no)
        .fetch_one(pool)
        .await
        .ok()?;
    Some(now != *token)
}

/// Notes which of the frozen worker's rows were taken over, then SIGCONTs it.
pub async fn thaw(pool: &PgPool, fleet: &mut Fleet, f: Frozen, started: Instant) -> Pause {
    let mut pause = f.pause;
    let ids: Vec<i64> = pause.held.iter().map(|(id, _, _)| *id).collect();
    match sqlx::query("SELECT id, lease_token FROM ticketing_jobs WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(pool)
        .await
    {
        Ok(rows) => {
            for r in rows {
                let (id, token): (i64, i64) = (r.get("id"), r.get("lease_token"));
                if pause.held.iter().any(|(h, _, t)| *h == id && *t != token) {
                    pause.reclaimed.insert(id);
                }
            }
        }
        Err(e) => say(
            started,
            format!("could not read the frozen worker's rows: {e}"),
        ),
    }
    pause.resumed_at = Utc::now();
    if let Err(e) = fleet.resume(f.slot) {
        say(started, format!("SIGCONT failed: {e}"));
    }
    say(
        started,
        format!(
            "SIGCONT {}{} after {} ms; {} of its {} rows were taken over meanwhile",
            pause.worker,
            match (&pause.kind, &pause.order) {
                (PauseKind::StopBeforePay, Some(no)) =>
                    format!(" (its pay.do for {no} leaves now)"),
                _ => String::new(),
            },
            f.since.elapsed().as_millis(),
            pause.reclaimed.len(),
            pause.held.len()
        ),
    );
    pause
}
