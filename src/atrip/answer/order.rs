//! The order in a `status 0` query answer: its state, its passengers' tickets and PNRs, its
//! payment deadline. Every step is linear in what the answer holds (sets and maps, never a
//! scan per item), and the lists were bounded when the body was read.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::{quote, text, OrderView};
use crate::atrip::codes::OrderStatus;
use crate::domain::{truncate, PassengerTickets};

/// The ticket numbers one passenger can hold: one, or two for a round trip split in two
/// bookings.
const MAX_TICKETS_PER_PASSENGER: usize = 2;

/// Reads the fields the worker uses from a `status 0` query answer, refusing what cannot be
/// trusted: another order's answer, wrong types, more ticket numbers than a passenger can hold.
///
/// `paxTicketInfos` is the passenger list (ATRIP's documented answers carry no `passengers`
/// array, and an entry's `name` may be absent: ATRIP's own client accepts such answers). When an
/// answer does carry a `passengers` array too, the ticket list may not be longer than it, a named
/// entry must be one of the listed passengers, and a listed passenger without an entry is kept
/// with no ticket, so that the set is not final without them.
pub(super) fn read(order_no: &str, m: &Map<String, Value>) -> Result<OrderView, String> {
    match m.get("orderNo") {
        Some(Value::String(s)) if s == order_no => {}
        // Never that order's number in our record (ATRIP's client tests this).
        Some(Value::String(_)) => {
            return Err("the answer is for another order (its number is not kept)".into())
        }
        _ => return Err("the answer has no orderNo".into()),
    }
    let order_status =
        status_text(m.get("orderStatus"), "orderStatus")?.ok_or("the answer has no orderStatus")?;
    let ticket_status = status_text(m.get("ticketStatus"), "ticketStatus")?;
    let pax: &[Value] = match m.get("paxTicketInfos") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err("paxTicketInfos is not a list".into()),
    };
    let mut listed = match m.get("passengers") {
        Some(Value::Array(passengers)) => {
            if pax.len() > passengers.len() {
                return Err(format!(
                    "paxTicketInfos has {} entries for {} passengers",
                    pax.len(),
                    passengers.len()
                ));
            }
            Some(Listed::new(passengers))
        }
        _ => None,
    };
    let mut tickets = Vec::with_capacity(pax.len());
    for (i, p) in pax.iter().enumerate() {
        let p = p
            .as_object()
            .ok_or_else(|| format!("paxTicketInfos[{i}] is not an object"))?;
        let name = match p.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(quote(s.trim(), 80)),
            _ => None,
        };
        if let Some(listed) = listed.as_mut() {
            listed.pair(name.as_deref(), i)?;
        }
        let ticket_numbers = string_list(
            p.get("ticketNos"),
            &format!("paxTicketInfos[{i}].ticketNos"),
            Some(MAX_TICKETS_PER_PASSENGER),
        )?;
        let airline_pnrs = string_list(
            p.get("airlinePNRs"),
            &format!("paxTicketInfos[{i}].airlinePNRs"),
            None,
        )?;
        tickets.push(PassengerTickets {
            passenger: name.unwrap_or_else(|| format!("passenger {}", i + 1)),
            ticket_numbers,
            airline_pnrs,
        });
    }
    // A listed passenger without an entry has no ticket: the set is then never final.
    let unpaired = listed.map(Listed::unpaired).unwrap_or_default();
    for (i, passenger) in unpaired.into_iter().enumerate() {
        tickets.push(PassengerTickets {
            passenger: passenger.unwrap_or_else(|| format!("listed passenger {}", i + 1)),
            ticket_numbers: Vec::new(),
            airline_pnrs: Vec::new(),
        });
    }
    Ok(OrderView {
        order_no: order_no.to_owned(),
        pnr_code: text(m, "pnrCode"),
        order_status: OrderStatus::from_wire(&order_status),
        ticket_status,
        tickets,
        booking_pnrs: booking_pnrs(m.get("airlineBookings")),
        pay_deadline: sgt_time(m.get("tktLimitTime")),
        payment_attempted: m.get("paymentAttempted").and_then(Value::as_bool),
        error_code: status_text(m.get("errorCode"), "errorCode")?,
        error_message: text(m, "errorMessage"),
        msg: text(m, "msg"),
    })
}

/// A status field that ATRIP sends as a string in queries and as an integer in webhooks.
fn status_text(v: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(truncate(s.trim(), 20))),
        Some(Value::Number(n)) if n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{key} is neither a string nor an integer")),
    }
}

