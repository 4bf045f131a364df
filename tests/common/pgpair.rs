//! A real PostgreSQL high-availability pair for fault tests: a primary and one streaming
//! standby (made with `pg_basebackup -R`), synchronous or asynchronous, from the local server
//! binaries, with the faults an HA setup has: the WAL stream stalled, the primary lost at once,
//! the standby promoted, a new standby built so that failovers repeat.
//!
//! Every node lives in one temporary directory, removed with every process in it when the
//! [`PgPair`] is dropped, and by a watchdog shell when the test process dies however it dies
//! (the idea of `ticketing_tracker_tools::localpg`). As root, the binaries run as the `postgres`
//! system user (initdb refuses root).
//!
//! Nodes are `node0` (the first primary), `node1` (its standby), then `node2`, `node3`, ... one
//! per standby built by [`PgPair::failover`]. A node's name is its `cluster_name`, which the
//! walreceiver uses as its `application_name` (so it is the name in `pg_stat_replication` and
//! in `synchronous_standby_names`) and which `ps` shows (`postgres: node1: walreceiver`); its
//! replication slot has the same name, and its log is `DIR/NAME.log`.
//!
//! Clients should reach the primary through a [`super::tcpproxy::TcpProxy`] switched at each
//! failover, the way applications reach a virtual IP: every node listens on a port of its own.
//!
//! All methods take the caller's tokio runtime (`#[tokio::test]`, the chaos program's) and open
//! their own connections per call: nothing here outlives the call that made it, so a pair may
//! be used from several runtimes in turn.

// Shared by the `api` tests and the chaos run, each of which uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::process::Command;

/// initdb, pg_basebackup, a start or a promotion, on a slow CI machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A condition polled for (a standby streaming, a setting in force, a node writable).
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection attempt to a node on this machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// initdb and postgres refuse to run as root; as root, the nodes belong to this system user.
const SYSTEM_USER: &str = "postgres";

/// The binaries beyond localpg's (`initdb`, `postgres`, `pg_isready`) that a pair needs.
const PAIR_BINARIES: [&str; 2] = ["pg_ctl", "pg_basebackup"];

/// Settings every node shares (appended to node0's postgresql.conf, which pg_basebackup copies).
/// - fsync off: speed; the machine does not crash, processes do, and the page cache survives
///   them. synchronous_commit stays at its default (on): a commit waits for the standby
///   exactly when `synchronous_standby_names` names it.
/// - No replication timeouts: a stalled stream stays stalled for as long as the caller says
///   (with the default 60 s, the sender would drop the stalled connection and a fresh,
///   unstalled one would stream again). A dead node's sockets are closed by the kernel, so
///   nothing waits for a timeout on this machine.
/// - A standby whose primary is gone retries every 200 ms, not 5 s.
const SETTINGS: &str = "
# ticketing-tracker PgPair
listen_addresses = '127.0.0.1'
unix_socket_directories = '{dir}'
max_connections = 300
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
fsync = off
wal_sender_timeout = 0
wal_receiver_timeout = 0
wal_retrieve_retry_interval = '200ms'
";

/// Waits until the owning process is gone (or the directory is: the pair was dropped), then
/// kills every process running in a node's data directory (all of a node's processes have
/// it as their working directory), removes their shared memory, and the directory. Killing
/// repeats until nothing has run there for two seconds: a node being started or a backup being
/// taken at the owner's death shows up late.
///
/// Arguments: the pair's directory and the owner's pid.
const WATCHDOG: &str = r#"
dir=$1 owner=$2
while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
[ -d "$dir" ] || exit 0
quiet=0
while [ "$quiet" -lt 4 ]; do
  found=
  for node in "$dir"/node*; do
    [ -d "$node" ] || continue
    killed=
    for proc in /proc/[0-9]*; do
      if [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$node" ]; then
        kill -KILL "${proc#/proc/}" 2>/dev/null && killed=1 found=1
      fi
    done
    if [ -n "$killed" ] && [ -f "$node/postmaster.pid" ]; then
      shmid=$(sed -n 7p "$node/postmaster.pid" | awk '{print $2}')
      [ -n "$shmid" ] && ipcrm -m "$shmid" 2>/dev/null
    fi
  done
  if [ -n "$found" ]; then quiet=0; else quiet=$((quiet + 1)); fi
  sleep 0.5
done
rm -rf "$dir"
"#;

/// Whether commits on the primary wait for the standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names` names the standby: a commit returns once the standby has
    /// flushed it (synchronous_commit = on).
    Synchronous,
    /// PostgreSQL's default: a commit returns once it is on the primary's disk.
    Asynchronous,
}

