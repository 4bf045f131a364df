//! Turns what a handler decided to answer (JSON, an error page, garbage, a dropped or held
//! connection) into the HTTP response, gzip-encoded when the client asked for it; and the
//! checks every ATRIP endpoint starts with (`admit`).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use super::state::Sim;
use ticketing_tracker::atrip::codes::{pay_msg, RATE_LIMITED, UNAUTHORIZED};

/// What to send back.
#[derive(Debug)]
pub(super) enum Reply {
    /// HTTP 200 with a JSON body: every ATRIP answer, business errors included.
    Json(Value),
    /// A JSON body with another HTTP status (429 rate limit, the control endpoints' 400/404).
    JsonStatus(StatusCode, Value),
    /// HTTP 502 with an HTML page, as a load balancer in front of ATRIP would answer.
    ServerError,
    /// HTTP 200 whose body is not a valid ATRIP answer.
    Garbled,
    /// Close the connection without an answer.
    Drop,
    /// Keep the request open for this long (or until shutdown), then drop it.
    Hold(Duration),
}

/// ATRIP's rate-limit body: note `code`, not `status`.
pub(super) fn rate_limited() -> Reply {
    Reply::JsonStatus(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"code": RATE_LIMITED, "message": "Too many requests", "limitType": "QPS", "limit": 10, "retryAfter": 1}),
    )
}

/// Whether this request gets a gzip answer: only when it says it accepts one, like ATRIP.
pub(super) fn wants_gzip(sim: &Sim, headers: &HeaderMap) -> bool {
    sim.config.gzip
        && headers
            .get_all(axum::http::header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|coding| {
                coding
                    .split(';')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("gzip"))
            })
}

/// The four kinds of broken body a client must survive, taken in turn so a test with
/// `garbled: 4` meets each one.
const GARBLED: [(&str, &str); 4] = [
    ("application/json", ""),
    ("text/html", "<html><head><title>500 Internal Server Error</title></head><body>Internal Server Error</body></html>"),
    ("application/json", "{\"status\":0,\"msg\":\"succ"),
    ("application/json", "{\"status\":\"0\",\"msg\":\"success\"}"),
];

const ERROR_PAGE: &str =
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";

impl Reply {
    pub(super) async fn render(self, sim: &Sim, gzip: bool) -> Response {
        match self {
            Reply::Json(body) => json_response(sim, StatusCode::OK, body, gzip),
            Reply::JsonStatus(status, body) => json_response(sim, status, body, gzip),
            Reply::ServerError => body_response(
                StatusCode::BAD_GATEWAY,
                "text/html",
                ERROR_PAGE.into(),
                false,
            ),
            Reply::Garbled => {
                let turn = sim.garble_turn.fetch_add(1, Ordering::Relaxed) % GARBLED.len();
                let (content_type, body) = GARBLED[turn];
                body_response(StatusCode::OK, content_type, body.into(), gzip)
            }
            Reply::Drop => dropped_connection(),
            Reply::Hold(limit) => {
                // Ends early on shutdown so a held request never keeps the server alive.
                tokio::select! {
                    () = tokio::time::sleep(limit) => {}
                    () = sim.shutdown.cancelled() => {}
                }
                dropped_connection()
            }
        }
    }
}

/// A JSON answer with its request id where `SimConfig::request_id` puts it.
fn json_response(sim: &Sim, status: StatusCode, mut body: Value, gzip: bool) -> Response {
    use super::RequestIdPlace;
    let id = format!(
        "sim-{:010}",
        sim.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    let place = sim.config.request_id;
    if let (RequestIdPlace::Body, Value::Object(m)) = (place, &mut body) {
        m.insert("uuid".into(), Value::String(id.clone()));
    }
    let mut response = body_response(status, "application/json", body.to_string(), gzip);
    let header = match place {
        RequestIdPlace::Header => Some("x-request-id"),
        RequestIdPlace::AtlasHeader => Some("x-atlas-request-id"),
        RequestIdPlace::Body | RequestIdPlace::Nowhere => None,
    };
    if let (Some(name), Ok(value)) = (header, HeaderValue::from_str(&id)) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn body_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    gzip: bool,
) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type);
    // An empty body stays unencoded: some clients fail on a zero-length gzip stream, and
    // ATRIP's own empty answers (from its gateway) are not encoded.
    let bytes = if gzip && !body.is_empty() {
        response = response
            .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
            .header(VARY, HeaderValue::from_static("accept-encoding"));
        gzip_bytes(body.as_bytes())
    } else {
        body.into_bytes()
    };
    response
        .body(Body::from(bytes))
        .expect("static headers are valid")
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 2 + 32), Compression::fast());
    // Writing into a Vec cannot fail.
    encoder.write_all(data).expect("in-memory write");
    encoder.finish().expect("in-memory write")
}

/// A response whose body fails on its first poll. A handler cannot reset its connection, but
/// hyper closes the connection when the body errors, before the buffered head is flushed, so the
/// client sees the connection end with no answer: the "did my payment go through?" case.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection drop",
        ))
    });
    Response::new(Body::from_stream(failing))
}

/// `901`, "illegal request data": the body is not a JSON object. The message comes from the
/// shared table; only the number needs a name here.
const ILLEGAL_REQUEST_DATA: i64 = 901;

/// The checks every ATRIP endpoint makes before anything else: credentials (900, changing
/// nothing but the `unauthorized` counter) and a JSON object body (901).
pub(super) fn admit(sim: &Sim, headers: &HeaderMap, body: &[u8]) -> Result<Value, Reply> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id_ok = header("x-atlas-client-id") == Some(sim.config.client_id.as_str());
    let secret_ok = header("x-atlas-client-secret") == Some(sim.config.client_secret.as_str());
    if !(id_ok && secret_ok) {
        sim.lock().totals.unauthorized += 1;
        return Err(Reply::Json(
            json!({"status": UNAUTHORIZED, "msg": pay_msg(UNAUTHORIZED)}),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(Reply::Json(json!({
            "status": ILLEGAL_REQUEST_DATA,
            "msg": pay_msg(ILLEGAL_REQUEST_DATA),
        }))),
    }
}
