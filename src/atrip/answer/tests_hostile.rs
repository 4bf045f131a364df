//! Answers a hostile ATRIP (or a proxy) could send: lists past their bounds, absurd dates and
//! numbers, shapes that cost quadratic work before, and mutated copies of ATRIP's own answers.
//! None may panic, and the work on one grows linearly with its size.

use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;

const ORDER_NO: &str = "TESTA20260824171418381";

fn query(body: &Value) -> QueryAnswer {
    classify_query(ORDER_NO, 200, body.to_string().as_bytes())
}

fn invalid_reason(answer: QueryAnswer) -> String {
    match answer {
        QueryAnswer::Invalid { reason, .. } => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn ticketed(pax: Value) -> Value {
    json!({
        "status": 0, "msg": "success", "orderNo": ORDER_NO, "pnrCode": "OPLGS4",
        "orderStatus": "2", "ticketStatus": "1", "paxTicketInfos": pax,
    })
}

fn passengers(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"name": format!("DOE/P{i}"), "ticketNos": [format!("T{i}")], "airlinePNRs": [format!("P{i}")]}))
        .collect()
}

#[test]
fn lists_past_their_bounds_are_refused_naming_the_field() {
    let reason = invalid_reason(query(&ticketed(json!(passengers(MAX_PASSENGERS + 1)))));
    assert!(
        reason.contains("paxTicketInfos has more than 32 entries"),
        "{reason}"
    );
    let QueryAnswer::Order(v) = query(&ticketed(json!(passengers(MAX_PASSENGERS)))) else {
        panic!("32 passengers are readable")
    };
    assert_eq!(v.final_tickets(None).map(|(t, _)| t.len()), Some(32));

    let nine = ticketed(json!([{"name": "A/B", "ticketNos": vec!["S1"; 9]}]));
    let reason = invalid_reason(query(&nine));
    assert!(
        reason.contains("paxTicketInfos[0].ticketNos has more than 8 entries"),
        "{reason}"
    );
    let mut listed = ticketed(json!([]));
    listed["passengers"] = json!(vec![json!({"name": "A/B"}); 33]);
    assert!(invalid_reason(query(&listed)).contains("passengers has more than 32"));

    // airlineBookings is a block the worker can do without: too long, it is skipped.
    let mut bookings = ticketed(json!(passengers(1)));
    bookings["pnrCode"] = Value::Null;
    bookings["airlineBookings"] = json!(vec![json!({"airlinePnr": "BK1"}); 33]);
    let QueryAnswer::Order(v) = query(&bookings) else {
        panic!()
    };
    assert!(v.booking_pnrs.is_empty(), "{v:?}");
    assert_eq!(v.pnr().as_deref(), Some("P0"));
}

#[test]
fn a_list_past_its_bound_stops_the_reading_there() {
    // After the 33rd entry the body is not even JSON: the refusal names the bound, so nothing
    // after it was read.
    let mut body = ticketed(json!(passengers(1000))).to_string();
    let cut = body.find("DOE/P40").unwrap();
    body.truncate(cut);
    body.push_str("!!! not json");
    let reason = invalid_reason(classify_query(ORDER_NO, 200, body.as_bytes()));
    assert!(reason.contains("more than 32 entries"), "{reason}");
}

#[test]
fn a_third_distinct_ticket_number_refuses_the_answer_as_soon_as_it_appears() {
    // The malformed value after it is never looked at.
    let body = ticketed(json!([{"name": "A/B", "ticketNos": [" S1", "S1 ", "S2", "S3", "<bad>"]}]));
    let reason = invalid_reason(query(&body));
    assert!(
        reason.contains("paxTicketInfos[0].ticketNos holds more than 2 distinct ticket numbers"),
        "{reason}"
    );
}

