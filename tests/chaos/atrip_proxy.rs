//! A hostile HTTP proxy between the worker processes and ATRIP (the simulator): real HTTP/1.1
//! over TCP. It forwards most requests unchanged (one upstream connection per request; the
//! worker's connection to the proxy is kept alive as a load balancer's would be) and, now and
//! then, answers with something no ATRIP should send: a redirect (to a port nobody listens on,
//! or to the proxy itself), a connection reset in the middle of the body, a body over the
//! workers' `atrip.max_answer_bytes` (declared, streamed, or a small gzip body that inflates
//! past it), or a body that never ends. Some of those come BEFORE the request is forwarded
//! (ATRIP never sees it), some AFTER ATRIP has answered it (a `pay.do` may have been charged
//! while the worker sees garbage). Every hostile body that could be read as an answer at all
//! says the payment was accepted, or the order ticketed: a worker that read one would record
//! a payment ATRIP never made, which the checks see.
//!
//! Every exchange is logged ([`Exchange`]): what the worker sent, what the proxy did, what
//! ATRIP answered (its HTTP code, `status` and `orderStatus`, read from the body the proxy
//! forwarded or withheld), and whether that answer reached the worker whole and unchanged.
//! The checks read what a worker could have known from it (`paid.rs`).
//!
//! `pay.do`: every `pay_every`-th is hostile, after and before in turn; order queries: one in
//! every `1 / query_p`, after and before in turn. The kinds are taken in turn, one
//! cycle for `pay.do` ([`PAY_KINDS`]) and one for queries ([`QUERY_KINDS`]), each of which
//! starts with a redirect, an oversized body and an endless one, so that a small run meets
//! every sort on both.
//!
//! It runs on a thread with a runtime of its own, like [`super::tcpproxy::TcpProxy`], and stops
//! (every connection with it) when dropped.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy answers instead of ATRIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hostile {
    /// A 3xx (301, 302, 303, 307 or 308 in turn) to a port nobody listens on, with a body that
    /// says the payment was accepted.
    RedirectRefused,
    /// A 3xx to the proxy itself, same path: followed, it would send the request again.
    RedirectSelf,
    /// A head with a `Content-Length`, part of the body (ATRIP's own, when forwarded), then a
    /// TCP reset.
    ResetMidBody,
    /// A `Content-Length` far beyond `atrip.max_answer_bytes`, and bytes streaming after it.
    OversizedDeclared,
    /// A chunked body, no length, a valid answer in JSON padded beyond the limit.
    OversizedStreamed,
    /// A small gzip body (with its `Content-Length`) that inflates beyond the limit.
    GzipBomb,
    /// A chunked body that starts like an answer and trickles whitespace forever.
    Endless,
}

/// The order `pay.do` meets the kinds in: a redirect after ATRIP took the payment, an
/// oversized body before ATRIP saw it, a reset mid-body after, an endless body before, ...
pub const PAY_KINDS: [Hostile; 7] = [
    Hostile::RedirectRefused,
    Hostile::OversizedDeclared,
    Hostile::ResetMidBody,
    Hostile::Endless,
    Hostile::RedirectSelf,
    Hostile::GzipBomb,
    Hostile::OversizedStreamed,
];

/// ... and the order queries meet them in.
pub const QUERY_KINDS: [Hostile; 7] = [
    Hostile::Endless,
    Hostile::GzipBomb,
    Hostile::RedirectSelf,
    Hostile::ResetMidBody,
    Hostile::OversizedStreamed,
    Hostile::RedirectRefused,
    Hostile::OversizedDeclared,
];

impl Hostile {
    pub fn is_redirect(self) -> bool {
        matches!(self, Hostile::RedirectRefused | Hostile::RedirectSelf)
    }

    pub fn is_oversized(self) -> bool {
        matches!(
            self,
            Hostile::OversizedDeclared | Hostile::OversizedStreamed | Hostile::GzipBomb
        )
    }
}

/// Whether ATRIP saw the request a hostile answer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum When {
    /// Not forwarded: ATRIP never saw it (nothing was charged).
    Before,
    /// Forwarded, and ATRIP's answer read and withheld (a `pay.do` may have been charged).
    After,
}

