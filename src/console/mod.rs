//! The operator console: server-rendered pages under `/console` on the worker's HTTP port, to
//! see where every order stands and to act on the ones that need a person.
//!
//! Pages work without JavaScript (one small script, `refresh.js`, keeps the overview and the
//! lists fresh in place, and labels table cells for a phone; without it they have a Refresh
//! link). Every action goes through the job store's own `retry` and `cancel`, which enforce
//! the pay-once rules (docs/design.md, P7, P7a and P8), or `pause` and `resume` (S4); the
//! console only decides which buttons to show, by asking `machine::operator`. Files: `who`
//! (the role and name every page reads), `auth` (sessions, CSRF, the check of an action),
//! `login` (the login form and its checks), `limits` (how often a client may try a password),
//! `password` (the hashes), `overview`, `pages` (lists and search), `review` (needs a person:
//! groups, filters), `bulk` (its bulk retry and cancel), `listing` (what lists show of a row;
//! CSV), `timeline` (an order's page), `actions` (what operators do to one order), `pause`
//! (paying paused: pause and resume), `reconciliation` (the reconciliation's runs and findings,
//! read only), `charts` (SVG), `html` (escaping and the page shell, with the banner of a pause
//! on every page), `proxy` (trusted proxies). Named accounts are managed by
//! `commands::console_user` (`console-user`). The SQL is in `jobs::console_reads`, `jobs::find` and
//! `jobs::pauses`.

mod actions;
mod auth;
mod bulk;
mod changed;
mod charts;
mod html;
mod limits;
mod listing;
mod login;
mod overview;
mod pages;
mod password;
mod pause;
mod proxy;
mod reconciliation;
mod review;
mod timeline;
mod who;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::ExposeSecret;

pub(crate) use login::valid_name;
pub use password::{EchoOff, PasswordHash, DEFAULT_ITERATIONS, MAX_PASSWORD_BYTES};
pub use proxy::TrustedProxies;
pub use who::{Role, Who};

use crate::config::{ConfigError, ConsoleSettings};
use crate::jobs::JobStore;

/// The console's state: its store, the two shared roles' hashes, the sessions and the login
/// limits.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    store: JobStore,
    viewer: Option<PasswordHash>,
    operator: Option<PasswordHash>,
    sessions: auth::Sessions,
    /// Always mark the session cookie `Secure`.
    secure_cookie: bool,
    /// Whose `X-Forwarded-Proto: https` marks it `Secure` otherwise.
    trusted_proxies: TrustedProxies,
    refresh_s: u64,
    page_size: i64,
    /// Password checks at once: each costs the hash's iterations of CPU, so at most half the
    /// cores (at least one) ever do it. Only a client within its limits reaches it.
    hash_gate: limits::HashGate,
    /// Each client's attempts (rule L1).
    limits: limits::Limits,
    /// The authenticating proxy's header naming the person, lower case; empty: none (L4).
    identity_header: String,
    identity_role: Role,
}

impl Deref for Console {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Console {
    /// The console over `store` (best a pool of its own, so that a busy page never holds up a
    /// worker's claim).
    pub fn new(settings: &ConsoleSettings, store: JobStore) -> Result<Console, ConfigError> {
        let hash = |key: &'static str, value: &secrecy::SecretString| {
            let text = value.expose_secret().trim();
            if text.is_empty() {
                return Ok(None);
            }
            PasswordHash::parse(text)
                .map(Some)
                .map_err(|problem| ConfigError::Invalid { key, problem })
        };
        Ok(Console(Arc::new(Inner {
            store,
            viewer: hash(
                "console.viewer_password_hash",
                &settings.viewer_password_hash,
            )?,
            operator: hash(
                "console.operator_password_hash",
                &settings.operator_password_hash,
            )?,
            sessions: auth::Sessions::new(
                Duration::from_secs(settings.session_ttl_s),
                Duration::from_secs(settings.session_idle_s),
            ),
            secure_cookie: settings.secure_cookie,
            trusted_proxies: TrustedProxies::parse(&settings.trusted_proxies).map_err(
                |problem| ConfigError::Invalid {
                    key: "console.trusted_proxies",
                    problem,
                },
            )?,
            refresh_s: settings.refresh_s,
            page_size: settings.page_size,
            hash_gate: limits::HashGate::new(
                std::thread::available_parallelism().map_or(1, |n| n.get() / 2),
            ),
            limits: limits::Limits::default(),
            identity_header: settings.identity_header.trim().to_ascii_lowercase(),
            identity_role: if settings.identity_role.trim() == "operator" {
                Role::Operator
            } else {
                Role::Viewer
            },
        })))
    }

