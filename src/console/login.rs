//! Logging in (docs/design.md, rules L1-L5): the login form with its own token, and the checks
//! a login passes in order, each before anything dearer: the form's token, the client's limits,
//! the account's lock, then the password's hash.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tracing::{info, warn};

use super::auth::{cookie, random_hex, same, session_id, Peer, COOKIE};
use super::html::{self, Refresh, E};
use super::limits::Refusal;
use super::who::Role;
use super::{Console, Form, PasswordHash};
use sha2::Digest as _;

/// The login form's own token (rule L5): a random value in a cookie of its own
/// (`HttpOnly; SameSite=Strict`, for the login path only, gone after `LOGIN_TOKEN_TTL`) that
/// the form repeats. A page of another site can make a browser post the form, but can neither
/// read the token nor have the browser send the cookie with a cross-site post.
const LOGIN_COOKIE: &str = "tt_login";

/// How long a login page's token lasts in the browser.
const LOGIN_TOKEN_TTL_S: u64 = 900;

/// The login token the request's cookie carries, when it looks like one of ours.
fn login_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The login form, with the browser's login token (a new one when it has none).
fn login_page(
    status: StatusCode,
    problem: Option<&str>,
    headers: &HeaderMap,
    secure: bool,
) -> Response {
    let problem = problem.map_or_else(String::new, |p| {
        format!(r#"<p class="message">{}</p>"#, E(p))
    });
    let known = login_token(headers);
    let token = known.map_or_else(random_hex, str::to_owned);
    let body = format!(
        r#"{problem}<form method="post" action="/console/login" class="login"><input type="hidden" name="login_token" value="{token}"><p><label>Your account's name (recorded with every action)<br><input name="name" required maxlength="40" pattern="[A-Za-z0-9._@\-]+" autocomplete="username"></label></p><p><label>Password (your account's, or the shared viewer's or operator's)<br><input name="password" type="password" required maxlength="1024" autocomplete="current-password"></label></p><p><button>Log in</button></p></form>"#
    );
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age={LOGIN_TOKEN_TTL_S}{}",
        if secure { "; Secure" } else { "" }
    );
    let mut page = (status, html::page("Log in", None, Refresh::Off, &body)).into_response();
    // A browser that holds a token keeps it: the form of another tab stays good.
    if known.is_none() {
        page.headers_mut().insert(
            header::SET_COOKIE,
            cookie.parse().expect("a plain header value"),
        );
    }
    page
}

/// `GET /console/login`.
pub async fn login_form(
    State(console): State<Console>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if session_id(&headers)
        .and_then(|id| console.sessions.find(id))
        .is_some()
        || console.proxy_identity(peer, &headers).is_some()
    {
        return Redirect::to("/console").into_response();
    }
    let secure = console.secure_cookie || console.trusted_proxies.https(peer, &headers);
    login_page(StatusCode::OK, None, &headers, secure)
}

/// A name recorded with actions: short, and of characters that need no escaping anywhere.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// What a wrong password waits before its answer, holding one of its client's attempts in flight
/// (never a slot other clients need): a client guesses at most this often.
const WRONG_PASSWORD_PENALTY: Duration = Duration::from_millis(300);

/// A refusal before any password was looked at: 429 with `Retry-After`.
fn too_many(problem: &str, retry_after: u64, headers: &HeaderMap, secure: bool) -> Response {
    let mut page = login_page(
        StatusCode::TOO_MANY_REQUESTS,
        Some(problem),
        headers,
        secure,
    );
    page.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from(retry_after),
    );
    page
}

/// A hash no password is known for, at the default iterations: what an unknown name is
/// checked against when no shared password is configured.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        PasswordHash::parse(&format!(
            "pbkdf2-sha256:{}:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            super::DEFAULT_ITERATIONS
        ))
        .expect("a well-formed hash")
    })
}

/// Which password proved what: a named account's, or a shared role's.
enum Proved {
    Account(Role),
    Shared(Role),
}

