//! `bench --hostile`: the ATRIP client, as the worker builds it from the default settings, at
//! the worker's default concurrency against a hostile ATRIP on 127.0.0.1 (answers far over
//! the size limit, gzip bombs, endless chunked bodies, slow trickles, resets, and now and then
//! an honest answer), for `--orders` answers; then this process's peak RSS (VmHWM), which must
//! stay under the deployment's memory limit.
//!
//! The hostile server runs in this process (its own memory counts too: the figure is an upper
//! bound for the client), and nothing else does: no PostgreSQL, no worker, so that the peak is
//! the answers' and the client's.
//!
//! The last line: `hostile: answers=… peak_rss_mib=… limit_mib=128 …`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use ticketing_tracker::atrip::{Client, PayAnswer, PayRequest, QueryAnswer};
use ticketing_tracker::config::Settings;
use ticketing_tracker::domain::PaymentMethod;

/// The deployment's memory limit (its container's), which the peak is compared with.
const LIMIT_MIB: f64 = 128.0;

/// ATRIP's own documented answer to an order query: the honest answers among the hostile ones,
/// which must still read as an order.
const HONEST: &str = include_str!("../../../../tests/fixtures/atrip/docs_query_ticketed.json");

/// What the server answers, in turn, one kind per request.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// 200 MB, chunked: read until the size limit stops it.
    Oversized,
    /// 200 MB with its `Content-Length`: refused before reading.
    Announced,
    /// 2 MB of gzip inflating to about 2 GB.
    GzipBomb,
    /// A chunked body that never ends.
    Endless,
    /// One byte every 50 ms until the client's timeout.
    Trickle,
    /// 100 bytes of a 1000-byte body, then a TCP reset.
    Reset,
    /// ATRIP's documented ticketed answer.
    Honest,
}

/// Mostly answers that are read at full speed up to the limit (they load memory the most);
/// an honest answer one time in eight, which must still be read; a trickle and a reset now and
/// then (a trickle holds its slot until the timeout, so many would leave the others idle).
const KINDS: [Kind; 16] = [
    Kind::Oversized,
    Kind::GzipBomb,
    Kind::Endless,
    Kind::Announced,
    Kind::Honest,
    Kind::Oversized,
    Kind::GzipBomb,
    Kind::Endless,
    Kind::Announced,
    Kind::Trickle,
    Kind::Oversized,
    Kind::GzipBomb,
    Kind::Endless,
    Kind::Announced,
    Kind::Honest,
    Kind::Reset,
];

