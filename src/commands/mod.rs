//! The commands, one file each: what `ticketing-tracker SUBCOMMAND` does, from parsed
//! arguments (`crate::cli`) to printed output and an exit code. Everything they share is
//! below them: the pool, migrations and the worker's wiring in `crate::startup`, the SQL in
//! `crate::jobs`, the operator rules in `crate::machine::operator`.

use std::process::ExitCode;

use crate::cli::Command;
use crate::config::Settings;
use crate::jobs::{JobStore, Replicated};
use crate::sealed::CardKeys;

mod cancel;
mod console_hash;
mod console_user;
mod enqueue;
mod keygen;
pub mod list;
mod migrate;
mod pause_resume;
mod retry;
mod run;
pub mod status;

/// What a binary does before its runtime's threads exist: one malloc arena (so that none of
/// them starts an arena of its own) and, for the commands that print reports (`command`), the
/// default SIGPIPE.
pub fn before_runtime(command: Option<&Command>) {
    limit_malloc_arenas();
    // A report piped into `head` ends like any Unix tool's (the pipe's reader is gone), not
    // with a panic on the next line printed. Only for the commands that print reports: the
    // worker's own sockets keep the runtime's "ignore SIGPIPE".
    if matches!(
        command,
        Some(Command::List(_) | Command::Status(_) | Command::Reconcile(_))
    ) {
        #[cfg(unix)]
        // SAFETY: resetting a signal's disposition before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

/// The runtime every command runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// glibc gives each thread that allocates concurrently an arena of its own, and memory freed in
/// one is not reused by another: with thousands of orders in flight that shows as RSS the
/// process does not use. One arena serves this workload: with 2,000 orders in flight the bench
/// measured 85-90 MiB instead of 98-104 MiB, with no loss of throughput.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Runs a subcommand; 0 ok, 1 error (printed with its cause chain). Usage errors (2) are
/// clap's.
pub async fn main(command: Command) -> ExitCode {
    let result = match command {
        Command::Keygen(args) => keygen::command(&args),
        Command::ConsoleHash(args) => console_hash::command(args.iterations),
        other => match Settings::load() {
            Ok(settings) => {
                crate::telemetry::init(&settings.log);
                dispatch(other, settings).await
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", say_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause whose text the message already holds
/// (libraries often repeat their source in their own message) is left out; a missing table
/// gets the command that creates it.
pub fn say_once(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    if said.contains("relation \"ticketing_jobs\" does not exist")
        || said.contains("relation \"ticketing_events\" does not exist")
    {
        said.push_str(" (the database has no job table yet: run `ticketing-tracker migrate`)");
    }
    said
}

/// The commands that need the settings: the worker, migrations and the operators' commands.
async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    let by = format!("cli:{}", whoami());
    // With the worker's key at hand, card data is sealed before it is written: a production
    // database refuses plain cards (docs/design.md, P9a). Without it, the card is refused here,
    // before any connection: sent in clear, it would be refused by the database only after a
    // server that logs statements (log_statement = all) had written it down.
    let keys = settings.card.key()?;
    let sealing = Sealing {
        keys: keys.as_ref(),
        required: settings.production && !settings.card.allow_plain,
    };
    let connect =
        || async { anyhow::Ok(JobStore::new(crate::startup::connect(&settings).await?.db)) };
    match command {
        Command::Run => run::command(settings).await,
        Command::Migrate => migrate::command(&settings).await,
        Command::Enqueue(a) => {
            let job = enqueue::new_job(&a, sealing)?;
            enqueue::enqueue(&connect().await?, &job, a.json).await
        }
        Command::Status(a) => status::status(&connect().await?, a).await,
        Command::List(a) => list::list(&connect().await?, a).await,
        Command::Retry(a) => {
            let card = retry::fresh_card(&a, sealing)?;
            retry::retry(&connect().await?, a, &by, card).await
        }
        Command::Cancel(a) => cancel::cancel(&connect().await?, a, &by).await,
        Command::Pause(a) => pause_resume::pause(a, &by, connect).await,
        Command::Resume(a) => pause_resume::resume(a, &by, connect).await,
        Command::Reconcile(a) => {
            let atrip = crate::atrip::Client::new(&settings.atrip)?;
            crate::reconcile::command(a, &connect().await?, &atrip, &settings.reconcile, &by).await
        }
        Command::ConsoleUser(c) => console_user::command(c, &connect().await?).await,
        other => anyhow::bail!("{other:?} needs no settings and is not run here"),
    }
}

/// How the CLI writes card data: sealed to the current key when there is one; without one,
/// in clear only where plain cards are allowed (not production, or `card.allow_plain`).
#[derive(Clone, Copy)]
struct Sealing<'a> {
    keys: Option<&'a CardKeys>,
    required: bool,
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

/// Says on stderr when an operator's change (`what`: "cancel of order X", "pause") is
/// committed on a primary but no standby has it within a few seconds: a failover then would
/// undo it (a cancelled order could be paid). `check` is the command that shows it afterwards.
async fn warn_unless_replicated(store: &JobStore, what: &str, check: &str) {
    match store
        .operator_change_replicated(std::time::Duration::from_secs(5))
        .await
    {
        Ok(Replicated::NoStandby | Replicated::Yes) => {}
        Ok(Replicated::Hidden) => eprintln!(
            "warning: whether the {what} reached a standby cannot be told: the standbys' positions are hidden from this role (GRANT pg_monitor); a failover before it does would undo it"
        ),
        Ok(Replicated::NotYet) => eprintln!(
            "warning: the {what} is committed on the primary, but no standby had it within 5 s: a failover now would undo it. Check with {check} after any failover."
        ),
        Err(e) => eprintln!(
            "warning: whether the {what} reached a standby could not be read ({e}); check with {check} after any failover"
        ),
    }
}
