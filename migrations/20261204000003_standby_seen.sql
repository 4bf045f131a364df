-- A standby, once seen, is remembered by the database (docs/design.md, P1b): a worker that
-- starts while the standby is away (a reboot, a network cut) and no replication slot keeps
-- its place would otherwise see a single server, take intents as durable once flushed
-- locally, and a failover to that standby would then forget intents whose pay.do had left.
-- With `worker.intent_durability = auto`, any worker that sees a standby (or a change of the
-- server's identity, which only a promotion makes) writes this row, and every worker reads
-- it: intents must then be replicated, fleet-wide and across restarts. An operator who
-- removes the standby for good deletes the row (or sets intent_durability = local).
CREATE TABLE ticketing_standby_seen (
    only_row boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    seen_at  timestamptz NOT NULL DEFAULT now(),
    seen_by  text        NOT NULL,
    what     text        NOT NULL
);
