//! What the database around the job table says about the promises that depend on it: the
//! plain-card policy and its guard (docs/design.md, C3), and whether the server takes writes
//! (E-rules). The checks themselves, and what the worker does about them, are in
//! `crate::surroundings`.

use super::store::JobStore;
use super::Error;

/// The plain-card policy and its guard, as the database holds them (cheap: read every few
/// seconds by a production worker, rule P9a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardGuard {
    /// `ticketing_card_policy.plain_cards_allowed`.
    pub plain_cards_allowed: bool,
    /// Who decided it, in words.
    pub decided_by: String,
    /// Both guard triggers exist on the job table and fire (enabled, or enabled ALWAYS).
    pub guard_enabled: bool,
}

/// The plain-card policy as the database holds it, with the rows it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPolicy {
    pub guard: CardGuard,
    /// Rows that still hold a plain card (written before the policy refused them).
    pub plain_card_rows: i64,
}

impl JobStore {
    /// The plain-card policy and its guard.
    pub async fn card_guard(&self) -> Result<CardGuard, Error> {
        let r = sqlx::query!(
            r#"
SELECT p.plain_cards_allowed, p.decided_by,
       (SELECT count(*) FROM pg_trigger t
         WHERE t.tgrelid = 'ticketing_jobs'::regclass
           AND t.tgname IN ('plain_cards_refused_on_insert', 'plain_cards_refused_on_update')
           AND t.tgenabled IN ('O', 'A')) = 2 AS "guard_enabled!"
  FROM ticketing_card_policy p"#
        )
        .fetch_one(self.db())
        .await?;
        Ok(CardGuard {
            plain_cards_allowed: r.plain_cards_allowed,
            decided_by: r.decided_by,
            guard_enabled: r.guard_enabled,
        })
    }

    /// The plain-card policy, its guard and the rows holding a plain card (at start: the
    /// count reads the table).
    pub async fn card_policy(&self) -> Result<CardPolicy, Error> {
        let guard = self.card_guard().await?;
        let rows = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ticketing_jobs WHERE card IS NOT NULL"#
        )
        .fetch_one(self.db())
        .await?;
        Ok(CardPolicy {
            guard,
            plain_card_rows: rows,
        })
    }

    /// Of the privileges asked for (`(object, privilege)`: a table, or a function written
    /// with its parentheses), those the current role lacks, and the role's name.
    pub async fn missing_privileges(
        &self,
        needed: &[(&str, &str)],
    ) -> Result<(String, Vec<(String, String)>), Error> {
        let (objects, privileges): (Vec<String>, Vec<String>) = needed
            .iter()
            .map(|(o, p)| ((*o).to_owned(), (*p).to_owned()))
            .unzip();
        let rows = sqlx::query!(
            r#"
SELECT current_user AS "role!", need.object AS "object!", need.privilege AS "privilege!"
  FROM unnest($1::text[], $2::text[]) AS need(object, privilege)
 WHERE NOT CASE WHEN need.object LIKE '%)'
                THEN has_function_privilege(need.object, need.privilege)
                ELSE has_table_privilege(need.object, need.privilege) END"#,
            &objects,
            &privileges
        )
        .fetch_all(self.db())
        .await?;
        let role = match rows.first() {
            Some(r) => r.role.clone(),
            None => String::new(),
        };
        Ok((
            role,
            rows.into_iter().map(|r| (r.object, r.privilege)).collect(),
        ))
    }

    /// Writes the plain-card policy (a production worker at start), when it differs.
    pub async fn set_card_policy(&self, allowed: bool, decided_by: &str) -> Result<(), Error> {
        sqlx::query!(
            "UPDATE ticketing_card_policy
                SET plain_cards_allowed = $1, decided_by = $2, decided_at = ticketing_now()
              WHERE plain_cards_allowed IS DISTINCT FROM $1",
            allowed,
            decided_by
        )
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Whether this server takes writes: not a standby in recovery, and transactions not
    /// read-only by default (`default_transaction_read_only`, which a DBA sets to fence a
    /// database). `Some(why)` when it does not.
    pub async fn read_only(&self) -> Result<Option<String>, Error> {
        let r = sqlx::query!(
            r#"SELECT pg_is_in_recovery() AS "recovery!",
                      current_setting('transaction_read_only') AS "read_only!""#
        )
        .fetch_one(self.db())
        .await?;
        Ok(read_only_reason(r.recovery, &r.read_only))
    }
}

/// Why a server does not take writes, in words, or `None` when it does (rule E3).
pub fn read_only_reason(in_recovery: bool, transaction_read_only: &str) -> Option<String> {
    if in_recovery {
        Some("the server is a standby in recovery (pg_is_in_recovery() is true): it takes no writes; point database.url at the primary (a failover's new primary, or the read-write service of a managed database)".to_owned())
    } else if transaction_read_only == "on" {
        Some("transactions are read-only here (default_transaction_read_only = on, set for the server, the database or the role): a DBA fenced this database; point database.url at the one to write to, or reset the setting".to_owned())
    } else {
        None
    }
}
