-- What the order costs from the deposit, in the deposit's settlement currency
-- (`worker.balance_currency`), optional at enqueue (ATRIP's order.do answers `totalPrice`). With
-- the balance pre-check on (`worker.balance_precheck_s`, rule P1e), a pending deposit order
-- whose price, with the prices of the deposit orders due before it, is more than the balance
-- `balance.do` gives waits, and says why, instead of meeting a 411 that would send it to a
-- person. Added without a default (no rewrite); the check is validated apart.
ALTER TABLE ticketing_jobs ADD COLUMN price numeric(14, 2);
ALTER TABLE ticketing_jobs
    ADD CONSTRAINT price_is_plausible CHECK (price > 0 AND price < 1e12) NOT VALID;
ALTER TABLE ticketing_jobs VALIDATE CONSTRAINT price_is_plausible;
