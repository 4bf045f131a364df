-- The operator console's reads (src/jobs/console.rs), each served by an index so that a page
-- stays fast with millions of finished rows. Partial wherever the console reads only some
-- rows: most rows are `ticketed` and never looked at one by one.

-- "Needs a person": needs_review and failed rows, newest first, paged by (updated_at, id).
CREATE INDEX ticketing_jobs_needs_person ON ticketing_jobs (updated_at DESC, id DESC)
    WHERE state IN ('needs_review', 'failed');

-- Lists of one state, newest first, paged by (updated_at, id): the first migration's
-- (state, updated_at) index leaves ties to a sort; this one pages without any.
CREATE INDEX ticketing_jobs_state_page ON ticketing_jobs (state, updated_at DESC, id DESC);
DROP INDEX ticketing_jobs_state;

-- Find an order by the agency's reference, ATRIP's reference, or an airline PNR (`pnr` holds
-- every airline PNR of the order, space-separated, so each one is a key of the GIN index).
CREATE INDEX ticketing_jobs_client_order_no ON ticketing_jobs (client_order_no)
    WHERE client_order_no IS NOT NULL;
CREATE INDEX ticketing_jobs_atrip_pnr ON ticketing_jobs (atrip_pnr)
    WHERE atrip_pnr IS NOT NULL;
CREATE INDEX ticketing_jobs_airline_pnrs ON ticketing_jobs USING gin (string_to_array(pnr, ' '))
    WHERE pnr IS NOT NULL;

-- Orders paid and ticketed per minute, and enqueue -> ticketed times, over the last day:
-- range scans that read only the index.
CREATE INDEX ticketing_jobs_paid_at ON ticketing_jobs (paid_at)
    WHERE paid_at IS NOT NULL;
CREATE INDEX ticketing_jobs_ticketed_at ON ticketing_jobs (ticketed_at) INCLUDE (created_at)
    WHERE ticketed_at IS NOT NULL;

-- When ATRIP last answered clearly: a backward scan that stops at the first row, however long
-- ATRIP has been failing. (The last hour's answers by class read the first migration's
-- ticketing_events_at.)
CREATE INDEX ticketing_events_atrip_clear ON ticketing_events (at)
    WHERE (kind = 'query_answered' AND detail->>'answer' IN ('order', 'not_found'))
       OR (kind = 'pay_answered' AND detail->>'answer' IN
           ('accepted', 'never_pay_again', 'refused', 'unauthorized', 'payment_error'));
