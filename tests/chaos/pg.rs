//! PostgreSQL "restarts": every session of the run's database cut at once (the default, safe
//! on a shared server), or a real restart of the server when the caller allows it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// How this run restarts PostgreSQL.
#[derive(Debug, Clone)]
pub enum Restarter {
    /// `pg_terminate_backend` on every other session of the run's database: each worker loses
    /// its connections mid-statement, as in a restart, but the server (and anybody else's
    /// databases on it) stays up.
    TerminateBackends,
    /// The caller's command (`--pg-restart-cmd`), run with `sh -c`.
    Command(String),
    /// `pg_ctlcluster VERSION NAME restart` of the machine's cluster (CHAOS_PG_RESTART=1).
    Cluster { version: String, name: String },
}

impl Restarter {
    /// Picks the way, and says why. A real restart disturbs everybody on the server, so it
    /// happens only when asked for: an explicit command, or CHAOS_PG_RESTART=1 with the server
    /// being this machine's `pg_ctlcluster` cluster.
    pub fn choose(cmd: Option<&str>, server_url: &str, throwaway: bool) -> (Restarter, String) {
        if let Some(cmd) = cmd {
            return (
                Restarter::Command(cmd.to_owned()),
                format!("real restarts with `{cmd}`"),
            );
        }
        let allowed = std::env::var("CHAOS_PG_RESTART").is_ok_and(|v| v == "1");
        if !allowed {
            return (
                Restarter::TerminateBackends,
                "backends terminated (a real restart needs --pg-restart-cmd or CHAOS_PG_RESTART=1)"
                    .into(),
            );
        }
        if throwaway {
            return (
                Restarter::TerminateBackends,
                "backends terminated (the throwaway cluster belongs to its watchdog)".into(),
            );
        }
        match machine_cluster(server_url) {
            Some((version, name)) => {
                let why = format!("real restarts with pg_ctlcluster {version} {name}");
                (Restarter::Cluster { version, name }, why)
            }
            None => (
                Restarter::TerminateBackends,
                "backends terminated (DATABASE_URL is not a local pg_ctlcluster cluster)".into(),
            ),
        }
    }

    /// One restart; returns what happened, for the progress lines. A command's output goes to
    /// `log` (appended).
    pub async fn restart(&self, db_url: &str, log: &Path) -> Result<String, String> {
        match self {
            Restarter::TerminateBackends => {
                let mut conn = PgConnection::connect(db_url)
                    .await
                    .map_err(|e| format!("connecting to terminate backends: {e}"))?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                     FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .fetch_one(&mut conn)
                .await
                .map_err(|e| format!("terminating backends: {e}"))?;
                let _ = conn.close().await;
                Ok(format!("{n} backends terminated"))
            }
            Restarter::Command(cmd) => {
                let started = Instant::now();
                run("sh", &["-c", cmd], log).await?;
                wait_ready(db_url, started).await
            }
            Restarter::Cluster { version, name } => {
                let started = Instant::now();
                run(
                    "pg_ctlcluster",
                    &["--mode", "fast", version, name, "restart"],
                    log,
                )
                .await?;
                wait_ready(db_url, started).await
            }
        }
    }
}

/// Runs a restart command to its end (a minute at most). Its output goes to a file, never to a
/// pipe: a server started by it (`pg_ctl restart` without `-l`) keeps writing there and would
/// hold a pipe open forever.
async fn run(program: &str, args: &[&str], log: &Path) -> Result<(), String> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .kill_on_drop(true)
        // Out of our process group: a Ctrl-C on the run must not hit a restart half done.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "{program} {}: {status} (output in {})",
            args.join(" "),
            log.display()
        )),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => Err(format!(
            "{program} {} did not finish within a minute (output in {})",
            args.join(" "),
            log.display()
        )),
    }
}

/// Waits (up to a minute) until the server takes connections again; says how long it was
/// gone, counted from `started`.
async fn wait_ready(db_url: &str, started: Instant) -> Result<String, String> {
    loop {
        match PgConnection::connect(db_url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(format!(
                    "server restarted, back after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                return Err(format!("server not back after a minute: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `(version, name)` of the online `pg_lsclusters` cluster that `url` points at, when `url` is
/// a local address (or a socket) and the machine has `pg_ctlcluster`.
fn machine_cluster(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        // [::1]:5432
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').unwrap_or("")),
            None => (v6, ""),
        },
        None => hostport.split_once(':').unwrap_or((hostport, "")),
    };
    let port = if port.is_empty() { "5432" } else { port };
    let local = matches!(host, "" | "localhost" | "127.0.0.1" | "::1");
    if !local {
        return None;
    }
    let out = std::process::Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 4 && f[2] == port && f[3].starts_with("online"))
                .then(|| (f[0].to_owned(), f[1].to_owned()))
        })
}
