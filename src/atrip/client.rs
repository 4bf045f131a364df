//! The HTTP client for ATRIP: `pay.do`, `queryOrderDetails.do`, and `order.do` (for the demo
//! and tests), with the exact headers, gzip and timeouts of docs/atrip.md.
//!
//! ATRIP (or anything on the path to it) is not trusted to behave: a redirect is never
//! followed, so a request, its card and our credentials go to the configured host only; an
//! answer is read as a stream, at most `atrip.max_answer_bytes` once decompressed, from a byte
//! budget all answers in flight share (`atrip.answer_budget_bytes`); and the whole exchange,
//! body included, ends within the request's timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::answer::order_list::{classify_list, ListError, ListPage};
use super::answer::{classify_pay, classify_query, PayAnswer, QueryAnswer};
use super::ca::CaBundle;
use crate::card::CreditCard;
use crate::config::{AtripSettings, ConfigError};
use crate::domain::PaymentMethod;

/// The header that names the worker process sending a request (its worker id, as in the
/// job table's `lease_owner`), so that ATRIP-side logs and the simulator can tell replicas apart.
pub const WORKER_HEADER: &str = "x-ticketing-worker";

/// An order number that cannot exist (ATRIP's are letters and digits from a date): the start
/// probe asks about it, and so does the worker to tell a 900 for one order from refused
/// credentials. ATRIP answers 800 when it takes our credentials.
pub const PROBE_ORDER_NO: &str = "PROBE000000000000000";
/// How many times the start probe asks before it says ATRIP does not answer, and the pause
/// between tries.
const PROBE_TRIES: u32 = 3;
const PROBE_PAUSE: Duration = Duration::from_secs(1);

/// Failures of the client outside the pay/query classification (building it, `order.do`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ATRIP client could not be built: {0}")]
    Build(String),
    /// A setting the client cannot be built with (`atrip.proxy`, `atrip.ca_file`), named.
    #[error(transparent)]
    Setting(#[from] ConfigError),
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
#[derive(Debug, Clone, Copy, Serialize)]
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
            request_source: None,
        }
    }
}

/// The body of `orderList.do` (docs/design.md, R2): the orders ATRIP created in
/// `[from, to]` (UTC, `yyyy-MM-dd'T'HH:mm:ss'Z'`), one page of them. No status filter: the
/// set a closed window matches then never changes while it is paged through.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    pub create_time_range_from: String,
    pub create_time_range_to: String,
    pub page: i64,
    pub page_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_status: Option<Vec<i64>>,
}

