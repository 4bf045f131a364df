//! Finding orders and exporting lists, over plain HTTP: prefixes, ticket numbers, passengers,
//! ATRIP's reference and request id, a date range; CSV quoted, guarded against formulas, and
//! without card data; bad input a 400 naming its field.

use reqwest::StatusCode;

use super::{park, serve, Client, Parked, OPERATOR_PASSWORD};
use crate::support::app::{vcc_card, TestApp};

/// The order numbers listed on a page.
fn rows(body: &str) -> Vec<String> {
    let mut found: Vec<String> = body
        .match_indices(r#"<tr id="row-"#)
        .map(|(i, _)| {
            let rest = &body[i + 12..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn find_by_prefix_ticket_number_passenger_reference_or_request_id_within_a_date_range() {
    let app = TestApp::new().await;
    park(&app, "FINDPREF000001", Parked::Ticketed).await;
    park(&app, "FINDPREF000002", Parked::Ticketed).await;
    park(&app, "FINDOTHR000003", Parked::ReviewUnclear).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET client_order_no = 'Agency-' || right(order_no, 1),
                ticket_numbers = jsonb_build_array(jsonb_build_object(
                    'passenger', 'DOE/JANE' || right(order_no, 1),
                    'ticket_numbers', jsonb_build_array('618000000000' || right(order_no, 1)),
                    'airline_pnrs', '[]'::jsonb))
         WHERE order_no LIKE 'FIND%'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let job = app.job("FINDOTHR000003").await;
    sqlx::query(
        "INSERT INTO ticketing_events (job_id, order_no, at, kind, state, detail)
         VALUES ($1, $2, ticketing_now(), 'query_answered', 'needs_review',
                 '{\"answer\": \"order\", \"request_id\": \"req-7f3a\"}')",
    )
    .bind(job.id)
    .bind(&job.order_no)
    .execute(app.pool())
    .await
    .unwrap();
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    // A prefix lists every order it starts; lower case works.
    let prefix = operator.get("/console/find?q=findpref").await;
    assert_eq!(prefix.status, StatusCode::OK, "{}", prefix.body);
    assert_eq!(rows(&prefix.body), ["FINDPREF000001", "FINDPREF000002"]);
    let client = operator.get("/console/find?q=agency-").await;
    assert_eq!(rows(&client.body).len(), 3, "{}", client.body);
    // LIKE's own characters are matched as themselves.
    let like = operator.get("/console/find?q=FIND%25").await;
    assert!(rows(&like.body).is_empty(), "{}", like.body);
    for (q, order_no) in [
        ("6180000000002", "FINDPREF000002"),
        ("doe/jane1", "FINDPREF000001"),
        ("req-7f3a", "FINDOTHR000003"),
        ("FINDOTHR", "FINDOTHR000003"),
    ] {
        let got = operator.get(&format!("/console/find?q={q}")).await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{q}: {}", got.body);
        assert_eq!(got.location(), format!("/console/orders/{order_no}"), "{q}");
    }
    // A date range of enqueue times.
    let today = app.db_now().await.date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let within = operator
        .get(&format!(
            "/console/find?q=FINDPREF&from={today}&until={tomorrow}"
        ))
        .await;
    assert_eq!(rows(&within.body).len(), 2, "{}", within.body);
    let before = operator
        .get(&format!("/console/find?q=FINDPREF&until={today}"))
        .await;
    assert!(before.body.contains(r#"id="empty""#), "{}", before.body);
    for (query, field) in [
        ("q=%00", "search text (q)"),
        ("q=x&from=soon", "from"),
        ("q=x&format=xls", "format"),
        (&format!("q={}", "x".repeat(129)), "search text (q)"),
    ] {
        let got = operator.get(&format!("/console/find?{query}")).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{query}: {}", got.body);
        assert!(got.body.contains(field), "{query}: {}", got.body);
    }
}

#[tokio::test]
async fn the_csv_export_quotes_cells_guards_formulas_and_holds_no_card_data() {
    let app = TestApp::new().await;
    app.enqueue("CSVEXPO0000001", 3, Some(vcc_card())).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'failed', card_brand = 'VISA', card_last4 = '0366',
                client_order_no = '=HYPERLINK(\"http://x\")', atrip_message = '@SUM(1)',
                last_error = 'order CSVEXPO0000001: said \"no\", then, a comma',
                atrip_status = 413, finalized_at = ticketing_now(), updated_at = ticketing_now()
         WHERE order_no = 'CSVEXPO0000001'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let today = app.db_now().await.date_naive();
    let tomorrow = today.succ_opt().unwrap();
    for path in [
        "/console/orders?state=failed&format=csv".to_owned(),
        format!("/console/orders.csv?state=failed&from={today}&until={tomorrow}"),
    ] {
        let got = operator.get(&path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.body);
        assert!(got.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let lines: Vec<&str> = got.body.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2, "{path}: {}", got.body);
        assert!(lines[0].starts_with(r#""order_no","client_order_no","state""#));
        let row = lines[1];
        assert!(
            row.starts_with(r#""CSVEXPO0000001","'=HYPERLINK(""http://x"")","failed""#),
            "{row}"
        );
        assert!(row.contains(r#""'@SUM(1)""#), "{row}");
        assert!(
            row.contains(r#""order CSVEXPO0000001: said ""no"", then, a comma""#),
            "{row}"
        );
        for secret in ["4532015112830366", "\"0366\"", "VISA", "cardCVV"] {
            assert!(
                !got.body.contains(secret),
                "{secret} in the CSV: {}",
                got.body
            );
        }
    }
    // Outside the range: the header only.
    let empty = operator
        .get(&format!("/console/orders.csv?state=failed&until={today}"))
        .await;
    assert_eq!(
        empty.body.split("\r\n").filter(|l| !l.is_empty()).count(),
        1
    );
    let bad = operator
        .get("/console/orders?state=failed&format=pdf")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The format"), "{}", bad.body);
    let bad = operator
        .get("/console/orders?state=failed&from=2026-13-01")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The from"), "{}", bad.body);
}

#[tokio::test]
async fn a_nul_in_any_list_find_or_bulk_field_is_a_400_naming_the_field_before_any_statement() {
    let app = TestApp::new().await;
    park(&app, "NULFIELD000001", Parked::ReviewNeverSent).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    for (path, field) in [
        ("/console/review?reason=%00", "reason"),
        ("/console/review?until=2026%00", "until"),
        ("/console/orders?state=failed&from=%00", "from"),
        ("/console/orders.csv?state=failed&until=%00", "until"),
        ("/console/orders?state=failed&format=csv%00", "format"),
        ("/console/find?q=x&until=%00", "until"),
        ("/console/find?q=x&format=%00", "format"),
    ] {
        let got = operator.get(path).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{path}: {}", got.body);
        assert!(got.body.contains(field), "{path}: {}", got.body);
        assert!(!got.body.contains("Database unavailable"), "{path}");
    }
    for (form, field) in [
        (vec![("action", "cancel\0")], "action"),
        (
            vec![("action", "cancel"), ("order_no", "NULFIELD000001\0")],
            "order_no",
        ),
    ] {
        let mut form = form;
        form.push(("csrf", &csrf));
        let got = operator.post("/console/bulk", &form).await;
        assert_eq!(
            got.status,
            StatusCode::BAD_REQUEST,
            "{form:?}: {}",
            got.body
        );
        assert!(got.body.contains(field), "{form:?}: {}", got.body);
    }
    assert_eq!(
        super::state_of(&app, "NULFIELD000001").await,
        "needs_review"
    );
}
