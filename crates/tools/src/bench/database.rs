//! Which PostgreSQL the bench measures, and its scratch databases.

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::localpg::{self, Cluster};

/// The server: `DATABASE_URL`; else the local server of the default settings when it
/// answers (what a machine with PostgreSQL installed offers); else a throwaway cluster.
pub struct Server {
    url: String,
    pub shown_url: String,
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
    _cluster: Option<Cluster>,
}

/// A fresh, migrated database on the server, dropped by [`Scratch::drop`].
pub struct Scratch {
    pub url: String,
    pub pool: PgPool,
    admin: String,
    name: String,
}

impl Server {
    pub async fn find() -> anyhow::Result<Server> {
        let configured = std::env::var("DATABASE_URL").ok();
        let default = ticketing_tracker::config::Settings::defaults()
            .database
            .url
            .expose_secret()
            .to_owned();
        let (url, cluster) = match configured {
            Some(url) => (url, None),
            None if answers(&default).await => (default, None),
            None => {
                let cluster = tokio::task::spawn_blocking(localpg::start)
                    .await?
                    .context("no PostgreSQL: set DATABASE_URL, run one on 127.0.0.1:5432, or install the PostgreSQL server binaries")?
                    .map_err(anyhow::Error::msg)?;
                println!("bench: no PostgreSQL answered; using a throwaway cluster (fsync off: figures are not comparable)");
                (cluster.url.clone(), Some(cluster))
            }
        };
        let pool = PgPool::connect(&url)
            .await
            .context("cannot connect to PostgreSQL")?;
        let show = |name: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
                    .fetch_one(&pool)
                    .await
            }
        };
        let server = Server {
            shown_url: localpg::redact_url(&url),
            version: show("server_version").await?,
            fsync: show("fsync").await?,
            synchronous_commit: show("synchronous_commit").await?,
            url,
            _cluster: cluster,
        };
        pool.close().await;
        Ok(server)
    }

    pub async fn scratch(&self, prefix: &str) -> anyhow::Result<Scratch> {
        let name = format!("{prefix}_{}", std::process::id());
        let url = localpg::create_database(&self.url, &name).await?;
        // The bench's own statements (building a million rows) are slow on purpose: not logged.
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(sqlx::ConnectOptions::disable_statement_logging(options))
            .await?;
        ticketing_tracker::MIGRATOR.run(&pool).await?;
        Ok(Scratch {
            url,
            pool,
            admin: self.url.clone(),
            name,
        })
    }
}

impl Scratch {
    pub async fn drop(self) {
        self.pool.close().await;
        localpg::drop_database(&self.admin, &self.name).await;
    }
}

async fn answers(url: &str) -> bool {
    let connect = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect(url);
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(3), connect).await,
        Ok(Ok(_))
    )
}