impl ListRequest {
    pub fn new(
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        page: i64,
        page_size: u32,
    ) -> Self {
        const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
        ListRequest {
            create_time_range_from: from.format(FORMAT).to_string(),
            create_time_range_to: to.format(FORMAT).to_string(),
            page,
            page_size,
            order_status: None,
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

/// What an answer's parsed fields may take beyond copies of its string bytes, drawn from the
/// budget for every answer: the longest lists an answer may keep (32 passengers with 8 ticket
/// numbers and 8 PNRs each, 32 listed passengers, 32 bookings: see `answer::MAX_PASSENGERS`)
/// are some 800 small values in maps and vectors, 84 KB measured, whatever the body's size
/// (a unit test weighs them).
pub const PARSED_RESERVE: usize = 128 * 1024;

/// The share of the answer budget an answer waits for before its body is read: room for a
/// body of 32 KiB (its bytes, and its string bytes again once parsed), more than any real
/// ATRIP answer needs (the largest documented one is 17 KB), and [`PARSED_RESERVE`]. Only this
/// first share is waited for; see [`Client::hold`].
const FIRST_DRAW: usize = 64 * 1024 + PARSED_RESERVE;

/// A client for one ATRIP account. Cheap to clone (one connection pool and one answer budget
/// inside, shared by the clones).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    client_secret: SecretString,
    pay_timeout: Duration,
    query_timeout: Duration,
    /// `atrip.request_source`: pay.do's `requestSource` (`None`: null).
    request_source: Option<String>,
    /// Sent as [`WORKER_HEADER`] with every request, when set.
    worker: Option<reqwest::header::HeaderValue>,
    /// `atrip.max_answer_bytes`: one answer, decompressed.
    max_answer: usize,
    /// `atrip.answer_budget_bytes`, one permit a byte: what every answer in flight holds,
    /// body and parsed fields. The worker builds one client and clones it into every step, so
    /// this bounds the process: 128 answers in flight cannot each take `max_answer` bytes.
    /// Outside it, per connection reading an answer: hyper's read buffer (up to 408 KiB when
    /// the peer sends fast) and gzip's state (about 40 KiB). `bench --hostile` measures all of
    /// it together: 62-67 MiB peak RSS with 128 hostile answers in flight and the default
    /// 24 MiB budget.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    /// How requests reach ATRIP, in words (`atrip.proxy`).
    route: String,
    /// Which certificates ATRIP's TLS is checked against, in words (`atrip.ca_file`).
    trust: String,
}

/// An answer read within its bounds: its HTTP code, its body, and the budget share it holds
/// until it has been classified (its parsed fields live that long too).
struct Answer {
    http: u16,
    body: Vec<u8>,
    /// ATRIP's request id from a response header, if it sent one.
    request_id: Option<String>,
    _held: OwnedSemaphorePermit,
}

impl Answer {
    /// ATRIP's request id: the `X-Request-ID` or `X-Atlas-Request-ID` header, else the body's
    /// `requestId` or `uuid` (where ATRIP's own client looks), quoted and cut to 100
    /// characters. Kept with the answer's event, for an escalation to ATRIP.
    fn request_id(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Ids {
            #[serde(rename = "requestId")]
            request_id: Option<Value>,
            uuid: Option<Value>,
        }
        let from_body = || {
            let ids: Ids = serde_json::from_slice(&self.body).ok()?;
            [ids.request_id, ids.uuid]
                .into_iter()
                .flatten()
                .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
        };
        self.request_id
            .clone()
            .or_else(from_body)
            .map(|id| super::answer::quote(&id, 100))
    }
}

/// An answer with ATRIP's request id for it, when it gave one.
#[derive(Debug)]
pub struct Answered<T> {
    pub answer: T,
    pub request_id: Option<String>,
}

/// Why an exchange gave no answer to classify.
enum Failure {
    /// reqwest's own error: connecting, sending, or reading the body.
    Transport(reqwest::Error),
    /// The whole exchange, body included, took longer than the request's timeout.
    TimedOut(Duration),
    /// The answer holds more than `atrip.max_answer_bytes` once decompressed.
    TooLarge { limit: usize },
    /// The answers in flight hold the whole budget; this one could not grow.
    OverBudget { budget: usize },
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Transport(e) => describe(e),
            Failure::TimedOut(after) => format!(
                "timed out (no whole answer within {} ms)",
                after.as_millis()
            ),
            Failure::TooLarge { limit } => format!(
                "the answer is larger than atrip.max_answer_bytes ({limit} bytes once decompressed); not read further"
            ),
            Failure::OverBudget { budget } => format!(
                "the answers in flight hold all of atrip.answer_budget_bytes ({budget} bytes); this one was not read further"
            ),
        }
    }
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
        let (proxy, ignore_environment, route) = settings.proxy_choice()?;
        let ca = match settings.ca_file.trim() {
            "" => None,
            path => Some(CaBundle::load(path)?),
        };
        let trust = CaBundle::describe(ca.as_ref());
        let mut builder = reqwest::Client::builder();
        // Added to the built-in roots, not instead of them: the same worker reaches ATRIP
        // directly or through an inspecting proxy.
        for cert in ca.into_iter().flat_map(|bundle| bundle.certs) {
            builder = builder.add_root_certificate(cert);
        }
        if ignore_environment {
            builder = builder.no_proxy();
        }
        if let Some(proxy) = proxy {
            builder = builder.proxy(proxy);
        }
        let http = builder
            .connect_timeout(settings.connect_timeout())
            // Never follow a redirect: reqwest would re-send the body (the card) and our
            // headers (the secret) to wherever it points, or the same pay.do again, and a
            // failure to connect there would look like a pay.do that never left.
            .redirect(reqwest::redirect::Policy::none())
            .gzip(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ticketing-tracker/", env!("CARGO_PKG_VERSION")))
            // Never `tls_early_data(true)`: 0-RTT writes the request before the handshake
            // has finished, and a failed handshake would then read as "not sent" (see `pay`).
            .build()
            .map_err(|e| Error::Build(e.to_string()))?;
        Ok(Client {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            pay_timeout: settings.pay_timeout(),
            query_timeout: settings.query_timeout(),
            request_source: Some(settings.request_source.trim())
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            worker: None,
            max_answer: settings.max_answer_bytes(),
            budget: Arc::new(Semaphore::new(
                settings.answer_budget_bytes().min(Semaphore::MAX_PERMITS),
            )),
            budget_bytes: settings.answer_budget_bytes(),
            route,
            trust,
        })
    }

