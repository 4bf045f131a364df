//! Card data sealed to the worker's public key: a libsodium sealed box (`crypto_box_seal`),
//! so that any language's libsodium binding can seal and only the worker can open.
//!
//! The sealed plaintext is `{"order_no": "...", "card": {ATRIP creditCard}}`: binding the card
//! to its order number means a ciphertext copied into another row is refused, not paid.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use serde_json::{json, Value};

/// Why sealed card data cannot be used; never quotes the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "card_sealed cannot be opened with this worker's key (wrong key, or not a sealed box)"
    )]
    Unopenable,
    #[error("card_sealed does not hold {{\"order_no\", \"card\"}} JSON")]
    Malformed,
    #[error("card_sealed was sealed for order {sealed_for}, not this one (a ciphertext copied from another row is refused)")]
    WrongOrder { sealed_for: String },
    #[error("this worker has no card key (card.secret_key / APP_CARD__SECRET_KEY), so it cannot open card_sealed")]
    NoKey,
    #[error("card key: {0}")]
    Key(String),
}

/// The worker's key pair, from a base64 secret key.
#[derive(Clone)]
pub struct CardKey(SecretKey);

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardKey(public {})", self.public_base64())
    }
}

impl CardKey {
    pub fn generate() -> Self {
        CardKey(SecretKey::generate(&mut OsRng))
    }

    pub fn from_base64(secret: &str) -> Result<Self, SealError> {
        let bytes = B64
            .decode(secret.trim())
            .map_err(|_| SealError::Key("the secret key is not base64".into()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::Key("the secret key is not 32 bytes".into()))?;
        Ok(CardKey(SecretKey::from(bytes)))
    }

    pub fn secret_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    pub fn public_base64(&self) -> String {
        B64.encode(self.0.public_key().as_bytes())
    }

    /// Opens `sealed` and checks it was sealed for `order_no`; returns the card JSON.
    pub fn open(&self, order_no: &str, sealed: &[u8]) -> Result<Value, SealError> {
        let plain = self.0.unseal(sealed).map_err(|_| SealError::Unopenable)?;
        let mut v: Value = serde_json::from_slice(&plain).map_err(|_| SealError::Malformed)?;
        let sealed_for = v["order_no"]
            .as_str()
            .ok_or(SealError::Malformed)?
            .to_owned();
        if sealed_for != order_no {
            return Err(SealError::WrongOrder {
                sealed_for: crate::domain::truncate(&sealed_for, 40),
            });
        }
        match v.get_mut("card").map(Value::take) {
            Some(card @ Value::Object(_)) => Ok(card),
            _ => Err(SealError::Malformed),
        }
    }
}

/// The worker's keys: the current one and, during a rotation, the previous one. Cards are
/// sealed to the current key's public half; a card sealed to the previous one still opens
/// until that key is removed from the settings (and destroyed).
#[derive(Clone, Debug)]
pub struct CardKeys {
    current: CardKey,
    previous: Option<CardKey>,
}

impl CardKeys {
    pub fn new(current: CardKey, previous: Option<CardKey>) -> Self {
        CardKeys { current, previous }
    }

    /// One key, no rotation.
    pub fn single(current: CardKey) -> Self {
        CardKeys::new(current, None)
    }

    /// The key enqueuers seal to now.
    pub fn current(&self) -> &CardKey {
        &self.current
    }

