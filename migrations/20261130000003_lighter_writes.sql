-- Less written per step (docs/design.md; the bench measures WAL bytes per order).
--
-- (state, updated_at) was touched by every write and read by nothing that a partial index
-- cannot serve: the rows that need a person (failed, needs_review) and the rare cancelled ones
-- get a partial index of their own, which serves the operators' lists (newest first) and the
-- exact counts behind /metrics; the finished ticketed rows, the bulk, are in no index but the
-- primary key and order_no.
CREATE INDEX ticketing_jobs_attention ON ticketing_jobs (state, id)
    WHERE state IN ('failed', 'needs_review', 'cancelled');
DROP INDEX ticketing_jobs_state;

-- Events are read by job (the (job_id, id) index) and, for recent activity, newest first by id;
-- nothing reads them by time alone.
DROP INDEX ticketing_events_at;

-- Room on each page for the new version of a row, so that updates that change no indexed
-- column (a claim's lease, a renewal) stay on the page (HOT) and touch no index.
ALTER TABLE ticketing_jobs SET (fillfactor = 80);

-- Every event insert checked its job through the foreign key: a trigger, a query and a row
-- lock written to the WAL, per event. Events are only ever written in the same statement as
-- their job's change (src/jobs), and the prune deletes a job's events with the job, so the key
-- bought nothing. (During a rolling upgrade, a pruner of the previous release deletes jobs
-- without their events; those few events are left behind, harmless.)
ALTER TABLE ticketing_events DROP CONSTRAINT ticketing_events_job_id_fkey;
