-- Intents without an outcome, as the status projection sees them: what the resolver visits
-- and what operators review.
ALTER TABLE payment_status
    -- `in_flight` / `unknown` while the payment's provider attempt has no answer.
    ADD COLUMN provider_outcome text,
    -- `capture` / `void` while one is asked of the provider.
    ADD COLUMN pending_action   text,
    -- The intent left unresolved past the review horizon, while it stays open.
    ADD COLUMN needs_review     text,
    -- Orphaned provider transactions still holding money.
    ADD COLUMN orphans_open     integer NOT NULL DEFAULT 0 CHECK (orphans_open >= 0);

-- The resolver's work list: every payment with something asked of a provider and not
-- answered, oldest first. Small by design (it empties as intents resolve).
CREATE INDEX payment_status_open_intents ON payment_status (updated_at)
    WHERE status = 'PENDING' OR provider_outcome IS NOT NULL OR pending_action IS NOT NULL
       OR refund_pending_amount > 0 OR orphans_open > 0;

CREATE INDEX payment_status_needs_review ON payment_status (created_at DESC, payment_id DESC)
    WHERE needs_review IS NOT NULL;

CREATE INDEX payment_status_outcome_unknown ON payment_status (payment_id)
    WHERE provider_outcome = 'unknown';
