//! The ATRIP client against a hostile ATRIP (or a hostile proxy on the path), a raw HTTP/1.1
//! server of our own (`hostile/server.rs`): redirects are never followed, answers are read no
//! further than their bound, the whole call ends within its timeout, and only a request that
//! provably never left is "not sent".

mod server;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use ticketing_tracker::atrip::client::PARSED_RESERVE;
use ticketing_tracker::atrip::{Client, PayAnswer, PayRequest, QueryAnswer};
use ticketing_tracker::card::CreditCard;
use ticketing_tracker::config::AtripSettings;
use ticketing_tracker::domain::PaymentMethod;

use crate::support::app::{test_settings, vcc_card};
use server::{Hostile, Reply};

const ORDER_NO: &str = "TESTA20260824171418381";

/// The answer limit of these tests: small, so that "read no further" is plain in the figures.
const LIMIT: u64 = 64 * 1024;

/// What the kernel may take from a server on loopback after the client stopped reading: the
/// server's send buffer and the client's receive buffer (autotuned, at most a few MiB at the
/// pace a client reads 64 KiB). An unbounded client reads until the server's own stop
/// (`server::SERVER_STOP`, 256 MiB) or its timeout.
const SOCKET_SLACK: u64 = 16 << 20;

/// Settings for a client of `url`: the test timeouts (2 s per call, 1 s to connect) and
/// [`LIMIT`]; `tweak` changes the rest.
fn settings(url: &str, tweak: impl FnOnce(&mut AtripSettings)) -> AtripSettings {
    let mut settings = test_settings("postgres://postgres@127.0.0.1:5432/unused", url).atrip;
    settings.max_answer_bytes = LIMIT;
    settings.answer_budget_bytes = 16 * LIMIT;
    tweak(&mut settings);
    settings
}

fn client(url: &str) -> Client {
    Client::new(&settings(url, |_| {})).unwrap()
}

fn vcc() -> CreditCard {
    CreditCard::from_json(&vcc_card(), PaymentMethod::Vcc, Utc::now()).unwrap()
}

async fn pay_vcc(client: &Client) -> PayAnswer {
    let card = vcc();
    client
        .pay(&PayRequest::new(ORDER_NO, PaymentMethod::Vcc, Some(&card)))
        .await
}

