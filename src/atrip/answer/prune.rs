//! Reads an answer body into only the fields the worker uses, each list bounded, so that what
//! an answer costs in memory and work is set by its size, never by its shape.
//!
//! A `serde_json::Value` of a whole answer takes many times the body's bytes (every `0,` in a
//! list becomes a 32-byte value, every small object a map node: 320 KB of `{"a":[0,1,"x"]}`
//! took 16 MB), and the checks on it would walk every passenger and ticket ATRIP chose to
//! send. Here everything else is read through without being kept; a kept list
//! that grows past its bound stops the parse on the spot, naming the field; and a kept field
//! that holds a list or an object where a scalar belongs keeps only its kind (an empty one),
//! which is all the checks that refuse it need. What is kept is at most the body's own string
//! bytes plus some 800 small values (the bounds of `answer.rs`; 84 KB measured for the fullest
//! answer; the 320 KB above keeps 9.5 KB), and every byte is looked at once.
//!
//! The grammar accepted is exactly `serde_json`'s (strings validated, numbers in range, nesting
//! at most 128 deep), so a body is readable here if and only if it is a JSON document.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What of a JSON value is kept.
#[derive(Debug)]
pub(super) enum Keep {
    /// A string, number, boolean or null, kept as it is.
    Scalar,
    /// A list of at most `max` items, each kept as `item`.
    List {
        max: usize,
        item: &'static Keep,
        beyond: Beyond,
    },
    /// An object of which only these keys are kept.
    Object(&'static [(&'static str, Keep)]),
}

/// What a list longer than its bound means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Beyond {
    /// The answer cannot be trusted: the parse stops with the field named.
    Refuse,
    /// The list is dropped (read as `null`): for a block the worker can do without.
    Drop,
}

/// Why a body gave no object.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Unreadable {
    /// Not a JSON object (the caller describes what it is).
    Garbled,
    /// A kept list longer than its bound: the reason names the field and the bound.
    Bound(String),
}

/// Parses `body` as a JSON object keeping what `top` (a [`Keep::Object`]) says.
pub(super) fn object(body: &[u8], top: &'static Keep) -> Result<Map<String, Value>, Unreadable> {
    let bound = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Pruner {
        keep: top,
        at: &Path::Root,
        bound: &bound,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Unreadable::Garbled),
        Err(_) => Err(bound
            .into_inner()
            .map_or(Unreadable::Garbled, Unreadable::Bound)),
    }
}

/// Where a value sits, for naming it in a refusal (`paxTicketInfos[3].ticketNos`).
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Reads one value as `keep` says. `bound` receives the reason when a list is refused, so that
/// it reaches the caller in our words rather than inside `serde_json`'s error text.
struct Pruner<'a> {
    keep: &'static Keep,
    at: &'a Path<'a>,
    bound: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Pruner<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruner<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Keep::List { max, item, beyond } = *self.keep else {
            while seq.next_element_seed(Skip)?.is_some() {}
            return Ok(Value::Array(Vec::new()));
        };
        let mut items = Vec::new();
        loop {
            let at = Path::Index(self.at, items.len());
            if items.len() == max {
                // One more item is one too many: stop here rather than read them all.
                if seq.next_element_seed(Skip)?.is_none() {
                    break;
                }
                match beyond {
                    Beyond::Refuse => {
                        *self.bound.borrow_mut() =
                            Some(format!("{} has more than {max} entries", self.at));
                        return Err(A::Error::custom("bound"));
                    }
                    Beyond::Drop => {
                        while seq.next_element_seed(Skip)?.is_some() {}
                        return Ok(Value::Null);
                    }
                }
            }
            let next = Pruner {
                keep: item,
                at: &at,
                bound: self.bound,
            };
            match seq.next_element_seed(next)? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Keep::Object(fields) = self.keep else {
            while map.next_key_seed(Skip)?.is_some() {
                map.next_value_seed(Skip)?;
            }
            return Ok(Value::Object(Map::new()));
        };
        let mut out = Map::new();
        while let Some(known) = map.next_key_seed(Field(fields))? {
            match known {
                Some((name, keep)) => {
                    let at = Path::Key(self.at, name);
                    let value = map.next_value_seed(Pruner {
                        keep,
                        at: &at,
                        bound: self.bound,
                    })?;
                    out.insert(name.to_owned(), value);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(out))
    }
}

/// Reads a key and finds it among the kept fields, without keeping the key.
struct Field(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for Field {
    type Value = Option<(&'static str, &'static Keep)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Field {
    type Value = Option<(&'static str, &'static Keep)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(name, keep)| (*name, keep)))
    }
}

/// Reads a value through, keeping nothing. `deserialize_any` (not `IgnoredAny`) so that the
/// value is checked as strictly as a kept one: `serde_json` skips ignored strings without
/// checking their escapes.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}
