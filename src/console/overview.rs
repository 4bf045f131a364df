//! The overview: orders per state, the backlog, whether ATRIP answers, and throughput charts
//! over the last hour and day. Every figure is an indexed, bounded query.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Duration as Span;

use super::charts::{self, Frame};
use super::html::{self, count, duration, Refresh, E};
use super::{store_error, Console, Who};
use crate::domain::State as JobState;
use crate::jobs::{AnswerCount, Throughput, ANSWERS_COUNTED};

/// Counts per state are shown up to here, then as "≥" it (see `console_state_counts`; the
/// ticketed count of a large table is the planner's estimate).
const COUNT_CAP: i64 = 1_000_000_000;

/// ATRIP answered clearly within this long: it is answering.
const ANSWERING_S: i64 = 300;

/// `GET /console`.
pub async fn overview(State(c): State<Console>, who: Who) -> Result<Response, Response> {
    let db = |e: crate::jobs::Error| store_error(&who, &e);
    let now = c.store.console_now().await.map_err(db)?;
    let (counts, backlog, hour, day, answers, last_clear) = tokio::try_join!(
        c.store.console_state_counts(COUNT_CAP),
        c.store.oldest_due_age(),
        c.store.console_throughput(now - Span::hours(1), 60, 60),
        c.store.console_throughput(now - Span::days(1), 900, 96),
        c.store.console_atrip_answers(now - Span::hours(1)),
        c.store.console_last_clear_answer(),
    )
    .map_err(db)?;

    let mut body = String::from(r#"<h2>Orders by state</h2><div class="tiles">"#);
    for state in JobState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        let shown = if n >= COUNT_CAP {
            format!("≥ {}", count(COUNT_CAP))
        } else {
            count(n)
        };
        let href = match state {
            JobState::NeedsReview | JobState::Failed => format!("/console/review?state={state}"),
            _ => format!("/console/orders?state={state}"),
        };
        let alert = if state == JobState::NeedsReview && n > 0 {
            " alert"
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<a class="tile{alert}" id="count-{state}" href="{href}"><b>{shown}</b>{state}</a>"#
        );
    }
    let paused = who.paused.as_ref().is_some_and(|p| !p.is_empty());
    let _ = write!(
        body,
        "</div><h2>Backlog</h2><p id=\"backlog\">{}{}</p>",
        if backlog > 0.0 {
            format!(
                "The oldest due order has waited <b>{}</b> for a worker.",
                duration(backlog)
            )
        } else {
            "No order is waiting for a worker.".into()
        },
        if paused {
            " Orders of a paused method are not counted: they wait for the resume."
        } else {
            ""
        }
    );
    atrip_section(&mut body, now, &answers, last_clear);
    throughput_section(&mut body, &hour, &day);
    Ok(html::page("Overview", Some(&who), Refresh::Always(c.refresh_s), &body).into_response())
}

