//! Shared by the test programs that own worker processes (the chaos run, the rolling upgrade),
//! both `harness = false` programs and, for `cargo test`, tests of tests/api
//! (`adversarial_runs.rs`): the libtest side of their command line (what a `cargo test` runner
//! passes, tolerated; `--list` and filters answered for their one test), the runtime they run
//! on (until a signal ends the run early, for the programs), their progress and result lines
//! and their log directory.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// libtest flags that take a value as the next argument (so that value is not a filter).
const WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--format",
    "--color",
    "--logfile",
    "--shuffle-seed",
    "-Z",
];

/// What a libtest-style runner asked of the program.
#[derive(Debug, Clone, Default)]
pub struct Libtest {
    /// `--list`: print the one "test" this is (or none with `--ignored`), run nothing.
    pub list: bool,
    /// `--ignored` (run only ignored tests): this run is not one, so it does nothing.
    pub ignored: bool,
    /// Filters (positional arguments) and `--exact`.
    pub filters: Vec<String>,
    pub exact: bool,
}

impl Libtest {
    /// Takes an argument that is not one of the program's own flags (`flag` is the part before
    /// any `=value`): `--list`, `--ignored`, `--exact`, a filter, or any other flag, tolerated
    /// (`--nocapture`, `--quiet`, `--include-ignored`, ...). True when `flag` takes a value as
    /// the next argument.
    pub fn take(&mut self, flag: &str) -> bool {
        match flag {
            "--list" => self.list = true,
            "--ignored" => self.ignored = true,
            "--exact" => self.exact = true,
            f if WITH_VALUE.contains(&f) => return true,
            f if f.starts_with('-') => {}
            filter => self.filters.push(filter.to_owned()),
        }
        false
    }

    /// Whether to run the program's one test, `name`. Answers `--list` (`NAME: test`, nothing
    /// with `--ignored`) and says when the filters leave it out, so that `cargo test
    /// some_api_test` does not spend minutes here.
    // The programs only: as tests of the `api` binary, its harness does this.
    #[allow(dead_code)]
    pub fn wants_run(&self, name: &str) -> bool {
        if self.list {
            if !self.ignored {
                println!("{name}: test");
            }
            return false;
        }
        let selected = !self.ignored
            && (self.filters.is_empty()
                || self.filters.iter().any(|f| {
                    if self.exact {
                        f == name
                    } else {
                        name.contains(f.as_str())
                    }
                }));
        if !selected {
            println!("{name}: skipped (not selected by the test filters)");
        }
        selected
    }
}

/// The parsed command line, or `NAME: why` and exit status 2.
pub fn parsed<T>(name: &str, args: Result<T, String>) -> T {
    args.unwrap_or_else(|e| {
        eprintln!("{name}: {e}");
        std::process::exit(2);
    })
}

/// Runs `run` on a multi-threaded runtime and returns its exit status, or 130 when Ctrl-C or
/// SIGTERM comes first (`NAME: interrupted; stopping the workers`). `run` owns every worker
/// process; when it ends (returns, panics, or is dropped here on a signal) they are killed.
// Each program uses one of the two ways to run.
#[allow(dead_code)]
pub fn run_until_signal(name: &str, run: impl Future<Output = i32>) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(async {
        tokio::select! {
            code = run => code,
            signal = stop_signal() => {
                eprintln!("{name}: {signal}; stopping the workers");
                130
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// Runs `run` on a multi-threaded runtime of its own and returns its exit status: the run as a
/// test of the `api` binary (tests/api/adversarial_runs.rs), where Ctrl-C is the test harness's to
/// handle.
// Each program uses one of the two ways to run.
#[allow(dead_code)]
pub fn run_to_the_end(run: impl Future<Output = i32>) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run);
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The run's result line (`NAME: figures…`, `NAME: FAILED: …`, `NAME: skipped …`), written
/// to standard output past a test harness's capture, so that `cargo test` shows it also when
/// the run is a test of the `api` binary (and CI counts it).
pub fn result_line(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Waits for Ctrl-C or SIGTERM and says which.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// A progress line: the seconds since the program started, then `msg`.
pub fn say(started: Instant, msg: impl AsRef<str>) {
    println!(
        "[{:6.1}s] {}",
        started.elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

/// A new directory for the run's worker logs: `PREFIX-YYYYmmdd-HHMMSS-PID` in the target's
/// tmp directory.
pub fn run_dir(prefix: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{prefix}-{}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