/// What ATRIP answered, as the proxy read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtripAnswer {
    pub http: u16,
    /// `status` of a JSON body (`code` for a rate-limit answer is not read).
    pub status: Option<i64>,
    /// `orderStatus` of a query answer.
    pub order_status: Option<String>,
}

impl AtripAnswer {
    /// Whether this answer shows the order paid: `pay.do` accepted (0), paid with the airline
    /// PNR pending (615) or already paid (404), or a query showing `orderStatus` "1" or "2".
    pub fn shows_paid(&self, endpoint: &str) -> bool {
        if self.http != 200 {
            return false;
        }
        match endpoint {
            "pay.do" => matches!(self.status, Some(0 | 615 | 404)),
            _ => self.status == Some(0) && matches!(self.order_status.as_deref(), Some("1" | "2")),
        }
    }
}

/// One request of a worker through the proxy.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When its head arrived at the proxy (this machine's clock, like the database's).
    pub at: DateTime<Utc>,
    /// `pay.do`, `queryOrderDetails.do`, or whatever else was asked.
    pub endpoint: String,
    pub order_no: Option<String>,
    /// The `x-ticketing-worker` header.
    pub worker: Option<String>,
    pub hostile: Option<(Hostile, When)>,
    /// The request was written to ATRIP.
    pub forwarded: bool,
    /// ATRIP's whole answer, when the proxy read one.
    pub atrip: Option<AtripAnswer>,
    /// ATRIP's answer was written to the worker whole and unchanged; with how long after the
    /// request's arrival the last byte was written.
    pub delivered: Option<Duration>,
}

/// How many of each hostile answer the proxy gave, by endpoint kind and moment.
pub type Counts = BTreeMap<(Hostile, When, &'static str), usize>;

struct Shared {
    upstream: SocketAddr,
    /// The proxy's own address (for redirects to itself).
    own: SocketAddr,
    /// A port nobody listens on.
    refused: SocketAddr,
    /// The workers' `atrip.max_answer_bytes`.
    max_answer: usize,
    pay_every: usize,
    query_p: f64,
    turns: Mutex<Turns>,
    log: Mutex<Vec<Exchange>>,
    in_flight: AtomicUsize,
    in_flight_pay: AtomicUsize,
}

struct Turns {
    pays: usize,
    queries: usize,
    hostile_pays: usize,
    hostile_queries: usize,
    redirect_codes: usize,
}

/// The running proxy.
pub struct AtripProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// How the proxy behaves.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Every this many `pay.do`, one is hostile (0: none).
    pub pay_every: usize,
    /// This share of the order queries is hostile (one in every `1 / query_p`).
    pub query_p: f64,
    /// The workers' `atrip.max_answer_bytes`: oversized bodies go well beyond it.
    pub max_answer: usize,
}

impl AtripProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`, on a thread of its own.
    pub fn start(upstream: SocketAddr, config: Config) -> Result<AtripProxy, String> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("ATRIP proxy: {e}"))?;
        let own = listener.local_addr().map_err(|e| e.to_string())?;
        // Bound and closed again: nothing listens there (connections are refused).
        let refused = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("ATRIP proxy: {e}"))?;
        let shared = Arc::new(Shared {
            upstream,
            own,
            refused,
            max_answer: config.max_answer,
            pay_every: config.pay_every,
            query_p: config.query_p,
            turns: Mutex::new(Turns {
                pays: 0,
                queries: 0,
                hostile_pays: 0,
                hostile_queries: 0,
                redirect_codes: 0,
            }),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            in_flight_pay: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let served = shared.clone();
        let thread = std::thread::Builder::new()
            .name("atrip-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, served, stopped).await,
                        Err(e) => eprintln!("ATRIP proxy: {e}"),
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(AtripProxy {
            addr: own,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`: the workers' `atrip.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests being handled now (of which `pay.do`).
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.shared.in_flight.load(Ordering::SeqCst),
            self.shared.in_flight_pay.load(Ordering::SeqCst),
        )
    }

    /// Every exchange so far, in the order they ended.
    pub fn exchanges(&self) -> Vec<Exchange> {
        let mut log = self.shared.log.lock().unwrap().clone();
        log.sort_by_key(|e| e.at);
        log
    }
}

