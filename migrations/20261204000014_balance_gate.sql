-- The balance pre-check as a gate of the claim (docs/design.md, rule P1e). While a worker
-- runs the pre-check (`worker.balance_precheck_s`), it beats `ticketing_balance_checks`, and
-- a `pending` deposit order with a `price` is claimed only once a check has weighed it against
-- the balance and found room for it (`price_cleared_at`); one that does not fit waits, saying
-- why. A new order is so never paid before a check has seen it. When no worker has beaten the
-- row for three of its intervals (the pre-check turned off, or its workers gone), the gate is
-- open: it can hold a payment back, never cause one.
ALTER TABLE ticketing_jobs ADD COLUMN price_cleared_at timestamptz;

CREATE TABLE ticketing_balance_checks (
    only_row boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    beat_at  timestamptz NOT NULL,
    every_ms bigint      NOT NULL CHECK (every_ms BETWEEN 1000 AND 86400000),
    amount   numeric,
    currency text        CHECK (length(currency) <= 10)
);

CREATE OR REPLACE FUNCTION ticketing_due(pay boolean, follow boolean, n integer)
    RETURNS TABLE (id bigint, claimed_from text)
    LANGUAGE plpgsql VOLATILE
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET enable_sort = off
    SET jit = off
AS $$
DECLARE
    got integer;
    left_over integer := n;
    -- The balance pre-check runs while a worker has beaten its row within three of its
    -- intervals (P1e); a pre-check that stopped holds nothing back.
    precheck boolean := EXISTS (
        SELECT 1 FROM ticketing_balance_checks b
        WHERE b.beat_at > ticketing_now() - 3 * b.every_ms * interval '1 millisecond');
BEGIN
    -- With every method paused no row of this branch may be taken: it is skipped rather than
    -- walked (a backlog paused during an incident can be millions of rows).
    IF pay AND NOT EXISTS (SELECT 1 FROM ticketing_pauses WHERE resumed_at IS NULL AND method = 0) THEN
        RETURN QUERY
            SELECT j.id, j.state FROM ticketing_jobs j
            WHERE j.state = 'pending'
              AND j.run_at <= ticketing_now()
              AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ticketing_now())
              AND NOT EXISTS (SELECT 1 FROM ticketing_pauses p
                              WHERE p.resumed_at IS NULL AND p.method IN (0, j.payment_method))
              -- P1e: while the balance pre-check runs, a deposit order with a price waits
              -- until a check has weighed it against the balance and found room for it.
              AND (j.payment_method <> 1 OR j.price IS NULL OR j.price_cleared_at IS NOT NULL
                   OR NOT precheck)
            ORDER BY j.priority, j.pay_deadline, j.run_at, j.id
            LIMIT left_over
            FOR NO KEY UPDATE SKIP LOCKED;
        GET DIAGNOSTICS got = ROW_COUNT;
        left_over := left_over - got;
    END IF;
    -- Rows past their deadline the branch above leaves: of a paused method, or not due
    -- before a run_at later than the deadline. They are claimed to be failed, unsent.
    IF pay AND left_over > 0 THEN
        RETURN QUERY
            SELECT j.id, j.state FROM ticketing_jobs j
            WHERE j.state = 'pending' AND j.pay_deadline <= ticketing_now()
              AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ticketing_now())
              AND (j.run_at > ticketing_now()
                   OR EXISTS (SELECT 1 FROM ticketing_pauses p
                              WHERE p.resumed_at IS NULL AND p.method IN (0, j.payment_method)))
            ORDER BY j.pay_deadline
            LIMIT left_over
            FOR NO KEY UPDATE SKIP LOCKED;
        GET DIAGNOSTICS got = ROW_COUNT;
        left_over := left_over - got;
    END IF;
    IF follow AND left_over > 0 THEN
        RETURN QUERY
            SELECT j.id, j.state FROM ticketing_jobs j
            WHERE j.state IN ('paying', 'ticketing')
              AND j.run_at <= ticketing_now()
              AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ticketing_now())
            ORDER BY j.priority, j.run_at, j.id
            LIMIT left_over
            FOR NO KEY UPDATE SKIP LOCKED;
    END IF;
END
$$;

DO $migration$
BEGIN
    EXECUTE format('ALTER FUNCTION ticketing_due(boolean, boolean, integer) SET search_path = %I',
                   current_schema());
END
$migration$;
