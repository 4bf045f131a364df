//! The HTTP port against slow and idle clients, over real TCP: a head that trickles in is cut
//! off at the header deadline, a body that trickles in at the body deadline (408), and past the
//! connection limit new connections wait, without starving a real request.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use ticketing_tracker::http::{serve_on, Limits};
use ticketing_tracker::jobs::JobStore;

const HEADER: Duration = Duration::from_millis(1000);
const IDLE: Duration = Duration::from_millis(1500);

/// The real server (the accept loop `run` uses) with short deadlines, on a free port. No
/// database is needed for `/healthz`: the pool points nowhere and is never used.
async fn serve(max_connections: usize) -> std::net::SocketAddr {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let router = ticketing_tracker::http::router(JobStore::new(pool), "s".to_owned().into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        header_read_timeout: HEADER,
        idle_timeout: IDLE,
        max_connections,
    };
    tokio::spawn(serve_on(listener, router, limits, CancellationToken::new()));
    addr
}

/// A connection that sends the start of a request, then one header byte every 200 ms, for as
/// long as the server keeps it; returns how long the server kept it open.
async fn trickle(addr: std::net::SocketAddr) -> Duration {
    trickle_after(addr, b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .0
}

/// A connection that sends `head`, then one byte every 200 ms, for as long as the server keeps
/// it; returns how long the server kept it open and what it said before closing.
async fn trickle_after(addr: std::net::SocketAddr, head: &[u8]) -> (Duration, String) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writing = async {
        let _ = write.write_all(head).await;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = async {
        // The server closes (0 bytes, or a reset).
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    let watch = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            _ = closed => {}
            _ = writing => {}
        }
    });
    assert!(
        watch.await.is_ok(),
        "a trickling connection was still open after 30 s"
    );
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test]
async fn clients_trickling_header_bytes_are_closed_within_the_header_timeout() {
    let addr = serve(256).await;
    let kept: Vec<Duration> = futures_util::future::join_all((0..40).map(|_| trickle(addr))).await;
    for d in &kept {
        assert!(
            *d >= HEADER - Duration::from_millis(100) && *d < HEADER + Duration::from_millis(1500),
            "a trickling connection was kept {d:?} with a header timeout of {HEADER:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_within_the_header_timeout() {
    let addr = serve(256).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection was still open after 10 s"
    );
    assert!(started.elapsed() < HEADER + Duration::from_millis(1500));
}

/// A body that stops arriving is answered 408 and its connection closed once the body's
/// deadline (as long as the head's) has passed, before the idle timeout.
#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_within_the_body_deadline() {
    let addr = serve(256).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/atrip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "a stalled body was still open after 10 s");
    let kept = started.elapsed();
    assert!(
        kept >= HEADER - Duration::from_millis(100) && kept < IDLE,
        "kept {kept:?} with a body deadline of {HEADER:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A trickle of body bytes never holds a connection: each byte moves the idle timer, not the
/// body's deadline. With 40 such clients on a port of 8 connections, each is answered 408 and
/// closed within the deadline, and a real request is answered meanwhile.
#[tokio::test]
async fn clients_trickling_body_bytes_are_closed_within_the_body_deadline_and_a_real_request_is_answered(
) {
    let addr = serve(8).await;
    let trickle_body = move || {
        trickle_after(
            addr,
            b"POST /webhooks/atrip?secret=x HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n",
        )
    };
    let slow = tokio::spawn(async move {
        futures_util::future::join_all((0..40).map(|_| trickle_body())).await
    });
    let real = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("a real request was answered")
        .unwrap();
    let waited = real.elapsed();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    println!("a real request past 40 trickling bodies on 8 connections: answered in {waited:?}");
    for (kept, answer) in slow.await.unwrap() {
        // Each waits for a slot (five rounds of eight at most), then gets the deadline.
        assert!(
            kept < (HEADER + Duration::from_millis(500)) * 10,
            "a trickling body was kept {kept:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

#[tokio::test]
async fn past_the_connection_limit_a_real_request_waits_for_a_slot_and_is_answered() {
    let addr = serve(4).await;
    // Four slow clients take every slot, and keep coming back as they are closed.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                for _ in 0..3 {
                    kept.push(trickle(addr).await);
                }
                kept
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let started = Instant::now();
    let resp = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("a real request past the limit is answered, not starved");
    let waited = started.elapsed();
    assert_eq!(resp.status(), 200);
    // It waited for a slow client to be closed: the limit held.
    assert!(
        waited >= Duration::from_millis(400),
        "answered after {waited:?}: the four slots were not all taken, so no limit held"
    );
    assert!(
        waited < HEADER * 3,
        "answered only after {waited:?}: starved"
    );
    for handle in slow {
        handle.await.unwrap();
    }
}