/// The hostile answers among `exchanges`, counted by kind, moment and endpoint.
pub fn counts(exchanges: &[Exchange]) -> Counts {
    let mut counts = Counts::new();
    for e in exchanges {
        if let Some((kind, when)) = e.hostile {
            let endpoint = if e.endpoint == "pay.do" {
                "pay.do"
            } else {
                "query"
            };
            *counts.entry((kind, when, endpoint)).or_default() += 1;
        }
    }
    counts
}

impl Drop for AtripProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let _ = client.set_nodelay(true);
                    tasks.spawn(connection(client, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}

/// A request as read off the worker's connection.
struct Request {
    /// Head and body, exactly as received.
    raw: Vec<u8>,
    path: String,
    order_no: Option<String>,
    worker: Option<String>,
}

/// Decrements a counter when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One worker connection: requests in turn (kept alive), until one is answered with a
/// hostile answer or an upstream failure (then the connection ends), or the worker closes it.
async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Ok(Some(request)) = read_request(&mut client, &mut buffer).await else {
            return;
        };
        let at = Utc::now();
        let arrived = Instant::now();
        let endpoint = request.path.trim_start_matches('/').to_owned();
        let _busy = InFlight::new(&shared.in_flight);
        let _paying = (endpoint == "pay.do").then(|| InFlight::new(&shared.in_flight_pay));
        let hostile = shared.decide(&endpoint);
        let mut exchange = Exchange {
            at,
            endpoint: endpoint.clone(),
            order_no: request.order_no.clone(),
            worker: request.worker.clone(),
            hostile,
            forwarded: false,
            atrip: None,
            delivered: None,
        };
        let keep_alive = match hostile {
            Some((kind, When::Before)) => {
                if shared.hostile(kind, &mut client, &request, None).await {
                    shared.log.lock().unwrap().push(exchange);
                    return reset(client);
                }
                false
            }
            Some((kind, When::After)) => {
                let fetched = fetch(&shared, &request, &mut client, &mut buffer).await;
                exchange.forwarded = fetched.forwarded;
                if let Some(answer) = &fetched.answer {
                    exchange.atrip = Some(answer.read());
                }
                if !fetched.client_gone
                    && shared
                        .hostile(kind, &mut client, &request, fetched.answer.as_ref())
                        .await
                {
                    shared.log.lock().unwrap().push(exchange);
                    return reset(client);
                }
                false
            }
            None => {
                let fetched = fetch(&shared, &request, &mut client, &mut buffer).await;
                exchange.forwarded = fetched.forwarded;
                match fetched.answer {
                    Some(answer) if !fetched.client_gone => {
                        exchange.atrip = Some(answer.read());
                        let written = client.write_all(&answer.head).await.is_ok()
                            && client.write_all(&answer.body).await.is_ok()
                            && client.flush().await.is_ok();
                        if written {
                            exchange.delivered = Some(arrived.elapsed());
                        }
                        written && answer.keep_alive
                    }
                    Some(answer) => {
                        exchange.atrip = Some(answer.read());
                        false
                    }
                    None => {
                        // ATRIP dropped it (a reset, a held request given up): so does the
                        // proxy, as ATRIP's own connection would have.
                        reset(client);
                        shared.log.lock().unwrap().push(exchange);
                        return;
                    }
                }
            }
        };
        shared.log.lock().unwrap().push(exchange);
        if !keep_alive {
            let _ = client.shutdown().await;
            return;
        }
    }
}

