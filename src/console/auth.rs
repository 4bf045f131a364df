//! Who is asking (docs/design.md, rules L1-L5). Two roles; a person proves theirs with a named
//! account's password (kept in the database), a shared role password (configured as a hash),
//! or an authenticating proxy's header (`login` checks the first two). A login opens a session
//! held in this process, named by a random id in an `HttpOnly`, `SameSite=Strict` cookie;
//! every action carries the session's CSRF token in its form, checked here. Ids and tokens are
//! compared in constant time (as SHA-256 digests, so length tells nothing either), and none of
//! them is ever written to a page other than its own form, to a log or to an event.

use std::collections::HashMap;
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

use super::html;
use super::who::{Role, Who};
use super::{Console, Form};

/// The session cookie. Its path keeps it off every other endpoint of the port.
pub(super) const COOKIE: &str = "tt_console";

/// Sessions one process keeps at most; past it, the oldest is closed. Only a correct password
/// opens one, so this is a bound on memory, not a defence.
const MAX_SESSIONS: usize = 1000;

impl Who {
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
                "Viewers cannot retry or cancel orders, nor pause or resume paying. Log in as an operator.",
            ));
        }
        Ok(())
    }
}

/// Whether two secrets are equal, in time that depends on neither.
pub(super) fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

struct Session {
    who: Who,
    expires: Instant,
    /// The last request that found it; past `idle` of nothing it ends.
    used: Instant,
    /// What the server says once, on the page an action sent the browser to (never read from
    /// a URL: a link could otherwise make any order's page claim an action nobody took).
    flash: Option<Flash>,
}

/// A message the server set after an action, for one page of the same session.
struct Flash {
    /// The page's path, e.g. `/console/orders/ORDER`.
    page: String,
    text: &'static str,
    set: Instant,
}

/// A flash not shown within this long is dropped: it said what happened just now.
const FLASH_TTL: Duration = Duration::from_secs(60);

/// The sessions of this process, by the SHA-256 of their id (so the map's own lookup timing
/// says nothing about an id), each ending a fixed time after its login.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    idle: Duration,
}

impl Sessions {
    /// Sessions that end `ttl` after their login, or after `idle` without a request.
    pub fn new(ttl: Duration, idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
            idle,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        s.expires > now && now.duration_since(s.used) < self.idle
    }

