//! A fresh, migrated PostgreSQL database per test (a copy of a template migrated once), on one
//! server found once per test process.
//!
//! The server is the first of these that is available, the ways developers' machines and CI
//! offer one:
//! 1. `DATABASE_URL`: that server; the database named in the URL serves as the maintenance
//!    database (`postgres` if the URL names none);
//! 2. a Docker engine that answers: a `postgres` container ([`docker`]), kept for the life of the
//!    process;
//! 3. the local PostgreSQL server binaries: a throwaway cluster in a temporary directory
//!    ([`local`]), stopped and deleted when the process is gone.
//!
//! Which one is used is printed once to stderr; otherwise the harness is silent.
//!
//! Nothing shared here belongs to a tokio runtime. Every `#[tokio::test]` has a runtime of its
//! own, and a pool or connection made on one runtime breaks when that runtime ends, so [`Server`]
//! holds only URLs and every connection is opened by whoever uses it, on its own runtime.

pub mod cli;
mod docker;

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgDatabaseError, PgPool, PgPoolOptions};
use sqlx::Connection;
use tracing_subscriber::EnvFilter;

const NO_POSTGRES: &str = "No PostgreSQL for the tests: set DATABASE_URL, start a Docker engine, \
                           or install the PostgreSQL server binaries (initdb, postgres).";

/// A server named by `DATABASE_URL` should already be up; this covers one still starting (a CI
/// service container started alongside the job).
const RUNNING_SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection attempt; a server that neither accepts nor refuses within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs a `tracing` subscriber that writes through the test harness's capture, but only when
/// `TEST_LOG` is set: a passing run stays silent, and a failing test can be rerun with
/// `TEST_LOG=1` (and optionally `RUST_LOG=…`) to see what the code did.
///
/// Safe to call from every test; only the first call does anything.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,ticketing_tracker=debug"));
        // Another subscriber may already be installed (a test set its own); keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A database of its own for one test: a copy of the migrated template ([`template`]), so as
/// migrated with [`ticketing_tracker::MIGRATOR`], and dropped when this value is dropped, also
/// when the test panicked.
pub struct TestDb {
    server: &'static Server,
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDb {
    /// Creates a migrated database with a unique name on the shared [`server`], finding or
    /// starting that server first if this is the process's first database. Panics, with the
    /// reason, when there is no server or the migrations fail.
    pub async fn new() -> TestDb {
        init_tracing();
        // The first call may start a server, which blocks for seconds: keep that off the test's
        // runtime, where the test may already have tasks running.
        let server = match tokio::task::spawn_blocking(server).await {
            Ok(server) => server,
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("finding the PostgreSQL server was cancelled: {error}"),
            },
        };
        let template = match template(server).await {
            Ok(template) => template,
            Err(error) => panic!("{error}"),
        };
        let name = format!("test_{:032x}", rand::random::<u128>());
        if let Err(error) = create_from(server, &name, template).await {
            panic!("could not create the test database {name} from {template}: {error}");
        }
        let url = server.database_url(&name);
        // Lazy, so that nothing can fail between creating the database and owning it: from here
        // on, Drop removes it whatever happens next.
        let pool = PgPoolOptions::new()
            .connect_lazy(&url)
            .unwrap_or_else(|error| panic!("bad test database URL {url}: {error}"));
        TestDb {
            server,
            name,
            url,
            pool,
        }
    }

    /// A pool connected to this test's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This database's connection URL, for processes the test starts.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The URL of the server's maintenance database, for tests that need to act on the server.
    pub fn server_url(&self) -> String {
        self.server.url()
    }

    /// The database's name (`test_` and 32 hex digits).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server this database lives on.
    pub fn server(&self) -> &'static Server {
        self.server
    }
}

