-- Evidence of payment noted in the events while a step's write of it waits on a locked row
-- (docs/design.md, P3a): every worker looks for the notes the job table does not hold yet.
-- Rare rows; the index keeps that look from reading the events.
CREATE INDEX ticketing_events_evidence_seen ON ticketing_events (job_id)
    WHERE kind = 'evidence_seen';
