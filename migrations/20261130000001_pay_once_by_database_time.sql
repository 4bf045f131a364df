-- The pay-once protocol as data the database enforces, and the database's clock as the only
-- clock that decides who may touch a row (docs/design.md, rules P1-P3 and T1).
--
-- Expand-only: every column is new and defaulted, and every new CHECK holds for what the
-- previous release writes, so a worker of the previous release keeps running against this
-- schema during a rolling upgrade. Where the previous release would send a second pay.do on
-- its own (its "unpaid past a timer" path), the new CHECK refuses its intent, so it cannot.

-- Time. Every lease, due time, intent time and deadline is written as ticketing_now(). It is
-- now() unless a test shifted it: tests write one row into ticketing_test_clock to move the
-- database's time, so that the production path and the test path are the same SQL. Production
-- leaves the table empty.
CREATE TABLE ticketing_test_clock (
    only_row boolean  PRIMARY KEY DEFAULT true CHECK (only_row),
    shift    interval NOT NULL
);

CREATE FUNCTION ticketing_now() RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT now() + COALESCE((SELECT shift FROM ticketing_test_clock), interval '0') $$;

ALTER TABLE ticketing_jobs
    -- Intents that provably never reached ATRIP: refused before sending (bad card, deadline
    -- passed, shutdown) or a connection that could not be opened. pay_attempts - pay_not_sent
    -- is the number of pay.do that may have reached ATRIP ("pay.do sent").
    ADD COLUMN pay_not_sent     integer     NOT NULL DEFAULT 0,
    -- How many pay.do may ever reach ATRIP for this order: 1 at enqueue; an operator's
    -- `retry --repay` (or a retry after a definitive refusal) grants one more.
    ADD COLUMN pay_permits      integer     NOT NULL DEFAULT 1,
    -- What showed the order paid (paid_at is when): 'pay_accepted', 'pnr_pending',
    -- 'already_paid', 'query_paid', or 'before_evidence' for rows paid before this column.
    ADD COLUMN paid_evidence    text,
    -- The class of the last pay.do answer: what a retry may do next.
    ADD COLUMN last_pay_outcome text,
    -- When the current phase began (an intent, the payment, an operator's retry): the paying
    -- and ticketing deadlines count from here, so a retry gets a fresh deadline.
    ADD COLUMN phase_started_at timestamptz;

-- Rows paid more than once under the old protocol had that many permits.
UPDATE ticketing_jobs SET pay_permits = pay_attempts WHERE pay_attempts > 1;
UPDATE ticketing_jobs SET paid_evidence = 'before_evidence' WHERE paid_at IS NOT NULL;

ALTER TABLE ticketing_jobs
    ADD CONSTRAINT pay_counters_are_consistent
        CHECK (pay_not_sent BETWEEN 0 AND pay_attempts AND pay_permits >= 0),
    -- P2: never more pay.do than permits. A second intent without a permit is refused here,
    -- whatever the worker's code says.
    ADD CONSTRAINT pay_sends_within_permits
        CHECK (pay_attempts - pay_not_sent <= pay_permits),
    -- P3: once an answer showed the order paid, no permit is left: no intent can follow.
    ADD CONSTRAINT paid_orders_have_no_permit_left
        CHECK (paid_at IS NULL OR pay_attempts - pay_not_sent >= pay_permits),
    ADD CONSTRAINT paid_evidence_says_when
        CHECK (paid_evidence IS NULL OR paid_at IS NOT NULL),
    ADD CONSTRAINT paid_evidence_is_known
        CHECK (paid_evidence IS NULL OR paid_evidence IN
               ('pay_accepted', 'pnr_pending', 'already_paid', 'query_paid', 'before_evidence')),
    ADD CONSTRAINT last_pay_outcome_is_known
        CHECK (last_pay_outcome IS NULL OR last_pay_outcome IN
               ('accepted', 'never_pay_again', 'refused', 'unauthorized', 'payment_error',
                'outcome_unknown', 'not_sent')),
    -- An enqueuer writes none of the worker's payment columns.
    ADD CONSTRAINT pending_rows_start_clean
        CHECK (state <> 'pending' OR (pay_not_sent = 0 AND pay_permits = 1
                                      AND paid_evidence IS NULL AND last_pay_outcome IS NULL));

-- Rows and events an enqueuer writes without these columns get the database's time too.
ALTER TABLE ticketing_jobs
    ALTER COLUMN run_at SET DEFAULT ticketing_now(),
    ALTER COLUMN created_at SET DEFAULT ticketing_now(),
    ALTER COLUMN updated_at SET DEFAULT ticketing_now();
ALTER TABLE ticketing_events ALTER COLUMN at SET DEFAULT ticketing_now();

-- The states and who moves a row out of each are described in docs/design.md (the first
-- migration's comment names a file that was never written; applied migrations are checksummed,
-- so it stays as it is).
