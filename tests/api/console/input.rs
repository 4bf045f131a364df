//! Hostile values in requests, against a real `run` process: a NUL in a path, the search, a
//! form field or a webhook field is the client's mistake (400 naming the field, or a webhook
//! cleaned of it), never "Database unavailable", and never a database error in the log.

use reqwest::StatusCode;

use super::{hashes, park, Client, Parked, OPERATOR_PASSWORD};
use crate::support::app::TestApp;
use crate::support::binary::WorkerProcess;

const SECRET: &str = "input-test-webhook-secret";

#[tokio::test]
async fn a_nul_in_a_path_the_search_a_form_or_a_webhook_is_refused_as_bad_input_without_a_database_error(
) {
    let app = TestApp::new().await;
    let order_no = "NULINPUT00000001";
    park(&app, order_no, Parked::ReviewNeverSent).await;
    let (operator, viewer) = hashes();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_CONSOLE__ENABLED", "true".into()),
            ("APP_CONSOLE__OPERATOR_PASSWORD_HASH", operator),
            ("APP_CONSOLE__VIEWER_PASSWORD_HASH", viewer),
            ("APP_HTTP__WEBHOOK_SECRET", SECRET.into()),
        ],
    );
    let base = worker.http_base().await;
    let (client, csrf) = Client::logged_in(&base, "nina", OPERATOR_PASSWORD).await;

    for (path, field) in [
        ("/console/find?q=NUL%00INPUT", "search text"),
        ("/console/orders/NULINPUT%0000000001", "order number"),
    ] {
        let got = client.get(path).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{path}: {}", got.body);
        assert!(got.body.contains(field), "{path}: {}", got.body);
        assert!(!got.body.contains("Database unavailable"), "{path}");
    }
    for (path, form, field) in [
        (
            "/console/orders/NULINPUT%0000000001/retry".to_owned(),
            vec![("csrf", csrf.as_str())],
            "order number",
        ),
        (
            "/console/pause".to_owned(),
            vec![
                ("csrf", csrf.as_str()),
                ("method", "1"),
                ("reason", "card \0 processor down"),
            ],
            "reason",
        ),
    ] {
        let got = client.post(&path, &form).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{path}: {}", got.body);
        assert!(got.body.contains(field), "{path}: {}", got.body);
    }

    // The webhook: NUL escapes in every field; a raw NUL byte in the body.
    let http = reqwest::Client::new();
    let url = format!("{base}/webhooks/atrip?secret={SECRET}");
    for body in [
        format!(
            r#"{{"type":"order.void\u0000","notificationId":"n\u0000","data":{{"orderNo":"{order_no}","voidCode":"\u0000","errorMessage":"a\u0000b","message":"\u0000","emailCategory":"\u0000"}}}}"#
        ),
        format!(r#"{{"type":"x","data":{{"orderNo":"{order_no}\u0000"}}}}"#),
        format!("{{\"type\":\"x\0\",\"data\":{{\"orderNo\":\"{order_no}\"}}}}"),
    ] {
        let resp = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::BAD_REQUEST,
            "{body}: {status} {text}"
        );
    }

    let logged = worker.stop().await;
    for bad in [
        "database error",
        "database unreachable",
        "invalid byte sequence",
    ] {
        assert!(
            !logged.to_lowercase().contains(bad),
            "the log says {bad:?}:\n{logged}"
        );
    }
}

/// A `client_order_no`, an error text and ATRIP's message holding a right-to-left override, an
/// isolate and control characters are shown written out (`\u{202e}`) on every page that shows
/// them, never obeyed: no such character reaches the HTML.
#[tokio::test]
async fn bidi_and_control_characters_in_table_values_are_shown_escaped_on_every_page() {
    let app = TestApp::new().await;
    let order_no = "BIDIINPUT0000001";
    park(&app, order_no, Parked::FailedRefused).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET client_order_no = $2, atrip_message = $3,
                last_error = $4 WHERE order_no = $1",
    )
    .bind(order_no)
    .bind("CLIENT-\u{202e}gpj.exe")
    .bind("Card \u{2066}refused\u{2069}\u{1b}[2J")
    .bind("line one\nline two\u{200f}")
    .execute(app.pool())
    .await
    .unwrap();
    let base = super::serve(&app, 50).await;
    let (client, _) = Client::logged_in(&base, "bea", OPERATOR_PASSWORD).await;
    for path in [
        format!("/console/orders/{order_no}"),
        "/console/review".to_owned(),
        "/console/orders?state=failed".to_owned(),
    ] {
        let got = client.get(&path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.body);
        let hidden: Vec<char> = got
            .body
            .chars()
            .filter(|c| ticketing_tracker::domain::hidden(*c) && *c != '\n')
            .collect();
        assert!(hidden.is_empty(), "{path} carries {hidden:?}");
        assert!(
            got.body.contains(r"CLIENT-\u{202e}gpj.exe"),
            "{path}: {}",
            got.body
        );
    }
    let page = client.get(&format!("/console/orders/{order_no}")).await;
    for shown in [
        r"\u{2066}refused\u{2069}\u{1b}[2J",
        r"line one\u{a}line two\u{200f}",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
}
