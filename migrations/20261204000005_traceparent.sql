-- The enqueuer's W3C Trace Context (`traceparent`, e.g.
-- 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01), optional: the worker's spans for
-- this order become children of that trace, and its log lines carry the trace id. A value
-- that is not a valid traceparent is ignored, never refused: tracing must not hold an order up.
ALTER TABLE ticketing_jobs ADD COLUMN traceparent text;
