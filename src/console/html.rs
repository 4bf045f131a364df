//! HTML by hand: one escaping type every value from the database or a request goes through,
//! the page shell, and the formats every page shares (times, ages, counts, states).

use std::fmt::{self, Write as _};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::auth::Who;

/// Text made safe for HTML content and quoted attribute values: `format!("<td>{}</td>",
/// E(value))`. Everything that did not come from this file's own literals goes through it.
pub struct E<'a>(pub &'a str);

impl fmt::Display for E<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// An optional value, escaped, or a dash.
pub fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "—".to_owned(), |s| E(s).to_string())
}

/// Text for a URL query value (order numbers and cursors are plain already; this is for the
/// search box's echo into links).
pub fn url_part(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How a page keeps itself fresh.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Never (forms a person fills in).
    Off,
    /// Every N seconds, also without JavaScript (`<meta http-equiv=refresh>`): pages without
    /// a form.
    Always(u64),
    /// Every N seconds unless a box is ticked or a field has focus (`refresh.js`): pages with
    /// checkboxes, where a reload would lose a selection.
    UnlessBusy(u64),
}

/// A whole page: the shell around `body`, with the navigation when someone is logged in.
pub fn page(title: &str, who: Option<&Who>, refresh: Refresh, body: &str) -> Html<String> {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · ticketing console</title><link rel="stylesheet" href="/console/style.css">"#,
        E(title)
    );
    match refresh {
        Refresh::Off => {}
        Refresh::Always(s) => {
            let _ = write!(out, r#"<meta http-equiv="refresh" content="{s}">"#);
        }
        Refresh::UnlessBusy(_) => {
            out.push_str(r#"<script src="/console/refresh.js" defer></script>"#)
        }
    }
    let seconds = match refresh {
        Refresh::UnlessBusy(s) => s,
        _ => 0,
    };
    let _ = write!(out, r#"</head><body data-refresh="{seconds}">"#);
    if let Some(who) = who {
        let _ = write!(
            out,
            r#"<header><nav><a href="/console">Overview</a><a href="/console/review">Needs a person</a><a href="/console/orders?state=paying">Paying</a><a href="/console/orders?state=ticketing">Ticketing</a><form class="find" action="/console/find" method="get"><input name="q" aria-label="Find an order" placeholder="order no, client order no or PNR" maxlength="128"><button>Find</button></form><span class="who" title="{by}">{name} · {role}</span><form method="post" action="/console/logout"><input type="hidden" name="csrf" value="{csrf}"><button>Log out</button></form></nav></header>"#,
            by = E(&who.by()),
            name = E(&who.name),
            role = who.role,
            csrf = E(&who.csrf),
        );
    }
    let _ = write!(
        out,
        "<main><h1>{}</h1>{body}</main></body></html>",
        E(title)
    );
    Html(out)
}

/// A page that only says something (an error, a refusal), with a way back.
pub fn message(status: StatusCode, who: Option<&Who>, title: &str, text: &str) -> Response {
    let body = format!(
        r#"<p class="message">{}</p><p><a href="/console">Back to the overview</a></p>"#,
        E(text)
    );
    (status, page(title, who, Refresh::Off, &body)).into_response()
}

/// `2026-11-30 05:50:12 UTC`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `2026-11-30 05:50:12.345`: events often come milliseconds apart.
pub fn time_ms(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// An optional time, or a dash.
pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_owned(), time)
}

/// A duration in words a person reads at a glance: `850 ms`, `42 s`, `3 min 5 s`, `2 h 10 min`,
/// `3 d 4 h`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "—".into();
    }
    let negative = seconds < 0.0;
    let s = seconds.abs();
    let text = if s < 1.0 {
        format!("{} ms", (s * 1000.0).round() as i64)
    } else if s < 60.0 {
        format!("{} s", s.round() as i64)
    } else if s < 3600.0 {
        let s = s.round() as i64;
        format!("{} min {} s", s / 60, s % 60)
    } else if s < 86_400.0 {
        let m = (s / 60.0).round() as i64;
        format!("{} h {} min", m / 60, m % 60)
    } else {
        let h = (s / 3600.0).round() as i64;
        format!("{} d {} h", h / 24, h % 24)
    };
    if negative {
        format!("in {text}")
    } else {
        text
    }
}

/// A chart scale's value: short, at most one decimal (`750 ms`, `45 s`, `6.7 min`, `2 h`).
pub fn short_duration(s: f64) -> String {
    let one = |v: f64| {
        let text = format!("{v:.1}");
        text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
    };
    if s < 1.0 {
        format!("{} ms", (s * 1000.0).round())
    } else if s < 120.0 {
        format!("{} s", one(s))
    } else if s < 7200.0 {
        format!("{} min", one(s / 60.0))
    } else if s < 172_800.0 {
        format!("{} h", one(s / 3600.0))
    } else {
        format!("{} d", one(s / 86_400.0))
    }
}

