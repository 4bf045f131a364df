//! A hostile ATRIP: a raw HTTP/1.1 server on 127.0.0.1:0 that answers each request with what a
//! test chose (a redirect, a gzip bomb, an endless or trickling body, a reset, silence), and
//! counts what it received and how much of its answer it managed to send before the client
//! stopped reading.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server gives up writing an answer after this many body bytes, so that a client that
/// never stops reading (the release before bounded answers) fails a test instead of the
/// machine.
pub const SERVER_STOP: u64 = 256 << 20;

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this JSON body; the connection stays open for the next request.
    Json(String),
    /// A redirect to `location`, with a small JSON body.
    Redirect(u16, String),
    /// 200, `Content-Encoding: gzip`, `Content-Length` given: a body of `compressed` bytes
    /// that inflates a thousand times (zeros).
    GzipBomb { compressed: usize },
    /// 200, chunked, a JSON-looking body that never ends.
    Endless,
    /// 200 with `Content-Length: len` (announced or not: chunked) and that many bytes sent.
    Huge { len: u64, announce: bool },
    /// 200 with `Content-Length: 1000`, 100 bytes of it, then a TCP reset.
    ResetMidway,
    /// 200, chunked, one byte every `every`, forever.
    Trickle(Duration),
    /// The request is read, then the connection is closed without a word.
    CloseAfterRequest,
    /// The request is read and never answered (the connection stays open).
    Silent,
    /// Nothing is read, nothing is sent: a TLS handshake never completes.
    Stall,
    /// These bytes are sent as soon as the connection opens, then it closes: garbage to a TLS
    /// client hello.
    Garbage(&'static [u8]),
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    /// Every request received, head and body, as bytes.
    pub requests: Mutex<Vec<Vec<u8>>>,
    /// Answer body bytes the kernel took from the server (the rest of an answer was never
    /// sent: the client had stopped reading).
    pub body_bytes_sent: AtomicU64,
}

impl Seen {
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn sent(&self) -> u64 {
        self.body_bytes_sent.load(Ordering::SeqCst)
    }
}