/// One node: a data directory and, while it runs, a postmaster on `port`.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    port: u16,
    data: PathBuf,
    log: PathBuf,
}

/// How to run the server binaries here.
struct Tools {
    bin_dir: PathBuf,
    /// The pair's directory (canonical: it is compared with processes' working directories).
    dir: PathBuf,
    /// `Some` when we are root: the user the binaries run as, through runuser.
    user: Option<String>,
}

/// A running primary and, between a promotion and the next standby, maybe no standby.
pub struct PgPair {
    tools: Tools,
    replication: Replication,
    primary: Node,
    /// Killed by `kill_primary`, not yet replaced by a promotion.
    primary_lost: bool,
    standby: Option<Node>,
    /// The walsender stopped by `stall_wal`.
    stalled: Option<i32>,
    /// The number in the next node's name.
    next_node: u32,
}

/// Whether this machine has what a pair needs: the local PostgreSQL server binaries
/// (pg_basebackup and pg_ctl among them) and, when we are root, a `postgres` system user.
pub fn available() -> Result<(), String> {
    bin_dir()?;
    owner()?;
    Ok(())
}

/// `postgres://postgres@ADDR/DATABASE`: a database at an address (a node's, or a proxy's).
pub fn url_at(addr: SocketAddr, database: &str) -> String {
    format!("postgres://postgres@{addr}/{database}")
}

impl PgPair {
    /// Starts a primary and a standby streaming from it, `replication` between them; returns
    /// once the standby streams (and, synchronous, counts as the synchronous standby).
    pub async fn start(replication: Replication) -> Result<PgPair, String> {
        Self::start_with(replication, true).await
    }

    /// A primary alone, no standby (a single server, as most deployments have): for faults
    /// of one server, such as a crash, and for reading its WAL files.
    pub async fn start_alone() -> Result<PgPair, String> {
        Self::start_with(Replication::Asynchronous, false).await
    }

