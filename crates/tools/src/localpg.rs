//! A throwaway PostgreSQL cluster from the local server binaries, gone when this process is:
//! what the demo, the benchmark and the tests run on when no other PostgreSQL is offered.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// initdb and the first start, on a slow CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The port is free when we pick it but can be taken before postgres binds it (another test
/// process doing the same); then we try again with another.
const ATTEMPTS: usize = 3;

/// initdb and postgres refuse to run as root; as root, the cluster belongs to this system user.
const SYSTEM_USER: &str = "postgres";

/// Creates and runs the cluster on behalf of the owning process and removes it once that process
/// is gone, however it ended (a panic, an abort, Ctrl-C, SIGKILL), which no code inside the
/// process can promise. Polling the pid is the portable way to notice, hence the half second.
///
/// Arguments: the cluster's directory, the test process's pid, the binaries' directory, the
/// port, and the user to run them as (empty: the current one). It writes `initdb.failed` or
/// `postgres.exited` into the directory when a step ends early, for the test process to report.
const WATCHDOG: &str = r#"
dir=$1 owner=$2 bin=$3 port=$4 user=$5
as_user() { if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }
started=
if as_user "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$dir/initdb.log" 2>&1
then
  ( as_user "$bin/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
        >"$dir/postgres.log" 2>&1
    touch "$dir/postgres.exited" ) &
  started=1
else
  touch "$dir/initdb.failed"
fi
while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
if [ -n "$started" ]; then
  # postgres may still be starting: signal it as soon as its pid file names it. SIGINT is the
  # fast shutdown (ends the sessions); runuser, if any, is left to exit after it.
  while [ ! -e "$dir/postgres.exited" ]; do
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  wait
fi
rm -rf "$dir"
"#;

/// A running throwaway cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The maintenance database (`postgres`), trust auth as user `postgres`.
    pub url: String,
    pub bin_dir: PathBuf,
    /// The temporary directory holding the cluster, deleted when this process is gone.
    pub dir: PathBuf,
}

/// Starts a cluster from the newest local binaries and waits until it accepts connections
/// (blocking); `None` when there are no binaries.
pub fn start() -> Option<Result<Cluster, String>> {
    let bin_dir = find_bin_dir()?;
    let mut outcome = Err(String::new());
    for _ in 0..ATTEMPTS {
        outcome = attempt(&bin_dir);
        match &outcome {
            Err(error) if error.contains("Address already in use") => continue,
            _ => break,
        }
    }
    Some(outcome.map_err(|error| {
        format!(
            "The local PostgreSQL binaries in {} did not give a server: {error}",
            bin_dir.display()
        )
    }))
}

fn attempt(bin_dir: &Path) -> Result<Cluster, String> {
    let owner = cluster_owner()?;
    let dir = std::env::temp_dir().join(format!(
        "ticketing-tracker-pg-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir(&dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        if let Err(error) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
            let _ = fs::remove_dir(&dir);
            return Err(format!(
                "giving {} to {SYSTEM_USER}: {error}",
                dir.display()
            ));
        }
    }
    let port = free_port()?;
    // Never waited for: the watchdog outlives this process on purpose, and init reaps it.
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("ticketing-tracker-pg-watchdog")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .arg(bin_dir)
        .arg(port.to_string())
        .arg(if owner.is_some() { SYSTEM_USER } else { "" })
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so that Ctrl-C on the tests does not stop the watchdog before
        // it has cleaned up (or stop postgres under it, which is the watchdog's job).
        .process_group(0)
        .spawn();
    if let Err(error) = spawned {
        let _ = fs::remove_dir(&dir);
        return Err(format!("starting the watchdog shell: {error}"));
    }
    let cluster = Cluster {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        bin_dir: bin_dir.to_owned(),
        dir: dir.clone(),
    };
    wait_until_ready(bin_dir, port, &dir)?;
    Ok(cluster)
}

