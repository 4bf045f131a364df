//! The ATRIP client over TLS against a server of our own (`tls/server.rs`), with certificates
//! from throwaway CAs: a private CA in `atrip.ca_file` is trusted besides the built-in roots,
//! and of the ways TLS can fail, only a handshake that never completed means `pay.do` was not
//! sent; once it completed, the request may have reached ATRIP.

mod server;

use std::path::Path;

use ticketing_tracker::atrip::{Client, PayAnswer, PayRequest, QueryAnswer};
use ticketing_tracker::config::AtripSettings;
use ticketing_tracker::domain::PaymentMethod;

use crate::cli::{command, finish};
use crate::support::app::{test_settings, TestApp};
use crate::support::binary::WorkerProcess;
use server::{Behaviour, Pki, TlsAtrip};

const ORDER_NO: &str = "TESTA20260824171418381";

/// Half an answer's head, then the connection closes.
const HALF_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: appl";

/// A whole head and half its body (which starts like an acceptance), then the connection
/// closes.
const HALF_BODY: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"status\":0,\"msg\":\"succ";

fn accepted() -> String {
    serde_json::json!({
        "status": 0, "msg": "success", "orderNo": ORDER_NO, "pnrCode": "ABC123",
    })
    .to_string()
}

/// Settings for a client of `url` (direct, whatever the environment's proxy), trusting
/// `ca_file` besides the built-in roots when given.
fn settings(url: &str, ca_file: Option<&str>) -> AtripSettings {
    let mut s = test_settings("postgres://postgres@127.0.0.1:5432/unused", url).atrip;
    s.proxy = "none".into();
    s.ca_file = ca_file.unwrap_or_default().to_owned();
    s
}

fn client(url: &str, ca_file: Option<&str>) -> Client {
    Client::new(&settings(url, ca_file)).unwrap()
}

async fn pay(client: &Client) -> PayAnswer {
    client
        .pay(&PayRequest::new(ORDER_NO, PaymentMethod::Deposit, None))
        .await
}

#[track_caller]
fn assert_not_sent(answer: &PayAnswer, says: &str) {
    match answer {
        PayAnswer::NotSent { reason } => assert!(reason.contains(says), "{reason}"),
        other => panic!("expected not sent ({says}), got {other:?}"),
    }
}

#[track_caller]
fn assert_unknown(answer: &PayAnswer) {
    assert!(
        matches!(answer, PayAnswer::OutcomeUnknown { status: None, .. }),
        "a pay.do that may have reached ATRIP must be an unknown outcome, got {answer:?}"
    );
}