/// The migrated template every test database is copied from: `tt_template_` and a digest of
/// the migrations (version and checksum of each), made once per server and kept, so that a
/// test pays for a copy (`CREATE DATABASE … TEMPLATE`), not for every migration. It is migrated
/// under a name of its own and renamed when complete, so a process that dies half-way leaves no
/// half-migrated template behind (only a `tt_template_…_partial_…` database, never used); a
/// new migration, or an edited one, makes a new digest and so a new template.
async fn template(server: &'static Server) -> Result<&'static str, String> {
    static TEMPLATE: tokio::sync::OnceCell<Result<String, String>> =
        tokio::sync::OnceCell::const_new();
    let made = TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let exists = server
                .database_exists(&name)
                .await
                .map_err(|e| format!("looking for the test template {name}: {e}"))?;
            if exists {
                return Ok(name);
            }
            let partial = format!("{name}_partial_{:08x}", rand::random::<u32>());
            server
                .execute(&format!(r#"CREATE DATABASE "{partial}""#))
                .await
                .map_err(|e| format!("could not create the test template {partial}: {e}"))?;
            let migrated = async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&server.database_url(&partial))
                    .await?;
                let run = ticketing_tracker::MIGRATOR.run(&pool).await;
                pool.close().await;
                run.map_err(sqlx::Error::from)
            }
            .await;
            let renamed = match migrated {
                Ok(()) => server
                    .execute(&format!(r#"ALTER DATABASE "{partial}" RENAME TO "{name}""#))
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match renamed {
                Ok(()) => Ok(name),
                Err(error) => {
                    let _ = server
                        .execute(&format!(
                            r#"DROP DATABASE IF EXISTS "{partial}" WITH (FORCE)"#
                        ))
                        .await;
                    // Another test process made it meanwhile: theirs is as good.
                    if server.database_exists(&name).await.unwrap_or(false) {
                        Ok(name)
                    } else {
                        Err(format!(
                            "migrating the test template {partial} failed: {error}"
                        ))
                    }
                }
            }
        })
        .await;
    made.as_deref().map_err(Clone::clone)
}

/// `tt_template_` and a digest of every migration's version and checksum.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same migrations give the same name in every process.
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for migration in ticketing_tracker::MIGRATOR.iter() {
        migration.version.hash(&mut digest);
        migration.checksum.hash(&mut digest);
    }
    format!("tt_template_{:016x}", digest.finish())
}

/// `CREATE DATABASE name TEMPLATE template`. PostgreSQL refuses a copy while another session
/// is connected to the template (the one that migrated it may take a moment to leave); that
/// refusal is asked again for up to ten seconds.
async fn create_from(server: &Server, name: &str, template: &str) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .execute(&format!(
                r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#
            ))
            .await
        {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be mid-panic or gone, so the database is
        // dropped from a runtime of its own. FORCE ends the sessions still open on it: this
        // value's pool, and those of any process the test started.
        let sql = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        let server = self.server;
        let outcome = on_own_runtime(|| async move { server.execute(&sql).await })
            .and_then(|dropped| dropped.map_err(|error| error.to_string()));
        // A panic here would abort a test that is already unwinding; say it and move on.
        if let Err(error) = outcome {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

/// The PostgreSQL server of this test process, found (or started) on the first call.
///
/// Blocks for as long as that takes (up to a minute when a server has to be started); from
/// async code prefer [`TestDb::new`], which calls it off the runtime. Panics with the reason when
/// there is no server, on every call.
pub fn server() -> &'static Server {
    // The outcome, failure included, is kept: a missing server is reported by every test with
    // the same sentence instead of being searched for again (and a cluster started again) by each.
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let found = SERVER.get_or_init(|| {
        let found = find_server();
        if let Ok(server) = &found {
            announce(&format!(
                "test databases live on PostgreSQL at {}, {}",
                server.address(),
                server.source
            ));
        }
        found
    });
    match found {
        Ok(server) => server,
        Err(reason) => panic!("{reason}"),
    }
}

/// Writes a line to stderr past the test harness's capture (which only takes `eprintln!`), so
/// that it shows once per run rather than only with the output of whichever test came first.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn find_server() -> Result<Server, String> {
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        let server = Server::from_url(&url, Source::DatabaseUrl)?;
        wait_until_ready(&server.url(), RUNNING_SERVER_TIMEOUT, || None).map_err(|error| {
            format!(
                "DATABASE_URL is set, but PostgreSQL at {} does not let the tests in: {error}",
                server.address()
            )
        })?;
        return Ok(server);
    }
    let mut failures = Vec::new();
    if let Some(host) = docker::engine() {
        match docker::start(&host) {
            Ok(server) => return Ok(server),
            Err(error) => failures.push(format!(
                "Docker answered at {host}, but the PostgreSQL container did not serve: {error}"
            )),
        }
    }
    match ticketing_tracker_tools::localpg::start().map(|started| {
        started.and_then(|cluster| {
            Server::from_url(
                &cluster.url,
                Source::LocalBinaries {
                    bin_dir: cluster.bin_dir,
                    dir: cluster.dir,
                },
            )
        })
    }) {
        Some(Ok(server)) => {
            // Said once, because a Docker engine that answers but cannot run PostgreSQL is
            // worth knowing about even when the tests pass.
            for failure in &failures {
                announce(failure);
            }
            return Ok(server);
        }
        Some(Err(error)) => failures.push(error),
        None => {}
    }
    Err(std::iter::once(NO_POSTGRES.to_owned())
        .chain(failures)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The PostgreSQL server the test databases are created on. It holds URLs only, never a
/// connection, so that it can serve every test's runtime (see the module documentation).
pub struct Server {
    /// Everything before the database name: `postgres://user:password@host:port`.
    base: String,
    /// The database used to create and drop the others.
    maintenance_db: String,
    /// The URL's query with its `?` (`?sslmode=require`), or empty; it applies to every database.
    query: String,
    source: Source,
}

/// Where the server came from.
pub enum Source {
    DatabaseUrl,
    Docker {
        image: String,
        container_id: String,
        /// Whether a watchdog removes the container when the test process is gone; it needs the
        /// `docker` command.
        removed_at_exit: bool,
    },
    LocalBinaries {
        bin_dir: PathBuf,
        /// The temporary directory holding the cluster, deleted when the test process is gone.
        dir: PathBuf,
    },
}

impl Server {
    fn from_url(url: &str, source: Source) -> Result<Server, String> {
        let rest = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (scheme, rest)));
        let Some((scheme, rest)) = rest else {
            return Err(format!(
                "the PostgreSQL URL must start with postgres:// or postgresql://, got {}",
                redact(url)
            ));
        };
        let (location, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
        let (authority, database) = location.split_once('/').unwrap_or((location, ""));
        Ok(Server {
            base: format!("{scheme}{authority}"),
            maintenance_db: if database.is_empty() {
                "postgres"
            } else {
                database
            }
            .to_owned(),
            query: query.to_owned(),
            source,
        })
    }

    /// The URL of the maintenance database.
    pub fn url(&self) -> String {
        self.database_url(&self.maintenance_db)
    }

    /// The URL of any database on this server.
    pub fn database_url(&self, database: &str) -> String {
        format!("{}/{}{}", self.base, database, self.query)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// A new connection to the maintenance database, on the caller's runtime.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        connect(&self.url()).await
    }

    /// Runs one SQL statement (or several, without parameters) on the maintenance database and
    /// returns the number of rows it affected. Statements that refuse to run in a transaction,
    /// such as `CREATE DATABASE`, work when sent alone.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let mut connection = self.connect().await?;
        let done = sqlx::raw_sql(sql).execute(&mut connection).await?;
        // The statement has run; failing to say goodbye does not change its outcome.
        let _ = connection.close().await;
        Ok(done.rows_affected())
    }

    /// Whether a database of that name exists on the server.
    pub async fn database_exists(&self, name: &str) -> Result<bool, sqlx::Error> {
        let mut connection = self.connect().await?;
        let exists =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut connection)
                .await?;
        let _ = connection.close().await;
        Ok(exists)
    }

    /// `host:port` (or whatever the URL has there), without the credentials.
    fn address(&self) -> &str {
        let authority = self
            .base
            .split_once("://")
            .map_or("", |(_, authority)| authority);
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, address)| address)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DatabaseUrl => write!(f, "from DATABASE_URL"),
            Source::Docker {
                image,
                container_id,
                removed_at_exit: true,
            } => {
                write!(
                    f,
                    "a {image} container ({container_id}), removed when the tests end"
                )
            }
            Source::Docker {
                image,
                container_id,
                removed_at_exit: false,
            } => write!(
                f,
                "a {image} container, left running: remove it with `docker rm -f {container_id}`"
            ),
            Source::LocalBinaries { bin_dir, dir } => write!(
                f,
                "a throwaway cluster from {} in {}, removed when the tests end",
                bin_dir.display(),
                dir.display()
            ),
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if start < at => match url[start + 3..at].split_once(':') {
            Some((user, _password)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(connected) => connected,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        ))),
    }
}

