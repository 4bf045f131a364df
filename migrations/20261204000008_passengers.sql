-- How many passengers the order holds, so that an answer leaving one out is not taken as final
-- (rule F1b). Optional at enqueue; when the enqueuer leaves it out, the first order-query
-- answer that lists passengers fills it in, and every later answer must list a ticket for each.
-- ATRIP holds at most 9 passengers an order; counting a lap infant beside each as an entry of
-- its own makes 18. The worker reads at most 32 entries (MAX_PASSENGERS); the table allows the
-- same. The column comes without a default (no rewrite); its check is added NOT VALID and then
-- validated, which lets writes go on meanwhile.
ALTER TABLE ticketing_jobs ADD COLUMN passengers smallint;
ALTER TABLE ticketing_jobs
    ADD CONSTRAINT passengers_is_in_range CHECK (passengers BETWEEN 1 AND 32) NOT VALID;
ALTER TABLE ticketing_jobs VALIDATE CONSTRAINT passengers_is_in_range;
