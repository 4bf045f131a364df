//! Logging in under attack (docs/design.md, L1-L5): a flood of wrong passwords leaves a real
//! operator's login fast; a run of wrong passwords locks the account (in the database, with its
//! time) and shuts the client out; a login form posted from another site logs nobody in;
//! named accounts made with `console-user` are who the console says; an authenticating proxy's
//! header is believed from that proxy only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{
    login_token, serve_console, serve_with, set_cookie, settings, Client, Got, OPERATOR_PASSWORD,
};
use crate::cli::{command, finish};
use crate::support::app::{wait_until, TestApp};

/// A browser behind the trusted proxy at 127.0.0.1, which forwards it as `client`.
struct Behind {
    http: reqwest::Client,
    base: String,
    client: String,
    login_cookie: String,
    token: String,
}

impl Behind {
    /// Opens the login page (its token) as `client`.
    async fn new(base: &str, client: &str) -> Behind {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let page = http
            .get(format!("{base}/console/login"))
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        let page = read(page).await;
        assert_eq!(page.status, StatusCode::OK);
        Behind {
            login_cookie: set_cookie(&page.headers, "tt_login").unwrap(),
            token: login_token(&page),
            http,
            base: base.to_owned(),
            client: client.to_owned(),
        }
    }

    async fn login(&self, name: &str, password: &str) -> Got {
        let resp = self
            .http
            .post(format!("{}/console/login", self.base))
            .header("x-forwarded-for", &self.client)
            .header("cookie", &self.login_cookie)
            .form(&[
                ("login_token", self.token.as_str()),
                ("name", name),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    /// The console's overview with the session `login` opened.
    async fn overview(&self, login: &Got) -> Got {
        let session = set_cookie(&login.headers, "tt_console").expect("a session cookie");
        let resp = self
            .http
            .get(format!("{}/console", self.base))
            .header("x-forwarded-for", &self.client)
            .header("cookie", session)
            .send()
            .await
            .unwrap();
        read(resp).await
    }
}

async fn read(resp: reqwest::Response) -> Got {
    Got {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// The console served behind a trusted proxy at 127.0.0.1 (the tests' own address).
async fn behind_proxy(app: &TestApp) -> String {
    let mut s = settings(50);
    s.trusted_proxies = "127.0.0.1".into();
    serve_with(app, s).await
}

/// `ticketing_console_logins_total{result}` on `/metrics` (process-wide: other tests add to it).
async fn logins(base: &str, result: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("ticketing_console_logins_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("no {needle} in /metrics"))
        .parse()
        .unwrap()
}

async fn console_user(app: &TestApp, args: &[&str], stdin: Option<&str>) -> crate::cli::Run {
    let mut cmd = command(Some(&app.db.url()));
    cmd.arg("console-user").args(args);
    finish(cmd, stdin).await
}

const ALICE_PASSWORD: &str = "alice-has-a-long-password";

#[tokio::test]
async fn a_real_login_stays_fast_while_thirty_clients_flood_wrong_passwords() {
    let app = TestApp::new().await;
    let base = behind_proxy(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    // Twenty clients of their own, and ten more sharing one address.
    for i in 0..30 {
        let client = if i < 20 {
            format!("10.9.0.{i}")
        } else {
            "10.9.1.1".to_owned()
        };
        let (base, stop, tries, wrong, limited) = (
            base.clone(),
            stop.clone(),
            tries.clone(),
            wrong.clone(),
            limited.clone(),
        );
        flood.push(tokio::spawn(async move {
            let browser = Behind::new(&base, &client).await;
            while !stop.load(Ordering::Relaxed) {
                let got = browser.login("olga", "wrong-password-guess").await;
                tries.fetch_add(1, Ordering::Relaxed);
                match got.status {
                    StatusCode::UNAUTHORIZED => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert!(got.headers.contains_key("retry-after"));
                        limited.fetch_add(1, Ordering::Relaxed);
                        // A refused client comes straight back (10 ms: on two shared cores a
                        // busier loop would measure the test's own spinning).
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    other => panic!("a wrong password got {other}"),
                }
            }
        }));
    }
    // Under way: the twenty clients of their own have each had about two passwords refused.
    wait_until(Duration::from_secs(30), "the flood is under way", || {
        let wrong = wrong.clone();
        async move { wrong.load(Ordering::Relaxed) >= 40 }
    })
    .await;
    let operator = Behind::new(&base, "10.8.0.1").await;
    let started = Instant::now();
    let got = operator.login("olga", OPERATOR_PASSWORD).await;
    let latency = started.elapsed();
    let during = tries.load(Ordering::Relaxed);
    let refused = wrong.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    println!(
        "flood: a real login took {} ms while 30 clients sent wrong passwords ({during} answered so far: {refused} wrong password, {} 429)",
        latency.as_millis(),
        limited.load(Ordering::Relaxed)
    );
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    // The single shared slot held through each wrong password's wait made this 10 s or a 429.
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert!(limited.load(Ordering::Relaxed) > 0, "the flood was limited");
}

/// Rules L2 and L3: a named account is who logs in; a run of wrong passwords locks it, by the
/// database's clock.
#[tokio::test]
async fn fifteen_wrong_passwords_lock_a_named_account_until_the_lock_passes_or_a_reset() {
    let app = TestApp::new().await;
    let base = behind_proxy(&app).await;
    let added = console_user(
        &app,
        &["add", "alice", "--role", "operator", "--iterations", "1000"],
        Some(&format!("{ALICE_PASSWORD}\n")),
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let twice = console_user(
        &app,
        &["add", "alice", "--role", "viewer", "--iterations", "1000"],
        Some(&format!("{ALICE_PASSWORD}\n")),
    )
    .await;
    assert_ne!(twice.code, 0);
    assert!(
        twice.stderr.contains("\"alice\"") && twice.stderr.contains("name"),
        "{}",
        twice.stderr
    );
    let short = console_user(&app, &["add", "bob", "--role", "viewer"], Some("short\n")).await;
    assert!(
        short.code != 0 && short.stderr.contains("password"),
        "{}",
        short.stderr
    );

    let locked_before = logins(&base, "locked").await;
    // Each guess from an address of its own: the account's lock, not the client's, is tested.
    for i in 0..15 {
        let guess = Behind::new(&base, &format!("10.7.0.{i}")).await;
        let got = guess.login("alice", &format!("guess-number-{i}")).await;
        let expected = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(got.status, expected, "guess {i}: {}", got.body);
    }
    let alice = Behind::new(&base, "10.6.0.1").await;
    let got = alice.login("alice", ALICE_PASSWORD).await;
    assert_eq!(
        got.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password, locked"
    );
    assert!(got.body.contains("locked"), "{}", got.body);
    let retry: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(logins(&base, "locked").await >= locked_before + 11);
    // The shared password does not open an account's name either.
    let got = alice.login("alice", OPERATOR_PASSWORD).await;
    assert_ne!(got.status, StatusCode::SEE_OTHER);

    let listed = console_user(&app, &["list"], None).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("alice") && listed.stdout.contains("operator"));
    assert!(!listed.stdout.contains("pbkdf2"), "{}", listed.stdout);

    // The lock is the database's time: once it has passed, the right password works.
    app.advance(Duration::from_secs(31)).await;
    let got = alice.login("alice", ALICE_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    let page = alice.overview(&got).await;
    assert!(
        page.body.contains("console:operator:alice"),
        "{}",
        page.body
    );

    // Locked again, then reset: the new password works at once.
    for i in 0..6 {
        let guess = Behind::new(&base, &format!("10.7.1.{i}")).await;
        guess.login("alice", "another-guess").await;
    }
    assert_eq!(
        alice.login("alice", ALICE_PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let reset = console_user(
        &app,
        &["reset", "alice", "--iterations", "1000"],
        Some("alice-new-long-password\n"),
    )
    .await;
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let session = alice.login("alice", "alice-new-long-password").await;
    assert_eq!(session.status, StatusCode::SEE_OTHER);
    assert_eq!(alice.overview(&session).await.status, StatusCode::OK);
    // A new password ends the sessions opened with the old one.
    let reset = console_user(
        &app,
        &["reset", "alice", "--iterations", "1000"],
        Some("alice-third-long-password\n"),
    )
    .await;
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let after = alice.overview(&session).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "{}", after.body);
    assert_eq!(after.headers["location"], "/console/login");
    let session = alice.login("alice", "alice-third-long-password").await;
    assert_eq!(session.status, StatusCode::SEE_OTHER);
    assert_eq!(alice.overview(&session).await.status, StatusCode::OK);

    // With an account in the table, a shared password's login is marked as the typed name.
    let olga = Behind::new(&base, "10.6.0.2").await;
    let got = olga.login("olga", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert!(olga
        .overview(&got)
        .await
        .body
        .contains("console:operator:shared:olga"));

    // Disabled: the session she has ends at once, and the right password opens nothing.
    let disabled = console_user(&app, &["disable", "alice"], None).await;
    assert_eq!(disabled.code, 0, "{}", disabled.stderr);
    let after = alice.overview(&session).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "{}", after.body);
    assert_eq!(after.headers["location"], "/console/login");
    let got = alice.login("alice", "alice-third-long-password").await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(got.body.contains("disabled"), "{}", got.body);
    let nobody = console_user(&app, &["disable", "nobody"], None).await;
    assert!(
        nobody.code != 0 && nobody.stderr.contains("\"nobody\""),
        "{}",
        nobody.stderr
    );
}

#[tokio::test]
async fn a_client_that_keeps_guessing_is_shut_out_even_with_the_right_password() {
    let app = TestApp::new().await;
    let base = behind_proxy(&app).await;
    let guesser = Behind::new(&base, "10.5.0.1").await;
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(guesser.login("olga", &format!("guess-{i}")).await.status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let got = guesser.login("olga", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 30, "{retry}");
    // Another address is not touched.
    let other = Behind::new(&base, "10.5.0.2").await;
    assert_eq!(
        other.login("olga", OPERATOR_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_login_posted_without_the_login_pages_token_is_refused_even_with_the_right_password() {
    let app = TestApp::new().await;
    let base = serve_with(&app, settings(50)).await;
    let forged_before = logins(&base, "forged").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |cookie: Option<String>, token: Option<String>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let mut form = vec![
                ("name", "olga".to_owned()),
                ("password", OPERATOR_PASSWORD.to_owned()),
            ];
            if let Some(t) = token {
                form.push(("login_token", t));
            }
            let mut req = http.post(format!("{base}/console/login")).form(&form);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            read(req.send().await.unwrap()).await
        }
    };
    let page = Client::new(&base).get("/console/login").await;
    let token = login_token(&page);
    let cookie = set_cookie(&page.headers, "tt_login").unwrap();
    assert!(page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly; SameSite=Strict"));
    let other = "a".repeat(64);
    for (cookie, token, what) in [
        (None, None, "neither"),
        (
            None,
            Some(token.clone()),
            "the token without its cookie (a page of another site)",
        ),
        (Some(cookie.clone()), None, "the cookie without the token"),
        (Some(cookie.clone()), Some(other.clone()), "another token"),
        (
            Some(format!("tt_login={other}")),
            Some(other.clone()),
            "a token the attacker chose",
        ),
    ] {
        let got = post(cookie, token).await;
        // A token the attacker chose cannot be set as a cookie of this site; here the test
        // sends it itself, as only a same-site page could: that one is let through.
        if what == "a token the attacker chose" {
            assert_eq!(got.status, StatusCode::SEE_OTHER, "{what}");
            continue;
        }
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{what}: {}", got.body);
        assert!(set_cookie(&got.headers, "tt_console").is_none(), "{what}");
    }
    assert!(logins(&base, "forged").await >= forged_before + 4);
    let got = post(Some(cookie), Some(token)).await;
    assert_eq!(
        got.status,
        StatusCode::SEE_OTHER,
        "the form as served: {}",
        got.body
    );
}

#[tokio::test]
async fn an_identity_header_is_believed_from_the_trusted_proxy_and_from_nobody_else() {
    let app = TestApp::new().await;
    let mut trusting = settings(50);
    trusting.trusted_proxies = "127.0.0.1".into();
    trusting.identity_header = "X-Forwarded-User".into();
    trusting.identity_role = "operator".into();
    let mut direct = trusting.clone();
    // The tests' own address is no proxy here: a client sending the header itself.
    direct.trusted_proxies = "10.0.0.0/8".into();
    let trusted = serve_with(&app, trusting).await;
    let untrusted = serve_with(&app, direct).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |base: String, user: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("{base}/console"));
            if let Some(u) = user {
                req = req.header("x-forwarded-user", u);
            }
            read(req.send().await.unwrap()).await
        }
    };
    let page = get(trusted.clone(), Some("alice@example.com")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("console:operator:alice@example.com"),
        "{}",
        page.body
    );
    // The proxy's person can act: the session holds their CSRF token.
    let csrf = page.csrf();
    let resp = http
        .post(format!("{trusted}/console/logout"))
        .header("x-forwarded-user", "alice@example.com")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    let stranger = get(untrusted.clone(), Some("alice@example.com")).await;
    assert_eq!(
        stranger.status,
        StatusCode::SEE_OTHER,
        "sent to the login form"
    );
    assert_eq!(stranger.location(), "/console/login");
    let action = http
        .post(format!("{untrusted}/console/pause"))
        .header("x-forwarded-user", "alice@example.com")
        .form(&[("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(action.status(), StatusCode::UNAUTHORIZED);
    let nobody = get(trusted, None).await;
    assert_eq!(
        nobody.status,
        StatusCode::SEE_OTHER,
        "no header, no identity"
    );
}

/// A console whose own store reaches no database (a port nothing listens on), served as `run`
/// serves it.
async fn serve_without_database(
    app: &TestApp,
    s: ticketing_tracker::config::ConsoleSettings,
) -> String {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:9/none")
        .unwrap();
    serve_console(app, s, ticketing_tracker::jobs::JobStore::new(pool)).await
}

#[tokio::test]
async fn without_the_database_a_shared_password_still_logs_in_marked_shared_and_nothing_else_does()
{
    let app = TestApp::new().await;
    let base = serve_without_database(&app, settings(50)).await;
    let mut client = Client::new(&base);
    let got = client.login("olga", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    // The page's own reads fail, but its header names the session.
    let page = client.get("/console/pause").await;
    assert!(
        page.body.contains("console:operator:shared:olga"),
        "{}: {}",
        page.status,
        page.body
    );

    let mut named_only = settings(50);
    named_only.operator_password_hash = String::new().into();
    named_only.viewer_password_hash = String::new().into();
    let base = serve_without_database(&app, named_only).await;
    let got = Client::new(&base).login("olga", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
}
