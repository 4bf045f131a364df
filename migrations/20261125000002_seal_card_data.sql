-- Card data may also arrive sealed to the worker's public key (a libsodium sealed box of
-- {"order_no", "card"}), so that a dump of the database never shows a card number. Either
-- form, never both; erased like `card` once the payment resolves.

ALTER TABLE ticketing_jobs ADD COLUMN card_sealed bytea;

ALTER TABLE ticketing_jobs
    DROP CONSTRAINT card_required_for_vcc_and_mor,
    DROP CONSTRAINT card_only_for_vcc_and_mor;

ALTER TABLE ticketing_jobs
    ADD CONSTRAINT card_required_for_vcc_and_mor
        CHECK (state <> 'pending' OR payment_method NOT IN (3, 5)
               OR card IS NOT NULL OR card_sealed IS NOT NULL),
    ADD CONSTRAINT card_only_for_vcc_and_mor
        CHECK (payment_method IN (3, 5) OR (card IS NULL AND card_sealed IS NULL)),
    ADD CONSTRAINT card_given_once CHECK (card IS NULL OR card_sealed IS NULL),
    -- 48 bytes of sealed-box overhead around a JSON object; at most a few KB.
    ADD CONSTRAINT card_sealed_is_small
        CHECK (card_sealed IS NULL OR octet_length(card_sealed) BETWEEN 50 AND 8192);
