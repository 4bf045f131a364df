//! How often one client may try a password (docs/design.md, rule L1): each client address has
//! a small bucket of attempts, two attempts in flight at most, and a run of wrong passwords
//! shuts it out for a while. All of it is decided before any hash is computed, so a client
//! over its limit costs a map lookup, never a core; and nothing here is shared between
//! clients, so a flood from some addresses leaves the others' logins as fast as ever.
//!
//! In memory, per process: a client refused by one replica may try another, which only
//! multiplies its rate by the replicas. The accounts' own locks (rule L3) are in the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts a client may make at once before it must wait for the bucket to refill.
pub const BURST: f64 = 10.0;
/// One attempt comes back this often (20 a minute at most, sustained).
pub const REFILL: Duration = Duration::from_secs(3);
/// Attempts of one client checked at once: two, so that a double click on "Log in" is not
/// refused; a guesser gains nothing by it (its checks wait in line one at a time, see
/// `HashGate`).
pub const IN_FLIGHT: u8 = 2;
/// Wrong passwords in a row from one client after which it is shut out.
pub const FAILURES_BEFORE_BLOCK: u32 = 10;
/// The first shut-out; each further wrong password after one doubles it, up to the longest.
pub const FIRST_BLOCK: Duration = Duration::from_secs(60);
pub const LONGEST_BLOCK: Duration = Duration::from_secs(900);
/// A client whose last wrong password is this old starts again from none.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(900);
/// Clients remembered at most (a bound on memory); past it, the least recently seen is
/// forgotten.
const MAX_CLIENTS: usize = 10_000;

/// Why a client was refused before its password was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over its rate: it may try again after this long.
    TooFast(Duration),
    /// Shut out after a run of wrong passwords, for this long yet.
    Blocked(Duration),
    /// [`IN_FLIGHT`] attempts of the same client are still being checked.
    Busy,
}

impl Refusal {
    /// The `Retry-After` the answer carries (whole seconds, at least one).
    pub fn retry_after(&self) -> u64 {
        match self {
            Refusal::TooFast(d) | Refusal::Blocked(d) => d.as_secs_f64().ceil().max(1.0) as u64,
            Refusal::Busy => 1,
        }
    }
}

struct Client {
    tokens: f64,
    refilled: Instant,
    failures: u32,
    last_failure: Option<Instant>,
    blocked_until: Option<Instant>,
    /// Its attempts being checked now.
    in_flight: u8,
    seen: Instant,
}

/// Clients by address: an IPv4 address, or an IPv6 address's /64 (one host is given a whole
/// /64, and could otherwise be a new client at every try). `None`: the address is unknown
/// (a server that does not say), all such clients share one entry.
type Key = Option<IpAddr>;

fn key(client: Option<IpAddr>) -> Key {
    client.map(|ip| match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    })
}

/// The clients this process has seen try a password lately.
#[derive(Default)]
pub struct Limits {
    map: Mutex<HashMap<Key, Client>>,
}

/// An attempt let through: one of the client's attempts in flight until dropped.
pub struct Admitted<'a> {
    limits: &'a Limits,
    key: Key,
    /// The client has no wrong password on record: its check goes ahead of those of clients
    /// that have (see `HashGate`).
    pub clean: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut map = self.limits.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(&self.key) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

impl Admitted<'_> {
    /// The password was wrong: counts it, and after [`FAILURES_BEFORE_BLOCK`] in a row shuts
    /// the client out. Returns whether it is now shut out.
    pub fn failed(&self) -> bool {
        let now = Instant::now();
        let mut map = self.limits.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = map.get_mut(&self.key) else {
            return false;
        };
        if c.last_failure
            .is_some_and(|t| now.duration_since(t) > FAILURES_FORGOTTEN)
        {
            c.failures = 0;
        }
        c.failures += 1;
        c.last_failure = Some(now);
        if c.failures >= FAILURES_BEFORE_BLOCK {
            let doublings = (c.failures - FAILURES_BEFORE_BLOCK).min(10);
            let block = (FIRST_BLOCK * 2u32.pow(doublings)).min(LONGEST_BLOCK);
            c.blocked_until = Some(now + block);
            return true;
        }
        false
    }

    /// The password was right: the client's run of wrong ones is forgotten.
    pub fn succeeded(&self) {
        let mut map = self.limits.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(&self.key) {
            c.failures = 0;
            c.last_failure = None;
        }
    }
}

impl Limits {
    /// Lets one attempt of `client` through, or says why not (and for how long).
    pub fn admit(&self, client: Option<IpAddr>) -> Result<Admitted<'_>, Refusal> {
        let key = key(client);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&key) {
            if let Some(oldest) = map
                .iter()
                .filter(|(_, c)| c.in_flight == 0)
                .min_by_key(|(_, c)| c.seen)
                .map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let c = map.entry(key).or_insert(Client {
            tokens: BURST,
            refilled: now,
            failures: 0,
            last_failure: None,
            blocked_until: None,
            in_flight: 0,
            seen: now,
        });
        c.seen = now;
        if let Some(until) = c.blocked_until {
            if until > now {
                return Err(Refusal::Blocked(until - now));
            }
            c.blocked_until = None;
        }
        if c.in_flight >= IN_FLIGHT {
            return Err(Refusal::Busy);
        }
        let gained = now.duration_since(c.refilled).as_secs_f64() / REFILL.as_secs_f64();
        c.tokens = (c.tokens + gained).min(BURST);
        c.refilled = now;
        if c.tokens < 1.0 {
            let wait = REFILL.mul_f64(1.0 - c.tokens);
            return Err(Refusal::TooFast(wait));
        }
        c.tokens -= 1.0;
        c.in_flight += 1;
        let clean = c.failures == 0
            || c.last_failure
                .is_some_and(|t| now.duration_since(t) > FAILURES_FORGOTTEN);
        Ok(Admitted {
            limits: self,
            key,
            clean,
        })
    }
}

