-- Fills a migrated database with 1,000,000 finished orders spread over the last 30 days (96 %
-- ticketed, 3 % failed, 0.5 % needs_review, 0.5 % cancelled), about four events each, plus
-- a few hundred orders still at work: the table the console's queries are measured against
-- (.ci/console-bench). Every row satisfies the table's CHECKs.
\set ON_ERROR_STOP on
\timing on

INSERT INTO ticketing_jobs (order_no, client_order_no, payment_method, card_brand, card_last4,
                            state, run_at, created_at, updated_at, pay_attempts, pay_permits,
                            poll_attempts, pay_started_at, paid_at, paid_evidence,
                            last_pay_outcome, phase_started_at, ticketed_at, finalized_at,
                            atrip_status, atrip_message, order_status, atrip_pnr, pnr,
                            ticket_numbers, last_error)
SELECT 'BENCH' || lpad(i::text, 10, '0'),
       CASE WHEN i % 2 = 0 THEN 'CO-' || i END,
       CASE WHEN i % 4 = 0 THEN 3 ELSE 1 END,
       CASE WHEN i % 4 = 0 THEN 'visa' END,
       CASE WHEN i % 4 = 0 THEN lpad((i % 10000)::text, 4, '0') END,
       s.state, t.created, t.created, t.done,
       CASE WHEN s.state = 'cancelled' THEN 0 ELSE 1 END, 1, 2,
       CASE WHEN s.state <> 'cancelled' THEN t.created + interval '1 second' END,
       CASE WHEN s.state = 'ticketed' THEN t.created + interval '2 seconds' END,
       CASE WHEN s.state = 'ticketed' THEN 'pay_accepted' END,
       CASE s.state WHEN 'ticketed' THEN 'accepted' WHEN 'failed' THEN 'refused'
                    WHEN 'needs_review' THEN 'outcome_unknown' END,
       t.created,
       CASE WHEN s.state = 'ticketed' THEN t.done END,
       t.done,
       CASE s.state WHEN 'failed' THEN 413 ELSE 0 END,
       CASE s.state WHEN 'failed' THEN 'Card not supported' END,
       CASE s.state WHEN 'ticketed' THEN '2' WHEN 'needs_review' THEN '0' END,
       'AT' || upper(substr(md5(i::text), 1, 8)),
       CASE WHEN s.state = 'ticketed' THEN upper(substr(md5(i::text), 9, 6)) END,
       CASE WHEN s.state = 'ticketed' THEN jsonb_build_array(jsonb_build_object(
           'passenger', 'DOE/JANE', 'ticket_numbers', jsonb_build_array('618' || lpad(i::text, 10, '0')),
           'airline_pnrs', jsonb_build_array(upper(substr(md5(i::text), 9, 6))))) END,
       CASE s.state
           WHEN 'failed' THEN 'order BENCH' || lpad(i::text, 10, '0') || ': ATRIP refused the payment with status 413 (Card not supported); nothing was charged'
           WHEN 'needs_review' THEN 'order BENCH' || lpad(i::text, 10, '0') || ': pay.do outcome unknown and the order still shows unpaid; check it in ATRIP'
           WHEN 'cancelled' THEN 'cancelled by an operator before any payment was sent' END
FROM generate_series(1, 1000000) AS i,
     LATERAL (SELECT CASE WHEN i % 200 = 7 THEN 'needs_review' WHEN i % 200 = 11 THEN 'cancelled'
                          WHEN i % 100 < 3 THEN 'failed' ELSE 'ticketed' END AS state) s,
     LATERAL (SELECT now() - (1000000 - i) * interval '2.592 seconds' - interval '15 minutes' AS created,
                     now() - (1000000 - i) * interval '2.592 seconds' - interval '15 minutes'
                         + (30 + i % 600) * interval '1 second' AS done) t;

-- Orders still at work.
INSERT INTO ticketing_jobs (order_no, payment_method, state, pay_attempts, pay_started_at,
                            paid_at, paid_evidence, last_pay_outcome, phase_started_at)
SELECT 'BENCHLIVE' || lpad(i::text, 6, '0'), 1, 'ticketing', 1, now(), now(), 'pay_accepted',
       'accepted', now()
FROM generate_series(1, 300) AS i;

-- Their history: an intent, pay.do's answer, two order queries (the second one final).
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT j.id, j.order_no, e.at, e.kind, e.state, 1, 'bench-worker', e.detail
FROM ticketing_jobs j,
     LATERAL (VALUES
         (j.created_at + interval '1 second', 'pay_intent', 'paying', '{}'::jsonb),
         (j.created_at + interval '2 seconds', 'pay_answered',
          CASE WHEN j.state = 'ticketed' THEN 'ticketing' ELSE 'paying' END,
          CASE j.state WHEN 'failed' THEN '{"answer": "refused", "status": 413}'::jsonb
                       WHEN 'needs_review' THEN '{"answer": "outcome_unknown", "reason": "timeout"}'::jsonb
                       ELSE '{"answer": "accepted", "status": 0}'::jsonb END),
         (j.finalized_at - interval '5 seconds', 'query_answered', j.state,
          CASE WHEN j.id % 50 = 0 THEN '{"answer": "rate_limited", "retry_after_ms": 1000}'::jsonb
               ELSE '{"answer": "order", "orderStatus": "1"}'::jsonb END),
         (j.finalized_at, 'query_answered', j.state, '{"answer": "order", "orderStatus": "2"}'::jsonb)
     ) AS e(at, kind, state, detail)
WHERE j.state <> 'cancelled' AND j.finalized_at IS NOT NULL;

VACUUM ANALYZE ticketing_jobs;
VACUUM ANALYZE ticketing_events;
