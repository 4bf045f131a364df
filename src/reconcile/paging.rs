//! Reading every page of ATRIP's orders in a window, by ATRIP's own paging, within bounds
//! (rule R4): each page bounded like every answer and by the rows asked for, the pages by
//! `reconcile.max_pages`, the run by `reconcile.max_run_s`; a page that does not move on (the
//! same orders again), or an answer that never ends, ends the run with an error that says so.
//! Nothing is locked while ATRIP is asked: each page's rows are read, and evidence written,
//! between two calls.
//!
//! Where ATRIP's documentation is unsure, the reading tolerates the variants: the total under
//! any of its names (or none: then a short page is the last), counts as strings, and pages
//! counted from 0 or from 1 whatever `reconcile.first_page` says (from 1, when the pages leave
//! out as many orders as ATRIP counted, page 0 is read too; from 0, a refused page 0 moves on
//! to page 1).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{check_page, Outcome};
use crate::atrip::{Client, ListError, ListPage, ListRequest};
use crate::config::{ReconcileSettings, Settings};
use crate::jobs::JobStore;

/// The longest wait after a rate limit (ATRIP's `retryAfter`, cut to this).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The threshold is never below this.
const MIN_STALE_AFTER_S: i64 = 600;

/// How long a daily run's heartbeat may be silent before its process is taken for dead (rule
/// R5), from the settings. A live run beats before every call to ATRIP (so after every wait)
/// and after every page: between two beats there is at most one call to ATRIP (its connect
/// and query timeouts), one wait (at most `MAX_WAIT`), and a page's statements (the heartbeat,
/// the read of its rows, its evidence writes: counted as four statement timeouts). Twice
/// that, and never under 10 minutes. `reconcile.max_run_s` and `reconcile.page_tries` do not
/// enter it: they bound how many beats there are, not the time between two.
pub fn stale_after_s(s: &Settings) -> i64 {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 16);
    let call_ms = ms(s.atrip.connect_timeout_ms).saturating_add(ms(s.atrip.query_timeout_ms));
    let wait_ms = ms(MAX_WAIT.as_millis() as u64);
    let statements_ms = ms(s.database.statement_timeout_ms).saturating_mul(4);
    let gap_ms = call_ms
        .saturating_add(wait_ms)
        .saturating_add(statements_ms);
    (gap_ms.saturating_mul(2) / 1000 + 1).max(MIN_STALE_AFTER_S)
}

/// The run's heartbeat, beaten before every call to ATRIP and after every page: `Err` once
/// the run is no longer this process's (a replica took it over), and the run stops.
struct Beat<'a> {
    store: &'a JobStore,
    run_id: i64,
    run_by: &'a str,
}

impl Beat<'_> {
    async fn beat(&self, pages: i32, atrip_orders: i32) -> Result<(), String> {
        if self
            .store
            .reconcile_heartbeat(self.run_id, self.run_by, pages, atrip_orders)
            .await
            .map_err(|e| format!("the run's record could not be written: {e}"))?
        {
            Ok(())
        } else {
            Err("another process took this run over (its heartbeat was late)".into())
        }
    }
}

/// A short fingerprint of an unreadable row's note (which names the order, or its place in
/// the page): whether a page brought anything new is told without keeping the notes.
fn fingerprint(note: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    note.hash(&mut h);
    h.finish()
}

/// The bounds of one run.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub page_size: u32,
    pub max_pages: u32,
    pub first_page: i64,
    pub max_run: Duration,
    pub page_tries: u32,
}

impl From<&ReconcileSettings> for Bounds {
    fn from(s: &ReconcileSettings) -> Self {
        Bounds {
            page_size: s.page_size,
            max_pages: s.max_pages,
            first_page: s.first_page,
            max_run: Duration::from_secs(s.max_run_s),
            page_tries: s.page_tries,
        }
    }
}

/// Why a page could not be had: ATRIP's failure, or the run's claim lost (never tolerated).
enum Fetch {
    Failed(String),
    Lost(String),
}

impl From<Fetch> for String {
    fn from(f: Fetch) -> String {
        match f {
            Fetch::Failed(why) | Fetch::Lost(why) => why,
        }
    }
}