pub struct Hostile {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Hostile {
    /// Answers request `i` (counted over all connections, from 0) with `reply(i)`.
    pub async fn start(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let reply = Arc::new(reply);
        let counter = Arc::new(AtomicUsize::new(0));
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let (state, reply, counter) =
                    (Arc::clone(&state), Arc::clone(&reply), Arc::clone(&counter));
                tokio::spawn(async move {
                    serve(socket, &state, &*reply, &counter).await;
                });
            }
        });
        Hostile { addr, seen }
    }

    /// The same reply to every request.
    pub async fn always(reply: Reply) -> Hostile {
        Self::start(move |_| reply.clone()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(
    mut socket: TcpStream,
    seen: &Seen,
    reply: &(dyn Fn(usize) -> Reply + Send + Sync),
    counter: &AtomicUsize,
) {
    let mut buffered = Vec::new();
    loop {
        // What to do with a connection may depend on the request, but a TLS client speaks
        // first and would never send one: peek at the reply for the next request first.
        let next = reply(counter.load(Ordering::SeqCst));
        match next {
            Reply::Stall => {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket.read(&mut [0u8; 4096]).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Garbage(bytes) => {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket.read(&mut [0u8; 4096]).await;
                let _ = socket.write_all(bytes).await;
                return;
            }
            _ => {}
        }
        let Some(request) = read_request(&mut socket, &mut buffered).await else {
            return;
        };
        let i = counter.fetch_add(1, Ordering::SeqCst);
        seen.requests.lock().unwrap().push(request);
        let keep_open = answer(&mut socket, seen, reply(i)).await;
        if !keep_open {
            return;
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` when the client closed first.
async fn read_request(socket: &mut TcpStream, data: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
            let total = end + 4 + length;
            if data.len() >= total {
                let rest = data.split_off(total);
                return Some(std::mem::replace(data, rest));
            }
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `reply`; whether the connection may serve another request.
async fn answer(socket: &mut TcpStream, seen: &Seen, reply: Reply) -> bool {
    match reply {
        Reply::Json(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.is_ok()
                && send(socket, seen, body.as_bytes()).await
        }
        Reply::Redirect(code, location) => {
            let body = r#"{"status":0,"msg":"moved"}"#;
            let head = format!(
                "HTTP/1.1 {code} Moved\r\nLocation: {location}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.is_ok()
                && send(socket, seen, body.as_bytes()).await
        }
        Reply::GzipBomb { compressed } => {
            let bomb = gzip_bomb(compressed);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                bomb.len()
            );
            if socket.write_all(head.as_bytes()).await.is_ok() {
                send(socket, seen, &bomb).await;
            }
            false
        }
        Reply::Endless => {
            chunked(socket, seen, SERVER_STOP).await;
            false
        }
        Reply::Huge {
            len,
            announce: false,
        } => {
            chunked(socket, seen, len).await;
            false
        }
        Reply::Huge {
            len,
            announce: true,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_ok() {
                let filler = filler();
                let mut left = len;
                while left > 0 {
                    let n = usize::try_from(left.min(filler.len() as u64)).unwrap();
                    if !send(socket, seen, &filler[..n]).await {
                        break;
                    }
                    left -= n as u64;
                }
            }
            false
        }
        Reply::ResetMidway => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_ok() {
                send(socket, seen, &filler()[..100]).await;
            }
            reset(socket);
            false
        }
        Reply::Trickle(every) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_ok() {
                for byte in b"{\"status\":0,\"msg\":\""
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    let chunk = [b'1', b'\r', b'\n', *byte, b'\r', b'\n'];
                    if socket.write_all(&chunk).await.is_err() {
                        break;
                    }
                    seen.body_bytes_sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(every).await;
                }
            }
            false
        }
        Reply::CloseAfterRequest => {
            let _ = socket.shutdown().await;
            false
        }
        Reply::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            false
        }
        Reply::Stall | Reply::Garbage(_) => unreachable!("handled before the request"),
    }
}

/// Writes `bytes` as body bytes, counting what the kernel took; false once the client is gone.
async fn send(socket: &mut TcpStream, seen: &Seen, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match socket.write(bytes).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                seen.body_bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
                bytes = &bytes[n..];
            }
        }
    }
    true
}

/// A chunked JSON-looking body of `len` bytes (`{"status":0,"msg":"aaaa…`), cut off there.
async fn chunked(socket: &mut TcpStream, seen: &Seen, len: u64) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let filler = filler();
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(filler.len() as u64)).unwrap();
        let size = format!("{n:x}\r\n");
        if socket.write_all(size.as_bytes()).await.is_err()
            || !send(socket, seen, &filler[..n]).await
            || socket.write_all(b"\r\n").await.is_err()
        {
            return;
        }
        left -= n as u64;
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
}

/// 64 KiB of a JSON object that never closes: `{"status":0,"msg":"aaaa…`.
fn filler() -> Vec<u8> {
    let mut v = b"{\"status\":0,\"msg\":\"".to_vec();
    v.resize(64 * 1024, b'a');
    v
}

/// Closes with a TCP reset (RST) instead of an orderly close.
fn reset(socket: &TcpStream) {
    let _ = socket.set_zero_linger();
}

/// A gzip stream of about `compressed` bytes that inflates to about a thousand times as much
/// (zeros), built without inflating anything: deflate's output for a MiB of zeros after a sync
/// flush is the same bytes every time, so one such block is repeated. It has no trailer: no
/// bounded client ever reaches its end.
pub fn gzip_bomb(compressed: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut first = Vec::with_capacity(4096);
    deflate
        .compress_vec(&zeros, &mut first, FlushCompress::Sync)
        .unwrap();
    let mut block = Vec::with_capacity(4096);
    deflate
        .compress_vec(&zeros, &mut block, FlushCompress::Sync)
        .unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&first);
    while out.len() < compressed {
        out.extend_from_slice(&block);
    }
    out
}
