-- The `ledger` projection: a double-entry journal derived from payment events.
-- Every row is a function of the events alone (keys come from the event's global position,
-- never from a sequence or now()), so a replay rebuilds exactly the same rows.
-- balance = debit - credit everywhere: asset-like accounts (clearing, funds in flight) carry
-- a positive balance, liability-like ones (merchant payable, platform fees, authorizations)
-- a negative one. Amounts are in the currency's major unit (e.g. 129000.00 COP), exact NUMERIC.

-- What the ledger must remember about a payment to post events that do not say it
-- themselves (a refund does not name the merchant, a void does not name the provider).
CREATE TABLE ledger_payments
(
    payment_id           uuid PRIMARY KEY,
    merchant_id          text    NOT NULL,
    currency             text    NOT NULL,
    -- The provider holding the payment now (initiation, then the one that took it).
    provider             text    NOT NULL,
    -- The open authorization hold and the provider whose authorizations account holds it.
    hold_provider        text,
    hold_amount          numeric NOT NULL CHECK (hold_amount >= 0),
    -- The provider whose clearing account received the capture (refunds go back there).
    capture_provider     text,
    captured_amount      numeric NOT NULL CHECK (captured_amount >= 0),
    fee_amount           numeric NOT NULL CHECK (fee_amount >= 0),
    refunded_amount      numeric NOT NULL CHECK (refunded_amount >= 0),
    last_global_position bigint  NOT NULL
);

-- One row per line: an event's lines form one balanced entry, identified by the event's
-- global position; `line` numbers them from 1 in posting order.
CREATE TABLE journal_entries
(
    global_position bigint      NOT NULL,
    line            integer     NOT NULL CHECK (line >= 1),
    payment_id      uuid        NOT NULL,
    sequence        bigint      NOT NULL,
    event_type      text        NOT NULL,
    -- authorization_hold | hold_release | capture | fee | refund
    posting         text        NOT NULL,
    merchant_id     text        NOT NULL,
    account         text        NOT NULL,
    currency        text        NOT NULL,
    debit           numeric     NOT NULL CHECK (debit >= 0),
    credit          numeric     NOT NULL CHECK (credit >= 0),
    -- When the fact happened (the event's `at`).
    at              timestamptz NOT NULL,
    PRIMARY KEY (global_position, line),
    -- Exactly one side of a line carries money.
    CONSTRAINT journal_entries_one_side CHECK ((debit > 0) <> (credit > 0))
);

-- An account's journal, oldest first, keyset-paginated; and the same within one merchant.
CREATE INDEX journal_entries_account ON journal_entries (account, global_position, line);
CREATE INDEX journal_entries_merchant_account ON journal_entries (merchant_id, account, global_position, line);
CREATE INDEX journal_entries_payment ON journal_entries (payment_id, global_position, line);

-- Running totals per account and currency.
CREATE TABLE account_balances
(
    account              text    NOT NULL,
    currency             text    NOT NULL,
    debit_total          numeric NOT NULL CHECK (debit_total >= 0),
    credit_total         numeric NOT NULL CHECK (credit_total >= 0),
    balance              numeric GENERATED ALWAYS AS (debit_total - credit_total) STORED,
    lines                bigint  NOT NULL,
    last_global_position bigint  NOT NULL,
    PRIMARY KEY (account, currency)
);

-- The same totals restricted to one merchant's payments: what a checkout key may see of the
-- shared accounts (provider clearing, platform fees...). Summed over merchants, they give
-- account_balances.
CREATE TABLE merchant_account_balances
(
    merchant_id          text    NOT NULL,
    account              text    NOT NULL,
    currency             text    NOT NULL,
    debit_total          numeric NOT NULL CHECK (debit_total >= 0),
    credit_total         numeric NOT NULL CHECK (credit_total >= 0),
    balance              numeric GENERATED ALWAYS AS (debit_total - credit_total) STORED,
    lines                bigint  NOT NULL,
    last_global_position bigint  NOT NULL,
    PRIMARY KEY (merchant_id, account, currency)
);