#[test]
fn absurd_dates_give_no_deadline_and_never_panic() {
    for (when, readable) in [
        // chrono reads these; eight hours before the first is before its first instant.
        ("-262143-01-01 03:00:00", false),
        ("-262144-01-01 03:00:00", false),
        ("+262143-12-31 23:59:59", false),
        ("262143-12-31 23:59:59", false),
        ("0000-01-01 00:00:00", true),
        ("9999-12-31 23:59:59", true),
        ("2026-02-30 10:00:00", false),
        ("2026-08-24 24:00:00", false),
        ("2026-08-24 18:34:18.999", false),
        ("", false),
        ("                   ", false),
    ] {
        let mut body = ticketed(json!([]));
        body["tktLimitTime"] = json!(when);
        let QueryAnswer::Order(v) = query(&body) else {
            panic!("{when}")
        };
        assert_eq!(v.pay_deadline.is_some(), readable, "{when}: {v:?}");
    }
    let mut body = ticketed(json!([]));
    body["tktLimitTime"] = json!("9".repeat(100_000));
    let QueryAnswer::Order(v) = query(&body) else {
        panic!()
    };
    assert_eq!(v.pay_deadline, None);
}

#[test]
fn absurd_numbers_never_panic() {
    for status in [
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5e308),
        json!(-0.0),
    ] {
        for http in [200, 429] {
            let body = json!({"status": status, "code": 429, "retryAfter": 1e308});
            let raw = body.to_string();
            let _ = classify_pay(ORDER_NO, http, raw.as_bytes());
            let _ = classify_query(ORDER_NO, http, raw.as_bytes());
        }
    }
    for retry_after in [
        json!(1e308),
        json!(-1),
        json!("NaN"),
        json!("inf"),
        json!("1e999"),
    ] {
        let body = json!({"code": 429, "retryAfter": retry_after});
        let QueryAnswer::RateLimited { retry_after: wait } = query(&body) else {
            panic!("{body}")
        };
        assert!(wait <= Duration::from_secs(300), "{body}: {wait:?}");
    }
    // A number serde_json cannot hold is not JSON.
    assert!(matches!(
        classify_query(ORDER_NO, 200, br#"{"status": 1e999}"#),
        QueryAnswer::Invalid { .. }
    ));
}

#[test]
fn a_megabyte_of_message_is_masked_and_cut_from_its_head_only() {
    let msg = format!("card 4532015112830366; {}", "7".repeat(1 << 20));
    let answer = classify_pay(
        ORDER_NO,
        200,
        json!({"status": 9999, "msg": msg}).to_string().as_bytes(),
    );
    let PayAnswer::OutcomeUnknown { reason, .. } = answer else {
        panic!()
    };
    assert!(reason.contains("************0366"), "{reason}");
    assert!(reason.chars().count() < 300, "{reason}");
}

/// CPU time of this thread, in nanoseconds: unlike the wall clock, other tests running on the
/// machine do not add to it.
fn thread_cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0);
    u128::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap()
}

/// The least CPU time of a few classifications of `body` (the least is the one the machine
/// disturbed least).
fn work(body: &[u8]) -> u128 {
    (0..5)
        .map(|_| {
            let started = thread_cpu_ns();
            std::hint::black_box(classify_query(ORDER_NO, 200, std::hint::black_box(body)));
            std::hint::black_box(classify_pay(ORDER_NO, 200, std::hint::black_box(body)));
            thread_cpu_ns() - started
        })
        .min()
        .unwrap()
}