    /// How requests reach ATRIP: directly or through which proxy (for the start line).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Which certificates ATRIP's TLS is checked against: the built-in roots, and the
    /// `atrip.ca_file` bundle when one is set (for the start line).
    pub fn trust(&self) -> &str {
        &self.trust
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

    /// Bytes of the answer budget the answers in flight hold now (0 when none is).
    pub fn answer_bytes_held(&self) -> usize {
        self.budget_bytes
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.budget.available_permits())
    }

    /// Sends one request and reads its answer within every bound: the timeout covers the
    /// whole exchange (connecting, waiting for the first budget share, the body), so a slow
    /// trickle or an endless body ends with the call, not after it.
    async fn post<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let mut request = self
            .http
            .post(format!("{}/{endpoint}", self.base_url))
            .header("Accept", "application/json")
            .header("x-atlas-client-id", &self.client_id)
            .header("x-atlas-client-secret", self.client_secret.expose_secret());
        if let Some(worker) = &self.worker {
            request = request.header(WORKER_HEADER, worker.clone());
        }
        // No reqwest timeout of its own: one timer for the whole exchange, so that a timeout
        // reads the same (an unknown outcome, a query to retry) wherever it falls.
        let request = request.json(body);
        let m = crate::metrics::global();
        let answered = AtomicBool::new(false);
        let exchange = async {
            let resp = request.send().await.map_err(Failure::Transport)?;
            answered.store(true, Ordering::Relaxed);
            m.atrip_answered();
            self.read(resp).await
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(Failure::TimedOut(timeout)));
        if !answered.load(Ordering::Relaxed) {
            match &result {
                Err(Failure::Transport(e)) if e.is_connect() || e.is_timeout() => {
                    m.atrip_unreachable(&self.base_url, &describe(e))
                }
                Err(timed_out @ Failure::TimedOut(_)) => {
                    m.atrip_unreachable(&self.base_url, &timed_out.describe())
                }
                _ => {}
            }
        }
        result
    }

    /// Reads a body as a stream, chunk by chunk as reqwest decompresses it, never past
    /// `max_answer` bytes, each byte drawn from the budget before it is kept.
    async fn read(&self, mut resp: reqwest::Response) -> Result<Answer, Failure> {
        let http = resp.status().as_u16();
        let request_id = ["x-request-id", "x-atlas-request-id"].iter().find_map(|h| {
            let v = resp.headers().get(*h)?.to_str().ok()?.trim();
            (!v.is_empty()).then(|| v.to_owned())
        });
        let limit = self.max_answer;
        // A body that says it is too long (it is not compressed, or reqwest would not know
        // its length) is not read at all.
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(Failure::TooLarge { limit });
        }
        let first = u32::try_from(FIRST_DRAW.min(self.budget_bytes)).unwrap_or(u32::MAX);
        let mut held = Arc::clone(&self.budget)
            .acquire_many_owned(first)
            .await
            .map_err(|_| Failure::OverBudget {
                budget: self.budget_bytes,
            })?;
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(Failure::Transport)? {
            let len = body
                .len()
                .checked_add(chunk.len())
                .filter(|len| *len <= limit)
                .ok_or(Failure::TooLarge { limit })?;
            // Memory is the vector's capacity, not its length: grow it by doubling (linear
            // copying), never past the limit, and draw for it before it grows. The same
            // again as the length is drawn for the parsed fields, which hold at most the
            // body's string bytes, plus PARSED_RESERVE for their structure.
            let capacity = if len > body.capacity() {
                len.max(body.capacity().saturating_mul(2)).min(limit)
            } else {
                body.capacity()
            };
            self.hold(
                &mut held,
                capacity.saturating_add(len).saturating_add(PARSED_RESERVE),
            )?;
            body.reserve_exact(capacity - body.len());
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            http,
            body,
            request_id,
            _held: held,
        })
    }

    /// Grows an answer's budget share to `bytes`, without waiting. An answer waits only for
    /// its first share ([`FIRST_DRAW`]), holding nothing while it waits; one that then needs
    /// more while the budget is spent is given up (unclear, like a broken body) rather than
    /// left waiting while it holds a share: answers that hold part of the budget and wait for
    /// more could wait for each other until every one of them timed out.
    fn hold(&self, held: &mut OwnedSemaphorePermit, bytes: usize) -> Result<(), Failure> {
        let Some(more) = bytes.checked_sub(held.num_permits()).filter(|m| *m > 0) else {
            return Ok(());
        };
        let extra = u32::try_from(more)
            .ok()
            .and_then(|more| Arc::clone(&self.budget).try_acquire_many_owned(more).ok())
            .ok_or(Failure::OverBudget {
                budget: self.budget_bytes,
            })?;
        held.merge(extra);
        Ok(())
    }

    /// Sends `pay.do` once and classifies the answer. Never retries: a second `pay.do` is a
    /// decision for the worker, after an order query.
    pub async fn pay(&self, request: &PayRequest<'_>) -> PayAnswer {
        self.pay_answered(request).await.answer
    }

    /// [`Client::pay`], with ATRIP's request id for the answer.
    pub async fn pay_answered(&self, request: &PayRequest<'_>) -> Answered<PayAnswer> {
        let request = PayRequest {
            request_source: request.request_source.or(self.request_source.as_deref()),
            ..*request
        };
        let started = std::time::Instant::now();
        let sent = self.post("pay.do", &request, self.pay_timeout).await;
        crate::metrics::global()
            .pay_latency
            .observe(started.elapsed());
        let request_id = sent.as_ref().ok().and_then(Answer::request_id);
        let answer = match sent {
            Ok(answer) => classify_pay(request.order_no, answer.http, &answer.body),
            // Only the connector's own failures (DNS, TCP connect, a proxy's CONNECT, the TLS
            // handshake, the connect timeout around all of them) are `is_connect`: hyper-util
            // marks an error `Connect` only when no connection was ever handed the request,
            // and it re-sends on a fresh connection only a request a pooled one gave back
            // unwritten. Nothing of the pay.do left. The TLS handshake is inside the
            // connector: hyper-rustls hands hyper the connection only once the handshake has
            // completed (no 0-RTT early data, see `new`), so a certificate we do not trust or
            // a handshake the server aborts is `is_connect`. Everything else may have reached
            // ATRIP: a server that completes the handshake and closes at once (TLS 1.3 lets
            // the client write before the server has even read its Finished), one that reads
            // the request and breaks off its answer, a reset after the request was written, a
            // pooled connection closed under it, the whole call timing out, even while
            // connecting, where we cannot tell how far it got. tests/api/tls.rs holds each.
            Err(Failure::Transport(e)) if e.is_connect() => {
                pay_failed(Reached::Never, format!("pay.do not sent: {}", describe(&e)))
            }
            Err(failure) => pay_failed(Reached::Maybe, format!("pay.do: {}", failure.describe())),
        };
        Answered { answer, request_id }
    }

    /// Queries one order. Safe to repeat.
    pub async fn query(&self, order_no: &str) -> QueryAnswer {
        self.query_answered(order_no).await.answer
    }

    /// [`Client::query`], with ATRIP's request id for the answer.
    pub async fn query_answered(&self, order_no: &str) -> Answered<QueryAnswer> {
        let body = serde_json::json!({ "orderNo": order_no });
        let started = std::time::Instant::now();
        let sent = self
            .post("queryOrderDetails.do", &body, self.query_timeout)
            .await;
        crate::metrics::global()
            .query_latency
            .observe(started.elapsed());
        let request_id = sent.as_ref().ok().and_then(Answer::request_id);
        let answer = match sent {
            Ok(answer) => classify_query(order_no, answer.http, &answer.body),
            Err(Failure::Transport(e)) if e.is_timeout() => QueryAnswer::Retry {
                reason: format!("order query: {}", describe(&e)),
            },
            Err(Failure::Transport(e)) if e.is_decode() || e.is_body() => QueryAnswer::Invalid {
                status: None,
                reason: format!("order query: {}", describe(&e)),
            },
            Err(too_large @ Failure::TooLarge { .. }) => QueryAnswer::Invalid {
                status: None,
                reason: format!("order query: {}", too_large.describe()),
            },
            Err(failure) => QueryAnswer::Retry {
                reason: format!("order query: {}", failure.describe()),
            },
        };
        Answered { answer, request_id }
    }

    /// One page of `orderList.do`, read within the same bounds as every answer (size, budget,
    /// one timer for the whole exchange). Safe to repeat: it changes nothing at ATRIP.
    pub async fn order_list(&self, request: &ListRequest) -> Result<ListPage, ListError> {
        match self.post("orderList.do", request, self.query_timeout).await {
            Ok(answer) => classify_list(answer.http, &answer.body),
            Err(too_large @ Failure::TooLarge { .. }) => Err(ListError::Refused(format!(
                "orderList.do page {}: {}",
                request.page,
                too_large.describe()
            ))),
            Err(failure) => Err(ListError::Transient(format!(
                "orderList.do page {}: {}",
                request.page,
                failure.describe()
            ))),
        }
    }

    /// Reads the deposit account's balance in `currency` (`balance.do`). Safe to repeat; waits
    /// on nothing and never more than the query timeout.
    pub async fn balance(&self, currency: &str) -> super::balance::Balance {
        let body = serde_json::json!({ "currency": currency });
        let balance = match self.post("balance.do", &body, self.query_timeout).await {
            Ok(answer) => super::balance::classify_balance(currency, answer.http, &answer.body),
            Err(failure) => super::balance::Balance::Unread {
                reason: format!("balance.do: {}", failure.describe()),
            },
        };
        // Only the unread count is a metric: `/metrics` is unauthenticated, the balance is not
        // for it.
        if let super::balance::Balance::Unread { .. } = &balance {
            crate::metrics::global()
                .balance_unread
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        balance
    }

    /// Asks ATRIP about an order number that cannot exist, to tell at start whether ATRIP is
    /// reachable and takes our credentials; says so in the log. One dropped connection is not
    /// ATRIP being down: a transport failure is asked again (`PROBE_TRIES` in all, a second
    /// apart) and said at `error` only when every try failed. Refused credentials are said at
    /// once.
    pub async fn probe(&self) {
        for attempt in 1..=PROBE_TRIES {
            match self.query(PROBE_ORDER_NO).await {
                QueryAnswer::Unauthorized { status, .. } => {
                    crate::metrics::global().atrip_refused_credentials();
                    tracing::error!(
                        atrip = %self.base_url, status,
                        "ATRIP answers but refuses our credentials (check atrip.client_id / atrip.client_secret)"
                    );
                    return;
                }
                QueryAnswer::Retry { reason } if attempt < PROBE_TRIES => {
                    tracing::warn!(
                        atrip = %self.base_url, reason, attempt,
                        "ATRIP did not answer the start probe; asking again"
                    );
                    tokio::time::sleep(PROBE_PAUSE).await;
                }
                QueryAnswer::Retry { reason } => {
                    tracing::error!(
                        atrip = %self.base_url, reason, tries = PROBE_TRIES,
                        "ATRIP does not answer; orders will wait until it does"
                    );
                    return;
                }
                _ => {
                    tracing::info!(atrip = %self.base_url, "ATRIP answers and takes our credentials");
                    return;
                }
            }
        }
    }

    /// Creates an order with `order.do` (the demo and tests; the worker never books).
    pub async fn create_order(&self, body: &Value) -> Result<CreatedOrder, Error> {
        let request_error = |reason: String| Error::Request {
            endpoint: "order.do",
            reason,
        };
        let answer = self
            .post("order.do", body, self.query_timeout)
            .await
            .map_err(|f| request_error(f.describe()))?;
        // The whole answer is kept (the demo and tests read it); order.do is never the
        // worker's, and its body is bounded like every other.
        let http = answer.http;
        let value: Value = serde_json::from_slice(&answer.body)
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

/// How far a `pay.do` that got no HTTP answer may have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The connector failed before any byte of the request was written (rule P4g).
    Never,
    /// Anything else: the request may have reached ATRIP (rule P4h).
    Maybe,
}

/// The answer to a `pay.do` that got no HTTP answer: "not sent" only when it provably never
/// left. (An HTTP answer, a redirect included, goes through `classify_pay`.) The model check
/// (`tests/model`) decides with this too.
pub fn pay_failed(reached: Reached, reason: String) -> PayAnswer {
    match reached {
        Reached::Never => PayAnswer::NotSent { reason },
        Reached::Maybe => PayAnswer::OutcomeUnknown {
            status: None,
            reason,
        },
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
