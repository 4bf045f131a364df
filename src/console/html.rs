//! HTML by hand: one escaping type every value from the database or a request goes through,
//! the page shell, and the formats every page shares (times, ages, counts, states).

use std::fmt::{self, Write as _};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::who::{Role, Who};

/// Text made safe for HTML content and quoted attribute values: `format!("<td>{}</td>",
/// E(value))`. Everything that did not come from this file's own literals goes through it:
/// every value from the table, from ATRIP or from a request. Control characters and Unicode's
/// bidirectional controls are written out visibly (`\u{202e}`, as `domain::printable` does
/// for logs and the command line): an override in a `client_order_no` would otherwise turn
/// the text after it around on the page.
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
                c if crate::domain::hidden(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
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
    /// Every N seconds (`refresh.js`): the figures in the page's live regions (the pause
    /// banner and `<main>`) are updated in place, never reloading the page, so the Find field
    /// keeps what is typed into it; without JavaScript, a Refresh link.
    Always(u64),
    /// The same as `Always` (pages with boxes to tick: the script leaves a region alone while
    /// a box in it is ticked or a field in it has focus or was changed).
    UnlessBusy(u64),
}

/// A whole page: the shell around `body`, with the navigation when someone is logged in.
///
/// The skip link leads to `<main>`, which with the banner above it is what `refresh.js` keeps
/// fresh (`data-live`); the script also labels table cells with their column's header, for a
/// phone.
pub fn page(title: &str, who: Option<&Who>, refresh: Refresh, body: &str) -> Html<String> {
    let mut out = String::with_capacity(body.len() * 9 / 8 + 2048);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><title>{} · ticketing console</title><link rel="stylesheet" href="/console/style.css">"#,
        E(title)
    );
    let seconds = match refresh {
        Refresh::Off => 0,
        Refresh::Always(s) | Refresh::UnlessBusy(s) => s,
    };
    // On every page: it labels table cells for a phone, and updates the pages that refresh.
    out.push_str(r#"<script src="/console/refresh.js" defer></script>"#);
    let _ = write!(
        out,
        r##"</head><body data-refresh="{seconds}"><a class="skip" href="#main">Skip to the page</a>"##
    );
    if let Some(who) = who {
        let _ = write!(
            out,
            r#"<header><nav aria-label="Console"><a href="/console">Overview</a><a href="/console/review">Needs a person</a><a href="/console/orders?state=paying">Paying</a><a href="/console/orders?state=ticketing">Ticketing</a><a href="/console/changed">Changed after ticketing</a><a href="/console/pause">Pause paying</a><a href="/console/reconcile">Reconciliation</a><form class="find" action="/console/find" method="get" role="search"><input name="q" aria-label="Find an order" placeholder="order no, client order no or PNR" maxlength="128"><button>Find</button></form><span class="who" title="{by}">{name} · {role}</span><form method="post" action="/console/logout"><input type="hidden" name="csrf" value="{csrf}"><button>Log out</button></form></nav></header>"#,
            by = E(&who.by()),
            name = E(&who.name),
            role = who.role,
            csrf = E(&who.csrf),
        );
    }
    // Paying paused (rule S4) is said on every page a person is logged in to.
    let banner = who.map(pause_banner).unwrap_or_default();
    let live = if seconds > 0 {
        // The script rewrites the first part; the link is the way without JavaScript.
        format!(
            r#"<p class="live" id="live-status" data-static><span id="live-when">Shown at {}.</span> <a href="">Refresh</a></p>"#,
            Utc::now().format("%H:%M:%S UTC")
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        r#"<div id="banner" data-live>{banner}</div><main id="main" tabindex="-1" data-live><h1>{}</h1>{live}{}</main></body></html>"#,
        E(title),
        body,
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

/// What every page shows under its navigation while paying is paused: who paused what, since
/// when and why, with a link to the page that resumes. Nothing when no pause is in force.
fn pause_banner(who: &Who) -> String {
    let Some(pauses) = &who.paused else {
        return r#"<div class="paused" id="paying-paused-unknown">Whether paying is paused could not be read (the database did not answer); reload in a moment.</div>"#.into();
    };
    if pauses.is_empty() {
        return String::new();
    }
    let mut out = String::from(r#"<div class="paused" id="paying-paused">"#);
    for p in pauses {
        let _ = write!(
            out,
            r#"<p><b>Paying is paused for {}</b> since {} ({}) by {}: {}. No pay.do leaves for these orders; paid orders are still followed.</p>"#,
            p.scope(),
            time(p.paused_at),
            duration(p.seconds),
            E(&p.paused_by),
            E(&p.reason),
        );
    }
    out.push_str(if who.role == Role::Operator {
        r#"<p><a href="/console/pause">Resume paying</a></p></div>"#
    } else {
        r#"<p><a href="/console/pause">Who paused, and the history</a></p></div>"#
    });
    out
}

/// An order's client order number, on its own line under the order number in a list's first
/// cell; nothing when it has none.
pub fn client_order_no(c: Option<&str>) -> String {
    c.map_or(String::new(), |c| {
        format!(r#"<br><span class="muted">{}</span>"#, E(c))
    })
}

/// The stylesheet (a file of its own, so the Content-Security-Policy needs no inline style).
/// Colours are variables, set twice: light, and dark when the system asks for it
/// (`prefers-color-scheme`); every pair of text and background keeps WCAG AA contrast (the
/// browser tests run axe-core over both). Below 40rem (a phone) the navigation wraps, tables
/// become one card per row of label–value lines (the labels are the column headers, copied
/// onto the cells by `refresh.js`; without it the cards show values only), and nothing is
/// wider than the screen.
pub const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#f6f8fa;--fg:#1f2328;--card:#fff;--line:#d0d7de;--head:#eaeef2;--muted:#59636e;--link:#0550ae;--ok:#1a7f37;--bad:#cf222e;--focus:#0969da;
--nav:#24292f;--nav-fg:#fff;--nav-muted:#d0d7de;--alert-bg:#fff5f5;--warn-bg:#fff8c5;--warn-line:#d4a72c;--paused-bg:#fff1e5;--paused-line:#bc4c00;
--st:#eaeef2;--st-review:#ffd8b5;--st-failed:#ffcecb;--st-ticketed:#aceebb;--st-moving:#b6e3ff;--st-cancelled:#d0d7de;--c-paid:#0969da;--c-ticketed:#1a7f37;--c-p95:#bc4c00}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--card:#161b22;--line:#3d444d;--head:#21262d;--muted:#9198a1;--link:#58a6ff;--ok:#3fb950;--bad:#ff7b72;--focus:#58a6ff;
--nav:#010409;--nav-fg:#f0f6fc;--nav-muted:#b7bdc8;--alert-bg:#3c1618;--warn-bg:#3a2e08;--warn-line:#9e6a03;--paused-bg:#3d2208;--paused-line:#db6d28;
--st:#30363d;--st-review:#6b3a07;--st-failed:#7d1a1f;--st-ticketed:#1b5e2c;--st-moving:#0d4a85;--st-cancelled:#3d444d;--c-paid:#4493f8;--c-ticketed:#3fb950;--c-p95:#db6d28}}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--fg);background:var(--bg)}
a{color:var(--link)}:focus-visible{outline:3px solid var(--focus);outline-offset:2px}main:focus{outline:none}
.skip{position:absolute;left:.5rem;top:-4rem;z-index:10;background:var(--card);color:var(--link);padding:.5rem .8rem;border:2px solid var(--focus)}.skip:focus{top:.5rem}
header{background:var(--nav);padding:.5rem 1rem}nav{display:flex;gap:.4rem .9rem;align-items:center;flex-wrap:wrap}
nav a{color:var(--nav-fg);text-decoration:none;font-weight:600}nav a:hover{text-decoration:underline}nav .who{color:var(--nav-muted);margin-left:auto}
nav form{display:inline-flex;gap:.3rem;margin:0}nav input{width:14rem;min-width:0}
button,input,select,textarea{font:inherit;color:var(--fg);background:var(--card);border:1px solid var(--muted);border-radius:4px;padding:.2rem .5rem;max-width:100%;box-sizing:border-box}
button{cursor:pointer;background:var(--head)}button:hover{border-color:var(--fg)}button.danger{color:var(--bad)}input[type=checkbox]{accent-color:var(--focus)}
main{padding:1rem 1.5rem;max-width:1200px}h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
.live{margin:-.6rem 0 .8rem;font-size:.9em;color:var(--muted)}
table{border-collapse:collapse;background:var(--card);width:100%}th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.85em;background:var(--st);color:var(--fg)}
.st-needs_review{background:var(--st-review)}.st-failed{background:var(--st-failed)}.st-ticketed{background:var(--st-ticketed)}.st-paying,.st-ticketing{background:var(--st-moving)}.st-cancelled{background:var(--st-cancelled)}
.tiles{display:flex;gap:.6rem;flex-wrap:wrap}.tile{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem .8rem;min-width:7.5rem;color:inherit;text-decoration:none}
.tile b{display:block;font-size:1.5rem}.tile.alert{border-color:var(--bad);background:var(--alert-bg)}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.muted{color:var(--muted)}
.message{background:var(--card);border-left:4px solid var(--bad);padding:.6rem .8rem}.done{background:var(--card);border-left:4px solid var(--ok);padding:.6rem .8rem}
.warning{background:var(--warn-bg);border:1px solid var(--warn-line);padding:.8rem;font-weight:600}
.paused{background:var(--paused-bg);border-bottom:3px solid var(--paused-line);padding:.4rem 1.5rem}.paused p{margin:.2rem 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(420px,100%),1fr));gap:1rem}
figure{margin:0;background:var(--card);border:1px solid var(--line);padding:.5rem}figcaption{font-weight:600;margin-bottom:.3rem}
svg text{font-size:10px;fill:var(--muted)}svg .axis{stroke:var(--line)}.c-paid{fill:var(--c-paid)}.c-ticketed{fill:var(--c-ticketed)}
.l-p50{stroke:var(--c-paid);fill:none;stroke-width:1.5}.l-p95{stroke:var(--c-p95);fill:none;stroke-width:1.5}
.key{display:inline-block;width:.8em;height:.8em;margin:0 .2rem 0 .6rem}.k-paid{background:var(--c-paid)}.k-ticketed{background:var(--c-ticketed)}.k-p50{background:var(--c-paid)}.k-p95{background:var(--c-p95)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:var(--card);border:1px solid var(--line);padding:.6rem}dl.facts dt{font-weight:600}dl.facts dd{margin:0;min-width:0;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.8rem 0}.actions form{margin:0}
.pager{margin:.6rem 0}.detail{font-family:ui-monospace,monospace;font-size:.85em;overflow-wrap:anywhere}.nowrap{white-space:nowrap}
code,pre{overflow-wrap:anywhere;white-space:pre-wrap}
@media (max-width:40rem){
main{padding:.8rem}header{padding:.5rem .8rem}.paused{padding:.4rem .8rem}
nav .who{margin-left:0}nav form.find{flex:1 1 100%}nav form.find input{flex:1;width:auto}
.tiles .tile{flex:1 1 7rem;min-width:0}dl.facts{grid-template-columns:minmax(0,36%) minmax(0,1fr);gap:.3rem .6rem}dl.facts dt{color:var(--muted);overflow-wrap:anywhere}h1{overflow-wrap:anywhere}
main table,main tbody,main tr,main td,main th{display:block}main table{background:none}
main thead,main tr:not(:has(>td)){display:none}main caption{display:block;text-align:left;font-weight:600;margin-bottom:.3rem}
main tr{background:var(--card);border:1px solid var(--line);border-radius:6px;margin:0 0 .6rem;padding:.2rem .6rem}
main td,main th{border:0;border-bottom:1px solid var(--head);background:none;padding:.3rem 0;text-align:left;overflow-wrap:anywhere;white-space:normal}
main tr>:last-child{border-bottom:0}main td.num,main th.num{text-align:left}
main td[data-label],main th[data-label]{display:table;width:100%;table-layout:fixed}
main td[data-label]::before,main th[data-label]::before{content:attr(data-label);display:table-cell;width:36%;padding-right:.6rem;font:600 14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--muted)}
main td:not([data-label]):first-child{float:right;border:0;padding:.3rem 0 0 .5rem}
}
/* review, find and CSV (src/console/review.rs, listing.rs, pages.rs): added by the review pages' work */
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
#filters label,#find label{font-weight:600}#filters select,#filters input{margin-right:.6rem}
#groups{width:auto;margin:.6rem 0}table.review td.reason{max-width:28rem}.left-passed{color:var(--bad);font-weight:600}.left-soon{color:var(--paused-line);font-weight:600}
/* end of the review pages' block */
"#;

/// Labels table cells for a phone, and keeps a page's figures fresh in place, never reloading
/// it (`refresh.js` beside this file says how it leaves alone what a person is doing).
pub const REFRESH_JS: &str = include_str!("refresh.js");

/// The time left before a payment deadline, seen from `now` (the database's time, read for
/// this page): `in 29 min`, `passed 3 min ago`, or a dash. Computed on every render: a stored
/// "N min left" would be stale.
pub fn time_left(now: DateTime<Utc>, deadline: Option<DateTime<Utc>>) -> String {
    let Some(d) = deadline else {
        return "—".into();
    };
    let s = (d - now).num_milliseconds() as f64 / 1000.0;
    if s <= 0.0 {
        format!(
            r#"<span class="left-passed">passed {} ago</span>"#,
            duration(-s)
        )
    } else if s <= 3600.0 {
        format!(r#"<span class="left-soon">in {}</span>"#, duration(s))
    } else {
        format!("in {}", duration(s))
    }
}

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
    fn control_and_bidi_characters_are_written_out_not_obeyed() {
        let flipped = "CLIENT-\u{202e}fdp.exe\u{2066}x\u{200f}\u{1b}[2J\r\n\u{0}";
        let out = E(flipped).to_string();
        assert_eq!(
            out,
            "CLIENT-\\u{202e}fdp.exe\\u{2066}x\\u{200f}\\u{1b}[2J\\u{d}\\u{a}\\u{0}"
        );
        assert!(!out.chars().any(crate::domain::hidden), "{out}");
        assert_eq!(E("Zürich 東京 ok").to_string(), "Zürich 東京 ok");
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
