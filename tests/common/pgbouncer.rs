//! A real PgBouncer in transaction mode in front of a test's database, as a child process with
//! its own configuration in a temporary directory. Shared by the `api` tests and the chaos run
//! (`--pgbouncer`).

// Each user takes part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PgBouncer; stopped (and its directory removed) when dropped.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
    database: String,
}

/// The `pgbouncer` binary: on PATH, or where Debian's package puts it (`/usr/sbin`, which is
/// not on every user's PATH).
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("pgbouncer"))
        .find(|p| p.is_file())
}

/// The binary, or `None` with the reason printed when it may be absent: without `CI=true` a
/// missing PgBouncer skips the test; with it, the test fails (CI installs it, .ci/run).
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    binary_or(test, |why| eprintln!("SKIPPED {why}"))
}

/// The binary, or `None` after `skip` was told why (a failure with CI=true, as above).
pub fn binary_or(test: &str, skip: impl FnOnce(String)) -> Option<PathBuf> {
    match binary() {
        Some(b) => Some(b),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: no pgbouncer binary on PATH or in /usr/sbin, and CI=true (.ci/run installs it: apt-get install pgbouncer)")
        }
        None => {
            skip(format!("{test}: no pgbouncer binary on PATH or in /usr/sbin (apt-get install pgbouncer); with CI=true this fails"));
            None
        }
    }
}

impl PgBouncer {
    /// PgBouncer `binary` with `pool_mode = transaction` and `pool_size` server sessions in front
    /// of the database `upstream` (a postgres:// URL), on a free local port.
    pub fn start(binary: &Path, upstream: &str, pool_size: u32) -> PgBouncer {
        Self::start_ignoring(binary, upstream, pool_size, "extra_float_digits")
    }

    /// [`PgBouncer::start`] with `ignore_startup_parameters = ignored` (empty: PgBouncer's
    /// default, which refuses the `extra_float_digits` every PostgreSQL driver sends).
    pub fn start_ignoring(
        binary: &Path,
        upstream: &str,
        pool_size: u32,
        ignored: &str,
    ) -> PgBouncer {
        let url = reqwest::Url::parse(upstream).expect("the test database URL parses");
        let database = url.path().trim_start_matches('/').to_owned();
        let mut target = format!(
            "host={} port={} dbname={database} user={}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432),
            if url.username().is_empty() {
                "postgres"
            } else {
                url.username()
            },
        );
        if let Some(password) = url.password() {
            target.push_str(&format!(" password={password}"));
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "tt-pgbouncer-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // PgBouncer refuses to run as root; as root it is told to become `nobody`, who must be
        // able to read its files.
        set_mode(&dir, 0o755);
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n{database} = {target}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = any\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
                 max_client_conn = 500\n\
                 ignore_startup_parameters = {ignored}\n",
            ),
        )
        .unwrap();
        set_mode(&ini, 0o644);
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut cmd = Command::new(binary);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pgbouncer starts");
        let mut bouncer = PgBouncer {
            child,
            dir,
            port,
            database,
        };
        bouncer.wait_listening();
        bouncer
    }

    /// The test database through PgBouncer.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// PgBouncer's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("pgbouncer exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer not listening after 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
