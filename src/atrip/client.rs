//! The HTTP client for ATRIP: `pay.do`, `queryOrderDetails.do`, and `order.do` (for the demo
//! and tests), with the exact headers, gzip and timeouts of docs/atrip.md.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use super::answer::{classify_pay, classify_query, PayAnswer, QueryAnswer};
use crate::card::CreditCard;
use crate::config::AtripSettings;
use crate::domain::PaymentMethod;

/// The header that names the worker process sending a request (its worker id, as in the
/// job table's `lease_owner`), so that ATRIP-side logs and the simulator can tell replicas apart.
pub const WORKER_HEADER: &str = "x-ticketing-worker";

/// Failures of the client outside the pay/query classification (building it, `order.do`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ATRIP client could not be built: {0}")]
    Build(String),
    #[error("ATRIP {endpoint} failed: {reason}")]
    Request {
        endpoint: &'static str,
        reason: String,
    },
    #[error("ATRIP {endpoint} answered status {status}: {msg}")]
    Status {
        endpoint: &'static str,
        status: i64,
        msg: String,
    },
}

/// The body of `pay.do`. `creditCard` is `null` (never `""`) for methods 1 and 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest<'a> {
    pub order_no: &'a str,
    pub payment_method: i16,
    pub credit_card: Option<&'a CreditCard>,
    pub client_order_no: Option<&'a str>,
    pub request_source: Option<&'a str>,
}

impl<'a> PayRequest<'a> {
    pub fn new(order_no: &'a str, method: PaymentMethod, card: Option<&'a CreditCard>) -> Self {
        PayRequest {
            order_no,
            payment_method: method.code(),
            credit_card: card.filter(|_| method.needs_card()),
            client_order_no: None,
            request_source: Some("ticketing-tracker"),
        }
    }
}

/// An order created with `order.do`.
#[derive(Debug, Clone)]
pub struct CreatedOrder {
    pub order_no: String,
    pub pnr_code: Option<String>,
    pub tkt_limit_time: Option<String>,
    pub body: Value,
}

/// A client for one ATRIP account. Cheap to clone (one connection pool inside).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    client_secret: SecretString,
    pay_timeout: Duration,
    query_timeout: Duration,
    /// Sent as [`WORKER_HEADER`] with every request, when set.
    worker: Option<reqwest::header::HeaderValue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("worker", &self.worker)
            .finish()
    }
}

impl Client {
    pub fn new(settings: &AtripSettings) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .gzip(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ticketing-tracker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Build(e.to_string()))?;
        Ok(Client {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            pay_timeout: settings.pay_timeout(),
            query_timeout: settings.query_timeout(),
            worker: None,
        })
    }

    /// Names the worker process in every request ([`WORKER_HEADER`]). An id that cannot be a
    /// header value (not visible ASCII) is left out rather than failing the client.
    pub fn with_worker(mut self, id: &str) -> Self {
        self.worker = reqwest::header::HeaderValue::from_str(id).ok();
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn pay_timeout(&self) -> Duration {
        self.pay_timeout
    }

    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    async fn post<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let mut request = self
            .http
            .post(format!("{}/{endpoint}", self.base_url))
            .header("Accept", "application/json")
            .header("x-atlas-client-id", &self.client_id)
            .header("x-atlas-client-secret", self.client_secret.expose_secret());
        if let Some(worker) = &self.worker {
            request = request.header(WORKER_HEADER, worker.clone());
        }
        let sent = request.timeout(timeout).json(body).send().await;
        let m = crate::metrics::global();
        let resp = match sent {
            Ok(resp) => {
                m.atrip_answered();
                resp
            }
            Err(e) => {
                if e.is_connect() || e.is_timeout() {
                    m.atrip_unreachable(&self.base_url, &describe(&e));
                }
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, bytes.to_vec()))
    }

    /// Sends `pay.do` once and classifies the answer. Never retries: a second `pay.do` is a
    /// decision for the worker, after an order query.
    pub async fn pay(&self, request: &PayRequest<'_>) -> PayAnswer {
        let started = std::time::Instant::now();
        let sent = self.post("pay.do", request, self.pay_timeout).await;
        crate::metrics::global()
            .pay_latency
            .observe(started.elapsed());
        match sent {
            Ok((http, body)) => classify_pay(request.order_no, http, &body),
            // Connecting failed: the request never left. Anything later (a timeout, a reset,
            // a broken body) may have reached ATRIP.
            Err(e) if e.is_connect() && !e.is_timeout() => PayAnswer::NotSent {
                reason: format!("pay.do not sent: {}", describe(&e)),
            },
            Err(e) => PayAnswer::OutcomeUnknown {
                status: None,
                reason: format!("pay.do: {}", describe(&e)),
            },
        }
    }

    /// Queries one order. Safe to repeat.
    pub async fn query(&self, order_no: &str) -> QueryAnswer {
        let body = serde_json::json!({ "orderNo": order_no });
        let started = std::time::Instant::now();
        let sent = self
            .post("queryOrderDetails.do", &body, self.query_timeout)
            .await;
        crate::metrics::global()
            .query_latency
            .observe(started.elapsed());
        match sent {
            Ok((http, body)) => classify_query(order_no, http, &body),
            Err(e) if e.is_decode() || e.is_body() => QueryAnswer::Invalid {
                status: None,
                reason: format!("order query: {}", describe(&e)),
            },
            Err(e) => QueryAnswer::Retry {
                reason: format!("order query: {}", describe(&e)),
            },
        }
    }

    /// Asks ATRIP about an order number that cannot exist, to tell at start whether ATRIP is
    /// reachable and takes our credentials; says so in the log.
    pub async fn probe(&self) {
        match self.query("PROBE000000000000000").await {
            QueryAnswer::Unauthorized { status, .. } => {
                crate::metrics::global().atrip_refused_credentials();
                tracing::error!(
                    atrip = %self.base_url, status,
                    "ATRIP answers but refuses our credentials (check atrip.client_id / atrip.client_secret)"
                )
            }
            QueryAnswer::Retry { reason } => tracing::error!(
                atrip = %self.base_url, reason,
                "ATRIP does not answer; orders will wait until it does"
            ),
            _ => tracing::info!(atrip = %self.base_url, "ATRIP answers and takes our credentials"),
        }
    }

    /// Creates an order with `order.do` (the demo and tests; the worker never books).
    pub async fn create_order(&self, body: &Value) -> Result<CreatedOrder, Error> {
        let request_error = |reason: String| Error::Request {
            endpoint: "order.do",
            reason,
        };
        let (http, bytes) = self
            .post("order.do", body, self.query_timeout)
            .await
            .map_err(|e| request_error(describe(&e)))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| request_error(format!("HTTP {http}: the answer is not JSON")))?;
        let status = value.get("status").and_then(Value::as_i64).unwrap_or(-1);
        if status != 0 {
            return Err(Error::Status {
                endpoint: "order.do",
                status,
                msg: value
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(CreatedOrder {
            order_no: field("orderNo").ok_or_else(|| request_error("no orderNo".into()))?,
            pnr_code: field("pnrCode"),
            tkt_limit_time: field("tktLimitTime"),
            body: value,
        })
    }
}

/// A transport error in words, without the URL's query or any header.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off or could not be decoded"
    } else if e.is_request() {
        "the request failed (connection reset or closed)"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut cause = String::new();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({})", crate::domain::truncate(&cause, 120))
    }
}
