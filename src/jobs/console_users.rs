//! The SQL of named console accounts (docs/design.md, rules L2 and L3): add, disable, reset,
//! list, and the login's reads and writes. Locks are decided with the database's time
//! (`ticketing_now()`), so every replica reads the same lock.

use chrono::{DateTime, Utc};

use super::store::JobStore;

/// Wrong passwords in a row after which an account is locked (rule L3).
pub const LOCK_AFTER: i32 = 5;
/// The first lock's length; each further wrong password (once a lock passed) doubles it.
pub const LOCK_FIRST_S: f64 = 30.0;
/// The longest lock: an attacker who knows a name can keep its owner out for this long at a
/// time, no longer (`console-user reset` ends it at once).
pub const LOCK_LONGEST_S: f64 = 3600.0;

/// Why an account command did nothing, naming the account and the field.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("console user {0:?}: no such account (see `ticketing-tracker console-user list`)")]
    NoSuch(String),
    #[error("console user {0:?}: name: an account of that name exists already (change its password with `console-user reset`)")]
    Exists(String),
    #[error("console user {name:?}: {field}: {problem}")]
    Invalid {
        name: String,
        field: &'static str,
        problem: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a login needs to know of the name typed, read in one statement.
#[derive(Debug, Clone)]
pub struct LoginAccount {
    /// Whether any named account exists (then shared-password logins are marked `shared:`).
    pub any: bool,
    /// The account of that name, if there is one.
    pub account: Option<Account>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub role: String,
    /// `pbkdf2-sha256:…`, never shown.
    pub password_hash: String,
    pub disabled: bool,
    /// Seconds the lock still lasts, by the database's clock; `None` when not locked.
    pub locked_s: Option<f64>,
}

/// One account as `console-user list` shows it: never its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A wrong password's outcome for the account.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub failed_logins: i32,
    /// Seconds the account is now locked for, if this failure locked it.
    pub locked_s: Option<f64>,
}

fn refused(e: sqlx::Error, name: &str) -> AccountError {
    if let sqlx::Error::Database(db) = &e {
        match db.constraint() {
            Some("ticketing_console_users_name_key") => return AccountError::Exists(name.into()),
            Some("console_user_name_plain") => {
                return AccountError::Invalid {
                    name: name.into(),
                    field: "name",
                    problem: "1 to 40 letters, digits, dots, dashes, underscores or @".into(),
                }
            }
            Some("console_user_role_known") => {
                return AccountError::Invalid {
                    name: name.into(),
                    field: "role",
                    problem: "viewer or operator".into(),
                }
            }
            Some("console_user_hash_pbkdf2") => {
                return AccountError::Invalid {
                    name: name.into(),
                    field: "password_hash",
                    problem: "not a pbkdf2-sha256 hash".into(),
                }
            }
            _ => {}
        }
    }
    AccountError::Database(e)
}