    /// Whether a previous key is configured (a rotation is under way).
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// Opens `sealed` with the current key, or, when that key cannot open it at all, with
    /// the previous one. A box that opens but is wrong (another order's, malformed) is
    /// refused as it is: only "not sealed to this key" moves on to the other key.
    pub fn open(&self, order_no: &str, sealed: &[u8]) -> Result<Value, SealError> {
        match (self.current.open(order_no, sealed), &self.previous) {
            (Err(SealError::Unopenable), Some(previous)) => previous.open(order_no, sealed),
            (opened, _) => opened,
        }
    }
}

/// Seals `card` for `order_no` to a base64 public key (what an enqueuer does).
pub fn seal(public_base64: &str, order_no: &str, card: &Value) -> Result<Vec<u8>, SealError> {
    let bytes: [u8; 32] = B64
        .decode(public_base64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SealError::Key("the public key is not 32 base64 bytes".into()))?;
    let plain = json!({ "order_no": order_no, "card": card }).to_string();
    PublicKey::from(bytes)
        .seal(&mut OsRng, plain.as_bytes())
        .map_err(|_| SealError::Key("sealing failed".into()))
}

/// `keygen`: writes `card_key.secret` (mode 0600) and `card_key.pub` into `dir`.
pub fn write_key_pair(dir: &Path) -> anyhow::Result<CardKey> {
    use std::io::Write;
    let key = CardKey::generate();
    std::fs::create_dir_all(dir)?;
    let secret_path = dir.join("card_key.secret");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&secret_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} (it must not exist yet): {e}",
            secret_path.display()
        )
    })?;
    writeln!(f, "{}", key.secret_base64())?;
    std::fs::write(
        dir.join("card_key.pub"),
        format!("{}\n", key.public_base64()),
    )?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_sealed_here_opens_only_for_its_order() {
        let key = CardKey::generate();
        let card = json!({"cardNumber": "4532015112830366"});
        let sealed = seal(&key.public_base64(), "TESTA1", &card).unwrap();
        assert_eq!(key.open("TESTA1", &sealed).unwrap(), card);
        assert!(matches!(
            key.open("TESTB2", &sealed),
            Err(SealError::WrongOrder { .. })
        ));
        assert_eq!(
            CardKey::generate().open("TESTA1", &sealed),
            Err(SealError::Unopenable)
        );
        let mut tampered = sealed.clone();
        tampered[60] ^= 1;
        assert_eq!(key.open("TESTA1", &tampered), Err(SealError::Unopenable));
        assert!(!format!("{key:?}").contains(&key.secret_base64()));
    }

    #[test]
    fn during_a_rotation_cards_sealed_to_either_key_open_and_only_those() {
        let (old, new) = (CardKey::generate(), CardKey::generate());
        let card = json!({"cardNumber": "4532015112830366"});
        let sealed_old = seal(&old.public_base64(), "TESTA1", &card).unwrap();
        let sealed_new = seal(&new.public_base64(), "TESTA1", &card).unwrap();
        let rotating = CardKeys::new(new.clone(), Some(old.clone()));
        assert!(rotating.rotating());
        assert_eq!(rotating.open("TESTA1", &sealed_old).unwrap(), card);
        assert_eq!(rotating.open("TESTA1", &sealed_new).unwrap(), card);
        // Another order's box is refused by the key that opens it, not tried again.
        assert!(matches!(
            rotating.open("TESTB2", &sealed_old),
            Err(SealError::WrongOrder { .. })
        ));
        // Once the previous key is gone, its cards are unreadable.
        let after = CardKeys::single(new);
        assert_eq!(
            after.open("TESTA1", &sealed_old),
            Err(SealError::Unopenable)
        );
        assert_eq!(after.open("TESTA1", &sealed_new).unwrap(), card);
    }

    /// Sealed by PyNaCl (libsodium's `crypto_box_seal`) with the secret key 1, 2, ..., 32:
    /// what an enqueuer in Python writes opens here.
    #[test]
    fn a_box_sealed_by_libsodium_opens() {
        let secret: Vec<u8> = (1..=32).collect();
        let key = CardKey::from_base64(&B64.encode(secret)).unwrap();
        assert_eq!(
            key.public_base64(),
            "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="
        );
        let sealed = B64.decode("Gm6tnomLI/PXYDxCgov7l97pITcZii81zsKFqanAgSw/+eJadoRXawJdw8qLyKjOSJYJOKD383viflAk2kmpmKEDbzeMY5EpLOHp8agvmq6c0jPcbQmqk3ouJfWdKyPKIrHOmmDznPlTIFwWQ/0MBnbfC99U203yTL1I+xm5GLUWYQIcP9pDvjJkRZVFpjzOF0zBQCgCZF05nhKmoV4IYoxJpfEOAB+pvY2EIpY/vy02GWUh4voud1PGmN8Y+WDyaZ5F+d43hiCyJPNYU4J3oa/0+b7sasyp9QyyvvpcXCD3WlgiOzPaM5Zrk9miMtWD23al7/o=").unwrap();
        let card = key.open("TESTA20261125000000001", &sealed).unwrap();
        assert_eq!(card["cardHolderLastName"], "DOE");
    }
}
