//! Rule P1b against a real primary and streaming standby (tests/common/pgpair.rs): a `pay.do`
//! leaves only once its intent is durable where a failover would find it. The worker reaches
//! the database through a proxy that the test switches to the promoted standby, as a virtual
//! IP or a DNS name would; the simulator runs without its duplicate guard, so a second
//! `pay.do` would be a second charge.

use std::net::SocketAddr;
use std::time::Duration;

use atrip_simulator::{self as simulator, SimConfig, SimHandle};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use ticketing_tracker::atrip::Client;
use ticketing_tracker::jobs::JobStore;
use ticketing_tracker::worker::{Clock, TestHooks, Worker};

use crate::pgpair_harness::pair;
use crate::support::app::{test_settings, wait_until};
use crate::support::pgpair::{self, PgPair, Replication};
use crate::support::tcpproxy::TcpProxy;

const DB: &str = "failover";

/// A worker, the simulator and an order, all on a pair reached through a proxy.
struct World {
    pair: PgPair,
    proxy: TcpProxy,
    sim: SimHandle,
    worker: Worker,
    atrip: Client,
    url: String,
    settings: ticketing_tracker::config::Settings,
}

impl World {
    async fn new(replication: Replication) -> Option<World> {
        Self::as_role(replication, None).await
    }

    /// A world whose worker logs in as `role` (created with what the job table needs and
    /// nothing more), or as the superuser.
    async fn as_role(replication: Replication, role: Option<&str>) -> Option<World> {
        let pair = pair(replication).await?;
        let proxy = TcpProxy::start(pair.primary_addr()).unwrap();
        pair.create_database(DB).await.unwrap();
        let url = pgpair::url_at(proxy.addr(), DB);
        ticketing_tracker::MIGRATOR
            .run(&pool(&url))
            .await
            .expect("migrations on the pair");
        if let Some(role) = role {
            let admin = pool(&url);
            for sql in [
                format!("CREATE ROLE {role} LOGIN"),
                format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
                format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
            ] {
                sqlx::query(&sql).execute(&admin).await.unwrap();
            }
        }
        pair.wait_standby_flushed().await.unwrap();
        let url = match role {
            Some(role) => url.replacen("postgres@", &format!("{role}@"), 1),
            None => url,
        };
        let sim = simulator::start(
            SimConfig {
                duplicate_guard: false,
                ticketing_delay: Duration::from_millis(200),
                ..SimConfig::default()
            },
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .unwrap();
        let mut settings = test_settings(&url, &sim.base_url());
        settings.worker.replication_wait_ms = 1000;
        let atrip = Client::new(&settings.atrip).unwrap();
        let worker = Worker::new(
            JobStore::new(pool(&url)),
            atrip.clone(),
            settings.worker.clone(),
            settings.atrip.rate_limit_per_s,
            "failover-worker".to_owned(),
            Clock::default(),
        );
        Some(World {
            pair,
            proxy,
            sim,
            worker,
            atrip,
            url,
            settings,
        })
    }

    /// Another worker on the same database, with test hooks.
    fn worker_with(&self, hooks: TestHooks) -> Worker {
        Worker::new(
            JobStore::new(pool(&self.url)),
            self.atrip.clone(),
            self.settings.worker.clone(),
            self.settings.atrip.rate_limit_per_s,
            "hooked-worker".to_owned(),
            Clock::default(),
        )
        .with_hooks(hooks)
    }

    async fn order(&self) -> String {
        let body = json!({ "passengers": [{ "name": "DOE/JANE", "passengerType": 0 }] });
        let order_no = self.atrip.create_order(&body).await.unwrap().order_no;
        JobStore::new(pool(&self.url))
            .enqueue(&order_no, 1, None, None)
            .await
            .unwrap();
        order_no
    }

    fn ledger(&self, order_no: &str, what: &str) -> i64 {
        self.sim.ledger()["orders"][order_no][what]
            .as_i64()
            .unwrap_or(0)
    }

    /// Kills the primary, promotes the standby (with its new standby) and points the proxy at
    /// it; `resume` lets a stalled stream go first (the standby still lacks what the dead
    /// primary never sent).
    async fn fail_over(&mut self) {
        self.pair.kill_primary().await.unwrap();
        self.pair.resume_wal();
        self.pair.failover().await.unwrap();
        self.proxy.switch_to(self.pair.primary_addr());
    }

    /// Steps the worker until the order is ticketed (a step may first meet the connections
    /// the failover broke).
    async fn settle(&self, order_no: &str) -> String {
        let store = JobStore::new(pool(&self.url));
        for _ in 0..400 {
            let row = store.job(order_no).await.ok().flatten();
            if let Some(row) = &row {
                if !matches!(row.state.as_str(), "pending" | "paying" | "ticketing") {
                    return row.state.clone();
                }
            }
            if !matches!(self.worker.step().await, Ok(r) if r.claimed > 0) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("order {order_no} did not settle");
    }
}

fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .unwrap()
}

/// Asynchronous replication (PostgreSQL's default): the intent committed on the primary while
/// the standby's stream was stalled is not durable, so no `pay.do` leaves; the row is given
/// back unsent. The primary dies, the standby (which never had the intent) is promoted, and the
/// order is paid there, once. Before, the pay.do left at once and the promoted standby's
/// `pending` row was paid again: two charges.
/// Rule P1b, standing for assumption A3: a failover promotes a standby that has what the gate saw flushed.
#[tokio::test]
async fn with_asynchronous_replication_no_pay_do_leaves_before_a_standby_has_the_intent() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let order_no = w.order().await;
    w.pair.wait_standby_flushed().await.unwrap();
    w.pair.stall_wal().await.unwrap();

