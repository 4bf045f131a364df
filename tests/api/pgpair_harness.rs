//! The high-availability harness (tests/common/pgpair.rs, tests/common/tcpproxy.rs) really
//! produces the faults the failover tests and the chaos run rely on: an asynchronous failover
//! forgets a commit its standby never received, a synchronous commit waits for a stalled
//! standby, failovers repeat, and the proxy holds, switches and cuts connections.
//!
//! Each pair test needs the local PostgreSQL server binaries; without them it is skipped (said
//! on stderr), except with CI=true, where it fails.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::pgpair::{self, PgPair, Replication};
use crate::support::tcpproxy::TcpProxy;

/// More than any commit, connection or query on this machine takes when nothing is stalled.
const PROMPT: Duration = Duration::from_secs(5);

/// The harness's own test database on the pair.
const DB: &str = "harness";

#[tokio::test]
async fn a_commit_the_standby_never_received_is_lost_by_an_asynchronous_failover() {
    let Some(mut pair) = pair(Replication::Asynchronous).await else {
        return;
    };
    let proxy = TcpProxy::start(pair.primary_addr()).unwrap();
    let url = table_behind(&pair, &proxy).await;

    pair.stall_wal().await.unwrap();
    let mut conn = connect(&url).await;
    within(PROMPT, insert(&mut conn, 1))
        .await
        .expect("an asynchronous commit should not wait for a stalled standby");
    // It is a real commit: the primary has it.
    assert_eq!(ids(&pgpair::url_at(pair.primary_addr(), DB)).await, [1]);

    pair.kill_primary().await.unwrap();
    pair.resume_wal();
    pair.promote().await.unwrap();
    proxy.switch_to(pair.primary_addr());

    // The table is there (this is the standby, with everything from before the stall); the
    // row its stream never carried is not.
    assert_eq!(
        ids(&url).await,
        Vec::<i32>::new(),
        "the promoted standby should not have the commit it never received"
    );
}

#[tokio::test]
async fn a_commit_the_standby_received_survives_an_asynchronous_failover() {
    let Some(mut pair) = pair(Replication::Asynchronous).await else {
        return;
    };
    let proxy = TcpProxy::start(pair.primary_addr()).unwrap();
    let url = table_behind(&pair, &proxy).await;

    let mut conn = connect(&url).await;
    within(PROMPT, insert(&mut conn, 1)).await.unwrap();
    // Asynchronous: the commit returned before the standby had it; wait until it has, so that
    // only the harness could lose it.
    pair.wait_standby_flushed().await.unwrap();

    pair.kill_primary().await.unwrap();
    pair.promote().await.unwrap();
    proxy.switch_to(pair.primary_addr());

    assert_eq!(ids(&url).await, [1]);
}

// Multi-threaded, so that the commit's task runs on its own while the test watches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_commit_waits_for_a_stalled_standby_and_survives_the_failover() {
    let Some(mut pair) = pair(Replication::Synchronous).await else {
        return;
    };
    let proxy = TcpProxy::start(pair.primary_addr()).unwrap();
    let url = table_behind(&pair, &proxy).await;

    pair.stall_wal().await.unwrap();
    let commit = tokio::spawn({
        let url = url.clone();
        async move {
            let mut conn = connect(&url).await;
            insert(&mut conn, 1).await;
        }
    });
    // It waits for the standby, rather than being merely slow: the primary shows the session
    // waiting on SyncRep.
    let primary = pair.primary_url();
    let waiting_for_standby = || async {
        scalar(
            &primary,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .await
            == 1
    };
    eventually(
        "a commit waiting for the standby (SyncRep)",
        waiting_for_standby,
    )
    .await;
    // And it keeps waiting. An absence can only be watched for a while: with the standby
    // streaming, a synchronous commit here takes milliseconds, a hundredth of this.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !commit.is_finished() && waiting_for_standby().await,
        "the commit returned while the standby was stalled"
    );

    pair.resume_wal();
    within(PROMPT, commit)
        .await
        .expect("the commit should return once the standby has it")
        .unwrap();

    pair.kill_primary().await.unwrap();
    pair.promote().await.unwrap();
    proxy.switch_to(pair.primary_addr());
    assert_eq!(ids(&url).await, [1]);
}