impl Shared {
    /// Whether this request gets a hostile answer, which, and when.
    fn decide(&self, endpoint: &str) -> Option<(Hostile, When)> {
        let mut t = self.turns.lock().unwrap();
        let (n, kinds) = match endpoint {
            "pay.do" => {
                t.pays += 1;
                let hit = self.pay_every > 0 && t.pays % self.pay_every == self.pay_every / 2;
                if !hit {
                    return None;
                }
                t.hostile_pays += 1;
                (t.hostile_pays - 1, &PAY_KINDS)
            }
            "queryOrderDetails.do" => {
                // One in every 1/query_p, evenly spaced (not drawn at random: a small run
                // of a few hundred queries meets the first kinds of the cycle for sure).
                t.queries += 1;
                let every = if self.query_p > 0.0 {
                    (1.0 / self.query_p.min(1.0)).round().max(1.0) as usize
                } else {
                    0
                };
                if every == 0 || t.queries % every != every / 2 {
                    return None;
                }
                t.hostile_queries += 1;
                (t.hostile_queries - 1, &QUERY_KINDS)
            }
            _ => return None,
        };
        // Kinds in turn; after and before in turn (after first: the charged-but-garbage case).
        // Seven kinds, two moments: each kind meets both moments over fourteen turns.
        let kind = kinds[n % kinds.len()];
        let when = if n % 2 == 0 {
            When::After
        } else {
            When::Before
        };
        Some((kind, when))
    }

    fn redirect_code(&self) -> (u16, &'static str) {
        const CODES: [(u16, &str); 5] = [
            (307, "Temporary Redirect"),
            (302, "Found"),
            (308, "Permanent Redirect"),
            (301, "Moved Permanently"),
            (303, "See Other"),
        ];
        let mut t = self.turns.lock().unwrap();
        t.redirect_codes += 1;
        CODES[(t.redirect_codes - 1) % CODES.len()]
    }

    /// Writes one hostile answer to `client`. `atrip`: ATRIP's own answer when the request
    /// was forwarded. Returns whether the caller must end the connection with a reset (else
    /// it closes it).
    async fn hostile(
        &self,
        kind: Hostile,
        client: &mut TcpStream,
        request: &Request,
        atrip: Option<&Fetched>,
    ) -> bool {
        let trap = trap_body(&request.path, request.order_no.as_deref());
        match kind {
            Hostile::RedirectRefused | Hostile::RedirectSelf => {
                let target = if kind == Hostile::RedirectRefused {
                    self.refused
                } else {
                    self.own
                };
                let (code, reason) = self.redirect_code();
                let head = format!(
                    "HTTP/1.1 {code} {reason}\r\nLocation: http://{target}{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    request.path,
                    trap.len()
                );
                let _ = client.write_all(head.as_bytes()).await;
                let _ = client.write_all(trap.as_bytes()).await;
            }
            Hostile::ResetMidBody => {
                let (head, body) = match atrip {
                    Some(a) if !a.body.is_empty() => (a.head.clone(), a.body.clone()),
                    _ => (
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            trap.len()
                        )
                        .into_bytes(),
                        trap.clone().into_bytes(),
                    ),
                };
                let _ = client.write_all(&head).await;
                let _ = client.write_all(&body[..body.len() / 2]).await;
                let _ = client.flush().await;
                // Let the bytes leave before the reset (a reset discards unsent data).
                tokio::time::sleep(Duration::from_millis(30)).await;
                return true;
            }
            Hostile::OversizedDeclared => {
                let declared = self.max_answer * 64;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
                );
                let mut body = trap.trim_end_matches('}').to_owned();
                body.push_str(",\"pad\":\"");
                let _ = client.write_all(head.as_bytes()).await;
                let _ = client.write_all(body.as_bytes()).await;
                let pad = vec![b'a'; 16 * 1024];
                stream_until(client, &pad, declared, Duration::from_secs(10), None).await;
            }
            Hostile::OversizedStreamed => {
                let padded = padded(&trap, self.max_answer * 4);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                if client.write_all(head.as_bytes()).await.is_ok() {
                    for piece in padded.as_bytes().chunks(16 * 1024) {
                        if client.write_all(&chunk(piece)).await.is_err() {
                            return false;
                        }
                    }
                    let _ = client.write_all(b"0\r\n\r\n").await;
                }
            }
            Hostile::GzipBomb => {
                let padded = padded(&trap, self.max_answer * 8);
                let compressed = gzip(padded.as_bytes());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    compressed.len()
                );
                let _ = client.write_all(head.as_bytes()).await;
                let _ = client.write_all(&compressed).await;
            }
            Hostile::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                let start = trap.trim_end_matches('}').to_owned() + ",\"more\":";
                if client.write_all(head.as_bytes()).await.is_ok()
                    && client.write_all(&chunk(start.as_bytes())).await.is_ok()
                {
                    // Whitespace is valid JSON between tokens: the document never ends.
                    let spaces = chunk(&[b' '; 64]);
                    stream_until(
                        client,
                        &spaces,
                        usize::MAX,
                        Duration::from_secs(60),
                        Some(Duration::from_millis(100)),
                    )
                    .await;
                }
            }
        }
        let _ = client.flush().await;
        false
    }
}