/// How long ago `t` was, seen from `now` (the database's time).
pub fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_milliseconds() as f64 / 1000.0;
    if s < 0.0 {
        duration(s)
    } else {
        format!("{} ago", duration(s))
    }
}

/// `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A state as a badge (its class colours it).
pub fn state(s: &str) -> String {
    format!(r#"<span class="state st-{0}">{0}</span>"#, E(s))
}

/// ATRIP's payment method in words.
pub fn method(code: i16) -> &'static str {
    match code {
        1 => "1 · deposit",
        3 => "3 · VCC",
        4 => "4 · BYOA",
        5 => "5 · MoR",
        _ => "unknown",
    }
}

/// ATRIP's `orderStatus` in words.
pub fn order_status(s: &str) -> String {
    let meaning = match s {
        "0" => "unpaid",
        "1" => "paid, ticketing",
        "2" => "ticketed",
        "-3" => "cancelled",
        _ => "unknown",
    };
    format!("{} ({meaning})", E(s))
}

/// The stylesheet (a file of its own, so the Content-Security-Policy needs no inline style).
pub const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;padding:.5rem 1rem}nav{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
nav a{color:#fff;text-decoration:none;font-weight:600}nav .who{color:#d0d7de;margin-left:auto}
nav form{display:inline;margin:0}nav input{width:16rem}
main{padding:1rem 1.5rem;max-width:1200px}h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.85em;background:#eaeef2}
.st-needs_review{background:#ffd8b5}.st-failed{background:#ffcecb}.st-ticketed{background:#aceebb}.st-paying,.st-ticketing{background:#b6e3ff}.st-cancelled{background:#d0d7de}
.tiles{display:flex;gap:.6rem;flex-wrap:wrap}.tile{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.5rem .8rem;min-width:7.5rem;color:inherit;text-decoration:none}
.tile b{display:block;font-size:1.5rem}.tile.alert{border-color:#cf222e;background:#fff5f5}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#656d76}
.message{background:#fff;border-left:4px solid #cf222e;padding:.6rem .8rem}.done{background:#fff;border-left:4px solid #1a7f37;padding:.6rem .8rem}
.warning{background:#fff8c5;border:1px solid #d4a72c;padding:.8rem;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1rem}
figure{margin:0;background:#fff;border:1px solid #d0d7de;padding:.5rem}figcaption{font-weight:600;margin-bottom:.3rem}
svg text{font-size:10px;fill:#656d76}svg .axis{stroke:#d0d7de}.c-paid{fill:#0969da}.c-ticketed{fill:#1a7f37}
.l-p50{stroke:#0969da;fill:none;stroke-width:1.5}.l-p95{stroke:#bc4c00;fill:none;stroke-width:1.5}
.key{display:inline-block;width:.8em;height:.8em;margin:0 .2rem 0 .6rem}.k-paid{background:#0969da}.k-ticketed{background:#1a7f37}.k-p50{background:#0969da}.k-p95{background:#bc4c00}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;border:1px solid #d0d7de;padding:.6rem}dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.actions{display:flex;gap:.5rem;align-items:center;margin:.8rem 0}.actions form{margin:0}
button{cursor:pointer}button.danger{color:#cf222e}
.pager{margin:.6rem 0}.detail{font-family:ui-monospace,monospace;font-size:.85em}.nowrap{white-space:nowrap}
"#;

/// Reloads the page every `data-refresh` seconds unless a person is in the middle of
/// something: a ticked box or a focused field.
pub const REFRESH_JS: &str = r#"(function () {
  var s = Number(document.body.dataset.refresh);
  if (!s) return;
  setInterval(function () {
    if (document.querySelector("input:checked, input:focus, textarea:focus, select:focus")) return;
    location.reload();
  }, s * 1000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_way_out_of_an_attribute() {
        let hostile = r#"<script>alert("x")</script>' onmouseover='y' &amp;"#;
        let out = E(hostile).to_string();
        for bad in ['<', '>', '"', '\''] {
            assert!(!out.contains(bad), "{out}");
        }
        assert!(out.contains("&amp;amp;"), "{out}");
    }

    #[test]
    fn durations_and_counts_read_at_a_glance() {
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(185.0), "3 min 5 s");
        assert_eq!(duration(7800.0), "2 h 10 min");
        assert_eq!(duration(100_800.0), "1 d 4 h");
        assert_eq!(duration(-30.0), "in 30 s");
        assert_eq!(short_duration(0.75), "750 ms");
        assert_eq!(short_duration(45.0), "45 s");
        assert_eq!(short_duration(400.0), "6.7 min");
        assert_eq!(short_duration(7200.0), "2 h");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
    }
}
