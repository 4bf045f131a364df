-- Fences for what happens after ticketing (docs/design.md, rules W3 and W6).
--
-- `after_ticketing_claim` counts the claims of a row's re-check: each claim, each result and
-- each new report adds one, and a re-check's result is written only while the count is the
-- one its claim took, so a worker whose claim ran out (or whose report was replaced) writes
-- nothing. No default: adding it rewrites nothing and takes its lock for an instant.
ALTER TABLE ticketing_jobs ADD COLUMN after_ticketing_claim bigint;

-- A delivery reporting a change of a ticketed order whose row another session held locked:
-- the delivery is recorded as an event at once, and its mark waits here (no foreign key, so
-- writing it waits on no lock of the job table) until a worker's re-check round applies it. The worker's role needs SELECT, INSERT and
-- DELETE on it (checked at start).
CREATE TABLE ticketing_webhook_deferred (
    -- An identity, not a serial: inserting needs no privilege on a sequence.
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  bigint      NOT NULL,
    change  text        NOT NULL
        CHECK (change IN ('voided', 'cancelled_by_airline', 'schedule_changed')),
    at      timestamptz NOT NULL
);