    let round = w.worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let outcome = &round.outcomes[0];
    assert!(!outcome.pay_sent, "{}", outcome.note);
    assert!(outcome.note.contains("not yet durable"), "{}", outcome.note);
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);

    w.fail_over().await;
    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
    assert_eq!(w.ledger(&order_no, "charges"), 1);
}

/// Synchronous replication: the intent's commit waited for the standby, the gate sees it
/// flushed there, and the one `pay.do` leaves. The primary dies after the payment; the
/// promoted standby has the intent, recovers the row by order query, and follows it to its
/// tickets without paying again.
#[tokio::test]
async fn with_synchronous_replication_one_pay_do_leaves_and_survives_the_failover() {
    let Some(mut w) = World::new(Replication::Synchronous).await else {
        return;
    };
    let order_no = w.order().await;
    let round = w.worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);

    w.fail_over().await;
    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
    assert_eq!(w.ledger(&order_no, "charges"), 1);
}

/// A commit that waited for a synchronous standby and was cancelled returns success, with
/// PostgreSQL's warning that it is committed locally only. Such an intent is not durable: no
/// `pay.do` leaves after it. Once the standby is back, the order is paid once.
#[tokio::test]
async fn an_intent_whose_wait_for_the_synchronous_standby_was_cancelled_sends_nothing() {
    let Some(mut w) = World::new(Replication::Synchronous).await else {
        return;
    };
    let order_no = w.order().await;
    w.pair.stall_wal().await.unwrap();

    let step = tokio::spawn({
        let worker = w.worker.clone();
        async move { worker.step().await }
    });
    // Every commit that waits for the stalled standby is cancelled, as a person, a pooler's
    // timeout or a failover manager dropping the standby would.
    let primary = pgpair::url_at(w.pair.primary_addr(), "postgres");
    let cancelled = {
        let primary = primary.clone();
        async move {
            let admin = pool(&primary);
            let mut cancelled = 0_i64;
            while !step.is_finished() {
                cancelled += sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                )
                .fetch_one(&admin)
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (cancelled, step.await.unwrap().unwrap())
        }
    };
    let (cancelled, round) = tokio::time::timeout(Duration::from_secs(30), cancelled)
        .await
        .expect("the step ends once its commits are cancelled");
    assert!(cancelled >= 1, "the intent's commit waited for the standby");
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);

    w.pair.resume_wal();
    wait_until(
        Duration::from_secs(10),
        "the standby to catch up",
        || async { w.pair.wait_standby_flushed().await.is_ok() },
    )
    .await;
    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
    assert_eq!(w.ledger(&order_no, "charges"), 1);
}