/// A list of ticket numbers or PNRs: trimmed, and de-duplicated in order (ATRIP may repeat a
/// number, padded with spaces, and its own client counts it once). With `max_distinct`, one
/// distinct value too many refuses the answer as soon as it is seen.
fn string_list(
    v: Option<&Value>,
    what: &str,
    max_distinct: Option<usize>,
) -> Result<Vec<String>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{what} is not a list")),
    };
    let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let value = match item {
            Value::String(s) if is_ticket_like(s) => s.trim(),
            Value::String(s) => {
                return Err(format!("{what} holds a malformed value {:?}", quote(s, 30)))
            }
            _ => return Err(format!("{what} holds a non-string")),
        };
        if !seen.insert(value) {
            continue;
        }
        if let Some(max) = max_distinct.filter(|max| out.len() >= *max) {
            return Err(format!(
                "{what} holds more than {max} distinct ticket numbers (at most {max} per passenger)"
            ));
        }
        out.push(value.to_owned());
    }
    Ok(out)
}

/// `airlineBookings[].airlinePnr`, where readable. ATRIP's own client never reads this block,
/// so a malformed one is skipped, not a reason to distrust the answer.
fn booking_pnrs(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(bookings)) = v else {
        return Vec::new();
    };
    let mut seen: HashSet<&str> = HashSet::with_capacity(bookings.len());
    bookings
        .iter()
        .filter_map(|b| b.get("airlinePnr")?.as_str())
        .filter(|s| is_ticket_like(s))
        .map(str::trim)
        .filter(|pnr| seen.insert(pnr))
        .map(str::to_owned)
        .collect()
}

/// `tktLimitTime`: `yyyy-MM-dd HH:mm:ss` in Singapore time (UTC+8), as ATRIP writes every time.
/// Exactly that shape (a four-digit year): chrono would also read a signed six-digit year, whose
/// instant may not exist in UTC and which no later arithmetic on the deadline could survive.
fn sgt_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?.trim();
    if s.len() != "yyyy-MM-dd HH:mm:ss".len() || !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    local.and_utc().checked_sub_signed(TimeDelta::try_hours(8)?)
}

/// Ticket numbers and PNRs: letters, digits and dashes, at most 20 characters.
fn is_ticket_like(s: &str) -> bool {
    let s = s.trim();
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The order's listed passengers (`passengers[].name`, `None` for one listed without a name),
/// paired one by one with the ticket entries. Each pairing takes constant time on average: a
/// passenger is found by name in a map, or taken from a queue, and one already paired by
/// another route is skipped once and for all.
struct Listed {
    names: Vec<Option<String>>,
    paired: Vec<bool>,
    /// Named passengers by upper-cased name, in list order.
    by_name: HashMap<String, VecDeque<usize>>,
    /// Passengers listed without a name, in list order.
    unnamed: VecDeque<usize>,
    /// Every passenger before this one is paired.
    first_free: usize,
}

impl Listed {
    fn new(passengers: &[Value]) -> Self {
        let names: Vec<Option<String>> = passengers
            .iter()
            .map(|p| match p.get("name") {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(quote(s.trim(), 80)),
                _ => None,
            })
            .collect();
        let mut by_name: HashMap<String, VecDeque<usize>> = HashMap::new();
        let mut unnamed = VecDeque::new();
        for (i, name) in names.iter().enumerate() {
            match name {
                Some(name) => by_name.entry(name.to_uppercase()).or_default().push_back(i),
                None => unnamed.push_back(i),
            }
        }
        Listed {
            paired: vec![false; names.len()],
            names,
            by_name,
            unnamed,
            first_free: 0,
        }
    }

    /// Pairs ticket entry `i` with a listed passenger not paired yet: by name when the entry
    /// has one (names compare without regard to case: ATRIP's examples mix `DOE/JANE` and
    /// `zhang/lisi`), else the first one left. A ticket for someone who is not on the order, or
    /// a second entry for one passenger (while another may have none), is an answer the worker
    /// cannot trust: it must never make an order look ticketed.
    fn pair(&mut self, name: Option<&str>, i: usize) -> Result<(), String> {
        let at = match name {
            Some(name) => {
                let paired = &self.paired;
                self.by_name
                    .get_mut(&name.to_uppercase())
                    .and_then(|queue| next_unpaired(queue, paired))
                    .or_else(|| next_unpaired(&mut self.unnamed, paired))
                    .ok_or_else(|| {
                        format!(
                            "paxTicketInfos[{i}] names {:?}, who is not among the order's passengers (or has an entry already)",
                            truncate(name, 40)
                        )
                    })?
            }
            None => {
                while self.paired.get(self.first_free) == Some(&true) {
                    self.first_free += 1;
                }
                if self.first_free >= self.paired.len() {
                    return Ok(());
                }
                self.first_free
            }
        };
        self.paired[at] = true;
        Ok(())
    }

    /// The passengers no entry was paired with, in list order.
    fn unpaired(self) -> Vec<Option<String>> {
        self.names
            .into_iter()
            .zip(self.paired)
            .filter(|(_, paired)| !paired)
            .map(|(name, _)| name)
            .collect()
    }
}

/// The first index in `queue` not paired yet; the paired ones before it are dropped for good.
fn next_unpaired(queue: &mut VecDeque<usize>, paired: &[bool]) -> Option<usize> {
    while let Some(i) = queue.pop_front() {
        if !paired[i] {
            return Some(i);
        }
    }
    None
}
