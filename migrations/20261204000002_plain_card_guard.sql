-- A plain card never reaches the table where the policy refuses it (docs/design.md, C3).
--
-- Erasing `card` once a payment resolves does not reach the copies a table has: the WAL, every
-- streaming standby, every WAL archive and point-in-time backup hold the row as it was
-- inserted, card number and CVV included. So the database refuses a plain card before the row
-- is written: a BEFORE trigger raises, and nothing of the row reaches the WAL. Sealed cards
-- (`card_sealed`, docs/design.md C2) are unreadable without the worker's secret key.
--
-- The policy is one row. A production worker writes it at start (refused, unless
-- card.allow_plain says otherwise) and refuses to start if the trigger is missing or
-- disabled; other environments leave it as they find it. It starts as allowed so that a
-- development database and a rolling upgrade behave as before until a production worker
-- starts.
--
-- Expand-only: the previous release never writes the policy; its enqueuers' plain cards are
-- refused once a production worker of this release has started, which is the point.
CREATE TABLE ticketing_card_policy (
    only_row            boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    plain_cards_allowed boolean     NOT NULL,
    decided_by          text        NOT NULL,
    decided_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO ticketing_card_policy (plain_cards_allowed, decided_by)
VALUES (true, 'the migration (allowed until a production worker starts)');

-- The functions name their tables by the schema they were created in, not through the
-- caller's search_path: an enqueuer's session may have a schema of its own first, holding a
-- table of the same name. (The body is built here because the schema is database.schema.)
DO $migration$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION ticketing_refuse_plain_card() RETURNS trigger
            LANGUAGE plpgsql
            AS $body$
        BEGIN
            IF NEW.card IS NOT NULL
               AND NOT COALESCE((SELECT plain_cards_allowed FROM %1$I.ticketing_card_policy), false)
            THEN
                RAISE EXCEPTION 'order %%: plain card data is refused by this database', NEW.order_no
                    USING ERRCODE = 'check_violation',
                          CONSTRAINT = 'plain_cards_refused',
                          DETAIL = 'ticketing_card_policy refuses plain cards (set by a production worker): a card written in clear would stay in the WAL, its standbys and its backups after the row is erased.',
                          HINT = 'Seal the card to the worker''s public key (card_sealed; see `ticketing-tracker keygen`), or start the workers with card.allow_plain = true.';
            END IF;
            RETURN NEW;
        END
        $body$ $f$, current_schema());

    -- ticketing_now() read ticketing_test_clock through the caller's search_path.
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION ticketing_now() RETURNS timestamptz
            LANGUAGE sql STABLE PARALLEL SAFE
            AS $body$ SELECT now() + COALESCE((SELECT shift FROM %1$I.ticketing_test_clock), interval '0') $body$
        $f$, current_schema());
END
$migration$;

-- Before the row is written: nothing of a refused row reaches the heap or the WAL. Only when
-- a card is written (an INSERT with one, or an UPDATE that sets a new one): the worker's own
-- updates of a row holding a card from before the policy do not touch `card`, or erase it.
CREATE TRIGGER plain_cards_refused_on_insert
    BEFORE INSERT ON ticketing_jobs
    FOR EACH ROW WHEN (NEW.card IS NOT NULL)
    EXECUTE FUNCTION ticketing_refuse_plain_card();

CREATE TRIGGER plain_cards_refused_on_update
    BEFORE UPDATE OF card ON ticketing_jobs
    FOR EACH ROW WHEN (NEW.card IS NOT NULL AND NEW.card IS DISTINCT FROM OLD.card)
    EXECUTE FUNCTION ticketing_refuse_plain_card();

-- ALWAYS: also in a session with session_replication_role = replica (logical replication
-- apply, pg_restore --disable-triggers aside).
ALTER TABLE ticketing_jobs ENABLE ALWAYS TRIGGER plain_cards_refused_on_insert;
ALTER TABLE ticketing_jobs ENABLE ALWAYS TRIGGER plain_cards_refused_on_update;