/// Asks one page, again after a transient failure or a rate limit (with backoff), up to
/// `page_tries`, never past `deadline`.
/// The run's heartbeat is beaten before every try, so after every wait.
async fn fetch(
    atrip: &Client,
    request: &ListRequest,
    bounds: &Bounds,
    deadline: Instant,
    beat: &Beat<'_>,
    out: &Outcome,
) -> Result<ListPage, Fetch> {
    let mut tries = 0;
    loop {
        tries += 1;
        beat.beat(out.pages, out.atrip_orders)
            .await
            .map_err(Fetch::Lost)?;
        let wait = match atrip.order_list(request).await {
            Ok(page) => return Ok(page),
            Err(ListError::Refused(why)) => return Err(Fetch::Failed(why)),
            Err(e) if tries >= bounds.page_tries => {
                return Err(Fetch::Failed(format!(
                    "{e} (page {}, {tries} tries)",
                    request.page
                )))
            }
            Err(ListError::RateLimited(after)) => after.min(MAX_WAIT),
            Err(ListError::Transient(_)) => Duration::from_millis(500 << tries.min(6)),
        };
        if Instant::now() + wait >= deadline {
            return Err(Fetch::Failed(format!(
                "orderList.do page {}: the run's time (reconcile.max_run_s) ran out while ATRIP was failing",
                request.page
            )));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Reads every page of `[from, to)`, comparing each as it comes; the outcome says how far it
/// got and why it stopped early.
pub(super) async fn read_all(
    store: &JobStore,
    atrip: &Client,
    bounds: &Bounds,
    run_id: i64,
    run_by: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Outcome {
    let mut out = Outcome::default();
    let started = Instant::now();
    let deadline = started + bounds.max_run;
    let beat = Beat {
        store,
        run_id,
        run_by,
    };
    let mut seen: HashSet<String> = HashSet::new();
    // The unreadable rows met, by fingerprint: a page of unreadable rows only that earlier
    // pages held is no progress either.
    let mut unreadable_seen: HashSet<u64> = HashSet::new();
    let mut unreadable = 0u64;
    let mut total: Option<u64> = None;
    let mut page_no = bounds.first_page;
    let looked_at_zero = bounds.first_page == 0;
    // ATRIP's range includes both ends: `to` itself belongs to the next window.
    let last = to - chrono::Duration::seconds(1);
    let result: Result<(), String> = async {
        loop {
            if out.pages >= i32::try_from(bounds.max_pages).unwrap_or(i32::MAX) {
                return Err(format!(
                    "ATRIP answered {} pages and had not ended (reconcile.max_pages): an endless answer, or a window too large for one run",
                    out.pages
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the run took longer than reconcile.max_run_s ({} s) after {} pages",
                    bounds.max_run.as_secs(),
                    out.pages
                ));
            }
            let request = ListRequest::new(from, last, page_no, bounds.page_size);
            let page = match fetch(atrip, &request, bounds, deadline, &beat, &out).await {
                Ok(page) => page,
                // A page 0 refused by an ATRIP that counts from 1 (as documented).
                Err(Fetch::Failed(why))
                    if page_no == 0 && out.pages == 0 && bounds.first_page == 0 =>
                {
                    out.note(format!("page 0 was refused ({why}); pages read from 1"));
                    page_no = 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            out.pages += 1;
            let asked = usize::try_from(bounds.page_size).unwrap_or(usize::MAX);
            if page.rows.len() + page.unreadable.len() > asked {
                return Err(format!(
                    "orderList.do page {page_no} holds {} orders, more than the {asked} asked for",
                    page.rows.len() + page.unreadable.len()
                ));
            }
            if total.is_none() {
                total = page.total;
            }
            let before = seen.len();
            let fresh: Vec<_> = page
                .rows
                .iter()
                .filter(|o| seen.insert(o.order_no.clone()))
                .cloned()
                .collect();
            let unreadable_before = unreadable_seen.len();
            let page_unreadable = page.unreadable.len();
            for note in page.unreadable {
                if unreadable_seen.insert(fingerprint(&note)) {
                    unreadable += 1;
                    out.note(note);
                }
            }
            check_page(store, run_by, &fresh, &mut out)
                .await
                .map_err(|e| format!("the job table could not be read or written: {e}"))?;
            out.atrip_orders = i32::try_from(seen.len()).unwrap_or(i32::MAX);
            beat.beat(out.pages, out.atrip_orders).await?;
            let got = page.rows.len() + page_unreadable;
            // No order, readable or not, that earlier pages did not hold.
            let repeated = got > 0
                && seen.len() == before
                && unreadable_seen.len() == unreadable_before;
            if repeated && bounds.first_page == 0 && page_no == 1 && out.pages == 2 {
                // An ATRIP counting from 1 that answered page 0 as page 1.
                out.note("pages 0 and 1 held the same orders: ATRIP counts its pages from 1".into());
            } else if repeated {
                return Err(format!(
                    "orderList.do page {page_no} holds only orders earlier pages held: ATRIP does not page as asked"
                ));
            }
            let read = seen.len() as u64 + unreadable;
            let page_size = page
                .page_size
                .filter(|n| (1..=u64::from(bounds.page_size)).contains(n))
                .unwrap_or(u64::from(bounds.page_size));
            let done = match total {
                Some(total) => read >= total || got == 0,
                None => (got as u64) < page_size,
            };
            if done {
                break;
            }
            page_no = page_no.checked_add(1).ok_or("page numbers ran out")?;
        }
        // Pages read from 1 that may leave out a page 0 (an ATRIP counting from 0): fewer
        // orders than ATRIP counted, or no count to tell. Page 0 is read too; an ATRIP counting
        // from 1 refuses it or repeats page 1, which changes nothing.
        let read = seen.len() as u64 + unreadable;
        if !looked_at_zero && total.is_none_or(|total| read < total) {
            let request = ListRequest::new(from, last, 0, bounds.page_size);
            let page = match fetch(atrip, &request, bounds, deadline, &beat, &out).await {
                Ok(page) => Some(page),
                Err(Fetch::Failed(_)) => None,
                Err(Fetch::Lost(why)) => return Err(why),
            };
            if let Some(page) = page {
                out.pages += 1;
                let fresh: Vec<_> = page
                    .rows
                    .iter()
                    .filter(|o| seen.insert(o.order_no.clone()))
                    .cloned()
                    .collect();
                if !fresh.is_empty() {
                    out.note("ATRIP counts its pages from 0: page 0 was read too".into());
                }
                for note in page.unreadable {
                    if unreadable_seen.insert(fingerprint(&note)) {
                        unreadable += 1;
                        out.note(note);
                    }
                }
                check_page(store, run_by, &fresh, &mut out)
                    .await
                    .map_err(|e| format!("the job table could not be read or written: {e}"))?;
                out.atrip_orders = i32::try_from(seen.len()).unwrap_or(i32::MAX);
                beat.beat(out.pages, out.atrip_orders).await?;
            }
        }
        let read = seen.len() as u64 + unreadable;
        if let Some(total) = total.filter(|total| read < *total) {
            return Err(format!(
                "ATRIP counted {total} orders in the window, its pages held {read}: the comparison is incomplete"
            ));
        }
        Ok(())
    }
    .await;
    out.error = result.err();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule R5: the longest silence of a live run (one call to ATRIP at its timeouts, one
    /// rate-limit wait, a page's statements at their timeout) is shorter than the threshold
    /// after which a replica takes the run over, at the settings' extremes, whatever
    /// `page_tries` and `max_run_s` (which bound the number of beats, not the time between).
    #[test]
    fn reconcile_a_live_runs_longest_silence_is_shorter_than_its_stale_threshold() {
        let mut s = Settings::defaults();
        s.reconcile.page_tries = 10;
        s.reconcile.max_run_s = 86_400;
        for (connect_ms, query_ms, statement_ms) in [
            (5_000, 10_000, 15_000),
            (60_000, 300_000, 600_000),
            (100, 100, 100),
        ] {
            s.atrip.connect_timeout_ms = connect_ms;
            s.atrip.query_timeout_ms = query_ms;
            s.database.statement_timeout_ms = statement_ms;
            let silence_s =
                (connect_ms + query_ms + MAX_WAIT.as_millis() as u64 + 4 * statement_ms) / 1000;
            let stale = stale_after_s(&s);
            assert!(stale >= 600, "{stale}");
            assert!(
                stale > i64::try_from(silence_s).unwrap() + 60,
                "{stale} vs {silence_s}"
            );
        }
    }
}