/// The order query through the same failure: asked again later, or unclear; never an order.
async fn assert_query_is_retried_or_unclear(client: &Client) {
    let answer = client.query(ORDER_NO).await;
    assert!(
        matches!(
            answer,
            QueryAnswer::Retry { .. } | QueryAnswer::Invalid { .. }
        ),
        "{answer:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A private CA
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_private_ca_in_ca_file_lets_pay_do_through_and_without_it_the_same_server_is_refused_unsent(
) {
    let pki = Pki::new();
    let (cert, key) = pki.server("company");
    let atrip = TlsAtrip::start(&cert, &key, Behaviour::Answer(accepted())).await;

    let untrusting = client(&atrip.url(), None);
    assert_not_sent(&pay(&untrusting).await, "certificate");
    assert_query_is_retried_or_unclear(&untrusting).await;
    assert_eq!(atrip.seen.handshakes(), 0);
    assert_eq!(atrip.seen.requests(), 0);

    let ca_file = pki.ca_file("company");
    let trusting = client(&atrip.url(), Some(&ca_file));
    assert!(trusting.trust().contains(&ca_file), "{}", trusting.trust());
    match pay(&trusting).await {
        PayAnswer::Accepted {
            status: 0,
            pnr_code: Some(pnr),
            ..
        } => assert_eq!(pnr, "ABC123"),
        other => panic!("expected the answer classified as accepted, got {other:?}"),
    }
    assert_eq!(atrip.seen.requests(), 1);
}

#[tokio::test]
async fn a_certificate_from_a_ca_nobody_trusts_is_refused_at_the_handshake_and_pay_is_not_sent() {
    let pki = Pki::new();
    let (cert, key) = pki.server("stranger");
    let atrip = TlsAtrip::start(&cert, &key, Behaviour::Answer(accepted())).await;
    // The company CA is trusted; it did not sign this certificate.
    let client = client(&atrip.url(), Some(&pki.ca_file("company")));
    assert_not_sent(&pay(&client).await, "UnknownIssuer");
    assert_query_is_retried_or_unclear(&client).await;
    assert_eq!(atrip.seen.handshakes(), 0);
    assert_eq!(atrip.seen.requests(), 0);
}

#[tokio::test]
async fn through_an_inspecting_proxy_pay_do_reaches_atrip_only_with_the_company_ca() {
    // The egress proxy answers CONNECT and terminates TLS for atrip.test with a certificate
    // the company CA signed: the client checks it against that CA, never resolving the host.
    let pki = Pki::new();
    let (cert, key) = pki.server("company");
    let proxy = TlsAtrip::inspecting_proxy(&cert, &key, Behaviour::Answer(accepted())).await;
    let through = |ca_file: Option<&str>| {
        let mut s = settings("https://atrip.test", ca_file);
        s.proxy = proxy.proxy_url();
        Client::new(&s).unwrap()
    };

    assert_not_sent(&pay(&through(None)).await, "certificate");
    assert_eq!(proxy.seen.requests(), 0);

    let answer = pay(&through(Some(&pki.ca_file("company")))).await;
    assert!(
        matches!(answer, PayAnswer::Accepted { status: 0, .. }),
        "{answer:?}"
    );
    assert_eq!(proxy.seen.requests(), 1);
}

// ---------------------------------------------------------------------------------------------
// Not sent, or unknown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_server_that_aborts_the_handshake_means_pay_was_not_sent() {
    let pki = Pki::new();
    let (cert, key) = pki.server("company");
    let atrip = TlsAtrip::start(&cert, &key, Behaviour::AbortHandshake).await;
    let client = client(&atrip.url(), Some(&pki.ca_file("company")));
    assert_not_sent(&pay(&client).await, "connection failed");
    assert_query_is_retried_or_unclear(&client).await;
    assert_eq!(atrip.seen.handshakes(), 0);
}

#[tokio::test]
async fn a_server_that_completes_the_handshake_and_closes_at_once_is_an_unknown_outcome_never_not_sent(
) {
    let pki = Pki::new();
    let (cert, key) = pki.server("company");
    for notify in [false, true] {
        let atrip = TlsAtrip::start(&cert, &key, Behaviour::CloseAfterHandshake { notify }).await;
        let client = client(&atrip.url(), Some(&pki.ca_file("company")));
        // Several times: whether the close arrives before or after the request was written is
        // a race, and neither side of it may read as "not sent".
        for _ in 0..5 {
            assert_unknown(&pay(&client).await);
        }
        assert_query_is_retried_or_unclear(&client).await;
        assert!(atrip.seen.handshakes() >= 5, "notify {notify}");
    }
}

#[tokio::test]
async fn a_server_that_reads_pay_do_and_sends_half_an_answer_is_an_unknown_outcome() {
    let pki = Pki::new();
    let (cert, key) = pki.server("company");
    for half in [HALF_HEAD, HALF_BODY] {
        let atrip = TlsAtrip::start(&cert, &key, Behaviour::Half(half)).await;
        let client = client(&atrip.url(), Some(&pki.ca_file("company")));
        assert_unknown(&pay(&client).await);
        assert_eq!(atrip.seen.requests(), 1, "read once, never sent again");
        assert_query_is_retried_or_unclear(&client).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The setting at start
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn run_refuses_to_start_with_a_ca_file_it_cannot_use_naming_the_setting_and_the_path() {
    let pki = Pki::new();
    let garbled = pki.path("garbled.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = pki.path("missing.pem");
    for (path, says) in [
        (&missing, "does not exist"),
        (&empty, "is empty"),
        (&garbled, "is not a PEM bundle"),
        (&pki.path("company-server.key"), "holds no PEM certificate"),
    ] {
        let path = path.display().to_string();
        let mut cmd = command(None);
        cmd.arg("run").env("APP_ATRIP__CA_FILE", &path);
        let run = finish(cmd, None).await;
        run.assert_code(1);
        let line = run.stderr.trim();
        assert!(
            line.starts_with("error: configuration key atrip.ca_file: ")
                && line.contains(&path)
                && line.contains(says)
                && !line.contains('\n')
                && !line.contains("panicked"),
            "{path}: {run:#?}"
        );
    }
}

#[tokio::test]
async fn the_start_line_says_which_ca_bundle_is_added() {
    let app = TestApp::new().await;
    let pki = Pki::new();
    let ca_file = pki.ca_file("company");
    for (env, says) in [
        (
            vec![("APP_ATRIP__CA_FILE", ca_file.clone())],
            format!("trusting the built-in roots and 1 certificate from {ca_file} (atrip.ca_file)"),
        ),
        (vec![], "trusting the built-in roots only".to_owned()),
    ] {
        let mut worker = WorkerProcess::start(&app, &env);
        worker.http_base().await;
        let log = worker.stop().await;
        let line = log
            .lines()
            .find(|l| l.contains("running; ATRIP is reached"))
            .unwrap_or_else(|| panic!("no start line in:\n{log}"));
        assert!(line.contains(&says), "{line}");
    }
    assert!(Path::new(&ca_file).exists());
}