/// Writes `piece` again and again (every `every`, or as fast as the worker reads) until
/// `total` bytes, `limit` of time, or the worker is gone.
async fn stream_until(
    client: &mut TcpStream,
    piece: &[u8],
    total: usize,
    limit: Duration,
    every: Option<Duration>,
) {
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < total && started.elapsed() < limit {
        let n = piece.len().min(total - sent);
        match tokio::time::timeout(Duration::from_secs(5), client.write_all(&piece[..n])).await {
            Ok(Ok(())) => sent += n,
            _ => return,
        }
        if let Some(every) = every {
            tokio::time::sleep(every).await;
        }
    }
}

/// An answer that, if read, would say the payment was accepted (`pay.do`) or the order
/// ticketed (a query): a worker that believes a hostile body records what ATRIP never said.
fn trap_body(path: &str, order_no: Option<&str>) -> String {
    let no = order_no.unwrap_or("");
    if path.ends_with("pay.do") {
        json!({"status": 0, "msg": "success", "orderNo": no, "pnrCode": "HOSTILE",
               "paymentMethod": 1})
        .to_string()
    } else {
        json!({"status": 0, "msg": "success", "orderNo": no, "pnrCode": "HOSTILE",
               "orderStatus": "2", "ticketStatus": "1",
               "paxTicketInfos": [{"name": "DOE/JANE", "ticketNos": ["999-0000000000"],
                                   "airlinePNRs": ["HOSTL1"]}],
               "airlineBookings": [{"airlinePnr": "HOSTL1"}]})
        .to_string()
    }
}

/// `trap` with a padding field that makes the whole document at least `size` bytes.
fn padded(trap: &str, size: usize) -> String {
    let mut out = String::with_capacity(size + trap.len() + 16);
    out.push_str(trap.trim_end_matches('}'));
    out.push_str(",\"pad\":\"");
    out.extend(std::iter::repeat_n('a', size));
    out.push_str("\"}");
    out
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("in-memory write");
    encoder.finish().expect("in-memory write")
}

