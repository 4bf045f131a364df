//! The operator console: server-rendered pages under `/console` on the worker's HTTP port, to
//! see where every order stands and to act on the ones that need a person.
//!
//! Pages work without JavaScript (one small script only keeps a list with ticked boxes from
//! reloading). Every action goes through the job store's own `retry` and `cancel`, which
//! enforce the pay-once rules (docs/design.md, P7 and P8); the console only decides which
//! buttons to show. Files: `auth` (roles, sessions, CSRF), `password` (the hashes),
//! `overview`, `pages` (lists and search), `timeline` (an order's page), `actions` (what
//! operators do), `charts` (SVG), `html` (escaping and the page shell). The SQL is in
//! `jobs::console`.

mod actions;
mod auth;
mod charts;
mod html;
mod overview;
mod pages;
mod password;
mod timeline;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

pub use auth::{Role, Who};
pub use password::{EchoOff, PasswordHash, DEFAULT_ITERATIONS};

use crate::config::{ConfigError, ConsoleSettings};
use crate::jobs::JobStore;

/// The console's state: its store, the two roles' hashes, and the sessions.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    store: JobStore,
    viewer: Option<PasswordHash>,
    operator: Option<PasswordHash>,
    sessions: auth::Sessions,
    session_ttl: Duration,
    secure_cookie: bool,
    refresh_s: u64,
    page_size: i64,
    /// One password check at a time: each costs the hash's iterations of CPU.
    login_gate: Semaphore,
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
            sessions: auth::Sessions::new(Duration::from_secs(settings.session_ttl_s)),
            session_ttl: Duration::from_secs(settings.session_ttl_s),
            secure_cookie: settings.secure_cookie,
            refresh_s: settings.refresh_s,
            page_size: settings.page_size,
            login_gate: Semaphore::new(1),
        })))
    }

    /// The console's routes, every response with the console's security headers.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/console", get(overview::overview))
            .route("/console/style.css", get(style))
            .route("/console/refresh.js", get(script))
            .route("/console/login", get(auth::login_form).post(auth::login))
            .route("/console/logout", post(auth::logout))
            .route("/console/review", get(pages::review))
            .route("/console/orders", get(pages::in_state))
            .route("/console/find", get(pages::find))
            .route("/console/orders/{order_no}", get(timeline::order))
            .route("/console/orders/{order_no}/retry", post(actions::retry))
            .route(
                "/console/orders/{order_no}/repay",
                get(actions::repay_form).post(actions::repay),
            )
            .route("/console/orders/{order_no}/cancel", post(actions::cancel))
            .route("/console/retry", post(actions::retry_selected))
            // Forms are small; a bulk retry of a whole page is a few kilobytes.
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self)
    }
}

/// No framing, no inline script or style, no referrer (URLs carry order numbers), no caching
/// (pages show live data and a CSRF token).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
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

/// The page for a store error: what the operator can do about it, never a stack of causes.
fn store_error(who: &Who, e: &crate::jobs::Error) -> Response {
    use crate::jobs::Error;
    match e {
        Error::Refused { .. } => {
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