/// A port nobody listens on: bound a moment ago and closed.
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unknown_reason(answer: &PayAnswer) -> &str {
    match answer {
        PayAnswer::OutcomeUnknown {
            status: None,
            reason,
        } => reason,
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

fn ticketed_answer() -> String {
    json!({
        "status": 0, "msg": "success", "orderNo": ORDER_NO, "pnrCode": "ABC123",
        "orderStatus": "1", "ticketStatus": "0", "paxTicketInfos": [],
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------------

/// Rules P4 and P4h: a redirect is never followed; the outcome is unknown.
#[tokio::test]
async fn a_redirect_to_a_refused_port_is_an_unknown_outcome_and_never_not_sent() {
    let target = format!("http://127.0.0.1:{}/pay.do", refused_port());
    for code in [301, 302, 303, 307, 308] {
        let atrip = Hostile::always(Reply::Redirect(code, target.clone())).await;
        let answer = pay_vcc(&client(&atrip.url())).await;
        let reason = unknown_reason(&answer);
        assert!(
            reason.contains(&format!("HTTP {code}")) && reason.contains("redirect"),
            "{reason}"
        );
        assert_eq!(atrip.seen.request_count(), 1, "HTTP {code}");
    }
}

#[tokio::test]
async fn a_redirect_back_to_pay_do_sends_it_once() {
    let atrip = Hostile::start(|_| Reply::Redirect(307, "/pay.do".into())).await;
    let answer = pay_vcc(&client(&atrip.url())).await;
    unknown_reason(&answer);
    assert_eq!(atrip.seen.request_count(), 1, "{:?}", atrip.seen.requests());
}

#[tokio::test]
async fn a_redirect_to_another_host_sends_it_nothing_neither_the_card_nor_the_secret() {
    let other = Hostile::always(Reply::Json(ticketed_answer())).await;
    let atrip = Hostile::always(Reply::Redirect(307, format!("{}/pay.do", other.url()))).await;
    let client = client(&atrip.url());

    unknown_reason(&pay_vcc(&client).await);
    let query = client.query(ORDER_NO).await;
    assert!(
        matches!(&query, QueryAnswer::Invalid { reason, .. } if reason.contains("redirect")),
        "{query:?}"
    );
    assert_eq!(
        other
            .seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the other host was contacted: {:?}",
        other.seen.requests()
    );
    // The configured host did get them, once each.
    let requests = atrip.seen.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].contains("sim-secret") && requests[0].contains("4532015112830366"));
}

// ---------------------------------------------------------------------------------------------
// Bounded answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gzip_bomb_is_read_no_further_than_the_limit() {
    // 2 MB on the wire, about 2 GB once inflated.
    let atrip = Hostile::always(Reply::GzipBomb {
        compressed: 2_000_000,
    })
    .await;
    let client = client(&atrip.url());
    let answer = pay_vcc(&client).await;
    let reason = unknown_reason(&answer);
    assert!(
        reason.contains("max_answer_bytes") && reason.contains(&LIMIT.to_string()),
        "{reason}"
    );
    let query = client.query(ORDER_NO).await;
    assert!(
        matches!(&query, QueryAnswer::Invalid { reason, .. } if reason.contains("max_answer_bytes")),
        "{query:?}"
    );
    assert_eq!(client.answer_bytes_held(), 0, "every share went back");
}

#[tokio::test]
async fn an_endless_body_is_read_no_further_than_the_limit_and_ends_the_call_at_once() {
    let atrip = Hostile::always(Reply::Endless).await;
    let client = client(&atrip.url());
    let answer = pay_vcc(&client).await;
    let reason = unknown_reason(&answer);
    assert!(reason.contains("max_answer_bytes"), "{reason}");
    // The client stopped reading: what the server sent is the limit plus what the sockets
    // hold, never the whole stream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = atrip.seen.sent();
    assert!(
        sent < LIMIT + SOCKET_SLACK,
        "the server sent {sent} bytes for a {LIMIT}-byte limit"
    );
    let query = client.query(ORDER_NO).await;
    assert!(
        matches!(&query, QueryAnswer::Invalid { reason, .. } if reason.contains("max_answer_bytes")),
        "{query:?}"
    );
}

#[tokio::test]
async fn an_answer_whose_length_says_it_is_too_large_is_not_read_at_all() {
    let atrip = Hostile::always(Reply::Huge {
        len: 200 << 20,
        announce: true,
    })
    .await;
    let client = client(&atrip.url());
    let query = client.query(ORDER_NO).await;
    assert!(
        matches!(&query, QueryAnswer::Invalid { reason, .. } if reason.contains("max_answer_bytes")),
        "{query:?}"
    );
    let reason = unknown_reason(&pay_vcc(&client).await).to_owned();
    assert!(reason.contains("max_answer_bytes"), "{reason}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = atrip.seen.sent();
    assert!(sent < SOCKET_SLACK, "the server sent {sent} bytes");
}

#[tokio::test]
async fn an_answer_just_under_the_limit_is_read_and_classified() {
    // A real answer with a long message, just under the limit: read whole, message cut.
    let mut body = json!({"status": 800, "msg": ""});
    let pad = usize::try_from(LIMIT).unwrap() - body.to_string().len() - 1;
    body["msg"] = json!("m".repeat(pad));
    let atrip = Hostile::always(Reply::Json(body.to_string())).await;
    let client = client(&atrip.url());
    match client.query(ORDER_NO).await {
        QueryAnswer::NotFound { status: 800, msg } => {
            assert_eq!(msg.unwrap().chars().count(), 201, "cut to 200 and marked")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.answer_bytes_held(), 0);
}

/// Rule P4h (pay.do) and P5e (order query).
#[tokio::test]
async fn a_body_reset_midway_is_an_unknown_outcome_for_pay_and_unclear_for_a_query() {
    let atrip = Hostile::always(Reply::ResetMidway).await;
    let client = client(&atrip.url());
    unknown_reason(&pay_vcc(&client).await);
    let query = client.query(ORDER_NO).await;
    assert!(
        matches!(
            query,
            QueryAnswer::Invalid { .. } | QueryAnswer::Retry { .. }
        ),
        "{query:?}"
    );
    assert_eq!(atrip.seen.request_count(), 2);
}

#[tokio::test]
async fn a_slow_trickle_ends_with_the_calls_timeout() {
    let atrip = Hostile::always(Reply::Trickle(Duration::from_millis(20))).await;
    let settings = settings(&atrip.url(), |s| {
        s.pay_timeout_ms = 1000;
        s.query_timeout_ms = 1000;
    });
    let client = Client::new(&settings).unwrap();
    let started = Instant::now();
    let reason = unknown_reason(&pay_vcc(&client).await).to_owned();
    let took = started.elapsed();
    assert!(reason.contains("timed out"), "{reason}");
    assert!(took < Duration::from_millis(1900), "the call took {took:?}");
    let started = Instant::now();
    let query = client.query(ORDER_NO).await;
    assert!(matches!(query, QueryAnswer::Retry { .. }), "{query:?}");
    assert!(started.elapsed() < Duration::from_millis(1900));
}

#[tokio::test]
async fn answers_in_flight_share_one_budget_and_none_is_left_waiting_on_another() {
    // Eight answers of 40 KiB at once, a budget of one answer at the limit: each
    // either reads whole or gives up for want of budget; none waits out its timeout, and every
    // byte of the budget comes back.
    let mut body = json!({"status": 800, "msg": ""});
    body["msg"] = json!("m".repeat(40 * 1024));
    let atrip = Hostile::always(Reply::Json(body.to_string())).await;
    // The least budget the settings accept for this limit.
    let settings = settings(&atrip.url(), |s| {
        s.answer_budget_bytes = 2 * LIMIT + PARSED_RESERVE as u64;
    });
    let client = Client::new(&settings).unwrap();
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..8).map(|_| client.query(ORDER_NO))).await;
    assert!(started.elapsed() < Duration::from_millis(1900));
    for answer in &answers {
        match answer {
            QueryAnswer::NotFound { status: 800, .. } => {}
            QueryAnswer::Retry { reason } if reason.contains("answer_budget_bytes") => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client.answer_bytes_held(), 0);
    assert!(matches!(
        client.query(ORDER_NO).await,
        QueryAnswer::NotFound { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Not sent, or unknown
// ---------------------------------------------------------------------------------------------

/// Rule P4g and assumption A6: only the connector's own failures count as not sent.
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_not_sent() {
    // The connect timeout bounds DNS, TCP and TLS together: nothing of the request can have
    // left before the handshake completed.
    let atrip = Hostile::always(Reply::Stall).await;
    let settings = settings(&format!("https://{}", atrip.addr), |s| {
        s.connect_timeout_ms = 300;
    });
    let answer = pay_vcc(&Client::new(&settings).unwrap()).await;
    assert!(matches!(answer, PayAnswer::NotSent { .. }), "{answer:?}");
    assert_eq!(atrip.seen.request_count(), 0);
}

#[tokio::test]
async fn a_tls_handshake_refused_with_garbage_is_not_sent() {
    let atrip = Hostile::always(Reply::Garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n")).await;
    let client = Client::new(&settings(&format!("https://{}", atrip.addr), |_| {})).unwrap();
    let answer = pay_vcc(&client).await;
    assert!(matches!(answer, PayAnswer::NotSent { .. }), "{answer:?}");
}

/// Rule P4g.
#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_not_sent() {
    let client = Client::new(&settings("http://atrip.invalid", |_| {})).unwrap();
    let answer = pay_vcc(&client).await;
    assert!(matches!(answer, PayAnswer::NotSent { .. }), "{answer:?}");
}

#[tokio::test]
async fn a_request_read_and_then_met_with_a_closed_connection_is_an_unknown_outcome() {
    let atrip = Hostile::always(Reply::CloseAfterRequest).await;
    unknown_reason(&pay_vcc(&client(&atrip.url())).await);
    assert_eq!(atrip.seen.request_count(), 1, "never sent again");
}

#[tokio::test]
async fn a_pooled_connection_closed_after_pay_do_was_written_is_an_unknown_outcome_sent_once() {
    // The query's connection goes back to the pool and carries pay.do, which the server reads
    // and answers by closing: reqwest must neither re-send it nor call it "not sent".
    let atrip = Hostile::start(|i| match i {
        0 => Reply::Json(ticketed_answer()),
        _ => Reply::CloseAfterRequest,
    })
    .await;
    let client = client(&atrip.url());
    assert!(matches!(
        client.query(ORDER_NO).await,
        QueryAnswer::Order(_)
    ));
    unknown_reason(&pay_vcc(&client).await);
    let requests = atrip.seen.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1].starts_with("POST /pay.do"));
    assert_eq!(
        atrip
            .seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "pay.do went on the pooled connection"
    );
}

/// Rule P4h: a timeout is an unknown outcome.
#[tokio::test]
async fn a_pay_do_that_is_never_answered_ends_with_the_timeout_as_an_unknown_outcome() {
    let atrip = Hostile::always(Reply::Silent).await;
    let settings = settings(&atrip.url(), |s| s.pay_timeout_ms = 500);
    let started = Instant::now();
    let reason = unknown_reason(&pay_vcc(&Client::new(&settings).unwrap()).await).to_owned();
    assert!(reason.contains("timed out"), "{reason}");
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert_eq!(atrip.seen.request_count(), 1);
}

#[tokio::test]
async fn a_card_number_an_answer_echoes_is_masked_in_the_reason() {
    let echo = json!({"status": 9999, "msg": "card 4532015112830366", "orderNo": ORDER_NO});
    let atrip = Hostile::always(Reply::Json(echo.to_string())).await;
    let answer = pay_vcc(&client(&atrip.url())).await;
    let shown = format!("{answer:?}");
    assert!(!shown.contains("4532015112830366"), "{shown}");
    assert!(shown.contains("************0366"), "{shown}");
}
