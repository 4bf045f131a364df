//! A rogue ATRIP: an HTTP server on 127.0.0.1:0 that answers `pay.do` and
//! `queryOrderDetails.do` with exactly the bytes a test scripted for each order number, and
//! counts every request per order and endpoint.
//!
//! The simulator speaks ATRIP correctly, with fault injection for the faults it knows; the
//! catalogue of bad answers needs bodies no correct server would send (a status as a string,
//! a ticket for a stranger, a gzip stream cut in half), byte for byte. Orders nobody scripted
//! get a well-formed answer: `pay.do` accepted, the query ticketed for one passenger.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// The one passenger of every default order, and its ticket number.
pub const PASSENGER: &str = "DOE/JANE";
pub const TICKET: &str = "S12345";

/// One scripted answer: the HTTP code, extra headers and the body, sent as they are.
#[derive(Clone, Debug)]
pub struct Reply {
    pub http: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON body with HTTP 200.
    pub fn json(body: Value) -> Reply {
        Reply::raw(200, body.to_string())
            .with_header(header::CONTENT_TYPE.as_str(), "application/json")
    }

    /// Any bytes, with any HTTP code.
    pub fn raw(http: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            http,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same reply with another HTTP code.
    pub fn with_status(mut self, http: u16) -> Reply {
        self.http = http;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// `body` gzip-compressed and cut after half its bytes, announced as gzip.
    pub fn truncated_gzip(body: Value) -> Reply {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.to_string().as_bytes()).unwrap();
        let full = gz.finish().unwrap();
        Reply::raw(200, full[..full.len() / 2].to_vec())
            .with_header(header::CONTENT_TYPE.as_str(), "application/json")
            .with_header(header::CONTENT_ENCODING.as_str(), "gzip")
    }
}

/// `pay.do` accepted, as ATRIP answers it.
pub fn pay_accepted(order_no: &str) -> Value {
    json!({"status": 0, "msg": "success", "orderNo": order_no, "pnrCode": "OPLGS4"})
}

/// A query answer for `order_no` with this `orderStatus` and ticket list (one passenger listed).
pub fn order_answer(order_no: &str, order_status: Value, pax: Value) -> Value {
    let ticketed = order_status == json!("2");
    json!({
        "status": 0, "msg": "success", "orderNo": order_no, "pnrCode": "OPLGS4",
        "orderStatus": order_status, "ticketStatus": if ticketed { "1" } else { "0" },
        "payTime": "2026-11-25 10:00:00",
        "passengers": [{"name": PASSENGER, "passengerType": 0}],
        "paxTicketInfos": pax,
    })
}

/// The well-formed final answer: ticketed, one passenger, one ticket number.
pub fn ticketed(order_no: &str) -> Value {
    order_answer(
        order_no,
        json!("2"),
        json!([{"name": PASSENGER, "ticketNos": [TICKET], "airlinePNRs": [TICKET]}]),
    )
}

/// Which endpoint a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Pay,
    Query,
}

#[derive(Default)]
struct Script {
    /// The n-th answer of each endpoint is the n-th reply, the last one repeating.
    pay: Vec<Reply>,
    query: Vec<Reply>,
    /// Every request for the order, in arrival order.
    calls: Vec<Call>,
}

type Scripts = Arc<Mutex<HashMap<String, Script>>>;

pub struct Rogue {
    base_url: String,
    scripts: Scripts,
    server: tokio::task::JoinHandle<()>,
}

impl Rogue {
    pub async fn start() -> Rogue {
        let scripts = Scripts::default();
        let app = Router::new()
            .route("/pay.do", post(pay))
            .route("/queryOrderDetails.do", post(query))
            .with_state(scripts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Rogue {
            base_url,
            scripts,
            server,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The answers `pay.do` gives for `order_no`, in turn (the last one repeats).
    pub fn on_pay(&self, order_no: &str, replies: Vec<Reply>) {
        self.scripts
            .lock()
            .unwrap()
            .entry(order_no.to_owned())
            .or_default()
            .pay = replies;
    }

    /// The answers the order query gives for `order_no`, in turn (the last one repeats).
    pub fn on_query(&self, order_no: &str, replies: Vec<Reply>) {
        self.scripts
            .lock()
            .unwrap()
            .entry(order_no.to_owned())
            .or_default()
            .query = replies;
    }

    /// Every request that named `order_no`, in order.
    pub fn calls(&self, order_no: &str) -> Vec<Call> {
        self.scripts
            .lock()
            .unwrap()
            .get(order_no)
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    pub fn pays(&self, order_no: &str) -> usize {
        self.calls(order_no)
            .iter()
            .filter(|c| **c == Call::Pay)
            .count()
    }

    pub fn queries(&self, order_no: &str) -> usize {
        self.calls(order_no)
            .iter()
            .filter(|c| **c == Call::Query)
            .count()
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn pay(State(scripts): State<Scripts>, body: Bytes) -> Response {
    answer(&scripts, Call::Pay, &body)
}

async fn query(State(scripts): State<Scripts>, body: Bytes) -> Response {
    answer(&scripts, Call::Query, &body)
}

fn answer(scripts: &Scripts, call: Call, body: &[u8]) -> Response {
    let order_no = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("orderNo")?.as_str().map(str::to_owned));
    let Some(order_no) = order_no else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from("the rogue needs an orderNo"))
            .unwrap();
    };
    let reply = {
        let mut scripts = scripts.lock().unwrap();
        let script = scripts.entry(order_no.clone()).or_default();
        let n = script.calls.iter().filter(|c| **c == call).count();
        let replies = match call {
            Call::Pay => &script.pay,
            Call::Query => &script.query,
        };
        let reply = replies.get(n).or(replies.last()).cloned();
        script.calls.push(call);
        reply.unwrap_or_else(|| match call {
            Call::Pay => Reply::json(pay_accepted(&order_no)),
            Call::Query => Reply::json(ticketed(&order_no)),
        })
    };
    let mut response = Response::builder().status(reply.http);
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}
