//! The worker processes of the rollout: the previous release's binary and this tree's, each
//! `run` with its own environment, its JSON log in a file, stopped with SIGTERM the way a
//! rolling update stops a pod, and killed whenever this program ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::workers;

/// Which release a worker process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Old,
    New,
}

impl Release {
    pub fn name(self) -> &'static str {
        match self {
            Release::Old => "old",
            Release::New => "new",
        }
    }
}

pub struct Worker {
    pub release: Release,
    /// `old-w0-PID`: the id the worker writes into `lease_owner`, the events and the
    /// `x-ticketing-worker` header (the binary derives it from HOSTNAME and its pid).
    pub id: String,
    pub log: PathBuf,
    child: Option<Child>,
    /// How it ended, once it did.
    pub exit: Option<ExitStatus>,
    /// When SIGTERM was sent, and how long the process took to exit after it.
    pub term_sent: Option<Instant>,
    pub exited_after: Option<Duration>,
}

impl Worker {
    /// Starts `exe run` with exactly `env` (plus PATH and HOSTNAME), in `dir`, under the watcher
    /// shell that kills it if this program disappears without cleaning up (`Drop` covers every
    /// other way out).
    pub fn start(
        release: Release,
        index: usize,
        exe: &Path,
        env: &[(String, String)],
        dir: &Path,
    ) -> Result<Worker, String> {
        let host = format!("{}-w{index}", release.name());
        let log = dir.join(format!("{host}.log"));
        let child = workers::command("upgrade-worker", exe, env, &host, dir, &log)?
            .spawn()
            .map_err(|e| format!("starting {} ({}): {e}", host, exe.display()))?;
        Ok(Worker {
            release,
            id: format!("{host}-{}", child.id()),
            log,
            child: Some(child),
            exit: None,
            term_sent: None,
            exited_after: None,
        })
    }

    /// Whether the process is still running (reaps it if not).
    pub fn running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exit = Some(status);
                if let Some(sent) = self.term_sent {
                    self.exited_after = Some(sent.elapsed());
                }
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// SIGTERM, as Kubernetes stops a pod.
    pub fn terminate(&mut self) -> Result<(), String> {
        let pid = self
            .child
            .as_ref()
            .ok_or_else(|| format!("{} is not running", self.id))?
            .id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed: {status}"));
        }
        self.term_sent = Some(Instant::now());
        Ok(())
    }

    /// Waits up to `bound` for the process to end; false if it did not.
    pub async fn wait_exit(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if !self.running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        !self.running()
    }

    /// SIGKILL and reap (the end of the run, or a worker that ignored SIGTERM).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit = Some(status);
            }
        }
    }

    /// The log's JSON lines (anything else, a panic message say, as `{"raw": line}`).
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap_or_else(|_| serde_json::json!({ "raw": l }))
            })
            .collect()
    }

    /// Whether a log line's message is `message`.
    pub fn logged(&self, message: &str) -> bool {
        self.log_lines()
            .iter()
            .any(|l| l["fields"]["message"].as_str() == Some(message))
    }

    /// The address its HTTP endpoints listen on, from its start line.
    pub fn http_addr(&self) -> Option<String> {
        self.log_lines().iter().find_map(|l| {
            (l["fields"]["message"].as_str() == Some("HTTP endpoints listening"))
                .then(|| l["fields"]["addr"].as_str().map(str::to_owned))
                .flatten()
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until every worker logged `message` (its start line), or one exited, or `bound`
/// passed. Returns the workers that did not log it, with what became of them.
pub async fn wait_started(workers: &mut [Worker], message: &str, bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    loop {
        let mut missing = Vec::new();
        for w in workers.iter_mut() {
            if !w.logged(message) {
                if !w.running() {
                    missing.push(format!(
                        "{} exited before starting ({}); log {}",
                        w.id,
                        w.exit.map_or("?".into(), |s| s.to_string()),
                        w.log.display()
                    ));
                } else if Instant::now() >= deadline {
                    missing.push(format!(
                        "{} did not log {message:?} within {} s; log {}",
                        w.id,
                        bound.as_secs(),
                        w.log.display()
                    ));
                } else {
                    missing.push(String::new());
                }
            }
        }
        if missing.iter().all(|m| !m.is_empty()) || missing.is_empty() {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
