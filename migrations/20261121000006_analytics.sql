-- Read models for analysts: `analytics` (daily outcome counts, amounts and times) and
-- `failures` (why payments fail, per provider). Both are rebuilt from the event stream alone
-- (`payledger replay`), so every value here is derived from events: no now(), no serials,
-- no floats. Each projection keeps the per-payment context it needs in a table of its own.

-- analytics: what the projection must remember about each payment to attribute its later
-- events (merchant, method and currency never change; the provider changes when a fallback
-- provider takes the payment).
CREATE TABLE analytics_payments
(
    payment_id          uuid PRIMARY KEY,
    merchant_id         text        NOT NULL,
    provider            text        NOT NULL,
    payment_method_type text        NOT NULL,
    currency            text        NOT NULL,
    initiated_at        timestamptz NOT NULL
);

-- One row per merchant x UTC day x provider x payment method type x currency. Each event
-- counts on the UTC day of its own `at`, under the provider holding the payment then.
CREATE TABLE analytics_daily
(
    merchant_id         text    NOT NULL,
    day                 date    NOT NULL,
    provider            text    NOT NULL,
    payment_method_type text    NOT NULL,
    currency            text    NOT NULL,
    initiated_count     bigint  NOT NULL DEFAULT 0,
    approved_count      bigint  NOT NULL DEFAULT 0,
    declined_count      bigint  NOT NULL DEFAULT 0,
    failed_count        bigint  NOT NULL DEFAULT 0,
    expired_count       bigint  NOT NULL DEFAULT 0,
    voided_count        bigint  NOT NULL DEFAULT 0,
    refunded_count      bigint  NOT NULL DEFAULT 0,
    approved_amount     numeric NOT NULL DEFAULT 0,
    refunded_amount     numeric NOT NULL DEFAULT 0,
    fee_amount          numeric NOT NULL DEFAULT 0,
    -- Payments that reached a final answer about the money (voids are not a decision).
    decided_count       bigint GENERATED ALWAYS AS
        (approved_count + declined_count + failed_count + expired_count) STORED,
    -- approved / decided, 6 decimals; NULL when nothing was decided that day.
    success_rate        numeric GENERATED ALWAYS AS
        (CASE
             WHEN approved_count + declined_count + failed_count + expired_count = 0 THEN NULL
             ELSE round(approved_count::numeric
                            / (approved_count + declined_count + failed_count + expired_count), 6)
         END) STORED,
    PRIMARY KEY (merchant_id, day, provider, payment_method_type, currency)
);

-- Analysts read across merchants by date range.
CREATE INDEX analytics_daily_day ON analytics_daily (day);

-- Seconds from PaymentInitiated to PaymentApproved, one row per approved payment, under the
-- day and provider of the approval: percentiles cannot be kept as counters, so they are
-- computed from these rows when read.
CREATE TABLE analytics_approval_times
(
    payment_id          uuid PRIMARY KEY,
    merchant_id         text    NOT NULL,
    day                 date    NOT NULL,
    provider            text    NOT NULL,
    payment_method_type text    NOT NULL,
    currency            text    NOT NULL,
    seconds             numeric NOT NULL
);

CREATE INDEX analytics_approval_times_bucket
    ON analytics_approval_times (merchant_id, day, provider, payment_method_type, currency);

-- failures: the per-payment context of the `failures` projection.
CREATE TABLE failures_payments
(
    payment_id  uuid PRIMARY KEY,
    merchant_id text    NOT NULL,
    provider    text    NOT NULL,
    amount      numeric NOT NULL,
    currency    text    NOT NULL
);

-- One row per merchant x provider x reason x currency. `last_global_position` breaks ties
-- between failures at the same instant, so `last_payment_id` does not depend on the order in
-- which different payments' events were applied.
CREATE TABLE payment_failures
(
    merchant_id          text        NOT NULL,
    provider             text        NOT NULL,
    reason               text        NOT NULL,
    currency             text        NOT NULL,
    count                bigint      NOT NULL,
    amount               numeric     NOT NULL,
    first_seen           timestamptz NOT NULL,
    last_seen            timestamptz NOT NULL,
    last_payment_id      uuid        NOT NULL,
    last_global_position bigint      NOT NULL,
    PRIMARY KEY (merchant_id, provider, reason, currency)
);

CREATE INDEX payment_failures_last_seen ON payment_failures (last_seen);