fn atrip_section(
    body: &mut String,
    now: chrono::DateTime<chrono::Utc>,
    answers: &[AnswerCount],
    last_clear: Option<chrono::DateTime<chrono::Utc>>,
) {
    let n = |kind: &str, pick: &dyn Fn(&str) -> bool| -> i64 {
        answers
            .iter()
            .filter(|a| a.kind == kind && pick(&a.answer))
            .map(|a| a.n)
            .sum()
    };
    let total: i64 = answers.iter().map(|a| a.n).sum();
    let status = match last_clear {
        Some(t) if (now - t).num_seconds() <= ANSWERING_S => format!(
            r#"<span class="ok">ATRIP is answering</span>: last clear answer {} ({})."#,
            html::ago(now, t),
            html::time(t)
        ),
        Some(t) if total > 0 => format!(
            r#"<span class="bad">ATRIP gives no clear answer</span> since {} ({}), though {} requests were made in the last hour."#,
            html::ago(now, t),
            html::time(t),
            count(total)
        ),
        Some(t) => format!(
            r#"<span class="muted">No request in the last hour</span>; last clear answer {} ({})."#,
            html::ago(now, t),
            html::time(t)
        ),
        None => {
            r#"<span class="muted">ATRIP has never answered clearly</span> (no answer on record)."#
                .into()
        }
    };
    let refused =
        n("pay_answered", &|a| a == "unauthorized") + n("query_answered", &|a| a == "unauthorized");
    let _ = write!(
        body,
        r#"<h2>ATRIP</h2><p id="atrip-status">{}</p>{}{}<table id="atrip-answers"><tr><th>last hour</th><th class="num">pay.do accepted</th><th class="num">pay.do refused</th><th class="num">pay.do outcome unknown</th><th class="num">order-query errors</th><th class="num">429 rate limited</th></tr><tr><td>answers</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr></table>"#,
        status,
        if refused > 0 {
            format!(
                r#"<p id="atrip-credentials"><span class="bad">ATRIP refused our credentials</span> {} times in the last hour. While it does, no order moves: check <code>atrip.client_id</code> / <code>atrip.client_secret</code>.</p>"#,
                count(refused)
            )
        } else {
            String::new()
        },
        // This process's own clock: the times it compares are its own.
        this_process(chrono::Utc::now(), crate::metrics::global().atrip_seen()),
        count(n("pay_answered", &|a| a == "accepted")),
        count(n("pay_answered", &|a| a == "refused")),
        count(n("pay_answered", &|a| a == "outcome_unknown")),
        count(n("query_answered", &|a| a != "order" && a != "rate_limited")),
        count(n("query_answered", &|a| a == "rate_limited")),
    );
    if !answers.is_empty() {
        body.push_str(r#"<p class="muted">Every class: "#);
        let parts: Vec<String> = answers
            .iter()
            .map(|a| {
                let endpoint = if a.kind == "pay_answered" {
                    "pay.do"
                } else {
                    "order query"
                };
                format!("{endpoint} {} {}", E(&a.answer), count(a.n))
            })
            .collect();
        body.push_str(&parts.join(" · "));
        if total >= ANSWERS_COUNTED {
            let _ = write!(body, " (the {} most recent)", count(ANSWERS_COUNTED));
        }
        body.push_str("</p>");
    }
}

/// What this process (the one serving the page) last saw of ATRIP, from its own requests and
/// its start probe: it tells "ATRIP is down" apart from "nothing was asked", even when no
/// order is in flight.
fn this_process(now: chrono::DateTime<chrono::Utc>, seen: crate::metrics::AtripSeen) -> String {
    let when = |ms: i64| {
        let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or(now);
        format!("{}, {}", html::ago(now, t), html::time(t))
    };
    let line = match seen.reached() {
        None => return String::new(),
        Some(false) => format!(
            r#"<span class="bad">This process cannot reach ATRIP</span>: its last request ({}) got no answer (connection refused, DNS, TLS or timeout); orders wait until it answers."#,
            when(seen.unreachable_ms)
        ),
        Some(true) if seen.credentials_refused_ms >= seen.answered_ms => format!(
            r#"<span class="bad">ATRIP refused this process's credentials</span> at its last request ({})."#,
            when(seen.answered_ms)
        ),
        Some(true) => format!(
            r#"<span class="ok">This process reaches ATRIP</span>: its last request was answered ({})."#,
            when(seen.answered_ms)
        ),
    };
    format!(r#"<p id="atrip-reach">{line}</p>"#)
}

fn throughput_section(body: &mut String, hour: &Throughput, day: &Throughput) {
    let per_minute =
        |v: &[i64], minutes: f64| -> Vec<f64> { v.iter().map(|n| *n as f64 / minutes).collect() };
    let rate = |v: f64| format!("{v}/min");
    let secs = html::short_duration;
    let key = r#"<span class="key k-paid"></span>paid<span class="key k-ticketed"></span>ticketed"#;
    let pkey = r#"<span class="key k-p50"></span>p50<span class="key k-p95"></span>p95"#;
    let pct = |t: &Throughput| {
        format!(
            "p50 {} · p95 {}",
            t.p50_total_s.map_or("—".into(), duration),
            t.p95_total_s.map_or("—".into(), duration)
        )
    };
    let (hp, ht) = (per_minute(&hour.paid, 1.0), per_minute(&hour.ticketed, 1.0));
    let (dp, dt) = (per_minute(&day.paid, 15.0), per_minute(&day.ticketed, 15.0));
    let _ = write!(
        body,
        r#"<h2>Throughput</h2><div class="charts"><figure id="chart-hour"><figcaption>Orders per minute, last hour {key}</figcaption>{}<p class="muted">paid {} · ticketed {}</p></figure><figure id="chart-day"><figcaption>Orders per minute, last day (15-minute averages) {key}</figcaption>{}<p class="muted">paid {} · ticketed {}</p></figure><figure id="latency-hour"><figcaption>Enqueue → ticketed, last hour {pkey}</figcaption>{}<p class="muted">{}</p></figure><figure id="latency-day"><figcaption>Enqueue → ticketed, last day (15-minute buckets) {pkey}</figcaption>{}<p class="muted">{}</p></figure></div>"#,
        charts::bars(
            &Frame {
                label: "orders paid and ticketed per minute over the last hour",
                from: "60 min ago",
                to: "now",
                scale: rate
            },
            &[("c-paid", &hp), ("c-ticketed", &ht)]
        ),
        count(hour.total_paid),
        count(hour.total_ticketed),
        charts::bars(
            &Frame {
                label: "orders paid and ticketed per minute over the last day",
                from: "24 h ago",
                to: "now",
                scale: rate
            },
            &[("c-paid", &dp), ("c-ticketed", &dt)]
        ),
        count(day.total_paid),
        count(day.total_ticketed),
        charts::lines(
            &Frame {
                label: "enqueue to ticketed p50 and p95 over the last hour",
                from: "60 min ago",
                to: "now",
                scale: secs
            },
            &[("l-p50", &hour.p50_s), ("l-p95", &hour.p95_s)]
        ),
        pct(hour),
        charts::lines(
            &Frame {
                label: "enqueue to ticketed p50 and p95 over the last day",
                from: "24 h ago",
                to: "now",
                scale: secs
            },
            &[("l-p50", &day.p50_s), ("l-p95", &day.p95_s)]
        ),
        pct(day),
    );
}
