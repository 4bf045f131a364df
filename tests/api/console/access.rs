//! Who may see and do what, over plain HTTP: the console is off unless enabled, pages need a
//! session, a wrong password opens none, a viewer's action is refused by the server (403)
//! whatever it posts, and so is any action without its session's CSRF token.

use reqwest::StatusCode;

use super::{hashes, park, serve, state_of, Client, Parked, OPERATOR_PASSWORD, VIEWER_PASSWORD};
use crate::support::app::TestApp;
use crate::support::binary::WorkerProcess;

#[tokio::test]
async fn the_console_is_not_served_unless_enabled() {
    let app = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ticketing_tracker::http::router(app.store.clone(), String::new().into());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = Client::new(&format!("http://{addr}"));
    for path in ["/console", "/console/login", "/console/review"] {
        assert_eq!(
            client.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let got = client
        .post(
            "/console/login",
            &[("name", "a"), ("password", OPERATOR_PASSWORD)],
        )
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_send_a_stranger_to_the_login_form_and_actions_refuse_one() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEA000001", Parked::ReviewUnclear).await;
    let base = serve(&app, 50).await;
    let stranger = Client::new(&base);
    for path in [
        "/console",
        "/console/review",
        "/console/orders?state=failed",
        "/console/find?q=CONSOLEA000001",
        "/console/orders/CONSOLEA000001",
    ] {
        let got = stranger.get(path).await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(got.location(), "/console/login", "{path}");
    }
    let got = stranger
        .post("/console/orders/CONSOLEA000001/retry", &[("csrf", "x")])
        .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    // A made-up session id is no session.
    let mut forger = Client::new(&base);
    forger.cookie = Some(format!("tt_console={}", "ab".repeat(32)));
    assert_eq!(forger.get("/console").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&app, "CONSOLEA000001").await, "needs_review");
}

#[tokio::test]
async fn a_wrong_password_opens_no_session_and_a_right_one_sets_a_strict_httponly_cookie() {
    let app = TestApp::new().await;
    let base = serve(&app, 50).await;
    let mut client = Client::new(&base);
    let got = client.login("alice", "not-the-password").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert!(got.headers.get("set-cookie").is_none());
    assert!(got.body.contains("Wrong name or password"), "{}", got.body);
    let got = client.login("alice <b>", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "a name with markup");

    let got = client.login("alice", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.location(), "/console");
    let cookie = got.headers["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "tt_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    // A browser session's cookie: it ends with the browser (the server ends it sooner).
    for part in ["Max-Age", "Expires", "Secure"] {
        assert!(!cookie.contains(part), "{part} in {cookie}");
    }
    let page = client.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice · operator"), "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    // The overview and the lists update in place through the script (it fetches the page:
    // `connect-src 'self'`), never by reloading; without JavaScript they offer a link.
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!page.body.contains("http-equiv=\"refresh\""));
    assert!(page
        .body
        .contains(r#"<script src="/console/refresh.js" defer></script>"#));
    assert!(page.body.contains(r#"<a href="">Refresh</a>"#));
    let review = client.get("/console/review").await;
    assert!(review
        .body
        .contains(r#"<script src="/console/refresh.js" defer></script>"#));
    assert!(review.body.contains(r#"data-refresh="5""#));
    for asset in ["/console/style.css", "/console/refresh.js"] {
        assert_eq!(
            Client::new(&base).get(asset).await.status,
            StatusCode::OK,
            "{asset}"
        );
    }
    assert_eq!(page.headers["x-content-type-options"], "nosniff");

    // Logging out needs the CSRF token too, and ends the session.
    let refused = client.post("/console/logout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = client
        .post("/console/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(client.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_viewer_reads_every_page_but_the_server_refuses_its_actions_even_forged() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEV000001", Parked::ReviewUnclear).await;
    park(&app, "CONSOLEV000002", Parked::ReviewNeverSent).await;
    let base = serve(&app, 50).await;
    let (viewer, csrf) = Client::logged_in(&base, "victor", VIEWER_PASSWORD).await;
    let review = viewer.get("/console/review").await;
    assert_eq!(review.status, StatusCode::OK);
    assert!(review.body.contains("CONSOLEV000001"), "{}", review.body);
    assert!(!review.body.contains("Retry selected") && !review.body.contains("formaction"));
    let order = viewer.get("/console/orders/CONSOLEV000001").await;
    assert!(order.body.contains("Viewers cannot act"), "{}", order.body);
    assert!(!order.body.contains(r#"id="retry""#));

    // Forged posts, with the viewer's own valid CSRF token: refused by the server.
    for (path, form) in [
        (
            "/console/orders/CONSOLEV000001/retry",
            vec![("csrf", csrf.as_str())],
        ),
        (
            "/console/orders/CONSOLEV000001/repay",
            vec![("csrf", csrf.as_str()), ("confirm", "unpaid-in-atrip")],
        ),
        (
            "/console/orders/CONSOLEV000002/cancel",
            vec![("csrf", csrf.as_str())],
        ),
        (
            "/console/retry",
            vec![("csrf", csrf.as_str()), ("order_no", "CONSOLEV000001")],
        ),
    ] {
        let got = viewer.post(path, &form).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{path}: {}", got.body);
        assert!(got.body.contains("Viewers cannot"), "{path}");
    }
    assert_eq!(
        viewer
            .get("/console/orders/CONSOLEV000001/repay")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(state_of(&app, "CONSOLEV000001").await, "needs_review");
    assert_eq!(state_of(&app, "CONSOLEV000002").await, "needs_review");
    assert_eq!(
        app.event_states("CONSOLEV000001").await.len(),
        0,
        "no event written"
    );
}

#[tokio::test]
async fn an_operator_action_without_its_sessions_csrf_token_is_refused() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEC000001", Parked::ReviewUnclear).await;
    park(&app, "CONSOLEC000002", Parked::ReviewNeverSent).await;
    let base = serve(&app, 50).await;
    let (operator, _csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    // Another session's token is no better than none.
    let (_other, other_csrf) = Client::logged_in(&base, "oscar", OPERATOR_PASSWORD).await;
    let zeros = "0".repeat(64);
    for token in [
        None,
        Some(""),
        Some(zeros.as_str()),
        Some(other_csrf.as_str()),
    ] {
        let form = |extra: &[(&'static str, &'static str)]| {
            let mut f: Vec<(&str, &str)> = extra.to_vec();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            f
        };
        for (path, extra) in [
            ("/console/orders/CONSOLEC000001/retry", vec![]),
            (
                "/console/orders/CONSOLEC000001/repay",
                vec![("confirm", "unpaid-in-atrip")],
            ),
            ("/console/orders/CONSOLEC000002/cancel", vec![]),
            ("/console/retry", vec![("order_no", "CONSOLEC000001")]),
        ] {
            let got = operator.post(path, &form(&extra)).await;
            assert_eq!(got.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(got.body.contains("CSRF"), "{path}: {}", got.body);
        }
    }
    assert_eq!(state_of(&app, "CONSOLEC000001").await, "needs_review");
    assert_eq!(state_of(&app, "CONSOLEC000002").await, "needs_review");
}

#[tokio::test]
async fn console_hash_reads_the_password_from_stdin_and_prints_a_hash_that_checks_it() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use ticketing_tracker::console::PasswordHash;
    let hash = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ticketing-tracker"))
            .args(["console-hash", "--iterations", "1000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = hash("a long enough password\n");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("a long enough password"));
    let parsed = PasswordHash::parse(printed.trim()).unwrap();
    assert!(
        parsed.verify("a long enough password"),
        "the newline is not part of it"
    );
    let short = hash("short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));
}

/// Without a browser as well: against a real `run` process logging everything, a wrong
/// password, a login, an action and a logout leave neither the password, nor the session id,
/// nor the CSRF token in its log or in the events, which name the operator.
#[tokio::test]
async fn the_password_the_session_and_the_csrf_token_reach_no_log_and_no_event() {
    let app = TestApp::new().await;
    let order_no = "ACCESSLOG0000001";
    park(&app, order_no, Parked::ReviewNeverSent).await;
    let (operator, viewer) = hashes();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("RUST_LOG", "debug,ticketing_tracker=trace".into()),
            ("APP_CONSOLE__ENABLED", "true".into()),
            ("APP_CONSOLE__OPERATOR_PASSWORD_HASH", operator),
            ("APP_CONSOLE__VIEWER_PASSWORD_HASH", viewer),
        ],
    );
    let base = worker.http_base().await;
    let mut client = Client::new(&base);
    let wrong = format!("{OPERATOR_PASSWORD}-typo");
    assert_eq!(
        client.login("olga", &wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    let got = client.login("olga", OPERATOR_PASSWORD).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    let session = got.headers["set-cookie"].to_str().unwrap();
    let session = session
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, id)| id.to_owned())
        .unwrap();
    let csrf = client
        .get(&format!("/console/orders/{order_no}"))
        .await
        .csrf();
    let cancelled = client
        .post(
            &format!("/console/orders/{order_no}/cancel"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        cancelled.status,
        StatusCode::SEE_OTHER,
        "{}",
        cancelled.body
    );
    let out = client.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let logged = worker.stop().await;

    let events: Vec<String> = sqlx::query_scalar("SELECT e::text FROM ticketing_events e")
        .fetch_all(app.pool())
        .await
        .unwrap();
    let events = events.join("\n");
    assert!(events.contains("console:operator:olga"), "{events}");
    assert!(logged.contains("console: cancel"), "{logged}");
    for (what, secret) in [
        ("the password", OPERATOR_PASSWORD),
        ("the session id", session.as_str()),
        ("the CSRF token", csrf.as_str()),
    ] {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        assert!(!logged.contains(secret), "the log shows {what}");
        assert!(!events.contains(secret), "the events show {what}");
    }
}

/// `console.listen`: the console on a listener of its own (an internal address); the HTTP
/// port, where ATRIP's webhook comes from the internet, then serves no console at all, and the
/// console's listener serves nothing but the console.
#[tokio::test]
async fn with_a_listener_of_its_own_the_console_is_served_there_and_not_on_the_http_port() {
    let app = TestApp::new().await;
    let (operator, viewer) = hashes();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_CONSOLE__ENABLED", "true".into()),
            ("APP_CONSOLE__OPERATOR_PASSWORD_HASH", operator),
            ("APP_CONSOLE__VIEWER_PASSWORD_HASH", viewer),
            ("APP_CONSOLE__LISTEN", "127.0.0.1:0".into()),
            ("APP_HTTP__WEBHOOK_SECRET", "apart-secret".into()),
        ],
    );
    let base = worker.http_base().await;
    let console = crate::support::binary::addr_in_line(
        &worker
            .wait_log(
                "operator console listening",
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap(),
        "operator console listening",
    )
    .map(|addr| format!("http://{addr}"))
    .expect("the console's own address in the log");
    assert_ne!(console, base);
    let on_port = Client::new(&base);
    for path in ["/console", "/console/login"] {
        assert_eq!(
            on_port.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(on_port.get("/healthz").await.status, StatusCode::OK);
    let apart = Client::new(&console);
    assert_eq!(apart.get("/console/login").await.status, StatusCode::OK);
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            apart.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (client, _) = Client::logged_in(&console, "lena", OPERATOR_PASSWORD).await;
    assert_eq!(client.get("/console").await.status, StatusCode::OK);
    worker.stop().await;
}