/// Polls `pg_isready` (backing off from 20 to 500 ms) until the server answers, it ended early,
/// or [`START_TIMEOUT`] passed.
fn wait_until_ready(bin_dir: &Path, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let ready = Command::new(bin_dir.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-t", "1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if let Some(reason) = ended_early(dir) {
            return Err(reason);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "no connection within {START_TIMEOUT:?}\npostgres log:\n{}",
                tail(&dir.join("postgres.log"))
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

fn ended_early(dir: &Path) -> Option<String> {
    if dir.join("initdb.failed").exists() {
        return Some(format!("initdb failed:\n{}", tail(&dir.join("initdb.log"))));
    }
    if dir.join("postgres.exited").exists() {
        return Some(format!(
            "postgres exited:\n{}",
            tail(&dir.join("postgres.log"))
        ));
    }
    None
}

/// The last lines of a log, where the reason a start failed is.
fn tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(error) => format!("({}: {error})", path.display()),
    }
}

/// `Some((uid, gid))` of the system user to run the cluster as when we are root, else `None`.
fn cluster_owner() -> Result<Option<(u32, u32)>, String> {
    let root = match fs::metadata("/proc/self") {
        Ok(proc_self) => proc_self.uid() == 0,
        Err(_) => id(&["-u"])? == 0,
    };
    if !root {
        return Ok(None);
    }
    let not_found = |error| {
        format!("running as root needs a `{SYSTEM_USER}` system user to own the cluster: {error}")
    };
    let uid = id(&["-u", SYSTEM_USER]).map_err(not_found)?;
    let gid = id(&["-g", SYSTEM_USER]).map_err(not_found)?;
    Ok(Some((uid, gid)))
}

fn id(args: &[&str]) -> Result<u32, String> {
    let output = Command::new("id")
        .args(args)
        .output()
        .map_err(|error| format!("running id: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse() {
        Ok(id) if output.status.success() => Ok(id),
        _ => Err(format!(
            "`id {}` said {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}

/// The directory holding `initdb` and `postgres` of one version: the one `initdb` on `PATH`
/// comes from, else the newest under `/usr/lib/postgresql/*/bin` (Debian and Ubuntu, which keep
/// the server binaries off `PATH`).
pub fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(initdb) = on_path("initdb") {
        // A link on PATH (/usr/local/bin/initdb) points into the versioned directory, where the
        // matching postgres is.
        let real = initdb
            .canonicalize()
            .ok()
            .and_then(|real| real.parent().map(Path::to_owned));
        let beside_link = initdb.parent().map(Path::to_owned);
        if let Some(dir) = real
            .into_iter()
            .chain(beside_link)
            .find(|dir| complete(dir))
        {
            return Some(dir);
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// The first file called `name` in a directory on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A database for the demo or the benchmark: a new database named `{prefix}_{pid}` on the
/// server `DATABASE_URL` names, else on a throwaway cluster started here. Migrated.
pub struct Scratch {
    pub url: String,
    pub pool: sqlx::PgPool,
    /// The server's maintenance URL and the database name, to drop it at the end (only when
    /// it lives on a server we did not start).
    pub server_url: String,
    pub name: String,
    pub cluster: Option<Cluster>,
}

impl Scratch {
    pub async fn create(prefix: &str) -> anyhow::Result<Scratch> {
        use anyhow::Context;
        let (server_url, cluster) = match std::env::var("DATABASE_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let cluster = tokio::task::spawn_blocking(start)
                    .await?
                    .context("no PostgreSQL: set DATABASE_URL or install the PostgreSQL server binaries (initdb, postgres)")?
                    .map_err(anyhow::Error::msg)?;
                (cluster.url.clone(), Some(cluster))
            }
        };
        let name = format!("{prefix}_{}", std::process::id());
        let url = create_database(&server_url, &name)
            .await
            .context("cannot create the database (DATABASE_URL)")?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(40)
            .connect(&url)
            .await?;
        ticketing_tracker::MIGRATOR.run(&pool).await?;
        Ok(Scratch {
            url,
            pool,
            server_url,
            name,
            cluster,
        })
    }

    /// Drops the database when it lives on a server we did not start (a throwaway cluster
    /// goes away with this process anyway).
    pub async fn drop_database(self) {
        self.pool.close().await;
        if self.cluster.is_none() {
            drop_database(&self.server_url, &self.name).await;
        }
    }
}

/// Creates the database `name` on the server at `server_url`, dropping one of that name first
/// (a run killed before its end leaves it behind), and returns its URL.
pub async fn create_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = sqlx::PgPool::connect(server_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(with_database(server_url, name))
}

/// Drops the database `name` on the server at `server_url`, best effort (at the end of a run).
pub async fn drop_database(server_url: &str, name: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(server_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

/// `url` with its password shown as `***`, for printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// `url` with its database replaced by `name` (keeping any `?query`).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