/// Shapes of answer whose classification grew with the square of their size before (entries
/// paired by scanning every listed passenger, ticket numbers and PNRs de-duplicated by
/// scanning those kept), and the plain large ones, each about `size` bytes.
fn shapes(size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let per = |unit: usize| size / unit;
    let many_passengers = {
        let n = per(110);
        let mut body = ticketed(json!(passengers(n)));
        body["passengers"] = json!((0..n)
            .map(|i| json!({"name": format!("DOE/P{i}")}))
            .collect::<Vec<_>>());
        body
    };
    let many_tickets = ticketed(json!([{
        "name": "A/B",
        "ticketNos": (0..per(9)).map(|i| format!("T{i}")).collect::<Vec<_>>(),
    }]));
    let many_bookings = {
        let mut body = ticketed(json!(passengers(1)));
        body["airlineBookings"] = json!((0..per(25))
            .map(|i| json!({"airlinePnr": format!("B{i}")}))
            .collect::<Vec<_>>());
        body
    };
    let unknown_fields = {
        let mut body = ticketed(json!(passengers(9)));
        body["routing"] = json!(vec![json!({"a": [0, 1, "x"]}); per(25)]);
        body
    };
    let long_strings = {
        let mut body = ticketed(json!([{
            "name": "N".repeat(size / 4),
            "ticketNos": [format!("{}S1", " ".repeat(size / 4))],
        }]));
        body["msg"] = json!("4".repeat(size / 4));
        body["errorMessage"] = json!("é".repeat(size / 8));
        body
    };
    let repeated_keys = {
        let entry = format!(r#""paxTicketInfos":{},"#, json!(passengers(MAX_PASSENGERS)));
        let mut body = String::from("{");
        for _ in 0..(size / entry.len()).max(1) {
            body.push_str(&entry);
        }
        body.push_str(&format!(
            r#""status":0,"orderNo":"{ORDER_NO}","orderStatus":"2"}}"#
        ));
        body.into_bytes()
    };
    vec![
        ("many passengers", many_passengers.to_string().into_bytes()),
        ("many tickets", many_tickets.to_string().into_bytes()),
        ("many bookings", many_bookings.to_string().into_bytes()),
        ("unknown fields", unknown_fields.to_string().into_bytes()),
        ("long strings", long_strings.to_string().into_bytes()),
        ("repeated keys", repeated_keys),
    ]
}

#[test]
fn the_work_on_an_answer_grows_linearly_with_its_size() {
    // Four times the size may cost about four times the work; quadratic work would cost
    // sixteen. The sizes are the client's default limit and a quarter of it.
    const SIZE: usize = 1 << 20;
    for ((name, small), (_, large)) in shapes(SIZE / 4).into_iter().zip(shapes(SIZE)) {
        let (small_ns, large_ns) = (work(&small), work(&large));
        assert!(
            large_ns < 8 * small_ns.max(200_000),
            "{name}: {} bytes took {small_ns} ns, {} bytes {large_ns} ns",
            small.len(),
            large.len()
        );
    }
}

/// Mutates `body` the way a broken ATRIP or proxy might: bytes flipped, cut, repeated, or
/// hostile tokens inserted.
fn mutate(rng: &mut impl Rng, body: &[u8]) -> Vec<u8> {
    const TOKENS: &[&str] = &[
        "\"-262144-01-01 03:00:00\"",
        "\"+262143-12-31 23:59:59\"",
        "1e308",
        "-9223372036854775808",
        "18446744073709551615",
        "[]",
        "{}",
        "null",
        "\"\\u0000\"",
        "\"4532015112830366\"",
        "[[[[[[[[[[[[[[[[[[[[",
        "\"2\"",
        "\"-3\"",
        "\"\\ud800\"",
    ];
    let mut out = body.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if out.is_empty() {
            out.extend_from_slice(b"{}");
        }
        let at = rng.gen_range(0..out.len());
        match rng.gen_range(0..5) {
            0 => out[at] = rng.gen(),
            1 => out.truncate(at),
            2 => {
                let end = rng.gen_range(at..out.len().min(at + 64) + 1);
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            3 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                // Replace a value after a colon with a hostile token.
                if let Some(colon) = out[at..].iter().position(|b| *b == b':') {
                    let start = at + colon + 1;
                    let end = out[start..]
                        .iter()
                        .position(|b| matches!(b, b',' | b'}' | b']'))
                        .map_or(out.len(), |e| start + e);
                    let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                    out.splice(start..end, token.iter().copied());
                }
            }
        }
    }
    out
}