/// Closes with RST.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// The most of a head the proxy reads; the most of a body (requests and ATRIP's answers).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Reads one request (head and `Content-Length` body) off the worker's connection; `None` when
/// the worker closed it between requests. `buffer` keeps what was read beyond it.
async fn read_request(
    client: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Option<Request>, String> {
    let Some(head_end) = read_head(client, buffer).await? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let headers = parse_headers(lines);
    if headers.contains_key("transfer-encoding") {
        return Err("chunked requests are not proxied".into());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err("request body too large".into());
    }
    read_at_least(client, buffer, head_end + length).await?;
    let raw: Vec<u8> = buffer.drain(..head_end + length).collect();
    let order_no = serde_json::from_slice::<Value>(&raw[head_end..])
        .ok()
        .and_then(|v| v.get("orderNo")?.as_str().map(|s| s.trim().to_owned()));
    Ok(Some(Request {
        raw,
        path,
        order_no,
        worker: headers.get("x-ticketing-worker").cloned(),
    }))
}

/// Reads until `buffer` holds a whole head; returns its length (with the blank line). `None`:
/// the stream ended cleanly before any byte of a head.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Result<Option<usize>, String> {
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(at + 4));
        }
        if buffer.len() > MAX_HEAD {
            return Err("head too large".into());
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) if buffer.is_empty() => return Ok(None),
            Ok(0) => return Err("the stream ended inside a head".into()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn read_at_least<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    len: usize,
) -> Result<(), String> {
    while buffer.len() < len {
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("the stream ended inside a body".into()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

/// ATRIP's whole answer, as read by the proxy.
struct Fetched {
    head: Vec<u8>,
    body: Vec<u8>,
    http: u16,
    gzip: bool,
    keep_alive: bool,
}

impl Fetched {
    /// Its HTTP code, `status` and `orderStatus`.
    fn read(&self) -> AtripAnswer {
        let mut body = Vec::new();
        let plain = if self.gzip {
            match flate2::read::GzDecoder::new(&self.body[..])
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
            {
                Ok(_) => &body[..],
                Err(_) => &[][..],
            }
        } else {
            &self.body[..]
        };
        let json = serde_json::from_slice::<Value>(plain).ok();
        AtripAnswer {
            http: self.http,
            status: json.as_ref().and_then(|j| j.get("status")?.as_i64()),
            order_status: json
                .as_ref()
                .and_then(|j| j.get("orderStatus")?.as_str().map(str::to_owned)),
        }
    }
}

/// What forwarding one request came to.
struct Forwarded {
    forwarded: bool,
    /// ATRIP's whole answer; `None` when it dropped the connection, or the worker left first.
    answer: Option<Fetched>,
    /// The worker closed its connection while ATRIP had not answered yet.
    client_gone: bool,
}

/// Sends the request to ATRIP on a connection of its own and reads the whole answer, while
/// watching the worker's connection: a worker that gives up (its timeout, a kill) closes it,
/// and the proxy then drops ATRIP's connection too, as a load balancer would.
async fn fetch(
    shared: &Shared,
    request: &Request,
    client: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Forwarded {
    let mut out = Forwarded {
        forwarded: false,
        answer: None,
        client_gone: false,
    };
    let upstream = async {
        let mut server =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(shared.upstream))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let _ = server.set_nodelay(true);
        server
            .write_all(&request.raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(server)
    };
    let mut server = match upstream.await {
        Ok(server) => server,
        Err(_) => return out,
    };
    out.forwarded = true;
    let watch_client = async {
        // Anything the worker sends now is a next request (kept for later); end of stream or
        // an error is the worker gone.
        let mut chunk = [0u8; 4096];
        loop {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::select! {
        answer = read_answer(&mut server) => out.answer = answer.ok(),
        () = watch_client => out.client_gone = true,
    }
    out
}

/// Reads one whole HTTP answer: head, then a `Content-Length` body, a chunked body, or a body
/// up to the end of the stream.
async fn read_answer(server: &mut TcpStream) -> Result<Fetched, String> {
    let mut buffer = Vec::new();
    let head_end = read_head(server, &mut buffer)
        .await?
        .ok_or("ATRIP closed the connection without an answer")?;
    let head_text = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let http: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let headers = parse_headers(lines);
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let close = headers
        .get("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let head = buffer[..head_end].to_vec();
    let mut rest = buffer.split_off(head_end);
    let (body, keep_alive) = if chunked {
        // Forwarded as it came (chunk framing included), decoded for reading.
        let raw = read_chunked(server, &mut rest).await?;
        (raw, !close)
    } else if let Some(length) = headers.get("content-length").and_then(|v| v.parse().ok()) {
        if length > MAX_BODY {
            return Err("ATRIP's answer is too large for the proxy".into());
        }
        read_at_least(server, &mut rest, length).await?;
        rest.truncate(length);
        (rest, !close)
    } else {
        server
            .take(MAX_BODY as u64)
            .read_to_end(&mut rest)
            .await
            .map_err(|e| e.to_string())?;
        (rest, false)
    };
    Ok(Fetched {
        head,
        body,
        http,
        gzip: gzip && !chunked,
        keep_alive,
    })
}

/// Reads a chunked body to its end; returns its bytes as sent (framing included).
async fn read_chunked(server: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(p) = buffer[at..].windows(2).position(|w| w == b"\r\n") {
                break at + p;
            }
            let need = buffer.len() + 1;
            read_at_least(server, buffer, need).await?;
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                if let Some(p) = buffer[line_end..].windows(4).position(|w| w == b"\r\n\r\n") {
                    let end = line_end + p + 4;
                    buffer.truncate(end);
                    return Ok(std::mem::take(buffer));
                }
                let need = buffer.len() + 1;
                read_at_least(server, buffer, need).await?;
            }
        }
        let end = line_end + 2 + size + 2;
        if end > MAX_BODY {
            return Err("ATRIP's answer is too large for the proxy".into());
        }
        read_at_least(server, buffer, end).await?;
        at = end;
    }
}
