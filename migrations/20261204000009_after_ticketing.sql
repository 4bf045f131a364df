-- What happened to an order after it was ticketed (rule W6), and webhook deliveries recorded
-- once each (rule W3).
--
-- A ticketed order can still be voided, or cancelled by the airline, or see its schedule
-- changed; ATRIP says so by webhook only. The webhook never changes the row's state: it marks
-- what ATRIP reported (`after_ticketing`, `after_ticketing_at`) as `reported` and makes the
-- order due for an order query (`after_ticketing_due`); the query alone turns the mark into
-- `confirmed` (it shows the order cancelled, "-3") or `unconfirmed` (it still shows the order
-- ticketed after every re-check), with what it showed (`after_ticketing_note`).
ALTER TABLE ticketing_jobs
    ADD COLUMN after_ticketing            text,
    ADD COLUMN after_ticketing_at         timestamptz,
    ADD COLUMN after_ticketing_check      text,
    ADD COLUMN after_ticketing_checks     integer NOT NULL DEFAULT 0,
    ADD COLUMN after_ticketing_due        timestamptz,
    ADD COLUMN after_ticketing_checked_at timestamptz,
    ADD COLUMN after_ticketing_note       text;

ALTER TABLE ticketing_jobs
    ADD CONSTRAINT after_ticketing_is_known
        CHECK (after_ticketing IS NULL
               OR after_ticketing IN ('voided', 'cancelled_by_airline', 'schedule_changed')),
    ADD CONSTRAINT after_ticketing_only_when_ticketed
        CHECK (after_ticketing IS NULL OR state = 'ticketed'),
    ADD CONSTRAINT after_ticketing_has_its_check
        CHECK ((after_ticketing IS NULL) = (after_ticketing_check IS NULL)
               AND (after_ticketing IS NULL) = (after_ticketing_at IS NULL)
               AND (after_ticketing_due IS NULL OR after_ticketing IS NOT NULL)),
    ADD CONSTRAINT after_ticketing_check_is_known
        CHECK (after_ticketing_check IS NULL
               OR after_ticketing_check IN ('reported', 'confirmed', 'unconfirmed')),
    ADD CONSTRAINT after_ticketing_note_is_short
        CHECK (after_ticketing_note IS NULL OR length(after_ticketing_note) <= 500);

-- The re-check reads only the rows whose order query is due after a report.
CREATE INDEX ticketing_jobs_after_ticketing_due ON ticketing_jobs (after_ticketing_due, id)
    WHERE after_ticketing_due IS NOT NULL;
-- The console's list "changed after ticketing", newest report first.
CREATE INDEX ticketing_jobs_after_ticketing ON ticketing_jobs (after_ticketing_at DESC, id DESC)
    WHERE after_ticketing IS NOT NULL;

-- One event per webhook delivery: a replay (same type, order and notificationId, or the same
-- payload where ATRIP sends no notificationId) finds its key taken and adds nothing.
CREATE UNIQUE INDEX ticketing_events_webhook_once
    ON ticketing_events (job_id, (detail ->> 'delivery'))
    WHERE kind = 'webhook_received' AND detail ? 'delivery';