/// What the worker needs to read the standbys' positions, and what it says without it: a role
/// outside `pg_monitor` sees them as NULL, so no intent can be confirmed durable; the worker
/// sends nothing and names the grant. Once granted, the order is paid once.
#[tokio::test]
async fn without_pg_monitor_the_worker_sends_nothing_and_names_the_grant() {
    let Some(w) = World::as_role(Replication::Asynchronous, Some("plainworker")).await else {
        return;
    };
    let order_no = w.order().await;
    wait_until(Duration::from_secs(10), "the gate's first look", || async {
        w.worker.gate().level().is_some()
    })
    .await;
    let held = w.worker.gate().may_pay().unwrap_err();
    assert!(held.contains("GRANT pg_monitor"), "{held}");
    let round = w.worker.step().await.unwrap();
    assert_eq!(round.claimed, 0, "no pending row is claimed while held");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);
    // The row says why it waits; one whose payment deadline passes meanwhile fails, unsent.
    let due_soon = w.order().await;
    let store = JobStore::new(pool(&w.url));
    sqlx::query("UPDATE ticketing_jobs SET pay_deadline = ticketing_now() + interval '2 seconds' WHERE order_no = $1")
        .bind(&due_soon)
        .execute(&pool(&w.url))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the rows to say why and the deadline to fail one",
        || async {
            let waiting = store.job(&order_no).await.unwrap().unwrap();
            let late = store.job(&due_soon).await.unwrap().unwrap();
            waiting
                .last_error
                .is_some_and(|e| e.contains("not paid yet") && e.contains("GRANT pg_monitor"))
                && late.state == "failed"
        },
    )
    .await;
    let late = store.job(&due_soon).await.unwrap().unwrap();
    let error = late.last_error.unwrap_or_default();
    assert!(
        error.contains(&due_soon)
            && error.contains("payment deadline")
            && error.contains("not sent"),
        "{error}"
    );
    assert_eq!(w.ledger(&due_soon, "pay_requests"), 0);

    let admin = pool(&pgpair::url_at(w.pair.primary_addr(), DB));
    sqlx::query("GRANT pg_monitor TO plainworker")
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
}

/// Rule P3a across a failover: an accepted `pay.do` whose evidence was written on the primary
/// but never reached the standby is not dropped once written. The worker keeps it until the
/// standby has it; the primary dies, and the evidence is written again on the promoted
/// standby, although ATRIP's order query still shows the order unpaid there (a payment it
/// has not settled yet). Without it, the order would show unpaid after a `pay.do` and go to a
/// person advising `retry --repay`: a second charge.
#[tokio::test]
async fn evidence_written_on_a_primary_that_dies_before_its_standby_has_it_is_written_again() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let order_no = w.order().await;
    // The pay.do takes a second (the stream is stalled meanwhile), and the order then looks
    // unpaid in the query for a minute.
    let http = reqwest::Client::new();
    http.post(format!(
        "{}/sim/orders/{order_no}/scenario",
        w.sim.base_url()
    ))
    .json(&json!({"delay_ms": 1000, "payment_in_progress_ms": 60_000}))
    .send()
    .await
    .unwrap()
    .error_for_status()
    .unwrap();
    let step = tokio::spawn({
        let worker = w.worker.clone();
        async move { worker.step().await }
    });
    let (sim, order) = (&w, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "the pay.do to arrive",
        move || async move { sim.ledger(order, "pay_requests") == 1 },
    )
    .await;
    w.pair.stall_wal().await.unwrap();
    let round = step.await.unwrap().unwrap();
    assert!(round.outcomes[0].pay_sent);
    let on_primary = JobStore::new(pool(&w.url))
        .job(&order_no)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_primary.paid_evidence.as_deref(), Some("pay_accepted"));

    w.fail_over().await;
    let store = JobStore::new(pool(&w.url));
    wait_until(
        Duration::from_secs(30),
        "the evidence on the new primary",
        || async { matches!(store.job(&order_no).await, Ok(Some(row)) if row.paid_at.is_some()) },
    )
    .await;
    let row = store.job(&order_no).await.unwrap().unwrap();
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));
    assert_eq!(row.state, "ticketing");
    let events = store.events(&order_no).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "evidence_recorded"),
        "{events:?}"
    );
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
}

