//! Who is asking. Two roles, each with its own password (configured as a hash); a login opens a
//! session held in this process, named by a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie; every action carries the session's CSRF token in its form, checked here. Ids and
//! tokens are compared in constant time (as SHA-256 digests, so length tells nothing either),
//! and none of them is ever written to a page other than its own form, to a log or to an event.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::html::{self, Refresh, E};
use super::{Console, Form};

/// The session cookie. Its path keeps it off every other endpoint of the port.
const COOKIE: &str = "tt_console";

/// Sessions one process keeps at most; past it, the oldest is closed. Only a correct password
/// opens one, so this is a bound on memory, not a defence.
const MAX_SESSIONS: usize = 1000;

/// What a role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads every page; the server refuses its actions.
    Viewer,
    /// Reads, retries and cancels.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// A logged-in person: the role their password proved, the name they gave, and their
/// session's CSRF token.
#[derive(Clone)]
pub struct Who {
    pub role: Role,
    pub name: String,
    pub csrf: String,
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.by())
    }
}

impl Who {
    /// How events and logs name this person: `console:operator:alice`.
    pub fn by(&self) -> String {
        format!("console:{}:{}", self.role, self.name)
    }

    /// The check every action makes first: the form carries this session's CSRF token (403
    /// otherwise), and the session is an operator's (403 otherwise), whatever the page showed.
    #[allow(clippy::result_large_err)]
    pub fn may_act(&self, form: &Form) -> Result<(), Response> {
        let given = form.get("csrf").unwrap_or_default();
        if !same(given, &self.csrf) {
            warn!(by = %self.by(), "console: action refused, missing or wrong CSRF token");
            return Err(html::message(
                StatusCode::FORBIDDEN,
                Some(self),
                "Refused",
                "This form is not from your session (missing or wrong CSRF token). Reload the page and try again.",
            ));
        }
        if self.role != Role::Operator {
            warn!(by = %self.by(), "console: action refused, viewers cannot act");
            return Err(html::message(
                StatusCode::FORBIDDEN,
                Some(self),
                "Refused",
                "Viewers cannot retry or cancel orders. Log in as an operator.",
            ));
        }
        Ok(())
    }
}

/// Whether two secrets are equal, in time that depends on neither.
fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

struct Session {
    who: Who,
    expires: Instant,
}

