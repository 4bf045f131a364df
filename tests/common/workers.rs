//! Shared by the test programs that own worker processes (the chaos run, the rolling upgrade):
//! how a worker process is started, and the configuration both give it.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the worker under a shell that first leaves behind a watcher and then `exec`s the
/// binary, so the worker keeps the shell's pid (the one we signal, and the one in its worker
/// id). The watcher kills the worker if this program disappears without cleaning up (SIGKILL,
/// OOM): the owners' `Drop` covers every other way out. It stops watching once the worker is
/// gone.
const WRAPPER: &str = r#"
owner=$1; shift
( while kill -0 "$owner" 2>/dev/null && kill -0 $$ 2>/dev/null; do sleep 1; done
  kill -0 "$owner" 2>/dev/null || kill -9 $$ 2>/dev/null ) </dev/null >/dev/null 2>&1 &
exec "$@"
"#;

/// `exe run` under [`WRAPPER`] (`tag` is the shell's `$0`), with exactly `env` plus PATH and
/// HOSTNAME (the binary derives its worker id from HOSTNAME and its pid), in `dir`, its stdout
/// and stderr to a new file `log`. The caller adds anything else and spawns it.
pub fn command(
    tag: &str,
    exe: &Path,
    env: &[(String, String)],
    host: &str,
    dir: &Path,
    log: &Path,
) -> Result<Command, String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg(tag)
        .arg(std::process::id().to_string())
        .arg(exe)
        .arg("run")
        // Only what we set: an APP_… variable of the caller's shell must not change the run.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOSTNAME", host)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    Ok(cmd)
}

/// The time bounds a program gives its workers.
pub struct Timeouts {
    pub lease: Duration,
    pub pay: Duration,
    pub query: Duration,
    /// On SIGTERM, in-flight steps get this long to record their results.
    pub shutdown_grace: Duration,
}

/// A duration as a `..._MS` value.
pub fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// The workers' configuration, every key as an `APP_SECTION__KEY` variable: what both
/// programs give every worker (the database and simulator, `t`, quick claims and polls), then
/// `own`, the keys that differ on purpose (the log format each program reads, and the keys
/// that only one program or one release has).
pub fn env(
    db_url: &str,
    sim_url: &str,
    t: &Timeouts,
    own: Vec<(&str, String)>,
) -> Vec<(String, String)> {
    let base = [
        ("APP_DATABASE__URL", db_url.to_owned()),
        ("APP_DATABASE__MAX_CONNECTIONS", "8".into()),
        // The database is migrated before the workers start (by this tree; the previous
        // release cannot migrate a newer schema).
        ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
        ("APP_ATRIP__BASE_URL", sim_url.to_owned()),
        ("APP_ATRIP__CLIENT_ID", "sim-client".into()),
        ("APP_ATRIP__CLIENT_SECRET", "sim-secret".into()),
        ("APP_ATRIP__PAY_TIMEOUT_MS", ms(t.pay)),
        ("APP_ATRIP__QUERY_TIMEOUT_MS", ms(t.query)),
        ("APP_ATRIP__CONNECT_TIMEOUT_MS", "1000".into()),
        ("APP_HTTP__HOST", "127.0.0.1".into()),
        ("APP_HTTP__PORT", "0".into()),
        ("APP_WORKER__LEASE_MS", ms(t.lease)),
        ("APP_WORKER__CLAIM_INTERVAL_MS", "200".into()),
        ("APP_WORKER__RECOVERY_DELAY_MS", "300".into()),
        ("APP_WORKER__FIRST_POLL_MS", "300".into()),
        ("APP_WORKER__POLL_INITIAL_MS", "300".into()),
        ("APP_WORKER__POLL_MULTIPLIER", "1.5".into()),
        ("APP_WORKER__POLL_MAX_MS", "2000".into()),
        ("APP_WORKER__SHUTDOWN_GRACE_MS", ms(t.shutdown_grace)),
        ("APP_LOG__LEVEL", "info".into()),
        ("NO_COLOR", "1".into()),
    ];
    base.into_iter()
        .chain(own)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}