/// Where password checks wait for a core (rule L1): at most `permits` at once, in arrival
/// order; but of the clients that already gave a wrong password, only one at a time is
/// checked or waits in the line. A flood of guessers thus holds one place in it, and a client
/// with no wrong password on record (a person logging in) waits for the checks of other such
/// clients and at most one guesser's.
pub struct HashGate {
    checks: tokio::sync::Semaphore,
    guessers: tokio::sync::Semaphore,
}

/// A place at a core; the check runs while it is held.
pub struct Checking<'a> {
    _check: tokio::sync::SemaphorePermit<'a>,
    _guesser: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl HashGate {
    pub fn new(permits: usize) -> HashGate {
        HashGate {
            checks: tokio::sync::Semaphore::new(permits.max(1)),
            guessers: tokio::sync::Semaphore::new(1),
        }
    }

    /// Waits for a place for `admitted`'s check.
    pub async fn enter(&self, admitted: &Admitted<'_>) -> Checking<'_> {
        let guesser = if admitted.clean {
            None
        } else {
            Some(self.guessers.acquire().await.expect("never closed"))
        };
        let check = self.checks.acquire().await.expect("never closed");
        Checking {
            _check: check,
            _guesser: guesser,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_client_gets_its_burst_one_at_a_time_and_others_are_untouched() {
        let limits = Limits::default();
        for _ in 0..BURST as usize / 2 {
            let a = limits.admit(ip("10.0.0.1")).unwrap();
            let b = limits.admit(ip("10.0.0.1")).unwrap();
            assert_eq!(
                limits.admit(ip("10.0.0.1")).err(),
                Some(Refusal::Busy),
                "two at a time"
            );
            drop((a, b));
        }
        match limits.admit(ip("10.0.0.1")) {
            Err(Refusal::TooFast(wait)) => assert!(wait <= REFILL, "{wait:?}"),
            other => panic!("{:?}", other.err()),
        }
        assert!(limits.admit(ip("10.0.0.2")).is_ok(), "another client");
    }

    #[test]
    fn a_run_of_wrong_passwords_shuts_the_client_out_and_a_right_one_forgets_it() {
        let limits = Limits::default();
        for _ in 0..FAILURES_BEFORE_BLOCK - 2 {
            assert!(!limits.admit(ip("10.0.0.1")).unwrap().failed());
        }
        limits.admit(ip("10.0.0.1")).unwrap().succeeded();
        assert!(
            !limits.admit(ip("10.0.0.1")).unwrap().failed(),
            "count restarted"
        );
        let limits = Limits::default();
        let mut blocked = false;
        for _ in 0..FAILURES_BEFORE_BLOCK {
            blocked = limits.admit(ip("2001:db8::1")).unwrap().failed();
        }
        assert!(blocked);
        match limits.admit(ip("2001:db8::ffff")) {
            Err(Refusal::Blocked(d)) => assert!(d <= FIRST_BLOCK && d.as_secs() > 50, "{d:?}"),
            other => panic!("the same /64: {:?}", other.err()),
        }
        assert!(limits.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
    }

    /// Whether `f` is still waiting, polled once.
    fn pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn a_client_without_wrong_passwords_waits_for_at_most_one_guesser() {
        let limits = Limits::default();
        let gate = HashGate::new(1);
        let mut guessers = Vec::new();
        for i in 0..5 {
            let a = limits.admit(ip(&format!("10.0.0.{i}"))).unwrap();
            a.failed();
            drop(a);
            guessers.push(limits.admit(ip(&format!("10.0.0.{i}"))).unwrap());
        }
        assert!(guessers.iter().all(|g| !g.clean));
        let person = limits.admit(ip("10.1.0.1")).unwrap();
        assert!(person.clean);
        // One guesser checking; the others wait outside the line.
        let first = gate.enter(&guessers[0]).await;
        let mut waiting: Vec<_> = guessers[1..]
            .iter()
            .map(|g| Box::pin(gate.enter(g)))
            .collect();
        for w in &mut waiting {
            assert!(pending(w.as_mut()));
        }
        let mut mine = Box::pin(gate.enter(&person));
        assert!(pending(mine.as_mut()));
        drop(first);
        // The person goes before every guesser waiting.
        let checking = mine.await;
        for w in &mut waiting {
            assert!(pending(w.as_mut()));
        }
        drop(checking);
        // Then one guesser, and the others wait for it.
        let _second = waiting[0].as_mut().await;
        for w in &mut waiting[1..] {
            assert!(pending(w.as_mut()));
        }
    }
}
