//! A binary of the workspace run as a user runs it: a clean environment, its exit code and
//! both streams.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertions that a thing appears (or not) anywhere.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code of the command: {self:#?}");
        self
    }

    /// `--help`'s output lists each of `commands` (a line that starts with its name).
    #[track_caller]
    pub fn assert_lists_commands(&self, commands: &[&str]) -> &Self {
        for command in commands {
            assert!(
                self.stdout
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(command)),
                "--help does not list {command}: {self:#?}"
            );
        }
        self
    }
}

/// The binary `exe` (a test's `env!("CARGO_BIN_EXE_…")`) with a clean environment: no `APP_*`
/// variable of the developer's shell, no `RUST_LOG`, quiet logs, run from a directory holding
/// no `config/`, and `DATABASE_URL` only when given.
pub fn clean_command(exe: &str, database_url: Option<&str>) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("APP_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env("APP_LOG__LEVEL", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

/// Runs `cmd` to its end, feeding `stdin` when given.
pub async fn finish(mut cmd: Command, stdin: Option<&str>) -> Run {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("the binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the command ends within 30 s")
        .unwrap();
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