#[test]
fn mutated_copies_of_atrips_own_answers_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/atrip");
    let mut fixtures: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(fixtures.len() >= 10, "{dir}");
    fixtures.push(
        ticketed(json!(passengers(MAX_PASSENGERS)))
            .to_string()
            .into_bytes(),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_a7a1);
    for round in 0..3000 {
        let base = &fixtures[round % fixtures.len()];
        let body = mutate(&mut rng, base);
        let http = if rng.gen_bool(0.9) {
            200
        } else {
            rng.gen_range(100..600)
        };
        // Fixtures name their own orders; half the time ask for that one.
        let order_no = serde_json::from_slice::<Value>(base)
            .ok()
            .and_then(|v| v["orderNo"].as_str().map(str::to_owned))
            .filter(|_| rng.gen_bool(0.5))
            .unwrap_or_else(|| ORDER_NO.to_owned());
        let outcome = std::panic::catch_unwind(|| {
            let pay = classify_pay(&order_no, http, &body);
            let query = classify_query(&order_no, http, &body);
            if let QueryAnswer::Order(v) = &query {
                let _ = v.final_tickets(None);
            }
            (pay, query)
        });
        let Ok((pay, query)) = outcome else {
            panic!(
                "round {round}: panicked on {:?}",
                String::from_utf8_lossy(&body)
            );
        };
        // ATRIP's words are masked; ticket numbers are not (a 13-digit ticket number may pass
        // the Luhn check), so an order view is left out.
        let words = match &query {
            QueryAnswer::Order(_) => String::new(),
            other => format!("{other:?}"),
        };
        for text in [format!("{pay:?}"), words] {
            assert!(!text.contains("4532015112830366"), "{text}");
        }
    }
}

/// Counts the bytes this thread holds on the heap, so that a test can weigh what a parse
/// keeps. Only this binary (the library's unit tests) uses it.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn add(bytes: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
    }

    /// Bytes allocated and not freed by this thread so far.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }

    pub struct Counting;

    // SAFETY: every call is passed on to the system allocator unchanged; the count is a
    // thread-local integer with no destructor, which allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            // SAFETY: the caller's contract, passed on unchanged.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            // SAFETY: the caller's contract, passed on unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            // SAFETY: the caller's contract, passed on unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            // SAFETY: the caller's contract, passed on unchanged.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
}

#[test]
fn the_parsed_fields_of_the_fullest_answer_fit_in_the_reserve_the_client_draws() {
    // Every kept list at its bound, every value as short as it can be: the most structure an
    // answer can make the parse keep per byte of body.
    let entry = json!({
        "name": "A",
        "ticketNos": vec!["1"; MAX_PASSENGER_LIST],
        "airlinePNRs": vec!["2"; MAX_PASSENGER_LIST],
    });
    let mut fullest = ticketed(json!(vec![entry; MAX_PASSENGERS]));
    fullest["passengers"] = json!(vec![json!({"name": "A"}); MAX_PASSENGERS]);
    fullest["airlineBookings"] = json!(vec![json!({"airlinePnr": "B"}); MAX_BOOKINGS]);
    for key in [
        "tktLimitTime",
        "errorCode",
        "errorMessage",
        "ticketStatus",
        "retryAfter",
    ] {
        fullest[key] = json!("x");
    }
    let body = fullest.to_string().into_bytes();
    let before = heap::live();
    let kept = json_object(&body, &QUERY_FIELDS).unwrap();
    let weight = usize::try_from(heap::live() - before).unwrap();
    assert!(
        weight <= crate::atrip::client::PARSED_RESERVE,
        "{} bytes of body keep {weight} bytes of fields",
        body.len()
    );
    // And a plain large answer keeps about its kept strings' bytes, not the body.
    let mut large = ticketed(json!(passengers(9)));
    large["routing"] = json!(vec![json!({"a": [0, 1, "x"]}); 20_000]);
    let body = large.to_string().into_bytes();
    let before = heap::live();
    let kept_large = json_object(&body, &QUERY_FIELDS).unwrap();
    let weight = usize::try_from(heap::live() - before).unwrap();
    assert!(
        weight < 64 * 1024,
        "{} bytes of body keep {weight} bytes",
        body.len()
    );
    drop((kept, kept_large));
}