/// Runs the hostile phase for `answers` answers and prints its line. The settings are the
/// worker's (`Settings::load`: the defaults, `config/{APP_ENVIRONMENT}.toml`, `APP_…`
/// variables), so that `APP_ATRIP__ANSWER_BUDGET_BYTES` or `APP_WORKER__CONCURRENCY` can be
/// measured; only the base URL is the hostile server's.
pub async fn run(answers: usize) -> anyhow::Result<()> {
    let loaded = Settings::load()?;
    let concurrency = loaded.worker.concurrency;
    let server = Server::start().await?;
    let mut settings = loaded.atrip.clone();
    settings.base_url = format!("http://{}", server.addr);
    let client = Client::new(&settings)?;
    let order_no = serde_json::from_str::<serde_json::Value>(HONEST)?["orderNo"]
        .as_str()
        .context("the honest answer names its order")?
        .to_owned();
    let baseline_mib = status_mib("VmRSS:");
    println!(
        "hostile: {answers} answers, concurrency {concurrency}, max_answer_bytes {}, answer_budget_bytes {}, timeouts pay {} ms / query {} ms; RSS before {baseline_mib:.1} MiB",
        settings.max_answer_bytes,
        settings.answer_budget_bytes,
        settings.pay_timeout_ms,
        settings.query_timeout_ms,
    );

    // Socket buffers are kernel memory, outside RSS (but inside a cgroup's memory limit): the
    // largest total the kernel held for TCP while the answers ran, both ends included.
    let tcp_pages = Arc::new(AtomicU64::new(0));
    let sampler = {
        let tcp_pages = Arc::clone(&tcp_pages);
        tokio::spawn(async move {
            loop {
                tcp_pages.fetch_max(tcp_mem_pages(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, tally, next, order_no) = (
            client.clone(),
            Arc::clone(&tally),
            Arc::clone(&next),
            order_no.clone(),
        );
        slots.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < answers {
                tally.pay(
                    &client
                        .pay(&PayRequest::new(&order_no, PaymentMethod::Deposit, None))
                        .await,
                );
                if next.fetch_add(1, Ordering::Relaxed) < answers {
                    tally.query(&client.query(&order_no).await);
                }
            }
        });
    }
    while let Some(done) = slots.join_next().await {
        done?;
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let peak_mib = status_mib("VmHWM:");
    let tcp_mib = tcp_pages.load(Ordering::Relaxed) as f64 * 4096.0 / f64::from(1 << 20);
    let t = &*tally;
    println!(
        "hostile: answers={} peak_rss_mib={peak_mib:.1} limit_mib={LIMIT_MIB:.0} baseline_rss_mib={baseline_mib:.1} concurrency={concurrency} over_limit={} over_budget={} timed_out={} broken={} honest_ok={}/{} other={} tcp_mem_peak_mib={tcp_mib:.0} server_bytes_sent_mib={:.0} elapsed_s={:.1}",
        t.total(),
        t.over_limit.load(Ordering::Relaxed),
        t.over_budget.load(Ordering::Relaxed),
        t.timed_out.load(Ordering::Relaxed),
        t.broken.load(Ordering::Relaxed),
        t.honest_ok.load(Ordering::Relaxed),
        server.honest.load(Ordering::Relaxed),
        t.other.load(Ordering::Relaxed),
        server.sent.load(Ordering::Relaxed) as f64 / f64::from(1 << 20),
        elapsed.as_secs_f64(),
    );
    anyhow::ensure!(
        peak_mib < LIMIT_MIB,
        "peak RSS {peak_mib:.1} MiB is over the {LIMIT_MIB} MiB limit"
    );
    Ok(())
}

/// How the answers were classified, by why they were unclear.
#[derive(Default)]
struct Tally {
    over_limit: AtomicUsize,
    over_budget: AtomicUsize,
    timed_out: AtomicUsize,
    broken: AtomicUsize,
    honest_ok: AtomicUsize,
    other: AtomicUsize,
}

impl Tally {
    fn total(&self) -> usize {
        [
            &self.over_limit,
            &self.over_budget,
            &self.timed_out,
            &self.broken,
            &self.honest_ok,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    fn reason(&self, reason: &str) {
        let counter = if reason.contains("max_answer_bytes") {
            &self.over_limit
        } else if reason.contains("answer_budget_bytes") {
            &self.over_budget
        } else if reason.contains("timed out") {
            &self.timed_out
        } else if reason.contains("broke off") || reason.contains("reset") {
            &self.broken
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn pay(&self, answer: &PayAnswer) {
        match answer {
            PayAnswer::OutcomeUnknown { reason, .. } | PayAnswer::NotSent { reason } => {
                self.reason(reason)
            }
            // The honest answer is a query's; as a pay.do answer it names its own order,
            // which is this one: accepted.
            PayAnswer::Accepted { .. } => {
                self.honest_ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn query(&self, answer: &QueryAnswer) {
        match answer {
            QueryAnswer::Order(v) if v.final_tickets(None).is_some() => {
                self.honest_ok.fetch_add(1, Ordering::Relaxed);
            }
            QueryAnswer::Invalid { reason, .. } | QueryAnswer::Retry { reason } => {
                self.reason(reason)
            }
            _ => {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A field of /proc/self/status (`VmRSS:`, `VmHWM:`), in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(f64::NAN)
        / 1024.0
}

/// The pages the kernel holds for TCP sockets (`/proc/net/sockstat`, `TCP: … mem N`).
fn tcp_mem_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_owned();
            let mut words = line.split_whitespace();
            words.find(|w| *w == "mem")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The hostile ATRIP: one kind of answer per request, in turn.
struct Server {
    addr: std::net::SocketAddr,
    sent: Arc<AtomicU64>,
    honest: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> anyhow::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let honest = Arc::new(AtomicUsize::new(0));
        let bomb: Arc<[u8]> = gzip_bomb(2_000_000).into();
        let turn = Arc::new(AtomicUsize::new(0));
        let (sent_, honest_) = (Arc::clone(&sent), Arc::clone(&honest));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (sent, honest, bomb, turn) = (
                    Arc::clone(&sent_),
                    Arc::clone(&honest_),
                    Arc::clone(&bomb),
                    Arc::clone(&turn),
                );
                tokio::spawn(async move {
                    let mut socket = socket;
                    small_send_buffer(&socket);
                    while read_request(&mut socket).await {
                        let kind = KINDS[turn.fetch_add(1, Ordering::Relaxed) % KINDS.len()];
                        if let Kind::Honest = kind {
                            honest.fetch_add(1, Ordering::Relaxed);
                        }
                        if !answer(&mut socket, kind, &bomb, &sent).await {
                            break;
                        }
                    }
                });
            }
        });
        Ok(Server { addr, sent, honest })
    }
}

/// Keeps the server's own socket buffers small (64 KiB), so that what the kernel holds for
/// TCP (`tcp_mem_peak_mib`) is mostly the client's receive buffers: the part a worker's
/// container would be charged for.
fn small_send_buffer(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt reads one c_int from a live pointer for a socket this task owns.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads one request (head and body, `Content-Length` only); false once the client is gone.
async fn read_request(socket: &mut TcpStream) -> bool {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return true;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// 64 KiB of a JSON object that never closes (`{"status":0,"msg":"aaaa…`): the oversized and
/// endless bodies, sent again and again.
static FILLER: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut v = b"{\"status\":0,\"msg\":\"".to_vec();
    v.resize(64 * 1024, b'a');
    v
});

/// Sends one answer of `kind`; whether the connection may carry another request.
async fn answer(socket: &mut TcpStream, kind: Kind, bomb: &[u8], sent: &AtomicU64) -> bool {
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    let filler = &*FILLER;
    match kind {
        Kind::Honest => {
            let head = format!("{OK}Content-Length: {}\r\n\r\n", HONEST.len());
            write(socket, head.as_bytes(), sent).await
                && write(socket, HONEST.as_bytes(), sent).await
        }
        Kind::Announced => {
            let head = format!("{OK}Content-Length: {}\r\n\r\n", 200_u64 << 20);
            if write(socket, head.as_bytes(), sent).await {
                let mut left: u64 = 200 << 20;
                while left > 0 && write(socket, filler, sent).await {
                    left = left.saturating_sub(filler.len() as u64);
                }
            }
            false
        }
        Kind::Oversized | Kind::Endless => {
            let mut left: u64 = match kind {
                Kind::Oversized => 200 << 20,
                _ => u64::MAX,
            };
            let head = format!("{OK}Transfer-Encoding: chunked\r\n\r\n");
            let mut framed = format!("{:x}\r\n", filler.len()).into_bytes();
            framed.extend_from_slice(filler);
            framed.extend_from_slice(b"\r\n");
            if write(socket, head.as_bytes(), sent).await {
                while left > 0 && write(socket, &framed, sent).await {
                    left = left.saturating_sub(filler.len() as u64);
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            }
            false
        }
        Kind::GzipBomb => {
            let head = format!(
                "{OK}Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                bomb.len()
            );
            if write(socket, head.as_bytes(), sent).await {
                write(socket, bomb, sent).await;
            }
            false
        }
        Kind::Trickle => {
            let head = format!("{OK}Transfer-Encoding: chunked\r\n\r\n");
            if write(socket, head.as_bytes(), sent).await {
                for byte in b"{\"status\":0,\"msg\":\""
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    let chunk = [b'1', b'\r', b'\n', *byte, b'\r', b'\n'];
                    if !write(socket, &chunk, sent).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            false
        }
        Kind::Reset => {
            let head = format!("{OK}Content-Length: 1000\r\n\r\n");
            if write(socket, head.as_bytes(), sent).await {
                write(socket, &filler[..100], sent).await;
            }
            // SO_LINGER 0: the close is a reset.
            let _ = socket.set_zero_linger();
            false
        }
    }
}

/// Writes `bytes`, counting them; false once the client stopped reading.
async fn write(socket: &mut TcpStream, bytes: &[u8], sent: &AtomicU64) -> bool {
    let ok = socket.write_all(bytes).await.is_ok();
    if ok {
        sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    ok
}

/// About `compressed` bytes of gzip that inflate a thousand times (zeros), built without
/// inflating anything: after a sync flush, deflate writes a MiB of zeros as the same bytes
/// every time, so one such block is repeated. No trailer: a bounded client never gets there.
fn gzip_bomb(compressed: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut first = Vec::with_capacity(4096);
    let mut block = Vec::with_capacity(4096);
    for out in [&mut first, &mut block] {
        // Cannot fail: the output has room for a MiB of zeros deflated (about 1 KB).
        let _ = deflate.compress_vec(&zeros, out, FlushCompress::Sync);
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&first);
    while out.len() < compressed && !block.is_empty() {
        out.extend_from_slice(&block);
    }
    out
}