/// `POST /console/login` (rules L1-L5). In order, each before anything dearer: the form's login
/// token; the client's limits (no hash work for a client over them); the account's lock (read
/// with the database's time); then the hash, a bounded number at a time off the async runtime,
/// so that guessing cannot starve the worker of its cores.
pub async fn login(
    State(console): State<Console>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let metrics = crate::metrics::global();
    let secure = console.secure_cookie || console.trusted_proxies.https(peer, &headers);
    let token_ok = match (login_token(&headers), form.get("login_token")) {
        (Some(cookie), Some(field)) => same(cookie, field),
        _ => false,
    };
    if !token_ok {
        metrics.console_login("forged");
        warn!("console: login refused, the form carried no login token of this browser (a post from another site, or a form older than its cookie)");
        return login_page(
            StatusCode::FORBIDDEN,
            Some("This login form did not come from this console's login page, or it is too old. Log in again from this page."),
            &headers,
            secure,
        );
    }
    let name = form.get("name").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    if !valid_name(&name) {
        metrics.console_login("bad_request");
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("Your name: 1 to 40 letters, digits, dots, dashes, underscores or @."),
            &headers,
            secure,
        );
    }
    if password.is_empty() || password.len() > super::MAX_PASSWORD_BYTES {
        metrics.console_login("wrong_password");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password."),
            &headers,
            secure,
        );
    }
    let client = console.trusted_proxies.client(peer, &headers);
    let admitted = match console.limits.admit(client) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            metrics.console_login("limited");
            let (problem, why) = match refusal {
                Refusal::Blocked(_) => (
                    "Too many wrong passwords from your address: logins from it are refused for a while.",
                    "shut out after a run of wrong passwords",
                ),
                Refusal::TooFast(_) => (
                    "Too many logins from your address: wait a moment and try again.",
                    "over its rate",
                ),
                Refusal::Busy => (
                    "Another login from your address is being checked: try again in a moment.",
                    "two attempts already in flight",
                ),
            };
            warn!(client = ?client, "console: login refused before its password was checked: the client is {why}");
            return too_many(problem, refusal.retry_after(), &headers, secure);
        }
    };
    let found = match console.store.console_login_account(&name).await {
        Ok(found) => found,
        // Without the database the accounts cannot be checked, but a shared password still
        // can: an operator needs the console most when things fail. Its login is marked
        // `shared:` as if accounts existed, since no one can tell.
        Err(e) if console.operator.is_some() || console.viewer.is_some() => {
            warn!(error = %e, "console: the accounts could not be read; only the shared passwords are checked");
            crate::jobs::LoginAccount {
                any: true,
                account: None,
            }
        }
        Err(e) => {
            metrics.console_login("unavailable");
            warn!(error = %e, "console: login not checked, the accounts could not be read");
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The database did not answer; try again in a moment."),
                &headers,
                secure,
            );
        }
    };
    // An account's name logs in with that account's password only; a shared password logs in
    // under any other name.
    let (account_hash, account_role) = match &found.account {
        Some(account) => {
            if let Some(locked_s) = account.locked_s {
                metrics.console_login("locked");
                warn!(account = %name, locked_s = locked_s.ceil(), "console: login refused, the account is locked after wrong passwords");
                return too_many(
                    "This account is locked after too many wrong passwords; try again later, or ask for `console-user reset`.",
                    locked_s.ceil().max(1.0) as u64,
                    &headers,
                    secure,
                );
            }
            let hash = PasswordHash::parse(&account.password_hash)
                .map_err(|problem| {
                    tracing::error!(account = %name, %problem, "console: account's password_hash does not parse; reset it with `console-user reset`");
                })
                .ok();
            let role = if account.role == "operator" {
                Role::Operator
            } else {
                Role::Viewer
            };
            (Some(hash), Some(role))
        }
        None => (None, None),
    };
    let Ok(permit) =
        tokio::time::timeout(Duration::from_secs(10), console.hash_gate.enter(&admitted)).await
    else {
        metrics.console_login("limited");
        return too_many(
            "Too many logins at once; try again in a moment.",
            1,
            &headers,
            secure,
        );
    };
    let (operator, viewer) = (console.operator.clone(), console.viewer.clone());
    let proved = tokio::task::spawn_blocking(move || match (account_hash, account_role) {
        (Some(hash), Some(role)) => hash
            .is_some_and(|h| h.verify(&password))
            .then_some(Proved::Account(role)),
        _ if operator.is_none() && viewer.is_none() => {
            // No shared password: an unknown name still costs a check, so that the time
            // taken does not tell which names are accounts.
            dummy_hash().verify(&password);
            None
        }
        _ => {
            // Both are checked whatever the first says, so the time taken does not tell
            // which role a password belongs to.
            let is_operator = operator.is_some_and(|h| h.verify(&password));
            let is_viewer = viewer.is_some_and(|h| h.verify(&password));
            if is_operator {
                Some(Proved::Shared(Role::Operator))
            } else if is_viewer {
                Some(Proved::Shared(Role::Viewer))
            } else {
                None
            }
        }
    })
    .await
    .ok()
    .flatten();
    drop(permit);
    let Some(proved) = proved else {
        let shut_out = admitted.failed();
        if found.account.is_some() {
            match console.store.console_login_failed(&name).await {
                Ok(Some(failed)) if failed.locked_s.is_some() => warn!(
                    account = %name, failed = failed.failed_logins,
                    locked_s = failed.locked_s.unwrap_or_default().ceil(),
                    "console: account locked after wrong passwords"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "console: a wrong password could not be counted"),
            }
        }
        // The name typed is not logged: people type their password into the wrong field.
        warn!(client = ?client, shut_out, "console: login refused (wrong name or password)");
        metrics.console_login("wrong_password");
        tokio::time::sleep(WRONG_PASSWORD_PENALTY).await;
        drop(admitted);
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password."),
            &headers,
            secure,
        );
    };
    let (role, who_name, account) = match proved {
        Proved::Account(role) => {
            if found.account.as_ref().is_some_and(|a| a.disabled) {
                metrics.console_login("disabled");
                warn!(account = %name, "console: login refused, the account is disabled");
                return login_page(
                    StatusCode::FORBIDDEN,
                    Some("This account is disabled."),
                    &headers,
                    secure,
                );
            }
            match console.store.console_login_succeeded(&name).await {
                Ok(true) => {}
                Ok(false) => {
                    metrics.console_login("locked");
                    warn!(account = %name, "console: login refused, the account was locked or disabled meanwhile");
                    return too_many(
                        "This account is locked after too many wrong passwords; try again later, or ask for `console-user reset`.",
                        60,
                        &headers,
                        secure,
                    );
                }
                Err(e) => {
                    metrics.console_login("unavailable");
                    warn!(error = %e, "console: login not recorded, the database did not answer");
                    return login_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("The database did not answer; try again in a moment."),
                        &headers,
                        secure,
                    );
                }
            }
            // The session holds the digest of the hash it logged in with: a reset ends it.
            let digest = found
                .account
                .as_ref()
                .map(|a| -> [u8; 32] { sha2::Sha256::digest(a.password_hash.as_bytes()).into() });
            (role, name, digest)
        }
        // The name typed with a shared password is the person's word, not proven: once named
        // accounts exist it is marked so (rule L2).
        Proved::Shared(role) if found.any => (role, format!("shared:{name}"), None),
        Proved::Shared(role) => (role, name, None),
    };
    admitted.succeeded();
    drop(admitted);
    metrics.console_login("ok");
    let id = console.sessions.open(role, &who_name, account);
    info!(by = %format!("console:{role}:{who_name}"), "console: logged in");
    // No Max-Age nor Expires: the cookie ends with the browser; the server ends the session
    // after session_ttl_s, or session_idle_s unused, whichever comes first. The login token
    // is spent.
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    let spent =
        format!("{LOGIN_COOKIE}=; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie.parse().expect("a plain header value"),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        spent.parse().expect("a plain header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_is_checked_at_the_default_cost() {
        assert!(format!("{:?}", dummy_hash()).contains(&format!(
            "{} iterations",
            crate::console::DEFAULT_ITERATIONS
        )));
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(valid_name("alice.smith@ops-1"));
        for bad in ["", "a b", "<b>", &"a".repeat(41), "élodie"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