/// Waits until the server at `url` accepts a connection, retrying with backoff while it is
/// unreachable or still starting, for at most `timeout`. `gave_up` is asked after each failed
/// attempt and ends the wait early with its reason (a server process that already exited).
fn wait_until_ready(
    url: &str,
    timeout: Duration,
    gave_up: impl Fn() -> Option<String> + Sync,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    on_own_runtime(|| async {
        let mut pause = Duration::from_millis(20);
        loop {
            let error = match connect(url).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return Ok(());
                }
                Err(error) => error,
            };
            if let Some(reason) = gave_up() {
                return Err(reason);
            }
            // A server that answers with anything but "starting up" (a bad password, a missing
            // database) will not change its mind.
            if !is_transient(&error) {
                return Err(error.to_string());
            }
            if Instant::now() + pause > deadline {
                return Err(format!(
                    "no connection within {timeout:?}; last error: {error}"
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    })?
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        // 57P03 cannot_connect_now: the server is starting up, or shutting down a throwaway
        // init-time instance (the Docker image does that before its real start).
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|error| error.code() == "57P03"),
        _ => false,
    }
}

/// Runs the future that `make` returns to completion on a new single-threaded runtime in a thread
/// of its own, which works from anywhere: inside another runtime, outside any, or while a test
/// unwinds. The future is made on that thread, so it need not be `Send`.
fn on_own_runtime<T: Send, F: Future<Output = T>>(
    make: impl FnOnce() -> F + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| format!("could not start a tokio runtime: {error}"))?;
                Ok(runtime.block_on(make()))
            })
            .join()
            .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The first file called `name` in a directory on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
