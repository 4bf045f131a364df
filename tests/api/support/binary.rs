//! The real `ticketing-tracker run`, as a child process of a test, pointed at the test's
//! database and simulator, with its log in a file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::app::TestApp;

/// A running worker process. Killed if dropped; [`WorkerProcess::stop`] stops it cleanly.
pub struct WorkerProcess {
    child: tokio::process::Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts `run` with fast polls plus `env` (which may override them).
    pub fn start(app: &TestApp, env: &[(&str, String)]) -> WorkerProcess {
        Self::start_at(&app.db.url(), &app.sim.base_url(), env)
    }

    /// [`WorkerProcess::start`] on any database and ATRIP.
    pub fn start_at(db_url: &str, atrip_url: &str, env: &[(&str, String)]) -> WorkerProcess {
        let log = std::env::temp_dir().join(format!(
            "tt-worker-{}-{}.log",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketing-tracker"))
            .arg("run")
            .env("DATABASE_URL", db_url)
            .env("APP_ATRIP__BASE_URL", atrip_url)
            .env("APP_HTTP__PORT", "0")
            .env("APP_HTTP__HOST", "127.0.0.1")
            .env("APP_WORKER__FIRST_POLL_MS", "100")
            .env("APP_WORKER__POLL_INITIAL_MS", "100")
            .env("APP_WORKER__CLAIM_INTERVAL_MS", "100")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            // A file, not a pipe: nobody reads a pipe until the end, and a full pipe would
            // block the worker's logging (and with it the worker).
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        WorkerProcess { child, log }
    }

    /// Waits (bounded: a loaded machine, not a timing claim) until no row is unfinished;
    /// false when the bound passed or the process exited first.
    pub async fn wait_until_done(&mut self, app: &TestApp, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if app.store.unfinished().await.unwrap() == 0 {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// `http://ADDR` of the process's HTTP endpoints, from its "HTTP endpoints listening" log
    /// line (it binds port 0 unless told otherwise). Waits for the line (bounded).
    pub async fn http_base(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = listening_addr(&log) {
                return format!("http://{addr}");
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the worker exited before listening:\n{log}"
            );
            assert!(Instant::now() < deadline, "no listening line in:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the log has a line containing `needle`, and returns that line;
    /// `Err` with the whole log when the process exited first or the bound passed.
    pub async fn wait_log(&mut self, needle: &str, bound: Duration) -> Result<String, String> {
        let deadline = Instant::now() + bound;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if self.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                return Err(log);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) for the process to exit by itself: its exit code and its log.
    pub async fn wait_exit(&mut self, bound: Duration) -> (Option<i32>, String) {
        let status = tokio::time::timeout(bound, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the worker still runs after {bound:?}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
            .unwrap();
        (
            status.code(),
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the worker is running")
    }

    /// Whether the process is stopped (SIGSTOP): state `T` in `/proc/PID/stat`.
    pub fn is_stopped(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    }

    /// Sends `signal` (a `kill` name: STOP, CONT, KILL...).
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
    }

    /// SIGTERM (a clean stop, so the log is complete), then the whole log.
    pub async fn stop(mut self) -> String {
        if let (None, Some(pid)) = (self.child.try_wait().unwrap(), self.child.id()) {
            std::process::Command::new("kill")
                .arg(pid.to_string())
                .status()
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the worker stops on SIGTERM")
            .unwrap();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The `addr` field of the listening line, in either log format (pretty, with or without
/// colours, or JSON).
fn listening_addr(log: &str) -> Option<String> {
    addr_in_line(log, "HTTP endpoints listening")
}

/// The `addr` field of the first log line that contains `needle`.
pub fn addr_in_line(log: &str, needle: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(needle))?;
    // Drop ANSI colour sequences (ESC [ ... m).
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = plain
        .split_once("\"addr\":\"")
        .or_else(|| plain.split_once("addr="))?
        .1;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}
