-- Finding an order in the console (src/jobs/find.rs) by the start of its number or of its
-- client order number, by a ticket number or a passenger, or by ATRIP's request id.
--
-- Like the console's other indexes (20261130000002) these cover only the rows a person looks
-- at and the finished ones, which their last write enters once: a row still followed is
-- rewritten at every query, and each index on it would take an entry at each write. The rows
-- in flight, few, are read through the claim's indexes.
--
-- text_pattern_ops: a prefix (LIKE 'ABC%') uses a B-tree whatever the database's collation.
CREATE INDEX ticketing_jobs_order_no_prefix ON ticketing_jobs (order_no text_pattern_ops)
    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled');
CREATE INDEX ticketing_jobs_client_order_no_prefix
    ON ticketing_jobs (upper(client_order_no) text_pattern_ops)
    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled');

-- Ticket numbers and passengers, by containment in `ticket_numbers`
-- ('[{"ticket_numbers": ["6181234567890"]}]', '[{"passenger": "DOE/JANE"}]').
CREATE INDEX ticketing_jobs_tickets ON ticketing_jobs USING gin (ticket_numbers jsonb_path_ops)
    WHERE state IN ('ticketed', 'failed', 'needs_review', 'cancelled');

-- ATRIP's request id of an answer, recorded in the answer's event.
CREATE INDEX ticketing_events_request_id ON ticketing_events ((detail->>'request_id'))
    WHERE detail ? 'request_id';