/// Rule P1b checks an intent against the server it was committed on. A worker freezes between
/// its claim's commit and the durability check; meanwhile the primary dies before its standby
/// had the intent, the standby is promoted (with a standby of its own) and the database's
/// address moves to it. The check then reaches the new primary, whose standby is perfectly in
/// step with it, but has never seen the intent: the check names the server (its system
/// identifier and timeline), sees another one, and nothing is sent. The order is paid once, on
/// the new primary.
#[tokio::test]
async fn an_intent_is_never_confirmed_against_a_server_it_was_not_committed_on() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let mut hooks = TestHooks::parse("pause@before-gate");
    hooks.pause_for = Duration::from_secs(5);
    let frozen = w.worker_with(hooks);
    let order_no = w.order().await;
    w.pair.wait_standby_flushed().await.unwrap();
    w.pair.stall_wal().await.unwrap();
    let step = tokio::spawn(async move { frozen.step().await });
    let primary = pgpair::url_at(w.pair.primary_addr(), DB);
    let store = JobStore::new(pool(&primary));
    wait_until(Duration::from_secs(5), "the claim's intent", || async {
        matches!(store.job(&order_no).await, Ok(Some(row)) if row.state == "paying")
    })
    .await;
    w.fail_over().await;
    let round = step.await.unwrap().unwrap();
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);

    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
    assert_eq!(w.ledger(&order_no, "charges"), 1);
}

/// Rule P1b counts standbys a failover could promote. A WAL archiver streaming from the
/// primary (`pg_receivewal --synchronous`, as Barman's streaming archiver runs) flushes every
/// commit at once, but replays nothing and is never promoted: with the real standby's stream
/// stalled, the archiver having the intent does not make it durable, and nothing is sent.
#[tokio::test]
async fn a_wal_archiver_is_no_standby_for_the_durability_of_an_intent() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let _archiver = w.pair.start_wal_archiver().await.unwrap();
    let order_no = w.order().await;
    w.pair.wait_standby_flushed().await.unwrap();
    w.pair.stall_wal().await.unwrap();

    let round = w.worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);

    w.fail_over().await;
    assert_eq!(w.settle(&order_no).await, "ticketed");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 1);
}

/// An operator's `cancel` committed on an asynchronous primary that no standby has yet would be
/// undone by a failover (the order `pending` again, and paid): the command says so on stderr.
/// With the stream flowing, it says nothing more.
#[tokio::test]
async fn a_cancel_no_standby_has_yet_is_said_to_be_undone_by_a_failover() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let flowing = w.order().await;
    let run = crate::cli::finish(
        {
            let mut cmd = crate::cli::command(Some(&w.url));
            cmd.args(["cancel", &flowing]);
            cmd
        },
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(!run.stderr.contains("failover"), "{run:#?}");

    let stalled = w.order().await;
    w.pair.wait_standby_flushed().await.unwrap();
    w.pair.stall_wal().await.unwrap();
    let run = crate::cli::finish(
        {
            let mut cmd = crate::cli::command(Some(&w.url));
            cmd.args(["cancel", &stalled]);
            cmd
        },
        None,
    )
    .await;
    assert_eq!(run.code, 0, "the cancel is committed: {run:#?}");
    assert!(
        run.stderr.contains(&stalled) && run.stderr.contains("a failover now would undo it"),
        "{run:#?}"
    );
}

/// A worker that starts while the database's only standby is away, with no replication slot
/// keeping its place, sees a single server. The database remembers the standby an earlier
/// worker saw: the new worker still requires replicated intents, and sends nothing until a
/// standby confirms them. Before, it took intents as durable once flushed locally, and a
/// failover to that standby paid every order in flight a second time.
#[tokio::test]
async fn a_worker_starting_while_the_standby_is_away_still_requires_it() {
    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    wait_until(
        Duration::from_secs(10),
        "the first worker's look",
        || async { w.worker.gate().level().is_some() },
    )
    .await;
    let level = |worker: &Worker| worker.gate().level().map(|l| l.as_str());
    assert_eq!(level(&w.worker), Some("replicated"));
    let db = pool(&w.url);
    wait_until(
        Duration::from_secs(10),
        "the standby to be recorded",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ticketing_standby_seen")
                .fetch_one(&db)
                .await
                .unwrap()
                == 1
        },
    )
    .await;

    w.pair.lose_standby().await.unwrap();
    let fresh = w.worker_with(TestHooks::default());
    wait_until(
        Duration::from_secs(10),
        "the fresh worker's look",
        || async { fresh.gate().level().is_some() },
    )
    .await;
    assert_eq!(level(&fresh), Some("replicated"));
    let held = fresh.gate().may_pay().unwrap_err();
    assert!(held.contains("ticketing_standby_seen"), "{held}");
    let order_no = w.order().await;
    let round = fresh.step().await.unwrap();
    assert_eq!(round.claimed, 0, "no pending row is claimed while held");
    assert_eq!(w.ledger(&order_no, "pay_requests"), 0);

    // An operator who removed the standby for good says so; then intents are local again.
    sqlx::query("DELETE FROM ticketing_standby_seen")
        .execute(&db)
        .await
        .unwrap();
    let after = w.worker_with(TestHooks::default());
    wait_until(
        Duration::from_secs(10),
        "the next worker's look",
        || async { after.gate().level().is_some() },
    )
    .await;
    assert_eq!(level(&after), Some("local"));
    assert!(after.gate().may_pay().is_ok());
}