impl JobStore {
    /// The account named `name` (if any) as a login reads it, and whether any account exists.
    pub async fn console_login_account(&self, name: &str) -> Result<LoginAccount, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT EXISTS (SELECT 1 FROM ticketing_console_users) AS "any!",
                      u.role AS "role?", u.password_hash AS "password_hash?",
                      (u.disabled_at IS NOT NULL) AS "disabled?",
                      CASE WHEN u.locked_until > ticketing_now()
                           THEN EXTRACT(EPOCH FROM (u.locked_until - ticketing_now()))::float8 END AS "locked_s?"
               FROM (SELECT 1) AS one LEFT JOIN ticketing_console_users u ON u.name = $1"#,
            name
        )
        .fetch_one(self.db())
        .await?;
        let account = match (row.role, row.password_hash) {
            (Some(role), Some(password_hash)) => Some(Account {
                role,
                password_hash,
                disabled: row.disabled.unwrap_or(false),
                locked_s: row.locked_s,
            }),
            _ => None,
        };
        Ok(LoginAccount {
            any: row.any,
            account,
        })
    }

    /// Whether the account `name` still logs in as it did (not disabled, not removed, the
    /// same `role`, the same password: `hash_digest` is the SHA-256 of its password hash then):
    /// asked on every request of its sessions (rule L2).
    pub async fn console_account_holds(
        &self,
        name: &str,
        role: &str,
        hash_digest: &[u8; 32],
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM ticketing_console_users
                              WHERE name = $1 AND role = $2 AND disabled_at IS NULL
                                AND sha256(convert_to(password_hash, 'UTF8')) = $3) AS "holds!""#,
            name,
            role,
            &hash_digest[..]
        )
        .fetch_one(self.db())
        .await
    }

    /// A right password for `name`: clears its count of wrong ones, unless the account was
    /// locked or disabled meanwhile (another replica's failures): `false` then, and the
    /// login is refused. The decision is this one statement's, with the database's time.
    pub async fn console_login_succeeded(&self, name: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"UPDATE ticketing_console_users
               SET failed_logins = 0, locked_until = NULL, last_login_at = ticketing_now(),
                   updated_at = ticketing_now()
               WHERE name = $1 AND disabled_at IS NULL
                 AND (locked_until IS NULL OR locked_until <= ticketing_now())"#,
            name
        )
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A wrong password for `name`: counts it, and from the [`LOCK_AFTER`]th in a row locks
    /// the account for [`LOCK_FIRST_S`], doubling with each further one, at most
    /// [`LOCK_LONGEST_S`]. `None`: no such account.
    pub async fn console_login_failed(&self, name: &str) -> Result<Option<Failed>, sqlx::Error> {
        let row = sqlx::query!(
            r#"UPDATE ticketing_console_users
               SET failed_logins = failed_logins + 1,
                   locked_until = CASE WHEN failed_logins + 1 >= $2
                       THEN ticketing_now() + LEAST($3 * power(2, LEAST(failed_logins + 1 - $2, 20)), $4)
                                              * interval '1 second'
                       ELSE locked_until END,
                   updated_at = ticketing_now()
               WHERE name = $1
               RETURNING failed_logins,
                         CASE WHEN locked_until > ticketing_now()
                              THEN EXTRACT(EPOCH FROM (locked_until - ticketing_now()))::float8 END AS "locked_s?""#,
            name,
            LOCK_AFTER,
            LOCK_FIRST_S,
            LOCK_LONGEST_S
        )
        .fetch_optional(self.db())
        .await?;
        Ok(row.map(|r| Failed {
            failed_logins: r.failed_logins,
            locked_s: r.locked_s,
        }))
    }

    /// `console-user add`.
    pub async fn console_user_add(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<(), AccountError> {
        sqlx::query!(
            "INSERT INTO ticketing_console_users (name, role, password_hash) VALUES ($1, $2, $3)",
            name,
            role,
            password_hash
        )
        .execute(self.db())
        .await
        .map_err(|e| refused(e, name))?;
        Ok(())
    }

    /// `console-user disable`: the account logs in no more. Disabling a disabled account
    /// changes nothing and is not an error.
    pub async fn console_user_disable(&self, name: &str) -> Result<(), AccountError> {
        let done = sqlx::query!(
            r#"UPDATE ticketing_console_users
               SET disabled_at = COALESCE(disabled_at, ticketing_now()), updated_at = ticketing_now()
               WHERE name = $1"#,
            name
        )
        .execute(self.db())
        .await?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NoSuch(name.into()));
        }
        Ok(())
    }

    /// `console-user reset`: a new password, the count of wrong ones and any lock cleared. A
    /// disabled account stays disabled.
    pub async fn console_user_reset(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<(), AccountError> {
        let done = sqlx::query!(
            r#"UPDATE ticketing_console_users
               SET password_hash = $2, failed_logins = 0, locked_until = NULL,
                   updated_at = ticketing_now()
               WHERE name = $1"#,
            name,
            password_hash
        )
        .execute(self.db())
        .await
        .map_err(|e| refused(e, name))?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NoSuch(name.into()));
        }
        Ok(())
    }

    /// `console-user list`: every account, by name; no hash.
    pub async fn console_users(&self) -> Result<Vec<AccountRow>, sqlx::Error> {
        sqlx::query_as!(
            AccountRow,
            r#"SELECT name, role, disabled_at, failed_logins,
                      CASE WHEN locked_until > ticketing_now() THEN locked_until END AS locked_until,
                      last_login_at, created_at
               FROM ticketing_console_users ORDER BY name"#
        )
        .fetch_all(self.db())
        .await
    }
}
