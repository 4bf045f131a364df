//! A PostgreSQL container on the Docker engine, kept for the life of the test process.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::ImageExt;

use super::{on_path, wait_until_ready, Server, Source};

/// The version the project is developed and checked against. The module's default (11) is too
/// old for `DROP DATABASE … WITH (FORCE)`.
const TAG: &str = "15-alpine";

/// An engine that does not answer a ping within this is not one the tests can use.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// testcontainers has waited for the "ready" log line already; the image restarts the server
/// once after its init scripts, so the port may still refuse for a moment.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Docker host testcontainers will use, if an engine answers there.
pub(super) fn engine() -> Option<String> {
    let host = docker_host()?;
    answers(&host).then_some(host)
}

/// The host in testcontainers' order: `DOCKER_HOST`, then the first socket that exists among
/// the system one and the rootless and Docker Desktop ones.
fn docker_host() -> Option<String> {
    if let Some(host) = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.trim().is_empty())
    {
        return Some(host);
    }
    let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(runtime_dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        sockets.push(PathBuf::from(runtime_dir).join(".docker/run/docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        sockets.push(PathBuf::from(&home).join(".docker/run/docker.sock"));
        sockets.push(PathBuf::from(&home).join(".docker/desktop/docker.sock"));
    }
    let socket = sockets.into_iter().find(|socket| socket.exists())?;
    Some(format!("unix://{}", socket.display()))
}

/// Whether the engine at `host` answers its `/_ping` (a socket file alone may be left over).
fn answers(host: &str) -> bool {
    if let Some(path) = host.strip_prefix("unix://") {
        let Ok(stream) = UnixStream::connect(path) else {
            return false;
        };
        let timeouts = stream
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)));
        return timeouts.is_ok() && pings(stream);
    }
    if let Some(address) = host.strip_prefix("tcp://") {
        let address = address.trim_end_matches('/');
        let Some(address) = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut all| all.next())
        else {
            return false;
        };
        let Ok(stream) = TcpStream::connect_timeout(&address, PROBE_TIMEOUT) else {
            return false;
        };
        // Behind TLS, asking more needs the client certificate; an engine listening will do.
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|verify| verify == "1") {
            return true;
        }
        let timeouts = stream
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)));
        return timeouts.is_ok() && pings(stream);
    }
    false
}

fn pings(mut stream: impl Read + Write) -> bool {
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = [0; 64];
    let mut read = 0;
    while read < answer.len() {
        match stream.read(&mut answer[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status_line = String::from_utf8_lossy(&answer[..read]);
    status_line.starts_with("HTTP/1.") && status_line.contains(" 200 ")
}

/// Starts the container and waits until it accepts connections.
pub(super) fn start(host: &str) -> Result<Server, String> {
    let (address, container_id) = run_container()?;
    let image = format!("postgres:{TAG}");
    let removed_at_exit = remove_at_exit(host, &container_id);
    let server = Server::from_url(
        &format!("postgres://postgres:postgres@{address}/postgres"),
        Source::Docker {
            image,
            container_id,
            removed_at_exit,
        },
    )?;
    wait_until_ready(&server.url(), READY_TIMEOUT, || None)?;
    Ok(server)
}

/// Starts the container from a thread that owns a runtime for the rest of the process: the
/// container handle and the tasks following its logs belong to that runtime, and every test's
/// own runtime ends with its test. Returns `host:port` and the container's id.
fn run_container() -> Result<(String, String), String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-container".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(format!("could not start a tokio runtime: {error}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let request = Postgres::default()
                    .with_tag(TAG)
                    // Replaces the module's own `-c fsync=off`, so it is repeated; parallel tests
                    // each hold a pool.
                    .with_cmd(["-c", "fsync=off", "-c", "max_connections=300"]);
                let container = match request.start().await {
                    Ok(container) => container,
                    Err(error) => {
                        let _ = sender.send(Err(error.to_string()));
                        return;
                    }
                };
                let address = match (
                    container.get_host().await,
                    container.get_host_port_ipv4(5432).await,
                ) {
                    (Ok(host), Ok(port)) => {
                        Ok((format!("{host}:{port}"), container.id().to_owned()))
                    }
                    (Err(error), _) | (_, Err(error)) => Err(error.to_string()),
                };
                let _ = sender.send(address);
                // Holding `container` here keeps it running until the process exits: a static
                // is never dropped, and dropping it would remove the container.
                std::future::pending::<()>().await;
            });
        })
        .map_err(|error| format!("could not start the container thread: {error}"))?;
    receiver
        .recv()
        .map_err(|_| "the container thread ended without an answer".to_owned())?
}

/// Starts a watchdog that removes the container once the test process is gone (testcontainers
/// would do it on drop, which never happens to a value kept for the whole process). It needs
/// the `docker` command; returns whether one was started.
fn remove_at_exit(host: &str, container_id: &str) -> bool {
    if on_path("docker").is_none() {
        return false;
    }
    // Never waited for: the watchdog outlives this process on purpose, and init reaps it.
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; docker rm -f -v "$2""#)
        .arg("ticketing-tracker-container-watchdog")
        .arg(std::process::id().to_string())
        .arg(container_id)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the tests' process group, so that Ctrl-C leaves it to clean up.
        .process_group(0)
        .spawn()
        .is_ok()
}