/// A single server whose WAL a streaming archiver keeps in a slot of its own (Barman's
/// `pg_receivewal -S`): the slot is not a standby's, so intents are durable once flushed
/// there, and orders are paid. Before, the slot counted as a standby that was away, and
/// every payment was held for good.
#[tokio::test]
async fn a_wal_archivers_slot_on_a_single_server_is_no_standby() {
    let Some(pg) = crate::pgpair_harness::alone().await else {
        return;
    };
    pg.create_database(DB).await.unwrap();
    let url = pgpair::url_at(pg.primary_addr(), DB);
    ticketing_tracker::MIGRATOR.run(&pool(&url)).await.unwrap();
    let _archiver = pg.start_wal_archiver_on(Some("barman")).await.unwrap();
    let store = JobStore::new(pool(&url));
    let r = store.replication().await.unwrap();
    assert_eq!((r.standbys, r.physical_slots), (0, 0), "{r:?}");
    assert!(!r.has_or_had_standby(), "{r:?}");
}

/// Rule W1 across a failover. A claim commits on a primary whose stream is stalled; the primary
/// dies, and the promoted standby, which never had the claim, hands the same lease token to the
/// next claim. The first claim's step, which found its intent not durable, then gives its row
/// back: fenced by id, token, state and pay counters alone, that write would land on the new
/// claim's lease, count its intent as never sent and clear its lease while its `pay.do` leaves,
/// and a third claim would pay again (the model check's counterexample, tests/model/). Fenced
/// by the server the lease was taken on too, it is lease lost, and the new lease is untouched.
#[tokio::test]
async fn a_write_of_a_lease_a_failover_forgot_never_lands_on_the_same_token_handed_out_again() {
    use ticketing_tracker::domain::State;
    use ticketing_tracker::jobs::{Error, Write};

    let Some(mut w) = World::new(Replication::Asynchronous).await else {
        return;
    };
    let order_no = w.order().await;
    w.pair.wait_standby_flushed().await.unwrap();
    w.pair.stall_wal().await.unwrap();
    let lease = Duration::from_secs(30);
    let store = JobStore::new(pool(&w.url));
    let stale = store
        .claim("worker-a", 1, lease, true, true, "lost")
        .await
        .unwrap()
        .remove(0);
    assert_eq!(stale.claimed_from, State::Pending);

    w.fail_over().await;
    let store = JobStore::new(pool(&w.url));
    let mut fresh = None;
    for _ in 0..50 {
        match store.claim("worker-b", 1, lease, true, true, "new").await {
            Ok(mut jobs) if !jobs.is_empty() => {
                fresh = Some(jobs.remove(0));
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let fresh = fresh.expect("a claim on the promoted standby");
    assert_eq!(
        fresh.claimed_from,
        State::Pending,
        "the failover forgot the first claim"
    );
    assert_eq!(
        fresh.lease_token, stale.lease_token,
        "the same token, handed out again"
    );

    let give_back = Write::give_back(State::Paying, true, "the intent is not durable");
    let mut written = Err(Error::NotFound(String::new()));
    for _ in 0..50 {
        written = store
            .apply(&mut stale.lease(), "worker-a", &give_back)
            .await;
        if !matches!(written, Err(Error::Database(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matches!(written, Err(Error::LeaseLost { .. })),
        "{written:?}"
    );
    let row = store.job(&order_no).await.unwrap().unwrap();
    assert_eq!(
        (row.pay_attempts, row.pay_not_sent),
        (1, 0),
        "the new intent still counts as sent"
    );
    assert_eq!(row.lease_owner.as_deref(), Some("worker-b"));
}
