//! The operator console: its access rules over plain HTTP (`access`, `actions`), and its pages
//! in a real headless Chromium driven through chromedriver (`browser`; pages updating in place,
//! `live`; accessibility, phone widths and dark mode, `a11y`).

mod a11y;
mod access;
mod actions;
mod browser;
mod changed;
mod find;
mod input;
mod live;
mod login;
mod pause;
mod review;
mod session;
mod webdriver;

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use ticketing_tracker::config::ConsoleSettings;
use ticketing_tracker::console::{Console, PasswordHash};
use ticketing_tracker::jobs::JobStore;

use crate::support::app::TestApp;

pub const OPERATOR_PASSWORD: &str = "operator-password-for-tests";
pub const VIEWER_PASSWORD: &str = "viewer-password-for-tests";

/// Hashes with the fewest iterations the console accepts: a debug build checks them in
/// milliseconds.
pub fn hashes() -> (String, String) {
    (
        PasswordHash::create(OPERATOR_PASSWORD, 1000).to_string(),
        PasswordHash::create(VIEWER_PASSWORD, 1000).to_string(),
    )
}

pub fn settings(page_size: i64) -> ConsoleSettings {
    let (operator, viewer) = hashes();
    ConsoleSettings {
        enabled: true,
        viewer_password_hash: viewer.into(),
        operator_password_hash: operator.into(),
        session_ttl_s: 3600,
        refresh_s: 5,
        page_size,
        session_idle_s: 1800,
        secure_cookie: false,
        trusted_proxies: String::new(),
        listen: String::new(),
        identity_header: String::new(),
        identity_role: "viewer".into(),
    }
}

/// The HTTP router with the console on this test's database, served on a free port.
pub async fn serve(app: &TestApp, page_size: i64) -> String {
    serve_with(app, settings(page_size)).await
}

/// The same with `settings`, served by the accept loop `run` uses (requests know their peer).
pub async fn serve_with(app: &TestApp, settings: ConsoleSettings) -> String {
    serve_console(app, settings, JobStore::new(app.pool().clone())).await
}

/// A console reading through `store` (its own pool, which may reach no database), served by
/// the accept loop `run` uses; the rest of the port reads the test's database.
pub async fn serve_console(app: &TestApp, settings: ConsoleSettings, store: JobStore) -> String {
    let console = Console::new(&settings, store).unwrap();
    let router = ticketing_tracker::http::router_with_console(
        app.store.clone(),
        String::new().into(),
        Some(console),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ticketing_tracker::http::Limits::from_settings(
        &ticketing_tracker::config::Settings::defaults().http,
    );
    tokio::spawn(ticketing_tracker::http::serve_on(
        listener,
        router,
        limits,
        tokio_util::sync::CancellationToken::new(),
    ));
    format!("http://{addr}")
}

/// One person's HTTP client: a session cookie once logged in, and no redirect followed (the
/// tests look at them).
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

/// A response, read whole.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The first CSRF token in the page's forms.
    pub fn csrf(&self) -> String {
        let (_, rest) = self
            .body
            .split_once(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body));
        rest.split('"').next().unwrap().to_owned()
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookie: None,
        }
    }

    async fn read(resp: reqwest::Response) -> Got {
        Got {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Got {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Got {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.send().await.unwrap()).await
    }

    /// Logs in as a browser does: reads the login page (its login token, in a cookie and in
    /// the form), then posts the form; returns the post's response (a 303 and a session cookie
    /// when the password is right).
    pub async fn login(&mut self, name: &str, password: &str) -> Got {
        let page = self.get("/console/login").await;
        let token = login_token(&page);
        let login_cookie =
            set_cookie(&page.headers, "tt_login").expect("the login page sets its token's cookie");
        let got = self
            .http
            .post(format!("{}/console/login", self.base))
            .header("cookie", login_cookie)
            .form(&[
                ("login_token", token.as_str()),
                ("name", name),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        let got = Self::read(got).await;
        if let Some(pair) = set_cookie(&got.headers, "tt_console") {
            self.cookie = Some(pair);
        }
        got
    }

    /// A logged-in client, and a CSRF token of its session.
    pub async fn logged_in(base: &str, name: &str, password: &str) -> (Client, String) {
        let mut client = Client::new(base);
        let got = client.login(name, password).await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
        let csrf = client.get("/console").await.csrf();
        (client, csrf)
    }
}

/// The `name=value` of the response's cookie `name`, if it sets one with a value.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_owned()
        })
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(n, v)| n == name && !v.is_empty())
        })
}

/// The login token in a login page's form.
pub fn login_token(page: &Got) -> String {
    let (_, rest) = page
        .body
        .split_once(r#"name="login_token" value=""#)
        .unwrap_or_else(|| panic!("no login token in:\n{}", page.body));
    rest.split('"').next().unwrap().to_owned()
}

/// Ways to leave a row for a person, written directly (these tests run no worker).
#[derive(Clone, Copy)]
pub enum Parked {
    /// needs_review after a pay.do whose outcome is unknown (it may have reached ATRIP).
    ReviewUnclear,
    /// needs_review with its one intent provably never sent (cancel fits).
    ReviewNeverSent,
    /// failed: ATRIP refused the payment (413), nothing charged.
    FailedRefused,
    /// ticketed, with two airline PNRs and ATRIP's reference.
    Ticketed,
}

/// Enqueues a deposit order and moves it to `how`, the way the worker would leave it.
pub async fn park(app: &TestApp, order_no: &str, how: Parked) {
    app.enqueue(order_no, 1, None).await;
    let set = match how {
        Parked::ReviewUnclear => {
            "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'outcome_unknown', order_status = '0', atrip_status = 0,
             finalized_at = ticketing_now(),
             last_error = 'order ' || order_no || ': pay.do timed out and the order still shows unpaid; check it in ATRIP'"
        }
        Parked::ReviewNeverSent => {
            "state = 'needs_review', pay_attempts = 1, pay_not_sent = 1,
             pay_started_at = ticketing_now(), last_pay_outcome = 'not_sent',
             finalized_at = ticketing_now(),
             last_error = 'order ' || order_no || ': sealed card data this worker has no key for'"
        }
        Parked::FailedRefused => {
            "state = 'failed', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'refused', atrip_status = 413, atrip_message = 'Card not supported',
             finalized_at = ticketing_now(),
             last_error = 'order ' || order_no || ': ATRIP refused the payment with status 413 (Card not supported); nothing was charged'"
        }
        Parked::Ticketed => {
            "state = 'ticketed', pay_attempts = 1, pay_started_at = ticketing_now(),
             paid_at = ticketing_now(), paid_evidence = 'pay_accepted', last_pay_outcome = 'accepted',
             ticketed_at = ticketing_now(), finalized_at = ticketing_now(), order_status = '2',
             atrip_pnr = 'ATR' || right(order_no, 5), pnr = 'PNRA' || right(order_no, 2) || ' PNRB' || right(order_no, 2),
             ticket_numbers = '[{\"passenger\": \"DOE/JANE\", \"ticket_numbers\": [\"6181234567890\"], \"airline_pnrs\": []}]'"
        }
    };
    sqlx::query(&format!(
        "UPDATE ticketing_jobs SET {set}, updated_at = ticketing_now() WHERE order_no = $1"
    ))
    .bind(order_no)
    .execute(app.pool())
    .await
    .expect("park the row");
}

/// The row's state now.
pub async fn state_of(app: &TestApp, order_no: &str) -> String {
    app.job(order_no).await.state
}
