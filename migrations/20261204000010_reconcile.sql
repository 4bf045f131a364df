-- Reconciliation of the job table with ATRIP's orderList.do (docs/design.md, R1-R6): one row
-- per run, daily or asked for, with what it found. A daily run's row is also its claim: the
-- unique index lets one replica a day insert it (the day and every time in it are the
-- database's), and a run whose process died is taken over once its heartbeat is old.
CREATE TABLE ticketing_reconcile_runs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger       text        NOT NULL CONSTRAINT reconcile_trigger_is_known
                                       CHECK (trigger IN ('daily', 'manual')),
    -- The UTC day a daily run stands for (NULL for a run asked for on the command line).
    day           date,
    -- ATRIP's creation times of the orders compared: [window_from, window_to).
    window_from   timestamptz NOT NULL,
    window_to     timestamptz NOT NULL,
    run_by        text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT ticketing_now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT ticketing_now(),
    finished_at   timestamptz,
    outcome       text        NOT NULL DEFAULT 'running' CONSTRAINT reconcile_outcome_is_known
                                       CHECK (outcome IN ('running', 'completed', 'failed')),
    attempts      integer     NOT NULL DEFAULT 1,
    pages         integer     NOT NULL DEFAULT 0,
    atrip_orders  integer     NOT NULL DEFAULT 0,
    -- Findings by kind ({"paid_not_in_table": 2, ...}) and the findings themselves (bounded).
    counts        jsonb       NOT NULL DEFAULT '{}',
    findings      jsonb       NOT NULL DEFAULT '[]',
    error         text,
    CONSTRAINT reconcile_window_is_ordered CHECK (window_from < window_to),
    CONSTRAINT reconcile_daily_has_a_day CHECK ((trigger = 'daily') = (day IS NOT NULL)),
    CONSTRAINT reconcile_finished_when_done
        CHECK ((outcome = 'running') = (finished_at IS NULL)),
    CONSTRAINT reconcile_failures_say_why CHECK (outcome <> 'failed' OR error IS NOT NULL)
);

CREATE UNIQUE INDEX ticketing_reconcile_runs_daily ON ticketing_reconcile_runs (day)
    WHERE trigger = 'daily';
CREATE INDEX ticketing_reconcile_runs_recent ON ticketing_reconcile_runs (started_at DESC, id DESC);
