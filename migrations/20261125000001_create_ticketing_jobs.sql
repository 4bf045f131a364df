-- One row per ATRIP order to pay once and follow until its tickets are final.
--
-- The enqueuer writes: order_no, payment_method, card (methods 3 and 5 only), and optionally
-- client_order_no, pay_deadline, priority, run_at. Everything else belongs to the worker.
--
-- States (who moves a row out of each, and where, is in design.md and src/jobs/state.rs):
--   pending      waiting to be paid
--   paying       a pay intent is recorded; pay.do may be in flight or its outcome unknown
--   ticketing    paid; following the order until its tickets are final
--   ticketed     terminal: PNR and every ticket number recorded
--   failed       terminal: payment refused or ticketing failed (reason and ATRIP code kept)
--   needs_review the worker will not guess; a person looks (retry or cancel)
--   cancelled    terminal: stopped by an operator before any payment was sent
--
-- Every invariant is a named CHECK so that a bad INSERT is refused with a name that says what
-- is wrong, and so that a bug in the worker cannot write a row that contradicts its state.

CREATE TABLE ticketing_jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_no          text        NOT NULL,
    client_order_no   text,
    payment_method    smallint    NOT NULL,
    -- ATRIP's own creditCard object; erased (set NULL) in the transaction that records a
    -- resolved payment, keeping only brand and last four digits.
    card              jsonb,
    card_brand        text,
    card_last4        text,
    pay_deadline      timestamptz,
    priority          smallint    NOT NULL DEFAULT 0,

    state             text        NOT NULL DEFAULT 'pending',
    -- Next time the row is due. Lower priority numbers run first, then earlier run_at.
    run_at            timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),

    -- The lease: who works on the row and until when. lease_token is bumped at every claim
    -- and fences every later write (WHERE lease_token = the claimed value).
    lease_owner       text,
    lease_expires_at  timestamptz,
    lease_token       bigint      NOT NULL DEFAULT 0,

    pay_attempts      integer     NOT NULL DEFAULT 0,
    poll_attempts     integer     NOT NULL DEFAULT 0,
    -- Consecutive unclear answers (transport errors, garbled bodies); reset by a clear one.
    error_streak      integer     NOT NULL DEFAULT 0,
    pay_started_at    timestamptz,
    paid_at           timestamptz,
    ticketed_at       timestamptz,
    finalized_at      timestamptz,

    -- What ATRIP last said: the status code and message of the last answer, and the order's
    -- orderStatus as the last query reported it.
    atrip_status      integer,
    atrip_message     text,
    order_status      text,
    -- ATRIP's own booking reference (pnrCode); not the airline's.
    atrip_pnr         text,
    -- The airline PNR(s) and per-passenger ticket numbers, set when ticketed:
    -- [{"passenger": "DOE/JANE", "ticket_numbers": ["S12345"], "airline_pnrs": ["S12345"]}]
    pnr               text,
    ticket_numbers    jsonb,
    -- The complete ticket set of the previous answer, waiting to be seen identically once more.
    tickets_seen      jsonb,
    last_error        text,

    CONSTRAINT order_no_is_unique UNIQUE (order_no),
    CONSTRAINT order_no_is_well_formed CHECK (order_no ~ '^[A-Z0-9]{6,40}$'),
    CONSTRAINT client_order_no_is_short CHECK (client_order_no IS NULL OR length(client_order_no) BETWEEN 1 AND 128),
    CONSTRAINT payment_method_is_known CHECK (payment_method IN (1, 3, 4, 5)),
    CONSTRAINT card_is_an_object CHECK (card IS NULL OR jsonb_typeof(card) = 'object'),
    CONSTRAINT card_is_small CHECK (card IS NULL OR pg_column_size(card) <= 4096),
    CONSTRAINT card_required_for_vcc_and_mor
        CHECK (state <> 'pending' OR payment_method NOT IN (3, 5) OR card IS NOT NULL),
    CONSTRAINT card_only_for_vcc_and_mor CHECK (payment_method IN (3, 5) OR card IS NULL),
    CONSTRAINT pay_deadline_is_plausible
        CHECK (pay_deadline IS NULL
               OR pay_deadline BETWEEN created_at - interval '1 day' AND created_at + interval '30 days'),
    CONSTRAINT priority_is_in_range CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT state_is_known
        CHECK (state IN ('pending', 'paying', 'ticketing', 'ticketed', 'failed', 'needs_review', 'cancelled')),
    CONSTRAINT pending_was_never_paid
        CHECK (state <> 'pending' OR (pay_attempts = 0 AND pay_started_at IS NULL AND paid_at IS NULL)),
    CONSTRAINT paying_has_an_intent
        CHECK (state <> 'paying' OR (pay_attempts > 0 AND pay_started_at IS NOT NULL)),
    CONSTRAINT paid_states_have_paid_at
        CHECK (state NOT IN ('ticketing', 'ticketed') OR paid_at IS NOT NULL),
    CONSTRAINT finalized_exactly_when_finished
        CHECK ((state IN ('ticketed', 'failed', 'needs_review', 'cancelled')) = (finalized_at IS NOT NULL)),
    CONSTRAINT tickets_exactly_when_ticketed
        CHECK ((state = 'ticketed') = (ticket_numbers IS NOT NULL AND ticketed_at IS NOT NULL AND pnr IS NOT NULL)),
    CONSTRAINT finished_rows_have_no_lease
        CHECK (finalized_at IS NULL OR (lease_owner IS NULL AND lease_expires_at IS NULL)),
    CONSTRAINT failures_say_why
        CHECK (state NOT IN ('failed', 'needs_review') OR last_error IS NOT NULL),
    CONSTRAINT counters_are_not_negative
        CHECK (pay_attempts >= 0 AND poll_attempts >= 0 AND error_streak >= 0 AND lease_token >= 0)
);

-- The claim reads only this index: rows that still need work, in claim order. Finished rows
-- are not in it, so the claim stays cheap with millions of them.
CREATE INDEX ticketing_jobs_due ON ticketing_jobs (priority, run_at, id)
    WHERE state IN ('pending', 'paying', 'ticketing');

CREATE INDEX ticketing_jobs_state ON ticketing_jobs (state, updated_at);

-- The order's history: one row per thing that happened, with redacted details.
CREATE TABLE ticketing_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint      NOT NULL REFERENCES ticketing_jobs (id) ON DELETE CASCADE,
    order_no    text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    -- The row's state after the event.
    state       text        NOT NULL,
    lease_token bigint,
    worker      text,
    detail      jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX ticketing_events_job ON ticketing_events (job_id, id);
CREATE INDEX ticketing_events_at ON ticketing_events (at);

-- Wake the workers (LISTEN ticketing_jobs) as soon as rows are inserted; one notification per
-- statement, so a bulk insert wakes them once.
CREATE FUNCTION ticketing_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ticketing_jobs', 'insert');
    RETURN NULL;
END;
$$;

CREATE TRIGGER ticketing_jobs_notify_insert
    AFTER INSERT ON ticketing_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ticketing_jobs_notify();
