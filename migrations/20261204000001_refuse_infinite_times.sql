-- Times an enqueuer writes must be real times. 'infinity' cannot be read into the worker's
-- types: a claim that returned one panicked the process at every start, after its commit had
-- recorded pay intents for the whole batch. Rows already holding one are given real times of
-- the same meaning first: an infinite created_at becomes now, an infinite payment deadline
-- none ('-infinity', one already passed, becomes created_at), and run_at 'infinity' (never
-- due) becomes 9999-12-31, '-infinity' (due) created_at. Then the CHECK refuses new ones.
UPDATE ticketing_jobs SET
    created_at = CASE WHEN isfinite(created_at) THEN created_at ELSE ticketing_now() END,
    pay_deadline = CASE WHEN pay_deadline IS NULL OR isfinite(pay_deadline) THEN pay_deadline
                        WHEN pay_deadline < 'epoch'
                            THEN CASE WHEN isfinite(created_at) THEN created_at ELSE ticketing_now() END
                        END,
    run_at = CASE WHEN isfinite(run_at) THEN run_at
                  WHEN run_at > 'epoch' THEN '9999-12-31 00:00:00+00'::timestamptz
                  ELSE CASE WHEN isfinite(created_at) THEN created_at ELSE ticketing_now() END END
WHERE NOT (isfinite(created_at) AND isfinite(run_at)
           AND (pay_deadline IS NULL OR isfinite(pay_deadline)));

ALTER TABLE ticketing_jobs
    ADD CONSTRAINT times_are_finite
        CHECK (isfinite(created_at) AND isfinite(run_at)
               AND (pay_deadline IS NULL OR isfinite(pay_deadline)));
