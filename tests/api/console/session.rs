//! The session cookie over a real connection: a browser session's cookie (no Max-Age, no
//! Expires), `Secure` when the login came over HTTPS through a trusted proxy (or always, when
//! configured), never on a stranger's say-so; and a session nobody uses ends.

use std::time::Duration;

use reqwest::StatusCode;

use super::{serve_with, settings, Client, OPERATOR_PASSWORD};
use crate::support::app::TestApp;

async fn login_cookie(base: &str, forwarded_proto: Option<&str>) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut page = http.get(format!("{base}/console/login"));
    if let Some(proto) = forwarded_proto {
        page = page.header("x-forwarded-proto", proto);
    }
    let page = page.send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    // The login token's cookie is Secure exactly when the session's will be.
    let expected_secure = secure(&login_cookie);
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let token = login_cookie.split_once('=').unwrap().1.to_owned();
    let mut req = http
        .post(format!("{base}/console/login"))
        .header("cookie", login_cookie)
        .form(&[
            ("login_token", token.as_str()),
            ("name", "sam"),
            ("password", OPERATOR_PASSWORD),
        ]);
    if let Some(proto) = forwarded_proto {
        req = req.header("x-forwarded-proto", proto);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(secure(&cookie), expected_secure, "{cookie}");
    cookie
}

fn secure(cookie: &str) -> bool {
    cookie.split(';').any(|p| p.trim() == "Secure")
}

#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_https_and_never_on_a_strangers_word() {
    let app = TestApp::new().await;
    // The test client connects from 127.0.0.1: a trusted proxy here, a stranger there.
    let mut trusting = settings(50);
    trusting.trusted_proxies = "10.0.0.0/8, 127.0.0.1".into();
    let trusted = serve_with(&app, trusting).await;
    let untrusting = serve_with(&app, settings(50)).await;
    let mut always = settings(50);
    always.secure_cookie = true;
    let always = serve_with(&app, always).await;

    for (base, proto, expected) in [
        (&trusted, Some("https"), true),
        (&trusted, Some("http"), false),
        (&trusted, None, false),
        (&untrusting, Some("https"), false),
        (&always, None, true),
    ] {
        let cookie = login_cookie(base, proto).await;
        assert_eq!(secure(&cookie), expected, "{proto:?}: {cookie}");
        assert!(
            !cookie.contains("Max-Age") && !cookie.contains("Expires"),
            "{cookie}"
        );
    }
}

#[tokio::test]
async fn a_session_nobody_uses_for_the_idle_time_ends() {
    let app = TestApp::new().await;
    let mut short = settings(50);
    short.session_idle_s = 2;
    let base = serve_with(&app, short).await;
    let (client, _) = Client::logged_in(&base, "ida", OPERATOR_PASSWORD).await;
    // In use: every request keeps it open past the idle time.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(client.get("/console").await.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = client.get("/console").await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "an idle session ended");
    assert_eq!(got.location(), "/console/login");
}
