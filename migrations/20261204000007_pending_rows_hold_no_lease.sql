-- A `pending` row holds no lease: no worker's write leaves one there (a claim moves the row on
-- to `paying`; a withdrawn claim clears it). An enqueuer that wrote lease columns (a copy of
-- old rows, a mistake) left a row no worker would claim until that lease ran out, and that
-- `cancel` refused as leased. Such rows are freed first; the check is then validated without
-- blocking writes (VALIDATE takes a lock that lets them go on).
UPDATE ticketing_jobs SET lease_owner = NULL, lease_expires_at = NULL
WHERE state = 'pending' AND (lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL);

ALTER TABLE ticketing_jobs
    ADD CONSTRAINT pending_rows_hold_no_lease
    CHECK (state <> 'pending' OR (lease_owner IS NULL AND lease_expires_at IS NULL)) NOT VALID;
ALTER TABLE ticketing_jobs VALIDATE CONSTRAINT pending_rows_hold_no_lease;
