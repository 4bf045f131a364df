//! OpenTelemetry traces, checked at a real OTLP/HTTP receiver that decodes the protobuf the
//! worker process exports: one `step` span per step, children for its claim, `pay.do`, order
//! queries and write, under the enqueuer's `traceparent`; the attributes; no card data or
//! secret in the exported bytes; `trace_id` in the log; nothing exported when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is unset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

use crate::support::app::{vcc_card, wait_until, TestApp};
use crate::support::binary::WorkerProcess;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: HashMap<String, String>,
}

#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    spans: Vec<Got>,
}

/// An OTLP/HTTP receiver on `addr`: `POST /v1/traces` with a protobuf body, decoded.
async fn receiver(addr: &str) -> Option<(String, Arc<Mutex<Received>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/v1/traces", post(take))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Some((url, got))
}

async fn take(
    State(got): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf body");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut got = got.lock().unwrap();
    got.bodies.push(body.to_vec());
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attrs = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                            Some(AnyValue::StringValue(s)) => s,
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                got.spans.push(Got {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attrs,
                });
            }
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::default()
            .encode_to_vec(),
    )
}

#[tokio::test]
async fn an_orders_steps_are_exported_as_children_of_its_traceparent_without_card_data() {
    let app = TestApp::new().await;
    let (url, got) = receiver("127.0.0.1:0").await.expect("a free port");
    let order_no = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    sqlx::query("UPDATE ticketing_jobs SET traceparent = $1 WHERE order_no = $2")
        .bind(format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .bind(&order_no)
        .execute(app.pool())
        .await
        .unwrap();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("APP_LOG__LEVEL", "info".into()),
        ],
    );
    assert!(
        worker.wait_until_done(&app, Duration::from_secs(30)).await,
        "the order was not done:\n{}",
        worker.log()
    );
    assert_eq!(app.job(&order_no).await.state, "ticketed");
    let log = worker.stop().await;
    assert!(
        log.contains(&format!("exported over OTLP/HTTP to {url}")),
        "{log}"
    );
    assert!(
        log.contains(TRACE_ID),
        "log lines carry the trace id:\n{log}"
    );
    // The worker flushed its spans at shutdown.
    wait_until(Duration::from_secs(10), "the write spans", || async {
        got.lock()
            .unwrap()
            .spans
            .iter()
            .filter(|s| s.name == "write")
            .count()
            >= 2
    })
    .await;

    let received = got.lock().unwrap();
    let ours: Vec<&Got> = received
        .spans
        .iter()
        .filter(|s| s.trace_id == TRACE_ID)
        .collect();
    let steps: Vec<&&Got> = ours
        .iter()
        .filter(|s| s.name.starts_with("step "))
        .collect();
    assert!(
        steps.len() >= 2,
        "a pay step and a follow-up step: {ours:#?}"
    );
    for step in &steps {
        assert_eq!(
            step.parent, PARENT_ID,
            "a step is a child of the enqueuer's span: {step:#?}"
        );
        assert_eq!(step.attrs["order_no"], order_no);
        for key in ["state_from", "state_to", "attempt", "lease_token"] {
            assert!(step.attrs.contains_key(key), "{key} on {step:#?}");
        }
    }
    let pay_step = steps
        .iter()
        .find(|s| s.attrs["state_from"] == "pending")
        .expect("the pay step");
    assert_eq!(pay_step.attrs["state_to"], "ticketing");
    let children_of = |parent: &str, name: &str| -> Vec<&Got> {
        ours.iter()
            .copied()
            .filter(|s| s.parent == parent && s.name == name)
            .collect()
    };
    let pay = children_of(&pay_step.span_id, "pay.do");
    assert_eq!(pay.len(), 1, "{ours:#?}");
    assert_eq!(pay[0].attrs["status"], "0");
    assert_eq!(pay[0].attrs["attempt"], "1");
    assert_eq!(
        children_of(&pay_step.span_id, "claim").len(),
        1,
        "{ours:#?}"
    );
    let write = children_of(&pay_step.span_id, "write");
    assert_eq!(write.len(), 1);
    assert_eq!(write[0].attrs["state_to"], "ticketing");
    assert!(write[0].attrs.contains_key("lease_token"));
    let queries: Vec<&Got> = steps
        .iter()
        .flat_map(|s| children_of(&s.span_id, "order query"))
        .collect();
    assert!(!queries.is_empty(), "{ours:#?}");
    assert!(queries.iter().all(|q| q.attrs["status"] == "0"));

    // No card data, CVV or secret anywhere in what was exported.
    let bytes: Vec<u8> = received.bodies.concat();
    let text = String::from_utf8_lossy(&bytes);
    for secret in [
        "4532015112830366",
        "cardCVV",
        "cardNumber",
        "JANE",
        "sim-secret",
    ] {
        assert!(!text.contains(secret), "{secret:?} was exported");
    }
}

#[tokio::test]
async fn nothing_is_exported_when_the_endpoint_is_not_set() {
    let app = TestApp::new().await;
    // The exporters' default endpoint: a worker that exported without being asked would
    // send here. (Taken by another program, the start line is the check left.)
    let default = receiver("127.0.0.1:4318").await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let mut worker = WorkerProcess::start(&app, &[("OTEL_BSP_SCHEDULE_DELAY", "100".into())]);
    assert!(worker.wait_until_done(&app, Duration::from_secs(30)).await);
    assert_eq!(app.job(&order_no).await.state, "ticketed");
    let log = worker.stop().await;
    assert!(
        log.contains("off (OTEL_EXPORTER_OTLP_ENDPOINT is not set)"),
        "{log}"
    );
    // The worker has stopped, and a stop flushes every span it would have exported.
    if let Some((_, got)) = default {
        assert_eq!(
            got.lock().unwrap().bodies.len(),
            0,
            "exported without an endpoint"
        );
    }
}
