//! Paying paused (docs/design.md, rule S4) in the console: the banner every page shows while a
//! pause is in force, and the page that pauses and resumes (operators only, with the form's
//! CSRF token, like every action) and lists the last pauses with who made them and why. Each
//! goes through `JobStore::pause` and `JobStore::resume`, as the command line does.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tracing::info;

use super::html::{self, duration, Refresh, E};
use super::{store_error, Console, Form, Role, Who};
use crate::domain::PauseScope;
use crate::jobs::{Pause, MAX_REASON_CHARS};

/// The pauses the page lists, newest first.
const HISTORY_SHOWN: i64 = 20;

/// `GET /console/pause`: the pauses in force (with a resume button each, for operators), the
/// form that pauses (operators), and the last pauses.
pub async fn page(State(c): State<Console>, who: Who) -> Response {
    let history = match c.store.pause_history(HISTORY_SHOWN).await {
        Ok(h) => h,
        Err(e) => return store_error(&who, &e),
    };
    // Only what this session's own pause or resume left for this page.
    let done = c.sessions.take_flash(&who, PAGE);
    page_with(&who, &history, done, StatusCode::OK, None)
}

/// This page's path, where a pause or a resume sends the browser back.
const PAGE: &str = "/console/pause";
const PAUSED: &str = "Paused. No pay.do leaves for the orders of that method from now on (one already on its way as it committed still arrives, normally within milliseconds).";
const RESUMED: &str = "Resumed. The workers pay the waiting orders now, earliest deadline first.";

fn page_with(
    who: &Who,
    history: &[Pause],
    done: Option<&str>,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let operator = who.role == Role::Operator;
    let csrf = E(&who.csrf);
    let mut body = String::new();
    if let Some(done) = done {
        let _ = write!(body, r#"<p class="done" id="done">{}</p>"#, E(done));
    }
    if let Some(problem) = problem {
        let _ = write!(body, r#"<p class="message">{}</p>"#, E(problem));
    }
    // Read for this request with the banner (however old a pause in force, the history's
    // last rows may not hold it).
    let in_force = who.paused.as_deref().unwrap_or_default();
    body.push_str("<h2>In force</h2>");
    if who.paused.is_none() {
        body.push_str(
            r#"<p class="message">The pauses in force could not be read; reload in a moment.</p>"#,
        );
    } else if in_force.is_empty() {
        body.push_str(r#"<p id="not-paused">Paying is not paused.</p>"#);
    }
    for p in in_force {
        let _ = write!(
            body,
            r#"<p class="paused-line">Paying {} is paused since {} by {}: {}.</p>"#,
            p.scope(),
            html::time(p.paused_at),
            E(&p.paused_by),
            E(&p.reason)
        );
        if operator {
            let _ = write!(
                body,
                r#"<form method="post" action="/console/resume" class="actions"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="method" value="{}"><button id="resume-{}">Resume paying {}</button></form>"#,
                p.method,
                p.scope().label(),
                p.scope()
            );
        }
    }
    if operator {
        let _ = write!(
            body,
            r#"<h2>Pause paying</h2><p>On every worker at once: no pay.do leaves for a new order of that method until it is resumed. Paid orders are still followed and webhooks recorded; a retry is taken and waits; an order whose payment deadline passes meanwhile fails, nothing sent.</p><form method="post" action="/console/pause" id="pause-form"><input type="hidden" name="csrf" value="{csrf}"><p><label>Method <select name="method"><option value="0">every method</option><option value="1">1 · deposit</option><option value="3">3 · VCC</option><option value="4">4 · BYOA</option><option value="5">5 · MoR</option></select></label></p><p><label>Why (everyone sees it)<br><input name="reason" required maxlength="{MAX_REASON_CHARS}" size="80"></label></p><p><button class="danger" id="pause">Pause paying</button></p></form>"#
        );
    } else {
        body.push_str(r#"<p class="muted">Only an operator can pause or resume paying.</p>"#);
    }
    body.push_str(r#"<h2>Last pauses</h2><table id="pauses"><tr><th>method</th><th>paused</th><th>by</th><th>why</th><th>resumed</th><th>by</th><th class="num">for</th></tr>"#);
    for p in history {
        let _ = write!(
            body,
            r#"<tr><td>{}</td><td class="nowrap">{}</td><td>{}</td><td>{}</td><td class="nowrap">{}</td><td>{}</td><td class="num">{}</td></tr>"#,
            p.scope(),
            html::time(p.paused_at),
            E(&p.paused_by),
            E(&p.reason),
            p.resumed_at.map_or("in force".into(), html::time),
            html::opt(p.resumed_by.as_deref()),
            duration(p.seconds)
        );
    }
    body.push_str("</table>");
    (
        status,
        html::page("Paying paused", Some(who), Refresh::Off, &body),
    )
        .into_response()
}

/// The form's `method`: 0 for every method, else 1, 3, 4 or 5.
#[allow(clippy::result_large_err)]
fn scope(who: &Who, form: &Form) -> Result<PauseScope, Response> {
    form.get("method")
        .and_then(|m| m.parse::<i32>().ok())
        .and_then(PauseScope::from_code)
        .ok_or_else(|| {
            html::message(
                StatusCode::BAD_REQUEST,
                Some(who),
                "No such method",
                "The method must be every method (0) or one of 1, 3, 4, 5.",
            )
        })
}

/// `POST /console/pause`: `pause`, with the form's method and reason.
pub async fn pause(State(c): State<Console>, who: Who, form: Form) -> Response {
    if let Err(refused) = who.may_act(&form) {
        return refused;
    }
    let scope = match scope(&who, &form) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = form.get("reason").unwrap_or_default();
    if let Err(refused) = super::refuse_nul(Some(&who), "reason", reason) {
        return refused;
    }
    match c.store.pause(scope, reason, &who.by()).await {
        Ok(p) => {
            info!(by = %who.by(), method = scope.label(), pause = p.id, "console: paying paused");
            c.sessions.flash(&who, PAGE.to_owned(), PAUSED);
            Redirect::to(PAGE).into_response()
        }
        Err(e) => refused(&c, &who, &e).await,
    }
}

/// `POST /console/resume`: `resume` of the form's method.
pub async fn resume(State(c): State<Console>, who: Who, form: Form) -> Response {
    if let Err(refused) = who.may_act(&form) {
        return refused;
    }
    let scope = match scope(&who, &form) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.store.resume(scope, &who.by()).await {
        Ok(done) => {
            info!(by = %who.by(), method = scope.label(), pause = done.pause.id, woken = done.woken, "console: paying resumed");
            c.sessions.flash(&who, PAGE.to_owned(), RESUMED);
            Redirect::to(PAGE).into_response()
        }
        Err(e) => refused(&c, &who, &e).await,
    }
}

/// The page again with the store's refusal (409), or the store's error page.
async fn refused(c: &Console, who: &Who, e: &crate::jobs::Error) -> Response {
    let crate::jobs::Error::PauseRefused(why) = e else {
        return store_error(who, e);
    };
    // The banner must show what is in force now, not before the refused action.
    let mut who = who.clone();
    who.paused = c.store.pauses_in_force().await.ok();
    match c.store.pause_history(HISTORY_SHOWN).await {
        Ok(history) => page_with(&who, &history, None, StatusCode::CONFLICT, Some(why)),
        Err(e) => store_error(&who, &e),
    }
}
