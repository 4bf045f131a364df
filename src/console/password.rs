//! The console's password hashes: PBKDF2-HMAC-SHA256 with a random salt, written as
//! `pbkdf2-sha256:ITERATIONS:SALT:HASH` (base64), so that the configuration holds no password
//! and a leaked hash costs a guesser the iterations per try.

use std::fmt;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What `console-hash` uses: OWASP's 2023 figure for PBKDF2-HMAC-SHA256 (about a quarter of a
/// second per login on one core of a release build).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// The longest password the login takes, in bytes; `console-hash` refuses a longer one (its
/// hash could never be logged in with) and reads stdin no further.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Fewer would make a leaked hash cheap to guess; more would make each login a denial of
/// service on the worker's cores.
const ITERATIONS: std::ops::RangeInclusive<u32> = 1_000..=10_000_000;

const PREFIX: &str = "pbkdf2-sha256";

/// A password hash from the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({PREFIX}, {} iterations)", self.iterations)
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}:{}:{}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.hash)
        )
    }
}

impl PasswordHash {
    /// Reads `pbkdf2-sha256:ITERATIONS:SALT:HASH`; the error says which part is wrong (never
    /// quoting it: it is a secret's hash).
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let [prefix, iterations, salt, hash] = parts[..] else {
            return Err(format!(
                "is not {PREFIX}:ITERATIONS:SALT:HASH ({} parts instead of 4)",
                parts.len()
            ));
        };
        if prefix != PREFIX {
            return Err(format!("does not start with {PREFIX}:"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "its iteration count is not a number".to_owned())?;
        if !ITERATIONS.contains(&iterations) {
            return Err(format!(
                "its iteration count must be between {} and {}",
                ITERATIONS.start(),
                ITERATIONS.end()
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| "its salt is not base64".to_owned())?;
        if !(8..=64).contains(&salt.len()) {
            return Err("its salt must be 8 to 64 bytes".into());
        }
        let hash: [u8; 32] = B64
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| "its hash is not 32 bytes of base64".to_owned())?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes `password` with a fresh random salt (clamped to the accepted iteration range).
    pub fn create(password: &str, iterations: u32) -> PasswordHash {
        let iterations = iterations.clamp(*ITERATIONS.start(), *ITERATIONS.end());
        let mut salt = vec![0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let hash = pbkdf2(password.as_bytes(), &salt, iterations);
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Whether `password` is the one hashed; the comparison takes the same time wherever the
    /// digests differ. CPU-bound for the whole iteration count: call it off the async runtime.
    pub fn verify(&self, password: &str) -> bool {
        let candidate = pbkdf2(password.as_bytes(), &self.salt, self.iterations);
        candidate.ct_eq(&self.hash).into()
    }
}

/// Turns off the terminal's echo on stdin until dropped, so a password typed for
/// `console-hash` is not shown. Does nothing where stdin is no terminal.
pub struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    #[allow(clippy::new_without_default)]
    pub fn new() -> EchoOff {
        #[cfg(unix)]
        {
            // SAFETY: tcgetattr fills the struct it is given (zeroed is a valid termios) and
            // tcsetattr only reads one; fd 0 is this process's stdin.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) == 0 {
                    let saved = t;
                    t.c_lflag &= !libc::ECHO;
                    if libc::tcsetattr(0, libc::TCSANOW, &t) == 0 {
                        return EchoOff { saved: Some(saved) };
                    }
                }
            }
            EchoOff { saved: None }
        }
        #[cfg(not(unix))]
        EchoOff {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

/// PBKDF2-HMAC-SHA256 (RFC 8018) for one 32-byte block, which is all a SHA-256 key needs.
fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes a key of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        // The keyed state is cloned rather than keyed again: same result, half the work.
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_matches_the_published_vectors() {
        // RFC 7914, section 11 (the first 32 bytes of each).
        assert_eq!(
            hex(&pbkdf2(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hex(&pbkdf2(b"Password", b"NaCl", 80_000)),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        );
    }

    #[test]
    fn a_hash_round_trips_through_its_text_and_checks_only_its_password() {
        let hash = PasswordHash::create("correct horse battery", 1000);
        let text = hash.to_string();
        assert!(text.starts_with("pbkdf2-sha256:1000:"), "{text}");
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, hash);
        assert!(parsed.verify("correct horse battery"));
        assert!(!parsed.verify("correct horse batterY"));
        assert!(!parsed.verify(""));
        assert!(!format!("{parsed:?}").contains(&text[20..]));
    }

    #[test]
    fn malformed_hashes_are_refused_with_the_part_named() {
        for (text, says) in [
            ("", "parts"),
            ("sha256:1:AAAAAAAAAAA:AAAA", "pbkdf2-sha256"),
            ("pbkdf2-sha256:x:AAAAAAAAAAA:AAAA", "iteration"),
            ("pbkdf2-sha256:10:AAAAAAAAAAA:AAAA", "between"),
            ("pbkdf2-sha256:1000:!!:AAAA", "salt"),
            ("pbkdf2-sha256:1000:AAAAAAAAAAA:AAAA", "hash"),
        ] {
            let e = PasswordHash::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