    async fn start_with(replication: Replication, standby: bool) -> Result<PgPair, String> {
        let bin_dir = bin_dir()?;
        let owner = owner()?;
        let dir = std::env::temp_dir().join(format!(
            "ticketing-tracker-pgpair-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some((uid, gid)) = owner {
            if let Err(e) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
                let _ = fs::remove_dir(&dir);
                return Err(format!("giving {} to {SYSTEM_USER}: {e}", dir.display()));
            }
        }
        // Never waited for: it outlives this process on purpose; tokio reaps it if it ends
        // first (the pair was dropped).
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("ticketing-tracker-pgpair-watchdog")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C on the tests must not stop it before it cleaned up.
            .process_group(0)
            .spawn();
        if let Err(e) = watchdog {
            let _ = fs::remove_dir(&dir);
            return Err(format!("starting the watchdog shell: {e}"));
        }
        // From here on, dropping `pair` (an error below) removes whatever was made.
        let mut pair = PgPair {
            primary: Node::planned("node0", &dir),
            tools: Tools {
                user: owner.map(|_| SYSTEM_USER.to_owned()),
                bin_dir,
                dir,
            },
            replication,
            primary_lost: false,
            standby: None,
            stalled: None,
            next_node: 1,
        };
        let data = pair.primary.data.display().to_string();
        pair.tools
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await?;
        let conf = pair.primary.data.join("postgresql.conf");
        let settings = SETTINGS.replace("{dir}", &pair.tools.dir.display().to_string());
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| std::io::Write::write_all(&mut file, settings.as_bytes()))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        pair.primary = pair.tools.start_node("node0").await?;
        if standby {
            pair.add_standby().await?;
        }
        Ok(pair)
    }

    /// The primary's data directory (its WAL is in `pg_wal/`).
    pub fn primary_data(&self) -> &Path {
        &self.primary.data
    }

    /// A crash of the primary's server and its restart: every process killed at once
    /// ([`PgPair::kill_primary`]: what was not written to the WAL files is gone, as after an
    /// OOM kill), then started again on its data directory (crash recovery), on a new port:
    /// switch the proxy to [`PgPair::primary_addr`] afterwards.
    pub async fn crash_and_restart_primary(&mut self) -> Result<(), String> {
        kill_node(&self.primary.data).await?;
        self.stalled = None;
        // Every process of it is gone, but the postmaster may linger as a zombie nobody
        // reaps (a container's init may not), and a zombie's pid still answers kill(pid, 0):
        // the new postmaster would take it for a running one.
        let _ = fs::remove_file(self.primary.data.join("postmaster.pid"));
        let name = self.primary.name.clone();
        self.primary = self.tools.start_node(&name).await?;
        self.primary_lost = false;
        self.wait_writable().await
    }

    /// The `postgres` database on the current primary (whether it runs or not).
    pub fn primary_url(&self) -> String {
        url_at(self.primary_addr(), "postgres")
    }

    /// The current primary's address, for [`super::tcpproxy::TcpProxy::switch_to`].
    pub fn primary_addr(&self) -> SocketAddr {
        self.primary.addr()
    }

    /// The `postgres` database on the standby (read-only); `None` after a promotion, until
    /// [`PgPair::add_standby`].
    pub fn standby_url(&self) -> Option<String> {
        self.standby_addr().map(|addr| url_at(addr, "postgres"))
    }

    pub fn standby_addr(&self) -> Option<SocketAddr> {
        self.standby.as_ref().map(Node::addr)
    }

    /// The names of the primary and the standby (`node0`, `node1`, ...).
    pub fn names(&self) -> (String, Option<String>) {
        (
            self.primary.name.clone(),
            self.standby.as_ref().map(|s| s.name.clone()),
        )
    }

    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The pair's directory: the nodes' data directories and their logs (`NAME.log`), gone
    /// with the pair.
    pub fn dir(&self) -> &Path {
        &self.tools.dir
    }

    /// One line for progress output: `node2 (primary, 127.0.0.1:PORT) -> node3 (sync standby,
    /// 127.0.0.1:PORT)`.
    pub fn describe(&self) -> String {
        let primary = format!(
            "{} ({}, {})",
            self.primary.name,
            if self.primary_lost {
                "lost primary"
            } else {
                "primary"
            },
            self.primary.addr()
        );
        match &self.standby {
            Some(standby) => format!(
                "{primary} -> {} ({} standby, {}){}",
                standby.name,
                match self.replication {
                    Replication::Synchronous => "sync",
                    Replication::Asynchronous => "async",
                },
                standby.addr(),
                if self.stalled.is_some() {
                    ", WAL stalled"
                } else {
                    ""
                }
            ),
            None => format!("{primary}, no standby"),
        }
    }

    /// Creates the database `name` on the primary and returns its URL there (through a proxy:
    /// `url_at(proxy.addr(), name)`). Returns once the standby has it too, so that a failover
    /// right after keeps it even when replication is asynchronous.
    pub async fn create_database(&self, name: &str) -> Result<String, String> {
        execute(&self.primary_url(), &format!(r#"CREATE DATABASE "{name}""#)).await?;
        if self.standby.is_some() {
            self.wait_standby_flushed().await?;
        }
        Ok(url_at(self.primary_addr(), name))
    }

    /// Waits until the standby has flushed all the WAL the primary had written when called:
    /// every commit that returned before is then safe from a failover, also when asynchronous.
    /// Never returns while the stream is stalled (errors after 30 s).
    pub async fn wait_standby_flushed(&self) -> Result<(), String> {
        let standby = self.standby()?;
        let lsn: String = fetch_one(&self.primary_url(), "SELECT pg_current_wal_lsn()::text")
            .await
            .map_err(|e| format!("reading the primary's WAL position: {e}"))?;
        let mut deadline = Deadline::new(format!("{} flushing WAL up to {lsn}", standby.name));
        loop {
            let flushed = row_at::<(Option<bool>,)>(
                self.primary_url(),
                "SELECT flush_lsn >= $2::pg_lsn FROM pg_stat_replication
                 WHERE application_name = $1",
                vec![standby.name.clone(), lsn.clone()],
            )
            .await
            .map(|row| row.and_then(|(flushed,)| flushed));
            match flushed {
                Ok(Some(true)) => return Ok(()),
                other => deadline.pause(&format!("{other:?}"), self).await?,
            }
        }
    }

    /// Stops the WAL stream to the standby: the primary's walsender for it is frozen
    /// (SIGSTOP), so no WAL written from now on leaves the primary. Synchronous, every commit
    /// then waits (wait_event `SyncRep`) until [`PgPair::resume_wal`]; asynchronous, commits
    /// return and the standby falls behind, and a failover before the resume forgets them.
    ///
    /// Why the sender and not the standby's walreceiver: a frozen receiver still has the
    /// primary's WAL delivered into its socket buffer by the kernel, and reads it when thawed,
    /// even after the primary is dead, so the commit would not be lost.
    pub async fn stall_wal(&mut self) -> Result<(), String> {
        if self.stalled.is_some() {
            return Ok(());
        }
        let standby = self.standby()?.clone();
        self.wait_streaming(&standby, false).await?;
        let (pid,) = row_at::<(i32,)>(
            self.primary_url(),
            "SELECT pid FROM pg_stat_replication
             WHERE application_name = $1 AND state = 'streaming'",
            vec![standby.name.clone()],
        )
        .await
        .map_err(|e| format!("finding the walsender of {}: {e}", standby.name))?
        .ok_or_else(|| format!("{} stopped streaming", standby.name))?;
        // Frozen while it holds a spinlock or SyncRepLock, it would wedge every process that
        // needs it (commits, pg_stat_replication) until thawed. It idles in epoll_wait, where
        // it holds none; catch it there (it is there almost always; a sender never seen there
        // in 200 tries, under a flood of WAL, is left frozen wherever it is).
        let mut attempts = 0;
        loop {
            signal(pid, libc::SIGSTOP)?;
            if !wait_stopped(pid).await {
                return Err(format!("the walsender {pid} did not stop"));
            }
            attempts += 1;
            if waiting_for_events(pid) || attempts == 200 {
                self.stalled = Some(pid);
                return Ok(());
            }
            signal(pid, libc::SIGCONT)?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Lets the stalled stream flow again (SIGCONT); nothing when it is not stalled or its
    /// primary is gone. The standby catches up on its own: the connection was never closed.
    pub fn resume_wal(&mut self) {
        if let Some(pid) = self.stalled.take() {
            if runs_in(pid, &self.primary.data) {
                let _ = signal(pid, libc::SIGCONT);
            }
        }
    }

    /// Whether the stream is stalled.
    pub fn wal_stalled(&self) -> bool {
        self.stalled.is_some()
    }

    /// Loses the primary at once, as a machine loss: SIGKILL to the postmaster and every one of
    /// its processes (no shutdown checkpoint, no last WAL sent, sessions cut by the kernel).
    /// The standby keeps what it had flushed and retries its primary every 200 ms.
    pub async fn kill_primary(&mut self) -> Result<(), String> {
        kill_node(&self.primary.data).await?;
        self.primary_lost = true;
        // That walsender died with its node.
        self.stalled = None;
        Ok(())
    }

    /// Loses the standby at once (every process of it killed, its data directory removed)
    /// and drops its replication slot, as a standby that is gone and a setup without slots
    /// (repmgr, a hand-made standby) look: the primary then shows no sign of ever having had
    /// one. With a synchronous pair, the primary's commits then wait: make it asynchronous
    /// first.
    pub async fn lose_standby(&mut self) -> Result<(), String> {
        let standby = self.standby()?.clone();
        kill_node(&standby.data).await?;
        let _ = fs::remove_dir_all(&standby.data);
        self.standby = None;
        let slot = standby.name.clone();
        let url = self.primary_url();
        let mut deadline = Deadline::new(format!("dropping the slot {slot}"));
        loop {
            let dropped: Result<i64, String> = fetch_one(
                &url,
                &format!(
                    "SELECT count(*) FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}') d"
                ),
            )
            .await;
            match dropped {
                Ok(_) => return Ok(()),
                // Still active for a moment, until the walsender notices its peer is gone.
                Err(e) => deadline.pause(&e, self).await?,
            }
        }
    }

    /// Promotes the standby (`pg_ctl promote -w`) after [`PgPair::kill_primary`] and returns
    /// once it takes writes: it is the primary from then on, with no standby and no
    /// `synchronous_standby_names` (a commit would otherwise wait for a standby that is not
    /// there) until [`PgPair::add_standby`]. Errors while the primary still runs: two
    /// primaries (a split brain) are not what this harness models.
    pub async fn promote(&mut self) -> Result<(), String> {
        if !self.primary_lost {
            return Err(format!(
                "{} still runs: kill_primary before promote",
                self.primary.name
            ));
        }
        let standby = self.standby()?.clone();
        let url = url_at(standby.addr(), "postgres");
        // Set while still a standby (ALTER SYSTEM works there), so that the first commit after
        // the promotion does not wait for a synchronous standby named in the copied settings.
        set_standby_names(&url, "").await?;
        let data = standby.data.display().to_string();
        self.tools
            .run("pg_ctl", &["promote", "-w", "-t", "60", "-D", &data])
            .await
            .map_err(|e| format!("{e}\n{}", self.logs()))?;
        self.primary = standby;
        self.standby = None;
        self.primary_lost = false;
        self.wait_writable().await
    }

    /// Builds a new standby of the current primary (pg_basebackup -R with a slot of its own,
    /// then started), makes it the synchronous standby when the pair is synchronous, and
    /// returns once it streams. Errors when there is a standby already.
    pub async fn add_standby(&mut self) -> Result<(), String> {
        if let Some(standby) = &self.standby {
            return Err(format!("{} is the standby already", standby.name));
        }
        let name = format!("node{}", self.next_node);
        self.next_node += 1;
        let planned = Node::planned(&name, &self.tools.dir);
        let data = planned.data.display().to_string();
        // The conninfo names no application_name: the standby's walreceiver then goes by its
        // cluster_name (the node's name), and pg_basebackup's own connections by
        // `pg_basebackup`, so they are never taken for the standby.
        let conninfo = format!("host=127.0.0.1 port={} user=postgres", self.primary.port);
        self.tools
            .run(
                "pg_basebackup",
                &[
                    "-D", &data, "-R", "-X", "stream", "-C", "-S", &name, "-c", "fast", "-N", "-d",
                    &conninfo,
                ],
            )
            .await
            .map_err(|e| format!("{e}\n{}", self.logs()))?;
        let standby = self.tools.start_node(&name).await?;
        self.standby = Some(standby.clone());
        self.wait_streaming(&standby, false).await?;
        self.apply_replication().await
    }

    /// A failover: [`PgPair::kill_primary`] (unless already lost), [`PgPair::promote`],
    /// the lost primary's data directory removed (its log stays), and
    /// [`PgPair::add_standby`], so the pair is a pair again, ready for the next one. Switch the
    /// proxy to [`PgPair::primary_addr`] afterwards.
    pub async fn failover(&mut self) -> Result<(), String> {
        if !self.primary_lost {
            self.kill_primary().await?;
        }
        let lost = self.primary.data.clone();
        self.promote().await?;
        let _ = fs::remove_dir_all(&lost);
        self.add_standby().await
    }

    /// Switches between synchronous and asynchronous replication at runtime (ALTER SYSTEM on the
    /// primary, reloaded, in force when this returns); a later standby gets it too.
    pub async fn set_replication(&mut self, replication: Replication) -> Result<(), String> {
        self.replication = replication;
        self.apply_replication().await
    }

    fn standby(&self) -> Result<&Node, String> {
        self.standby
            .as_ref()
            .ok_or_else(|| format!("{} has no standby (add_standby)", self.primary.name))
    }

    /// Makes the primary's `synchronous_standby_names` match `self.replication`.
    async fn apply_replication(&self) -> Result<(), String> {
        let Some(standby) = &self.standby else {
            return Ok(());
        };
        let names = match self.replication {
            Replication::Synchronous => standby.name.as_str(),
            Replication::Asynchronous => "",
        };
        set_standby_names(&self.primary_url(), names).await?;
        self.wait_streaming(standby, self.replication == Replication::Synchronous)
            .await
    }

    /// Waits until `standby` streams from the primary and, if `sync`, is its synchronous one.
    async fn wait_streaming(&self, standby: &Node, sync: bool) -> Result<(), String> {
        let mut deadline = Deadline::new(format!(
            "{} streaming{} from {}",
            standby.name,
            if sync { " synchronously" } else { "" },
            self.primary.name
        ));
        loop {
            let state = row_at::<(String, String)>(
                self.primary_url(),
                "SELECT state, sync_state FROM pg_stat_replication
                 WHERE application_name = $1",
                vec![standby.name.clone()],
            )
            .await;
            match &state {
                Ok(Some((state, sync_state)))
                    if state == "streaming" && (!sync || sync_state == "sync") =>
                {
                    return Ok(())
                }
                _ => deadline.pause(&format!("{state:?}"), self).await?,
            }
        }
    }

    /// Waits until the primary commits a transaction: just promoted, it may still be finishing
    /// recovery ("cannot assign TransactionIds during recovery").
    async fn wait_writable(&self) -> Result<(), String> {
        let mut deadline = Deadline::new(format!("{} taking writes", self.primary.name));
        loop {
            let written = tokio::time::timeout(
                CONNECT_TIMEOUT,
                fetch_one::<i64>(&self.primary_url(), "SELECT txid_current()"),
            )
            .await;
            match written {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => deadline.pause(&e, self).await?,
                Err(_) => deadline.pause("a commit hung", self).await?,
            }
        }
    }

    /// The ends of the nodes' logs, for error messages.
    fn logs(&self) -> String {
        std::iter::once(&self.primary)
            .chain(self.standby.as_ref())
            .map(|node| format!("{}:\n{}", node.log.display(), tail(&node.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        // Every node ever made, the lost ones included: a kill that failed leaves nothing behind.
        for n in 0..self.next_node {
            let node = Node::planned(&format!("node{n}"), &self.tools.dir);
            kill_node_now(&node.data);
        }
        // Also tells the watchdog to stop watching.
        let _ = fs::remove_dir_all(&self.tools.dir);
    }
}

impl Node {
    /// A node not (necessarily) started: its paths, no port.
    fn planned(name: &str, dir: &Path) -> Node {
        Node {
            name: name.to_owned(),
            port: 0,
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl PgPair {
    /// Starts `pg_receivewal --synchronous` on the primary, as Barman's streaming archiver
    /// runs: a physical WAL stream that flushes and reports at once, but is no standby (it
    /// replays nothing, and no failover can promote it). Stopped when the child is dropped.
    pub async fn start_wal_archiver(&self) -> Result<tokio::process::Child, String> {
        self.start_wal_archiver_on(None).await
    }

    /// [`PgPair::start_wal_archiver`] keeping its place in a physical replication slot of its
    /// own (`slot`, made here), as Barman does (`pg_receivewal -S`).
    pub async fn start_wal_archiver_on(
        &self,
        slot: Option<&str>,
    ) -> Result<tokio::process::Child, String> {
        if let Some(slot) = slot {
            fetch_one::<String>(
                &self.primary_url(),
                &format!(
                    "SELECT slot_name::text FROM pg_create_physical_replication_slot('{slot}')"
                ),
            )
            .await?;
        }
        let dir = self.tools.dir.join("archive");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(user) = &self.tools.user {
            let chown = Command::new("chown").arg(user).arg(&dir).status().await;
            if !chown.is_ok_and(|s| s.success()) {
                return Err(format!("giving {} to {user} failed", dir.display()));
            }
        }
        let path = self.tools.bin_dir.join("pg_receivewal");
        let port = self.primary.port.to_string();
        let mut command = match &self.tools.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .args(["-D"])
            .arg(&dir)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "--synchronous",
                "-n",
            ])
            .args(slot.map(|slot| ["-S", slot]).into_iter().flatten())
            .current_dir(&self.tools.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| format!("pg_receivewal: {e}"))?;
        // Streaming once the primary lists it.
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let n: i64 = fetch_one(
                &self.primary_url(),
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal' AND state = 'streaming'",
            )
            .await
            .unwrap_or(0);
            if n > 0 {
                return Ok(child);
            }
            if Instant::now() > deadline {
                return Err("pg_receivewal did not start streaming".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Tools {
    /// Runs a server binary (as the system user when we are root) to its end and returns its
    /// standard output, or why it failed with its output.
    ///
    /// The command is made before the future, which then borrows nothing: a future holding
    /// `&[&str]` across an await is not `Send` "generally enough" for a spawned task (a
    /// compiler limitation), and the chaos program may spawn the pair's operations.
    fn run(
        &self,
        program: &str,
        args: &[&str],
    ) -> impl std::future::Future<Output = Result<String, String>> + Send + 'static {
        let path = self.bin_dir.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .args(args)
            // Somewhere the system user may read: initdb complains about the caller's cwd.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let shown = format!("{program} {}", args.join(" "));
        async move {
            // Piped output is safe: pg_ctl start sends the server's output to its -l log.
            let output = tokio::time::timeout(STEP_TIMEOUT, command.output())
                .await
                .map_err(|_| format!("{shown}: not done within {STEP_TIMEOUT:?}"))?
                .map_err(|e| format!("{shown}: {e}"))?;
            if output.status.success() {
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            } else {
                Err(format!(
                    "{shown}: {}\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr),
                    String::from_utf8_lossy(&output.stdout)
                ))
            }
        }
    }

    /// Starts the node `name` (its data directory ready) on a free port; returns once it
    /// accepts connections (a standby: read-only ones).
    async fn start_node(&self, name: &str) -> Result<Node, String> {
        let planned = Node::planned(name, &self.dir);
        let data = planned.data.display().to_string();
        let log = planned.log.display().to_string();
        let mut failure = String::new();
        // The port is free when picked but can be taken before postgres binds it (another test
        // doing the same): then again with another.
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!("-p {port} -c cluster_name={name}");
            let started = self
                .run(
                    "pg_ctl",
                    &[
                        "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &options,
                    ],
                )
                .await;
            match started {
                Ok(_) => {
                    return Ok(Node {
                        port,
                        ..planned.clone()
                    })
                }
                Err(e) => {
                    failure = e;
                    kill_node_now(&planned.data);
                    if !tail(&planned.log).contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        Err(format!(
            "starting {name}: {failure}\n{log}:\n{}",
            tail(&planned.log)
        ))
    }
}

/// Polls a condition until a deadline, backing off from 10 to 200 ms.
struct Deadline {
    what: String,
    end: Instant,
    pause: Duration,
}

impl Deadline {
    fn new(what: String) -> Deadline {
        Deadline {
            what,
            end: Instant::now() + WAIT_TIMEOUT,
            pause: Duration::from_millis(10),
        }
    }

    /// Sleeps before the next try, or says what did not happen (`last`: the last observation).
    async fn pause(&mut self, last: &str, pair: &PgPair) -> Result<(), String> {
        if Instant::now() + self.pause > self.end {
            return Err(format!(
                "{}: not within {WAIT_TIMEOUT:?} (last: {last})\n{}",
                self.what,
                pair.logs()
            ));
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(200));
        Ok(())
    }
}

/// Sets `synchronous_standby_names` on the node at `url` and returns once it is in force: in a
/// new session (the postmaster reloaded) and in the checkpointer, which is the process that
/// tells committing backends whether to wait; it takes a reload before the checkpoint it was
/// asked for, so the CHECKPOINT returning means it has.
async fn set_standby_names(url: &str, names: &str) -> Result<(), String> {
    execute(
        url,
        &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
    )
    .await?;
    execute(url, "SELECT pg_reload_conf()").await?;
    let started = Instant::now();
    loop {
        let current: String =
            fetch_one(url, "SELECT current_setting('synchronous_standby_names')").await?;
        if current == names {
            break;
        }
        if started.elapsed() > WAIT_TIMEOUT {
            return Err(format!(
                "synchronous_standby_names still '{current}', not '{names}', after a reload"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    execute(url, "CHECKPOINT").await
}

/// The row `sql` returns, if any, with `binds` as `$1`, `$2`, ..., in a connection of its own
/// to `url`. Owned arguments: see [`Tools::run`] on futures that must be `Send`.
async fn row_at<T>(url: String, sql: &'static str, binds: Vec<String>) -> Result<Option<T>, String>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut conn = connect(&url).await?;
    let mut query = sqlx::query_as(sql);
    for value in binds {
        query = query.bind(value);
    }
    let row = query
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let _ = conn.close().await;
    Ok(row)
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Err(_) => Err(format!(
            "connecting to {url}: no answer within {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// Runs one statement (no parameters; CREATE DATABASE works, sent alone) in a connection of
/// its own.
async fn execute(url: &str, sql: &str) -> Result<(), String> {
    let mut conn = connect(url).await?;
    // Not raw_sql: its future is not `Send` "generally enough" to be spawned (see Tools::run).
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

async fn fetch_one<T>(url: &str, sql: &str) -> Result<T, String>
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let mut conn = connect(url).await?;
    let value = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let _ = conn.close().await;
    Ok(value)
}

/// Kills a node like a machine loss and waits until nothing runs in its data directory.
async fn kill_node(data: &Path) -> Result<(), String> {
    let shmid = shared_memory_id(data);
    // The postmaster first frozen, so that it forks nothing more and restarts nobody.
    if let Some(pid) = postmaster(data) {
        let _ = signal(pid, libc::SIGSTOP);
    }
    let started = Instant::now();
    let mut killed = false;
    loop {
        let pids = processes_in(data);
        if pids.is_empty() {
            break;
        }
        killed = true;
        for pid in pids {
            let _ = signal(pid, libc::SIGKILL);
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("processes still run in {}", data.display()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if killed {
        remove_shared_memory(shmid);
    }
    Ok(())
}

/// [`kill_node`] without a runtime (for `Drop`), best effort.
fn kill_node_now(data: &Path) {
    let shmid = shared_memory_id(data);
    if let Some(pid) = postmaster(data) {
        let _ = signal(pid, libc::SIGSTOP);
    }
    let mut killed = false;
    for _ in 0..1000 {
        let pids = processes_in(data);
        if pids.is_empty() {
            break;
        }
        killed = true;
        for pid in pids {
            let _ = signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if killed {
        remove_shared_memory(shmid);
    }
}

/// The postmaster's pid, from its lock file, if it runs.
fn postmaster(data: &Path) -> Option<i32> {
    let pidfile = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid = pidfile.lines().next()?.trim().parse().ok()?;
    runs_in(pid, data).then_some(pid)
}

/// The SysV segment PostgreSQL keeps beside its shared memory (line 7 of postmaster.pid: key
/// and id), which a SIGKILLed server leaves behind.
fn shared_memory_id(data: &Path) -> Option<i32> {
    let pidfile = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    pidfile
        .lines()
        .nth(6)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn remove_shared_memory(shmid: Option<i32>) {
    if let Some(shmid) = shmid {
        // SAFETY: IPC_RMID takes no buffer; an id that is gone or not ours only makes it fail.
        unsafe {
            libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// The pids of the processes whose working directory is `dir`: every process of a node runs
/// in its data directory (and a zombie in none).
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            (fs::read_link(entry.path().join("cwd")).ok()? == dir).then_some(pid)
        })
        .collect()
}

fn runs_in(pid: i32, dir: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

fn signal(pid: i32, signal: i32) -> Result<(), String> {
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill -{signal} {pid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Waits (1 s at most) until `pid` is stopped; stopping is asynchronous.
async fn wait_stopped(pid: i32) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) STATE ...`; comm may hold spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("T" | "t")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

/// Whether the stopped `pid` was in epoll_wait (a process waiting on its latch holds no lock).
/// True when it cannot be told (no /proc/PID/syscall, another architecture).
fn waiting_for_events(pid: i32) -> bool {
    let Ok(syscall) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return true;
    };
    let Some(Ok(number)) = syscall.split_whitespace().next().map(str::parse::<i64>) else {
        // "running": not in a system call.
        return false;
    };
    // epoll_wait, epoll_pwait, epoll_pwait2.
    let epoll: &[i64] = if cfg!(target_arch = "x86_64") {
        &[232, 281, 441]
    } else if cfg!(target_arch = "aarch64") {
        &[22, 441]
    } else {
        return true;
    };
    epoll.contains(&number)
}

/// The directory of the local server binaries, with what a pair needs beyond localpg's.
fn bin_dir() -> Result<PathBuf, String> {
    let dir = ticketing_tracker_tools::localpg::find_bin_dir()
        .ok_or("no local PostgreSQL server binaries (initdb, postgres): a PgPair needs them")?;
    match PAIR_BINARIES.iter().find(|b| !dir.join(b).is_file()) {
        Some(missing) => Err(format!("{} has no {missing}", dir.display())),
        None => Ok(dir),
    }
}

/// `Some((uid, gid))` of the system user to run the nodes as when we are root, else `None`.
fn owner() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let output = std::process::Command::new("id")
            .args([flag, SYSTEM_USER])
            .output()
            .map_err(|e| format!("running id: {e}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|_| output.status.success())
            .ok_or_else(|| {
                format!("running as root needs a `{SYSTEM_USER}` system user to own the nodes")
            })
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// The last lines of a log, where the reason a step failed is.
fn tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// The chaos program may drive a pair from a spawned task on a multi-threaded runtime, which
/// needs the operations' futures to be `Send`: checked when this compiles (never run).
fn _operations_can_be_spawned(mut pair: PgPair) {
    drop(tokio::spawn(async move {
        let _ = pair.create_database("x").await;
        let _ = pair.wait_standby_flushed().await;
        let _ = pair.stall_wal().await;
        pair.resume_wal();
        let _ = pair.kill_primary().await;
        let _ = pair.promote().await;
        let _ = pair.add_standby().await;
        let _ = pair.failover().await;
        let _ = pair.set_replication(Replication::Synchronous).await;
        pair
    }));
}
