//! How the job store's statements reach PostgreSQL: on a connection that is a session of its
//! own, or through a transaction pooler, where each runs in a transaction of its own with the
//! unnamed prepared statement.
//!
//! Why both are needed behind a pooler (sqlx 0.8, `PgConnection::run`, checked against
//! PgBouncer 1.18 in transaction mode): sqlx sends Parse/Describe/Sync, waits, then
//! Bind/Execute/Sync. Outside a transaction the pooler may hand the two halves to different
//! server sessions, so a Bind lands on a statement someone else prepared there (`bind message
//! supplies 29 parameters, but prepared statement "sqlx_s_4" requires 4`). A named statement
//! also outlives the transaction on that server session, where another client's connection
//! prepares the same name (`prepared statement "sqlx_s_1" already exists`), and
//! `statement_cache_capacity(0)` does not help: sqlx still names every statement, and then
//! never closes it. Inside `BEGIN … COMMIT` the pooler keeps one server session, and the
//! unnamed statement ends with the transaction.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres};

/// The pool and how to use it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    /// Through a transaction pooler: the statement that opens each statement's transaction
    /// (`BEGIN` and the session settings it needs, `SET LOCAL`).
    begin: Option<Arc<str>>,
}

impl From<PgPool> for Db {
    /// A pool whose connections are sessions of their own.
    fn from(pool: PgPool) -> Self {
        Db { pool, begin: None }
    }
}

impl Db {
    /// A pool whose connections go through a transaction pooler. `schema` becomes each
    /// transaction's `search_path`; `settings` are set for each transaction too (names and
    /// values are the program's own, never user input).
    pub fn pooled(pool: PgPool, schema: &str, settings: &[(&str, &str)]) -> Self {
        Db {
            pool,
            begin: Some(pooled_begin(schema, settings).into()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether statements go through a transaction pooler.
    pub fn is_pooled(&self) -> bool {
        self.begin.is_some()
    }

    /// A connection from the pool, used the same way.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(Conn {
            conn: self.pool.acquire().await?,
            begin: self.begin.clone(),
        })
    }
}

/// A connection taken from a [`Db`]; its statements run as the `Db`'s do.
#[derive(Debug)]
pub struct Conn {
    conn: PoolConnection<Postgres>,
    begin: Option<Arc<str>>,
}

/// A statement run with the unnamed prepared statement.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

type Results = Vec<Either<PgQueryResult, PgRow>>;

/// `query` in a transaction of its own, opened by `begin`. Its results are handed out only
/// once the commit has returned: a caller never acts on rows of a transaction that then
/// failed (a claim whose commit is lost reports an error, and its intents are withdrawn).
async fn in_transaction<'q, E>(
    conn: &mut PgConnection,
    begin: &str,
    query: E,
) -> Result<Results, sqlx::Error>
where
    E: 'q + Execute<'q, Postgres>,
{
    let mut tx = conn.begin_with(begin.to_owned()).await?;
    let results: Results = (&mut *tx).fetch_many(Unnamed(query)).try_collect().await?;
    tx.commit().await?;
    Ok(results)
}

fn first_row(results: Results) -> Option<PgRow> {
    results.into_iter().find_map(|r| r.right())
}

fn stream_of<'e>(
    results: impl std::future::Future<Output = Result<Results, sqlx::Error>> + Send + 'e,
) -> futures_util::stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>> {
    futures_util::stream::once(results)
        .map_ok(|rs| futures_util::stream::iter(rs.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

fn no_named_statements<'e, T: Send + 'e>(
) -> futures_util::future::BoxFuture<'e, Result<T, sqlx::Error>> {
    Box::pin(async {
        Err(sqlx::Error::Protocol(
            "prepared statements are not kept behind a transaction pooler".into(),
        ))
    })
}

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match &self.begin {
            None => self.pool.fetch_many(query),
            Some(begin) => stream_of(async move {
                let mut conn = self.pool.acquire().await?;
                in_transaction(&mut conn, begin, query).await
            }),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match &self.begin {
            None => self.pool.fetch_optional(query),
            Some(begin) => Box::pin(async move {
                let mut conn = self.pool.acquire().await?;
                in_transaction(&mut conn, begin, query).await.map(first_row)
            }),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self.begin {
            None => self.pool.prepare_with(sql, parameters),
            Some(_) => no_named_statements(),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self.begin {
            None => self.pool.describe(sql),
            Some(_) => no_named_statements(),
        }
    }
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Conn { conn, begin } = self;
        match begin {
            None => (&mut **conn).fetch_many(query),
            Some(begin) => stream_of(async move { in_transaction(conn, begin, query).await }),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Conn { conn, begin } = self;
        match begin {
            None => (&mut **conn).fetch_optional(query),
            Some(begin) => {
                Box::pin(async move { in_transaction(conn, begin, query).await.map(first_row) })
            }
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        let Conn { conn, begin } = self;
        match begin {
            None => (&mut **conn).prepare_with(sql, parameters),
            Some(_) => no_named_statements(),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        let Conn { conn, begin } = self;
        match begin {
            None => (&mut **conn).describe(sql),
            Some(_) => no_named_statements(),
        }
    }
}

/// What opens each transaction through a transaction pooler: `BEGIN`, then `settings` and
/// `schema` as the transaction's own (rule E1), the timeouts first: until they are set, the
/// server session's own (a DBA's millisecond) time every statement of the message.
fn pooled_begin(schema: &str, settings: &[(&str, &str)]) -> String {
    let mut settings = settings.to_vec();
    settings.sort_by_key(|(name, _)| !name.ends_with("timeout"));
    let mut begin = String::from("BEGIN");
    for (name, value) in settings {
        begin.push_str(&format!("; SET LOCAL {name} TO '{value}'"));
    }
    // The schema is validated as a plain lower-case identifier (config), so quoting it is
    // enough; it still goes in double quotes so that a reserved word works.
    begin.push_str(&format!("; SET LOCAL search_path TO \"{schema}\""));
    begin
}

#[cfg(test)]
mod tests {
    #[test]
    fn e1_a_pooled_transaction_sets_its_timeouts_before_anything_else() {
        let begin = super::pooled_begin(
            "ticketing",
            &[
                ("transaction_isolation", "read committed"),
                ("statement_timeout", "15000"),
                ("lock_timeout", "0"),
                ("TimeZone", "UTC"),
            ],
        );
        assert_eq!(
            begin,
            "BEGIN; SET LOCAL statement_timeout TO '15000'; SET LOCAL lock_timeout TO '0'; \
             SET LOCAL transaction_isolation TO 'read committed'; SET LOCAL TimeZone TO 'UTC'; \
             SET LOCAL search_path TO \"ticketing\""
        );
    }
}
