//! The command line: what each subcommand is for, in words a newcomer understands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Pays ATRIP airline orders exactly once and follows each until its PNR and ticket numbers
/// are final. Orders are enqueued by inserting rows into the Postgres table `ticketing_jobs`.
///
/// Settings come from config/default.toml (built in), config/$APP_ENVIRONMENT.toml and
/// APP_<SECTION>__<KEY> environment variables; DATABASE_URL is honoured too.
#[derive(Debug, Parser)]
#[command(name = "ticketing-tracker", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker (and its HTTP endpoints) until SIGTERM or Ctrl-C.
    Run,
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Enqueue one order (card data from a file or stdin, never from the command line).
    Enqueue(EnqueueArgs),
    /// Show one order's row and its event timeline.
    Status(StatusArgs),
    /// List orders, newest first.
    List(ListArgs),
    /// Put a failed or needs_review order back to work. It always starts with an order query:
    /// an order ATRIP once showed paid is followed again and never paid twice; otherwise it is
    /// paid again only if no pay.do may have reached ATRIP, if ATRIP's answer said nothing was
    /// charged, or with --repay.
    Retry(RetryArgs),
    /// Cancel an order no pay.do was ever sent for.
    Cancel(CancelArgs),
    /// Pause paying, for every payment method or one (--method), on every worker at once: no
    /// pay.do leaves for an order of a paused method until `resume`. Paid orders are still
    /// followed, webhooks recorded, retries accepted (they wait); an order whose payment
    /// deadline passes meanwhile fails, nothing sent. Refused if that method is paused already.
    Pause(PauseArgs),
    /// End a pause of paying (every method, or the one --method names): the workers pay the
    /// waiting orders at once, earliest deadline first. Refused if that method is not paused.
    Resume(ResumeArgs),
    /// Compare the job table with ATRIP's order list (orderList.do) for the orders ATRIP
    /// created in a window, and report: orders paid at ATRIP the table lacks or holds unpaid,
    /// ticketed rows ATRIP shows cancelled. Rows waiting in paying or needs_review that ATRIP
    /// shows paid get that evidence recorded and are followed again. Never sends a pay.do.
    /// `--last` prints the last run (the daily one or one asked for).
    Reconcile(ReconcileArgs),
    /// Write a key pair for sealed card data: card_key.secret (the worker's, mode 0600) and
    /// card_key.pub (for enqueuers, who seal cards to it). For a rotation, the workers take the
    /// new secret as card.secret_key and the old one as card.previous_secret_key.
    Keygen(KeygenArgs),
    /// Read a password from stdin and print its hash for the operator console
    /// (console.viewer_password_hash or console.operator_password_hash). The password is never
    /// an argument, where any user of the machine could read it in the process list.
    ConsoleHash(ConsoleHashArgs),
    /// Named operator-console accounts, kept in the database: `add`, `disable`, `reset` (a new
    /// password; ends a lock), `list`. Passwords are read from stdin (not echoed on a
    /// terminal), never an argument.
    #[command(subcommand)]
    ConsoleUser(ConsoleUserCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConsoleUserCommand {
    /// Add an account; its password is read from stdin (at least 12 characters).
    Add {
        /// 1 to 40 letters, digits, dots, dashes, underscores or @; recorded with every action.
        name: String,
        /// What the account may do: read (viewer) or also act (operator).
        #[arg(long, value_enum)]
        role: ConsoleRoleArg,
        /// PBKDF2 iterations of its hash.
        #[arg(long, default_value_t = crate::console::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Disable an account: it logs in no more (sessions already open end by their own limits).
    Disable { name: String },
    /// Give an account a new password (read from stdin), clearing its wrong-password count
    /// and any lock.
    Reset {
        name: String,
        #[arg(long, default_value_t = crate::console::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// List the accounts: role, disabled, wrong passwords in a row, locked until, last login.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ConsoleRoleArg {
    Viewer,
    Operator,
}

#[derive(Debug, Args)]
pub struct ConsoleHashArgs {
    /// PBKDF2 iterations: more makes a leaked hash slower to guess, and every login slower.
    #[arg(long, default_value_t = crate::console::DEFAULT_ITERATIONS)]
    pub iterations: u32,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write the two files into (they must not exist yet).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// A price as the table keeps it: digits, at most 12 before the point and 2 after, above 0.
pub fn parse_price(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (whole, cents) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (1..=12).contains(&whole.len())
        && digits(whole)
        && cents.len() <= 2
        && digits(cents)
        && !(s.split_once('.').is_some() && cents.is_empty())
        && s.bytes().any(|b| (b'1'..=b'9').contains(&b))
    {
        Ok(s.to_owned())
    } else {
        Err("a price is a number above 0 with at most 12 digits before the point and 2 after (e.g. 114.99)".into())
    }
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// ATRIP order number.
    #[arg(long, required_unless_present = "from_json")]
    pub order_no: Option<String>,
    /// Payment method: 1 deposit, 3 VCC, 4 BYOA, 5 MoR.
    #[arg(long, required_unless_present = "from_json")]
    pub method: Option<i16>,
    /// File holding the card JSON (ATRIP's creditCard object); "-" reads stdin.
    #[arg(long)]
    pub card_file: Option<PathBuf>,
    /// Payment deadline (RFC 3339).
    #[arg(long)]
    pub pay_deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// The agency's own reference (sent to ATRIP as clientOrderNo).
    #[arg(long)]
    pub client_order_no: Option<String>,
    /// How many passengers the order holds: an answer must list a ticket for each before the
    /// order counts as ticketed (without it, the first answer listing passengers says).
    #[arg(long, value_parser = clap::value_parser!(i16).range(1..=32))]
    pub passengers: Option<i16>,
    /// What the order costs from the deposit (e.g. 114.99), for the balance pre-check
    /// (worker.balance_precheck_s).
    #[arg(long, value_parser = parse_price)]
    pub price: Option<String>,
    /// A JSON file with the whole row: {"order_no", "payment_method", "card", ...}; "-" reads stdin.
    #[arg(long, conflicts_with_all = ["order_no", "method"])]
    pub from_json: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub order_no: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this state.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        ["pending", "paying", "ticketing", "ticketed", "failed", "needs_review", "cancelled"]))]
    pub state: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub order_no: String,
    /// Allow one more pay.do after an unclear one: say this only after checking in ATRIP that
    /// the order is unpaid. The worker still queries first and pays only if ATRIP shows the
    /// order unpaid; refused when an answer ever showed the order paid.
    #[arg(long)]
    pub repay: bool,
    /// Fresh card JSON for a card order that will pay again (its card was erased when the
    /// payment resolved); "-" reads stdin.
    #[arg(long)]
    pub card_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub order_no: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The window's start: orders ATRIP created from then (RFC 3339, or a UTC day
    /// YYYY-MM-DD).
    #[arg(long, value_parser = parse_time, required_unless_present = "last")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The window's end, excluded (default: now; a time to come is cut to now).
    #[arg(long, value_parser = parse_time, conflicts_with = "last")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Print the last run instead of running one.
    #[arg(long, conflicts_with = "since")]
    pub last: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// An RFC 3339 time, or a UTC day (its midnight).
fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = s.parse::<chrono::DateTime<chrono::Utc>>() {
        return Ok(t);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is neither an RFC 3339 time nor a day YYYY-MM-DD"))
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Pause this payment method only: 1 deposit, 3 VCC, 4 BYOA, 5 MoR. Without it, every
    /// method.
    #[arg(long, allow_negative_numbers = true)]
    pub method: Option<i64>,
    /// Why paying is paused: shown by status, list, the console and the workers' start line.
    #[arg(long)]
    pub reason: String,
    /// Who pauses, recorded as cli:NAME (default: cli: and your login name, as retry and
    /// cancel record it).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Resume the pause of this payment method (1, 3, 4, 5). Without it, the pause of every
    /// method; a pause of one method is ended only by its own resume.
    #[arg(long, allow_negative_numbers = true)]
    pub method: Option<i64>,
    /// Who resumes, recorded as cli:NAME (default: cli: and your login name).
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