    /// Opens a session; returns its id (64 hex digits: 256 random bits). `account`: the name
    /// is a named account's, and this the SHA-256 of its password hash, read again on every
    /// request.
    pub fn open(&self, role: Role, name: &str, account: Option<[u8; 32]>) -> String {
        let id = random_hex();
        let who = Who {
            role,
            name: name.to_owned(),
            csrf: random_hex(),
            paused: Some(Vec::new()),
            session: key(&id),
            account,
        };
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| self.live(s, now));
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
                used: now,
                flash: None,
            },
        );
        id
    }

    /// The session of a person an authenticating proxy names (rule L4): no cookie, the proxy's
    /// header is the credential on every request; the session holds their CSRF token and
    /// flash, and is opened on their first request (and again after it ends).
    pub fn for_proxy(&self, role: Role, name: &str) -> Who {
        let key = key(&format!("proxy-identity\0{role}\0{name}"));
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(&key) {
            if self.live(s, now) {
                s.used = now;
                return s.who.clone();
            }
        }
        map.retain(|_, s| self.live(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        let who = Who {
            role,
            name: name.to_owned(),
            csrf: random_hex(),
            paused: Some(Vec::new()),
            session: key,
            account: None,
        };
        info!(by = %who.by(), "console: logged in by the authenticating proxy's word");
        map.insert(
            key,
            Session {
                who: who.clone(),
                expires: now + self.ttl,
                used: now,
                flash: None,
            },
        );
        who
    }

    /// Sets the message `page` shows `who` once (the last action's, replacing any earlier).
    pub fn flash(&self, who: &Who, page: String, text: &'static str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(&who.session) {
            s.flash = Some(Flash {
                page,
                text,
                set: Instant::now(),
            });
        }
    }

    /// The message the server set for `page` in `who`'s session, once; a message for another
    /// page is left for it (until it is too old to mean anything).
    pub fn take_flash(&self, who: &Who, page: &str) -> Option<&'static str> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(&who.session)?;
        let flash = session.flash.take()?;
        if flash.set.elapsed() > FLASH_TTL {
            return None;
        }
        if flash.page != page {
            session.flash = Some(flash);
            return None;
        }
        Some(flash.text)
    }

    /// The live session named by `id`.
    pub fn find(&self, id: &str) -> Option<Who> {
        let key = key(id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match map.get_mut(&key) {
            Some(s) if self.live(s, now) => {
                s.used = now;
                Some(s.who.clone())
            }
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

pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the request's cookie `wanted`.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

/// The session id the request's cookie carries.
pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE)
}

impl FromRequestParts<Console> for Who {
    type Rejection = Response;

    /// A page without a session sends the browser to the login form; an action without one is
    /// refused (401).
    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Who, Response> {
        // An authenticating proxy's word comes first (rule L4): it is the proxy that decides
        // who may reach the console at all.
        let peer = Peer::of(&parts.extensions);
        let proxied = console
            .proxy_identity(peer, &parts.headers)
            .map(|name| console.sessions.for_proxy(console.identity_role, name));
        if let Some(mut who) =
            proxied.or_else(|| session_id(&parts.headers).and_then(|id| console.sessions.find(id)))
        {
            // The account (rule L2) and the pauses in force (one read of a small table through
            // its index, so that no page can leave the banner out) are read at once: a page
            // waits for one round trip, not two.
            let role = who.role.to_string();
            let account = async {
                match who.account {
                    Some(hash) => Some(
                        console
                            .store
                            .console_account_holds(&who.name, &role, &hash)
                            .await,
                    ),
                    None => None,
                }
            };
            let (held, pauses) = tokio::join!(account, console.store.pauses_in_force());
            if let Some(held) = held {
                match held {
                    Ok(true) => {}
                    Ok(false) => {
                        // Disabled, removed, given another role or a new password since.
                        if let Some(id) = session_id(&parts.headers) {
                            console.sessions.close(id);
                        }
                        info!(by = %who.by(), "console: session ended, the account was disabled, given another role or a new password");
                        return Err(not_logged_in(&parts.method));
                    }
                    Err(e) => {
                        warn!(error = %e, "console: the session's account could not be read");
                        return Err(html::message(
                            StatusCode::SERVICE_UNAVAILABLE,
                            None,
                            "Database unavailable",
                            "Your account could not be checked; try again in a moment.",
                        ));
                    }
                }
            }
            who.paused = match pauses {
                Ok(pauses) => Some(pauses),
                Err(e) => {
                    warn!(error = %e, "console: the pauses in force could not be read");
                    None
                }
            };
            return Ok(who);
        }
        Err(not_logged_in(&parts.method))
    }
}

/// No session: a page sends the browser to the login form; an action is refused (401).
fn not_logged_in(method: &Method) -> Response {
    if method == Method::GET {
        Redirect::to("/console/login").into_response()
    } else {
        html::message(
            StatusCode::UNAUTHORIZED,
            None,
            "Not logged in",
            "Your session has ended or was never opened. Log in again.",
        )
    }
}

/// The address the request came from, when the server that took it says
/// (`http::serve_on` does).
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer(Peer::of(&parts.extensions)))
    }
}

impl Peer {
    /// The peer's address, as the server that took the request recorded it (`ConnectInfo`).
    pub fn of(extensions: &axum::http::Extensions) -> Option<std::net::SocketAddr> {
        extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| *addr)
    }
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
        let sessions = Sessions::new(Duration::from_millis(200), Duration::from_secs(60));
        let id = sessions.open(Role::Operator, "alice", None);
        assert_eq!(id.len(), 64);
        let who = sessions.find(&id).unwrap();
        assert_eq!(who.by(), "console:operator:alice");
        assert_eq!(who.csrf.len(), 64);
        assert_ne!(who.csrf, id);
        assert!(sessions.find(&id[..63]).is_none());
        assert!(sessions.find("").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
        let id = sessions.open(Role::Viewer, "bob", None);
        std::thread::sleep(Duration::from_millis(250));
        assert!(sessions.find(&id).is_none(), "expired");
    }

    #[test]
    fn a_session_unused_for_the_idle_time_ends_and_one_in_use_goes_on() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_millis(300));
        let id = sessions.open(Role::Operator, "alice", None);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(150));
            assert!(sessions.find(&id).is_some(), "in use");
        }
        std::thread::sleep(Duration::from_millis(350));
        assert!(sessions.find(&id).is_none(), "idle");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; tt_console=abc; b=2".parse().unwrap());
        assert_eq!(session_id(&headers), Some("abc"));
        headers.insert(header::COOKIE, "tt_consolex=abc".parse().unwrap());
        assert_eq!(session_id(&headers), None);
    }
}
