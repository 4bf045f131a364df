-- Claims in deadline order, payments before follow-ups, and a fleet-wide pause of paying
-- (docs/design.md, rules S1–S4).
--
-- S1. Due `pending` rows are claimed earliest-deadline-first within `priority` (rows without a
-- deadline after those with one, then `run_at`), each kind of row from an index of its own in
-- claim order. The index of every live row ordered by (priority, run_at, id),
-- ticketing_jobs_due, stays: the counts of live rows (/metrics, KEDA's query, the console) and
-- the previous release's claim during a rolling upgrade read it.
CREATE INDEX ticketing_jobs_pay_due ON ticketing_jobs (priority, pay_deadline, run_at, id)
    WHERE state = 'pending';
CREATE INDEX ticketing_jobs_follow_due ON ticketing_jobs (priority, run_at, id)
    WHERE state IN ('paying', 'ticketing');

-- S4. Paying paused, for every method (method 0) or one. A row is a pause; setting
-- resumed_at (and resumed_by) ends it, and the rows that stay are the history of who paused
-- and resumed, when and why. The SQL form:
--   INSERT INTO ticketing_pauses (method, reason, paused_by) VALUES (0, 'card processor incident', 'alice');
--   UPDATE ticketing_pauses SET resumed_at = now(), resumed_by = 'alice' WHERE resumed_at IS NULL;
CREATE TABLE ticketing_pauses (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    method     integer     NOT NULL DEFAULT 0 CHECK (method IN (0, 1, 3, 4, 5)),
    -- Shown in one line on every console page, in logs and in the reason of every order
    -- failed while paused: bounded, as the command line and the console bound it.
    reason     text        NOT NULL CONSTRAINT pause_reason_is_short
                           CHECK (btrim(reason) <> '' AND length(reason) <= 500),
    paused_by  text        NOT NULL CONSTRAINT paused_by_is_short
                           CHECK (btrim(paused_by) <> '' AND length(paused_by) <= 100),
    paused_at  timestamptz NOT NULL DEFAULT ticketing_now(),
    resumed_by text        CONSTRAINT resumed_by_is_short CHECK (length(resumed_by) <= 100),
    resumed_at timestamptz,
    CONSTRAINT resumed_by_someone CHECK ((resumed_at IS NULL) = (resumed_by IS NULL)),
    -- An infinite time cannot be shown or subtracted from: every read of the pauses would fail.
    CONSTRAINT pause_times_are_finite
        CHECK (isfinite(paused_at) AND (resumed_at IS NULL OR isfinite(resumed_at)))
);
-- One pause in force per method; pausing again what is paused is refused.
CREATE UNIQUE INDEX ticketing_pauses_in_force ON ticketing_pauses (method)
    WHERE resumed_at IS NULL;
-- Orders whose deadline passes while paying is paused, or before their run_at, are claimed to
-- be failed (never sent): they are found by deadline, not by walking the paused backlog.
CREATE INDEX ticketing_jobs_pay_expiring ON ticketing_jobs (pay_deadline)
    WHERE state = 'pending' AND pay_deadline IS NOT NULL;

-- A resume wakes the workers at once, as an insert does.
CREATE TRIGGER ticketing_pauses_notify
    AFTER INSERT OR UPDATE OR DELETE ON ticketing_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION ticketing_jobs_notify();

-- The rows a claim takes, locked, in claim order (S1, S2): due payments first, then the rows
-- being followed, `n` in all. Each branch reads its partial index in index order and stops
-- after the rows it needs, whatever the table's statistics say: the planner settings below
-- leave it no other plan (a table that nothing analyzed mid-burst otherwise had the whole
-- due backlog bitmap-scanned and sorted on every claim). A function with SET clauses is
-- never inlined, so the settings hold for these statements alone, behind a pooler too.
-- `pay` false (the durability gate closed) claims no payment; `follow` false (ATRIP asked us
-- to slow our queries) claims no follow-up. A paused method's pending rows are left, except
-- those whose deadline has passed: they are claimed to be failed without a send (S4), as are
-- rows whose deadline passed before their run_at (S3).
CREATE FUNCTION ticketing_due(pay boolean, follow boolean, n integer)
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

-- The function reads its tables in the schema it was created in, not through the caller's
-- search_path (as ticketing_now() does since 20261204000002): a session with a schema of its
-- own first, holding an old copy of ticketing_jobs, must not claim from that copy.
DO $migration$
BEGIN
    EXECUTE format('ALTER FUNCTION ticketing_due(boolean, boolean, integer) SET search_path = %I',
                   current_schema());
END
$migration$;