    /// The person an authenticating proxy names for this request, if one is configured and
    /// the request came through it (rule L4).
    fn proxy_identity<'h>(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &'h axum::http::HeaderMap,
    ) -> Option<&'h str> {
        self.trusted_proxies
            .identity(peer, headers, &self.identity_header)
    }

    /// The console's routes, every response with the console's security headers.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/console", get(overview::overview))
            .route("/console/style.css", get(style))
            .route("/console/refresh.js", get(script))
            .route("/console/login", get(login::login_form).post(login::login))
            .route("/console/logout", post(auth::logout))
            .route("/console/review", get(review::review))
            .route("/console/orders", get(pages::in_state))
            .route("/console/orders.csv", get(pages::in_state_csv))
            .route("/console/find", get(pages::find))
            .route("/console/changed", get(changed::changed))
            .route("/console/orders/{order_no}", get(timeline::order))
            .route("/console/orders/{order_no}/retry", post(actions::retry))
            .route(
                "/console/orders/{order_no}/repay",
                get(actions::repay_form).post(actions::repay),
            )
            .route("/console/orders/{order_no}/cancel", post(actions::cancel))
            .route("/console/retry", post(bulk::bulk))
            .route("/console/bulk", post(bulk::bulk))
            .route("/console/pause", get(pause::page).post(pause::pause))
            .route("/console/resume", post(pause::resume))
            .route("/console/reconcile", get(reconciliation::page))
            // Forms are small; a bulk retry of a whole page is a few kilobytes.
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self)
    }
}

/// No framing, no inline script or style, no referrer (URLs carry order numbers), no caching
/// (pages show live data and a CSRF token). `connect-src 'self'`: `refresh.js` fetches the
/// page it is on.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        html::STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        html::REFRESH_JS,
    )
        .into_response()
}

/// A form body (`application/x-www-form-urlencoded`), keys in order, repeated keys kept (the
/// bulk retry's ticked boxes).
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Form, Response> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Form(form_urlencoded::parse(&body).into_owned().collect()))
    }
}

/// A request value that would reach SQL holding a NUL (PostgreSQL's text refuses it, and the
/// refusal would read as a database failure): 400 naming the field, before any statement, so a
/// client's bad input never shows as "Database unavailable" nor logs a database error.
#[allow(clippy::result_large_err)]
fn refuse_nul(who: Option<&Who>, field: &str, value: &str) -> Result<(), Response> {
    if !value.contains('\0') {
        return Ok(());
    }
    Err(html::message(
        StatusCode::BAD_REQUEST,
        who,
        "Bad request",
        &format!("The {field} holds a NUL character, which no order, reason or number can hold."),
    ))
}

/// The page for a store error: what the operator can do about it, never a stack of causes.
fn store_error(who: &Who, e: &crate::jobs::Error) -> Response {
    use crate::jobs::Error;
    if e.is_refused_character() {
        // A value checked nowhere before reached SQL with a character the database refuses.
        return html::message(
            StatusCode::BAD_REQUEST,
            Some(who),
            "Bad request",
            "A value in the request holds a character the database cannot store (a NUL).",
        );
    }
    match e {
        Error::Refused { .. } | Error::PauseRefused(_) => {
            html::message(StatusCode::CONFLICT, Some(who), "Not done", &e.to_string())
        }
        Error::NotFound(_) => html::message(
            StatusCode::NOT_FOUND,
            Some(who),
            "No such order",
            &e.to_string(),
        ),
        _ => {
            tracing::warn!(error = %e, "console: database error");
            html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(who),
                "Database unavailable",
                "The database did not answer; try again in a moment.",
            )
        }
    }
}
