//! Whether `database.url` leads through a transaction pooler, found out at start from which
//! server backends client connections' statements run on.
//!
//! A single connection is not enough: PgBouncer hands an idle client the server session it
//! released last, so one idle connection sees one `pg_backend_pid()` however it is pooled. Two
//! connections taking turns are: through a transaction pooler the second usually gets the
//! session the first has just released (the same pid on two client connections, which no
//! direct connection can show), and where the pooler spreads sessions round-robin the first's
//! pid changes. On its own, each client connection keeps one backend for its life.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

/// Turns each connection takes.
const ROUNDS: usize = 4;

/// What the start saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Whether statements moved between server sessions.
    pub pooled: bool,
    /// What decided it, in words for the start line.
    pub how: String,
}

/// Decides from the backends each of two client connections ran its statements on, in turn.
pub fn decide(first: &[i32], second: &[i32]) -> Seen {
    let moved = |pids: &[i32]| pids.iter().any(|p| Some(p) != pids.first());
    let shared: Vec<i32> = first
        .iter()
        .filter(|p| second.contains(p))
        .copied()
        .collect();
    let list = |pids: &[i32]| {
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(pid) = shared.first() {
        Seen {
            pooled: true,
            how: format!("detected: two client connections both ran statements on server backend {pid} (pg_backend_pid)"),
        }
    } else if moved(first) || moved(second) {
        let pids = if moved(first) { first } else { second };
        Seen {
            pooled: true,
            how: format!(
                "detected: one client connection's statements ran on server backends {} (pg_backend_pid)",
                list(pids)
            ),
        }
    } else {
        Seen {
            pooled: false,
            how: format!(
                "detected: two client connections kept their server backends ({} and {}) over {} statements each (pg_backend_pid)",
                first.first().copied().unwrap_or_default(),
                second.first().copied().unwrap_or_default(),
                first.len().min(second.len())
            ),
        }
    }
}

/// Looks at what `options` lead to: two connections, `ROUNDS` turns each of
/// `pg_catalog.pg_backend_pid()` in the simple protocol (nothing prepared, no startup option a
/// pooler could refuse), each turn in a transaction of its own sent as one message
/// ([`untimed`]). These connections carry none of the worker's pins, so the role's settings
/// are in force: a DBA's statement timeout of a millisecond must not cancel the look, and a
/// schema the role puts before `pg_catalog` must not answer for it.
pub async fn look(options: &PgConnectOptions) -> Result<Seen, sqlx::Error> {
    let mut a = options.connect().await?;
    let mut b = options.connect().await?;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        first.push(backend(&mut a).await?);
        second.push(backend(&mut b).await?);
    }
    let _ = a.close().await;
    let _ = b.close().await;
    Ok(decide(&first, &second))
}

/// One statement through `db` (through a pooler: in a transaction of its own, its
/// `search_path` set inside it): the `search_path` it ran with.
pub async fn check(db: &super::Db) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(db)
        .await
}

/// `statement` in a read-committed transaction of its own (a serializable default fails on a
/// hot standby, and may wait for a safe snapshot), sent as one simple-protocol message, without
/// the session's statement, lock and idle-in-transaction timeouts: for the statements a connection
/// runs before its own settings are known to be in force (the role's may be a millisecond,
/// which would cancel the statement that is there to find out). Through a transaction
/// pooler, the `SET LOCAL`s end with the transaction and leave the server session as it was.
pub fn untimed(statement: &str) -> String {
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = 0; \
         SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL lock_timeout = 0; \
         {statement}; COMMIT"
    )
}

async fn backend(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::raw_sql(&untimed("SELECT pg_catalog.pg_backend_pid()"))
        .fetch_one(conn)
        .await?
        .try_get(0)
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn connections_that_keep_their_own_backends_are_sessions_of_their_own() {
        let seen = decide(&[10, 10, 10, 10], &[11, 11, 11, 11]);
        assert!(!seen.pooled);
        assert!(seen.how.contains("10 and 11"), "{}", seen.how);
    }

    #[test]
    fn a_backend_two_connections_share_is_a_transaction_pooler() {
        // PgBouncer's default: an idle client gets the session released last.
        let seen = decide(&[10, 10, 10, 10], &[10, 10, 10, 10]);
        assert!(seen.pooled);
        assert!(seen.how.contains("backend 10"), "{}", seen.how);
    }

    #[test]
    fn a_connection_whose_backend_changes_is_behind_a_transaction_pooler() {
        // Round-robin sessions (server_round_robin = 1).
        let seen = decide(&[10, 12, 10, 12], &[11, 13, 11, 13]);
        assert!(seen.pooled);
        assert!(seen.how.contains("10, 12, 10, 12"), "{}", seen.how);
    }
}
