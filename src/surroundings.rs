//! The worker's surroundings: every property of the database around it that a promise depends
//! on, checked at start and again on every connection the pools make (docs/design.md, rules
//! E1-E4). For each, the worker makes it true for its own work (the session pins), refuses
//! to start, or reports not ready, in one line that names the property, the value found, and
//! what to change.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use crate::config::{DatabaseSettings, Settings};
use crate::jobs::{read_only_reason, CardPolicy, Db, JobStore};

/// A property of a new connection that does not hold, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A session pin is not in force.
    Session(String),
    /// The check could not be made (the connection broke, the server is restarting).
    Unread(String),
    /// The server takes no writes ([`read_only_reason`]).
    ReadOnly(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Session(why) | Refusal::Unread(why) | Refusal::ReadOnly(why) => {
                f.write_str(why)
            }
        }
    }
}

/// Checks a new connection: the session pins are in force (a pooler that drops the startup
/// options would leave them unset), and the server takes writes. `Err` names the first
/// property that does not hold.
pub async fn check_connection(
    conn: &mut PgConnection,
    pins: &[(&'static str, String)],
) -> Result<(), Refusal> {
    if !pins.is_empty() {
        check_session(conn, pins).await?;
    }
    // The simple query protocol: no prepared statement, which a transaction pooler could not
    // carry (this runs on its connections too).
    let failed = |e: sqlx::Error| {
        Refusal::Unread(format!(
            "reading whether the server takes writes failed: {e}"
        ))
    };
    let rows = sqlx::Executor::fetch_all(
        &mut *conn,
        // Untimed: through a transaction pooler the session is not pinned yet.
        sqlx::raw_sql(&crate::jobs::pooler::untimed(
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only')",
        )),
    )
    .await
    .map_err(failed)?;
    let (in_recovery, read_only): (bool, String) = {
        use sqlx::Row;
        let row = rows
            .first()
            .ok_or_else(|| failed(sqlx::Error::RowNotFound))?;
        (
            row.try_get(0).map_err(failed)?,
            row.try_get(1).map_err(failed)?,
        )
    };
    match read_only_reason(in_recovery, &read_only) {
        Some(why) => Err(Refusal::ReadOnly(why)),
        None => Ok(()),
    }
}

/// The session pins, as `pg_settings` shows them on this connection.
async fn check_session(
    conn: &mut PgConnection,
    pins: &[(&'static str, String)],
) -> Result<(), Refusal> {
    // The values the session started with (`reset_val`: the startup options over the role's
    // and the database's settings), read in a transaction of their own without the session's
    // timeouts, which may be the very settings that are wrong (a statement timeout of 1 ms
    // would cancel the check instead of letting it say so).
    let names = pins
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = crate::jobs::pooler::untimed(&format!(
        "SELECT name, reset_val FROM pg_catalog.pg_settings WHERE name IN ({names})"
    ));
    let rows = sqlx::Executor::fetch_all(&mut *conn, sqlx::raw_sql(&sql))
        .await
        .map_err(|e| Refusal::Unread(format!("reading the session's settings failed: {e}")))?;
    let found: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            use sqlx::Row;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| Refusal::Unread(format!("reading the session's settings failed: {e}")))?;
    for (name, wanted) in pins {
        let is = found
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        if is != Some(wanted.as_str()) {
            return Err(Refusal::Session(format!(
                "the session setting {name} is {} on a new connection, not {wanted:?} as the worker asked at connection start: something between the worker and PostgreSQL dropped the startup options (a pooler: see the README's \"What the worker needs from PostgreSQL\")",
                is.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"))
            )));
        }
    }
    Ok(())
}

/// The job store's way through a transaction pooler: every statement in a transaction of its
/// own that sets the session pins with `SET LOCAL` first (rule E1: the pooler's server sessions
/// are not ours to pin).
pub fn pooled_db(pool: PgPool, database: &DatabaseSettings) -> Db {
    let pins = database.transaction_pins();
    let pins: Vec<(&str, &str)> = pins.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Db::pooled(pool, &database.schema, &pins)
}

/// A pool whose every new connection is checked ([`check_connection`]) before it is used: a
/// connection that fails the check is closed and its error names the property.
pub fn checked_pool(
    pool: PgPoolOptions,
    options: PgConnectOptions,
    pins: Vec<(&'static str, String)>,
) -> PgPool {
    let pins = std::sync::Arc::new(pins);
    pool.after_connect(move |conn, _meta| {
        let pins = std::sync::Arc::clone(&pins);
        Box::pin(async move {
            let m = crate::metrics::global();
            match check_connection(conn, &pins).await {
                Ok(()) => {
                    m.database_writable(true);
                    m.database_accepted();
                    Ok(())
                }
                Err(refusal) => {
                    if let Refusal::ReadOnly(_) = refusal {
                        m.database_writable(false);
                    }
                    let why = refusal.to_string();
                    m.database_refused(&why);
                    Err(sqlx::Error::Configuration(why.into()))
                }
            }
        })
    })
    .connect_lazy_with(options)
}

/// The privileges the worker's own statements need, as `(object, privilege)`; a function is
/// written with its parentheses. Checked at start (rule E1): a role without one would fail
/// every claim (or every write) while the process looked healthy.
fn privileges_needed(settings: &Settings) -> Vec<(&'static str, &'static str)> {
    let mut needed = vec![
        ("ticketing_jobs", "SELECT"),
        ("ticketing_jobs", "UPDATE"),
        ("ticketing_events", "SELECT"),
        ("ticketing_events", "INSERT"),
        ("ticketing_card_policy", "SELECT"),
        // The durability gate reads and writes the standby it saw (rule P1b).
        ("ticketing_standby_seen", "SELECT"),
        ("ticketing_standby_seen", "INSERT"),
        // ticketing_now() reads the test clock with the caller's privileges.
        ("ticketing_test_clock", "SELECT"),
        ("ticketing_now()", "EXECUTE"),
        // Every claim takes its rows through it (rules S1, S2).
        ("ticketing_due(boolean, boolean, integer)", "EXECUTE"),
        // The claim leaves a paused method's rows (rule S4); /metrics reports the pauses.
        ("ticketing_pauses", "SELECT"),
        // /metrics (and the console) report the reconciliation's runs (rules R5, R6).
        ("ticketing_reconcile_runs", "SELECT"),
        // Every claim asks whether the balance pre-check runs (rule P1e).
        ("ticketing_balance_checks", "SELECT"),
        // A webhook's mark for a row it found locked waits there; each re-check round applies
        // and deletes them (rule W3).
        ("ticketing_webhook_deferred", "SELECT"),
        ("ticketing_webhook_deferred", "INSERT"),
        ("ticketing_webhook_deferred", "DELETE"),
    ];
    if settings.reconcile.daily {
        // The daily run's row is its claim, its heartbeat and its record (rule R5); its
        // evidence goes through the job table's and events' privileges above.
        needed.extend([
            ("ticketing_reconcile_runs", "INSERT"),
            ("ticketing_reconcile_runs", "UPDATE"),
        ]);
    }
    if settings.worker.balance_precheck_s > 0 {
        // The pre-check beats its row (rule P1e).
        needed.extend([
            ("ticketing_balance_checks", "INSERT"),
            ("ticketing_balance_checks", "UPDATE"),
        ]);
    }
    if settings.console.enabled {
        // An operator pauses and resumes paying from the console.
        needed.extend([
            ("ticketing_pauses", "INSERT"),
            ("ticketing_pauses", "UPDATE"),
            // A login reads the named account and counts its wrong passwords (rules L2, L3).
            ("ticketing_console_users", "SELECT"),
            ("ticketing_console_users", "UPDATE"),
        ]);
    }
    if settings.production {
        needed.push(("ticketing_card_policy", "UPDATE"));
    }
    if settings.worker.retention_days > 0 {
        needed.extend([("ticketing_jobs", "DELETE"), ("ticketing_events", "DELETE")]);
    }
    needed
}

/// Refuses to start, naming the privilege and the GRANT to run, when the worker's role lacks
/// one its statements need.
pub async fn privileges(store: &JobStore, settings: &Settings) -> anyhow::Result<()> {
    let (role, missing) = store
        .missing_privileges(&privileges_needed(settings))
        .await
        .map_err(|e| anyhow::anyhow!("cannot check the worker's privileges: {e}"))?;
    if missing.is_empty() {
        return Ok(());
    }
    let grants = missing
        .iter()
        .map(|(object, privilege)| {
            if object.ends_with(')') {
                format!("GRANT {privilege} ON FUNCTION {object} TO {role};")
            } else {
                format!("GRANT {privilege} ON {object} TO {role};")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let named = missing
        .iter()
        .map(|(object, privilege)| format!("{privilege} on {object}"))
        .collect::<Vec<_>>()
        .join(", ");
    anyhow::bail!("the worker's role {role} lacks {named}: every claim or write needing it would fail; run {grants}")
}

/// The plain-card policy for this worker, made true in the database at start (rule P9a), in
/// words for the start line. In production it writes the policy (refused unless
/// `card.allow_plain`) and refuses to start when the guard is missing or disabled; elsewhere
/// it reports the policy it finds.
pub async fn card_policy(store: &JobStore, settings: &Settings) -> anyhow::Result<String> {
    let allow = settings.card.allow_plain;
    let production = settings.production;
    if production {
        let by = format!("a production worker at start (card.allow_plain = {allow})");
        store.set_card_policy(allow, &by).await.map_err(|e| {
            anyhow::anyhow!("cannot write the plain-card policy (table ticketing_card_policy): {e}; the worker's role needs UPDATE on it, and the migrations must have run")
        })?;
    }
    let CardPolicy {
        guard: policy,
        plain_card_rows,
    } = match store.card_policy().await {
        Ok(policy) => policy,
        Err(e) if production => {
            anyhow::bail!("cannot read the plain-card policy and its guard: {e}; run the migrations (database.migrate_on_start, or `ticketing-tracker migrate`)")
        }
        Err(e) => return Ok(format!("plain-card policy unknown ({e})")),
    };
    if production && !policy.plain_cards_allowed && !policy.guard_enabled {
        anyhow::bail!("the plain-card guard is missing or disabled: {GUARD_FIX}. Run the migrations, or set card.allow_plain = true to run without the guard");
    }
    if production {
        crate::metrics::global().card_guard(true);
    }
    if policy.plain_cards_allowed {
        if plain_card_rows > 0 {
            tracing::info!(
                rows = plain_card_rows,
                "rows hold plain card data (erased once their payment resolves)"
            );
        }
        return Ok(format!(
            "plain cards ALLOWED in the table ({}): a plain card stays in the WAL, its standbys and its backups after the row is erased; seal cards (card_sealed)",
            policy.decided_by
        ));
    }
    if plain_card_rows > 0 {
        tracing::warn!(
            rows = plain_card_rows,
            "rows hold plain card data written before the database refused it; they are paid, then the card is erased from the row (the WAL and backups keep it)"
        );
    }
    Ok("plain cards refused by the database (sealed cards only)".to_owned())
}

/// What the guard is and what to run when it is not in force.
const GUARD_FIX: &str = "the triggers plain_cards_refused_on_insert and plain_cards_refused_on_update on ticketing_jobs must exist and be enabled (run ALTER TABLE ticketing_jobs ENABLE ALWAYS TRIGGER plain_cards_refused_on_insert, and the same for plain_cards_refused_on_update); without them a plain card would reach the table, the WAL and every backup";

/// How often a production worker looks at the plain-card policy and its guard again.
pub const CARD_GUARD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The production worker's look at the plain-card policy and its guard after start (rule
/// P9a): what changed since is made right or said. A worker with `card.allow_plain = false`
/// that finds plain cards allowed (another replica, a person) writes the policy back to
/// refused; a guard disabled or dropped while the policy refuses plain cards is `Err` with the
/// line `/readyz` answers, and is logged at error once a minute while it lasts. A database that
/// does not answer says nothing here: the other checks report it.
pub async fn recheck_card_guard(store: &JobStore, allow_plain: bool) -> Result<(), String> {
    let m = crate::metrics::global();
    let Ok(mut guard) = store.card_guard().await else {
        return Ok(());
    };
    if guard.plain_cards_allowed && !allow_plain {
        let by = "a production worker re-asserting its policy (card.allow_plain = false)";
        match store.set_card_policy(false, by).await {
            Ok(()) => {
                tracing::error!(
                    decided_by = %guard.decided_by,
                    "the plain-card policy was found ALLOWED in the database although this worker has card.allow_plain = false; set back to refused (a replica or a person with card.allow_plain = true set it; give every production replica the same card.allow_plain)"
                );
                guard.plain_cards_allowed = false;
            }
            Err(e) => tracing::error!(
                decided_by = %guard.decided_by, error = %e,
                "the plain-card policy is ALLOWED in the database although this worker has card.allow_plain = false, and writing it back to refused failed"
            ),
        }
    }
    let ok = guard.plain_cards_allowed || guard.guard_enabled;
    m.card_guard(ok);
    if ok {
        return Ok(());
    }
    let why = format!("the plain-card guard is missing or disabled while the policy refuses plain cards: {GUARD_FIX}");
    if m.card_guard_unlogged() {
        tracing::error!(
            reason = %why,
            "the plain-card guard is not in force (said once a minute while it lasts)"
        );
    }
    Err(why)
}

/// [`recheck_card_guard`] every [`CARD_GUARD_EVERY`] until `stop`.
pub async fn watch_card_guard(
    store: JobStore,
    allow_plain: bool,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CARD_GUARD_EVERY) => {}
        }
        let _ = recheck_card_guard(&store, allow_plain).await;
    }
}
