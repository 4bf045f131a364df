-- A run's own staleness (docs/design.md, R5): how long its heartbeat may be silent while its
-- process lives, derived by that process from its settings (the longest ATRIP call, rate-limit
-- wait and statements between two beats). A replica takes a run over only once its heartbeat is
-- older than this (and than the replica's own threshold), so a live run whose page takes long
-- is never judged dead, whatever settings the other replicas run with. Rows before this
-- column: the fixed 600 s they were judged by.
ALTER TABLE ticketing_reconcile_runs
    ADD COLUMN stale_after_s integer NOT NULL DEFAULT 600
        CONSTRAINT reconcile_stale_after_is_positive CHECK (stale_after_s > 0);