#[tokio::test]
async fn two_failovers_in_a_row_each_leave_a_primary_that_takes_writes_through_the_proxy() {
    let started = Instant::now();
    let Some(mut pair) = pair(Replication::Synchronous).await else {
        return;
    };
    let pair_started = started.elapsed();
    // On a thread of its own, as the chaos program runs it.
    let proxy = TcpProxy::start_on_thread(pair.primary_addr()).unwrap();
    let url = table_behind(&pair, &proxy).await;
    let mut conn = connect(&url).await;
    within(PROMPT, insert(&mut conn, 0)).await.unwrap();

    let mut took = Vec::new();
    for round in 1..=2 {
        let started = Instant::now();
        pair.failover().await.unwrap();
        took.push(started.elapsed());
        proxy.switch_to(pair.primary_addr());

        // The old primary's sessions died with it.
        assert!(
            conn.ping().await.is_err(),
            "a session on the lost primary still answers"
        );
        conn = connect(&url).await;
        within(PROMPT, insert(&mut conn, round))
            .await
            .expect("the new primary should take a synchronous commit: its standby streams");
        assert_eq!(ids(&url).await, (0..=round).collect::<Vec<_>>());
    }
    assert_eq!(
        pair.names(),
        ("node2".to_owned(), Some("node3".to_owned())),
        "{}",
        pair.describe()
    );
    eprintln!(
        "pair started in {pair_started:.1?}; failovers took {took:.1?}; now {}",
        pair.describe()
    );
}

#[tokio::test]
async fn the_proxy_holds_new_connections_until_released_switches_and_resets_at_a_cut() {
    let first = echo_server(b"1").await;
    let second = echo_server(b"2").await;
    let proxy = TcpProxy::start(first).unwrap();

    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut open, b"a").await, b"1a");

    proxy.hold();
    let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
    held.write_all(b"b").await.unwrap();
    // An absence can only be waited for: held, nothing comes back.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), held.read(&mut byte))
            .await
            .is_err(),
        "a held connection was answered"
    );
    proxy.switch_to(second);
    proxy.release();
    // Released to the target of the moment, with what it had sent meanwhile.
    let mut answer = [0u8; 2];
    within(PROMPT, held.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"2b");
    // The connection opened before the switch stays where it was.
    assert_eq!(exchange(&mut open, b"c").await, b"c");

    assert_eq!(proxy.cut_all(), 2);
    for stream in [&mut open, &mut held] {
        let read = within(PROMPT, stream.read(&mut byte)).await;
        assert!(
            matches!(&read, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "a cut connection should be reset, got {read:?}"
        );
    }
    eventually("the cut connections closed", || async {
        proxy.open_connections() == 0
    })
    .await;

    proxy.refuse();
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    let read = within(PROMPT, refused.read(&mut byte)).await;
    assert!(
        matches!(&read, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a refused connection should be reset, got {read:?}"
    );
}

/// Whether this machine can run private servers; `false` (the test is then skipped, said on
/// stderr) when it cannot and this is not CI, where it fails instead.
fn servers_available() -> bool {
    crate::support::init_tracing();
    match pgpair::available() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// A pair, or `None` when this machine cannot run one (the test is then skipped) and this is
/// not CI.
pub(crate) async fn pair(replication: Replication) -> Option<PgPair> {
    if !servers_available() {
        return None;
    }
    Some(
        PgPair::start(replication)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A lone private server (no standby), or `None` (skipped) as for [`pair`].
pub(crate) async fn alone() -> Option<PgPair> {
    if !servers_available() {
        return None;
    }
    Some(
        PgPair::start_alone()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Creates the database `harness` with a table `t (id int)`, both on the standby too, and
/// returns the database's URL through the proxy.
async fn table_behind(pair: &PgPair, proxy: &TcpProxy) -> String {
    pair.create_database(DB).await.unwrap();
    let url = pgpair::url_at(proxy.addr(), DB);
    let mut conn = connect(&url).await;
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    pair.wait_standby_flushed().await.unwrap();
    url
}

async fn connect(url: &str) -> PgConnection {
    within(PROMPT, PgConnection::connect(url))
        .await
        .unwrap_or_else(|_| panic!("no connection to {url} within {PROMPT:?}"))
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

async fn insert(conn: &mut PgConnection, id: i32) {
    sqlx::query("INSERT INTO t VALUES ($1)")
        .bind(id)
        .execute(conn)
        .await
        .unwrap();
}

async fn ids(url: &str) -> Vec<i32> {
    let mut conn = connect(url).await;
    let ids = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    ids
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut conn = connect(url).await;
    let value = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    value
}

async fn within<F: Future>(limit: Duration, future: F) -> Result<F::Output, String> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("not done within {limit:?}"))
}

/// Polls `condition` until it holds; panics saying `what` after 10 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server that says `hello` to each connection, then echoes.
async fn echo_server(hello: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream.write_all(hello).await.is_err() {
                    return;
                }
                let mut buffer = [0u8; 64];
                while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                    if stream.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `message` and reads what comes back (a greeting included) until its echo is in.
async fn exchange(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 64];
    // Until the echo is in: it ends what comes back.
    while !received.ends_with(message) {
        let n = within(PROMPT, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
        received.extend_from_slice(&buffer[..n]);
    }
    received
}
