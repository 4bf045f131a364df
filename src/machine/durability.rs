//! Whether an intent (or evidence) committed on a server is durable where a failover would find
//! it (rule P1b), decided without SQL: the durability gate (`worker::durable`) reads the
//! server and asks here, and so does the model check (`tests/model`).

/// The durability intents need, as the gate settled it for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Flushed on the server the worker writes to: the commit's own flush is the durability
    /// (every claim and write pins `synchronous_commit` on), nothing is read.
    Local,
    /// Flushed by the configured number of physical standbys a failover could promote.
    Replicated,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Local => "local",
            Level::Replicated => "replicated",
        }
    }
}

/// What one reading of the server says about a commit made on `committed_on`.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// The server the reading was answered by (system identifier and timeline).
    pub server: &'a str,
    /// Promotable standbys whose flush position is past the commit.
    pub flushed: i64,
}

/// The verdict for a commit made on `committed_on`, at `level`, needing `need` standbys.
/// `None` for `Replicated` means "not yet": read again until the wait is over. A reading from
/// another server (a failover or a switch since the commit) confirms nothing.
pub fn verdict(
    level: Level,
    committed_on: &str,
    reading: Option<&Reading<'_>>,
    need: i64,
) -> Option<Result<(), String>> {
    match (level, reading) {
        (Level::Local, _) => Some(Ok(())),
        (Level::Replicated, None) => None,
        (Level::Replicated, Some(r)) if r.server != committed_on => Some(Err(format!(
            "committed on {committed_on}, but the database answering now is {}: a failover or a switch since; what its standbys have says nothing of the commit",
            r.server
        ))),
        (Level::Replicated, Some(r)) if r.flushed >= need => Some(Ok(())),
        (Level::Replicated, Some(_)) => None,
    }
}
