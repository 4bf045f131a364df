//! A TCP forwarder standing where a database's virtual IP or DNS name would: clients connect
//! to its address, and a failover is `switch_to(new primary)`, optionally after `cut_all()`
//! (every open connection reset at once, as when the address moves) and under `hold()` (new
//! connections wait, as for an address that answers nobody while the database is away).
//!
//! It knows nothing of PostgreSQL: it forwards bytes. Its handle is runtime-agnostic (every
//! control call is a plain method, callable from async code, a blocking thread or `Drop`); the
//! forwarding runs either on the caller's tokio runtime ([`TcpProxy::start`]) or on a thread
//! with a runtime of its own ([`TcpProxy::start_on_thread`]), which keeps forwarding while the
//! caller's runtime is blocked, busy or gone.

// Shared by the `api` tests and the chaos run, each of which uses only part of it.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What happens to a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Connected to the current target.
    Forward,
    /// Accepted and left pending (the client's bytes wait unread) until the mode changes; then
    /// forwarded to the target of that moment, or reset.
    Hold,
    /// Reset as soon as it is accepted ("connection reset by peer").
    Refuse,
}

/// What every connection task watches.
#[derive(Clone, Debug)]
struct Control {
    target: SocketAddr,
    admit: Admit,
    /// Bumped by `cut_all`: a connection accepted under an older value is reset.
    cuts: u64,
    /// The proxy is dropped: everything ends.
    closed: bool,
}

/// A running forwarder on `127.0.0.1`, stopped (every connection with it) when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards to `target`, on the current tokio runtime: the
    /// forwarding stops when that runtime does, and pauses while it is blocked (a
    /// current-thread runtime running blocking code). Errors outside a runtime.
    pub fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("TcpProxy::start needs a tokio runtime; use start_on_thread")
        })?;
        let (listener, addr) = bind()?;
        let (control, watched) = watch::channel(Control::new(target));
        let open = Arc::new(AtomicUsize::new(0));
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        runtime.spawn(serve(listener, watched, open.clone()));
        Ok(TcpProxy {
            addr,
            control,
            open,
            thread: None,
        })
    }

    /// Like [`TcpProxy::start`], but on a new thread with a current-thread runtime of its own,
    /// from anywhere (inside a runtime or not). Use it when the proxy must outlive, or not
    /// depend on, the caller's runtime (the chaos program's, a `#[tokio::test]`'s that blocks).
    pub fn start_on_thread(target: SocketAddr) -> io::Result<TcpProxy> {
        let (listener, addr) = bind()?;
        let (control, watched) = watch::channel(Control::new(target));
        let open = Arc::new(AtomicUsize::new(0));
        let counted = open.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, watched, counted).await,
                        Err(error) => eprintln!("tcp proxy on {addr}: {error}"),
                    }
                });
                // Dropping the runtime drops the connection tasks, closing their sockets.
            })?;
        Ok(TcpProxy {
            addr,
            control,
            open,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections go.
    pub fn target(&self) -> SocketAddr {
        self.control.borrow().target
    }

    /// New connections (and held ones, once released) go to `target`; open ones stay where they
    /// are until they end or [`TcpProxy::cut_all`].
    pub fn switch_to(&self, target: SocketAddr) {
        self.control.send_modify(|c| c.target = target);
    }

    /// Resets every open connection at once, held ones included, on both sides: the clients
    /// get "connection reset", the servers see their clients gone (a transaction in progress
    /// is rolled back). Returns how many there were. New connections are admitted as before.
    pub fn cut_all(&self) -> usize {
        let open = self.open.load(Ordering::SeqCst);
        self.control.send_modify(|c| c.cuts += 1);
        open
    }

    /// New connections wait, unanswered, until [`TcpProxy::release`] (or [`TcpProxy::refuse`]).
    pub fn hold(&self) {
        self.set_admit(Admit::Hold);
    }

    /// New connections, and held ones, are reset.
    pub fn refuse(&self) {
        self.set_admit(Admit::Refuse);
    }

    /// New connections, and held ones, are forwarded to the current target.
    pub fn release(&self) {
        self.set_admit(Admit::Forward);
    }

    pub fn admit(&self) -> Admit {
        self.control.borrow().admit
    }

    /// Connections accepted and not yet closed (held ones included).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn set_admit(&self, admit: Admit) {
        self.control.send_modify(|c| c.admit = admit);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.control.send_modify(|c| c.closed = true);
        if let Some(thread) = self.thread.take() {
            // Quick: the runtime only has to notice `closed` and drop its tasks. Joined so that
            // the port and every connection are closed once the proxy is dropped.
            let _ = thread.join();
        }
    }
}

impl Control {
    fn new(target: SocketAddr) -> Control {
        Control {
            target,
            admit: Admit::Forward,
            cuts: 0,
            closed: false,
        }
    }
}

fn bind() -> io::Result<(std::net::TcpListener, SocketAddr)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

async fn serve(listener: TcpListener, control: watch::Receiver<Control>, open: Arc<AtomicUsize>) {
    // A receiver of its own for the end: the other one is cloned for each connection.
    let mut closing = control.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    // The cut count of the moment it was accepted: a later `cut_all` ends it.
                    let cuts = control.borrow().cuts;
                    tokio::spawn(connection(client, cuts, control.clone(), Counted::new(&open)));
                }
                // Out of file descriptors and the like: the client is gone either way; do not
                // spin on the error.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            _ = until(&mut closing, |c| c.closed) => return,
        }
    }
}

/// One client connection, from accept to close.
async fn connection(
    client: TcpStream,
    cuts: u64,
    mut control: watch::Receiver<Control>,
    _counted: Counted,
) {
    let _ = client.set_nodelay(true);
    let ended = move |c: &Control| c.closed || c.cuts != cuts;
    let target = {
        let admitted = control
            .wait_for(|c| ended(c) || c.admit != Admit::Hold)
            .await;
        match admitted {
            Ok(c) if !ended(&c) && c.admit == Admit::Forward => c.target,
            _ => return reset(client),
        }
    };
    let connected = tokio::select! {
        connected = TcpStream::connect(target) => connected,
        _ = until(&mut control, ended) => return reset(client),
    };
    // Nothing listens there (the old primary is dead, the switch has not come yet): the client
    // sees a reset, as it would connecting to the dead address itself.
    let Ok(mut server) = connected else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    let mut client = client;
    let outcome = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut server) => copied.map(|_| ()),
        _ = until(&mut control, ended) => Err(io::ErrorKind::ConnectionAborted.into()),
    };
    // Both ends closed cleanly: plain closes. One end failed (a server killed, a cut): the other
    // end gets a reset, as it would from a dead peer, not a tidy end of stream.
    if outcome.is_err() {
        reset(client);
        reset(server);
    }
}

/// Waits until `condition` holds or the proxy is gone, without keeping the value's read lock
/// (which would also make the caller's future not `Send`).
async fn until(control: &mut watch::Receiver<Control>, condition: impl FnMut(&Control) -> bool) {
    let _ = control.wait_for(condition).await;
}

/// Closes with RST: SO_LINGER 0 discards unsent data instead of a FIN after it.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// One open connection in [`TcpProxy::open_connections`], for as long as this lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::SeqCst);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