/// The sessions of this process, by the SHA-256 of their id (so the map's own lookup timing
/// says nothing about an id), each ending a fixed time after its login.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Opens a session; returns its id (64 hex digits: 256 random bits).
    pub fn open(&self, role: Role, name: &str) -> String {
        let id = random_hex();
        let who = Who {
            role,
            name: name.to_owned(),
            csrf: random_hex(),
        };
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&id),
            Session {
                who,
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The live session named by `id`.
    pub fn find(&self, id: &str) -> Option<Who> {
        let key = key(id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.who.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id the request's cookie carries.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl FromRequestParts<Console> for Who {
    type Rejection = Response;

    /// A page without a session sends the browser to the login form; an action without one is
    /// refused (401).
    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Who, Response> {
        if let Some(who) = session_id(&parts.headers).and_then(|id| console.sessions.find(id)) {
            return Ok(who);
        }
        if parts.method == Method::GET {
            Err(Redirect::to("/console/login").into_response())
        } else {
            Err(html::message(
                StatusCode::UNAUTHORIZED,
                None,
                "Not logged in",
                "Your session has ended or was never opened. Log in again.",
            ))
        }
    }
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem.map_or_else(String::new, |p| {
        format!(r#"<p class="message">{}</p>"#, E(p))
    });
    let body = format!(
        r#"{problem}<form method="post" action="/console/login" class="login"><p><label>Your name (recorded with every action)<br><input name="name" required maxlength="40" pattern="[A-Za-z0-9._@\-]+" autocomplete="username"></label></p><p><label>Password (the viewer's or the operator's)<br><input name="password" type="password" required maxlength="1024" autocomplete="current-password"></label></p><p><button>Log in</button></p></form>"#
    );
    (status, html::page("Log in", None, Refresh::Off, &body)).into_response()
}

/// `GET /console/login`.
pub async fn login_form(State(console): State<Console>, headers: HeaderMap) -> Response {
    if session_id(&headers)
        .and_then(|id| console.sessions.find(id))
        .is_some()
    {
        return Redirect::to("/console").into_response();
    }
    login_page(StatusCode::OK, None)
}

/// A name recorded with actions: short, and of characters that need no escaping anywhere.
fn valid_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// `POST /console/login`: the password decides the role. Checks run one at a time off the
/// async runtime (each costs the hash's iterations), and a wrong password waits a little more,
/// so guessing is slow and cannot starve the worker of its cores.
pub async fn login(State(console): State<Console>, form: Form) -> Response {
    let name = form.get("name").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    if !valid_name(&name) {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("Your name: 1 to 40 letters, digits, dots, dashes, underscores or @."),
        );
    }
    if password.is_empty() || password.len() > 1024 {
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong password."));
    }
    let Ok(_permit) =
        tokio::time::timeout(Duration::from_secs(10), console.login_gate.acquire()).await
    else {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many logins at once; try again in a moment."),
        );
    };
    let (operator, viewer) = (console.operator.clone(), console.viewer.clone());
    let role = tokio::task::spawn_blocking(move || {
        // Both are checked whatever the first says, so the time taken does not tell which
        // role a password belongs to.
        let is_operator = operator.is_some_and(|h| h.verify(&password));
        let is_viewer = viewer.is_some_and(|h| h.verify(&password));
        if is_operator {
            Some(Role::Operator)
        } else if is_viewer {
            Some(Role::Viewer)
        } else {
            None
        }
    })
    .await
    .ok()
    .flatten();
    let Some(role) = role else {
        // The name is not logged: people type their password into the wrong field.
        warn!("console: login refused (wrong password)");
        tokio::time::sleep(Duration::from_millis(300)).await;
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong password."));
    };
    let id = console.sessions.open(role, &name);
    info!(by = %format!("console:{role}:{name}"), "console: logged in");
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        console.session_ttl.as_secs(),
        if console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response()
}

/// `POST /console/logout`: closes the session (CSRF-checked like any action, but open to
/// viewers).
pub async fn logout(
    State(console): State<Console>,
    who: Who,
    headers: HeaderMap,
    form: Form,
) -> Response {
    if !same(form.get("csrf").unwrap_or_default(), &who.csrf) {
        return html::message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Refused",
            "This form is not from your session (missing or wrong CSRF token).",
        );
    }
    if let Some(id) = session_id(&headers) {
        console.sessions.close(id);
    }
    info!(by = %who.by(), "console: logged out");
    let cookie = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_only_until_they_expire_or_close() {
        let sessions = Sessions::new(Duration::from_millis(200));
        let id = sessions.open(Role::Operator, "alice");
        assert_eq!(id.len(), 64);
        let who = sessions.find(&id).unwrap();
        assert_eq!(who.by(), "console:operator:alice");
        assert_eq!(who.csrf.len(), 64);
        assert_ne!(who.csrf, id);
        assert!(sessions.find(&id[..63]).is_none());
        assert!(sessions.find("").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
        let id = sessions.open(Role::Viewer, "bob");
        std::thread::sleep(Duration::from_millis(250));
        assert!(sessions.find(&id).is_none(), "expired");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; tt_console=abc; b=2".parse().unwrap());
        assert_eq!(session_id(&headers), Some("abc"));
        headers.insert(header::COOKIE, "tt_consolex=abc".parse().unwrap());
        assert_eq!(session_id(&headers), None);
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(valid_name("alice.smith@ops-1"));
        for bad in ["", "a b", "<b>", &"a".repeat(41), "élodie"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
