-- The operator console's reads (src/jobs/console.rs), each served by an index so that a page
-- stays fast with millions of finished rows.
--
-- A row the worker is still following is rewritten many times (its due time changes at every
-- query, so no such update is HOT), and every index on the row takes a new entry at each of
-- those writes. So these indexes cover only the rows a person looks at (failed, needs_review,
-- cancelled) and the finished rows, which their last write enters once; the rows in flight,
-- few, are read through the claim's partial index (ticketing_jobs_due).
CREATE INDEX ticketing_jobs_attention ON ticketing_jobs (state, updated_at DESC, id DESC)
    WHERE state IN ('failed', 'needs_review', 'cancelled');

-- Ticketed orders newest first (a ticketed row's updated_at is its ticketed_at), and the
-- payment and enqueue -> ticketed times of the overview's charts, from the index alone.
CREATE INDEX ticketing_jobs_ticketed ON ticketing_jobs (ticketed_at DESC, id DESC)
    INCLUDE (created_at, paid_at) WHERE state = 'ticketed';

-- Finding a finished order by any of its codes: ATRIP's reference, an airline PNR (`pnr` holds
-- every airline PNR of the order, space-separated), or the agency's reference (upper-cased).
-- One GIN index over all of them: with its pending list, a row's codes go in with one WAL
-- record, where one B-tree per code would take one each.
CREATE INDEX ticketing_jobs_done_codes ON ticketing_jobs USING gin (
    (string_to_array(COALESCE(pnr, ''), ' ') || ARRAY[atrip_pnr, upper(client_order_no)]))
    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled');

-- Events by time, for the overview's last hour: a BRIN index, a few bytes per range of pages,
-- because events are only ever appended in time order.
CREATE INDEX ticketing_events_at_brin ON ticketing_events USING brin (at);

DROP INDEX ticketing_jobs_state;
