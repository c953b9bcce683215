-- Customers and their saved payment methods. The facts are events of the `Customer`
-- aggregate in `events`; what must be erasable lives beside the stream, never in it:
-- the customer's email and the provider's source id of each saved method (together with the
-- merchant's credentials, a source id buys a charge).

-- Write side: personal data of a customer, erasable.
CREATE TABLE customer_contacts
(
    customer_id uuid PRIMARY KEY,
    merchant_id text        NOT NULL,
    email       text,
    updated_at  timestamptz NOT NULL
);

-- Write side: the provider's source of each saved method while it is saved. The row is
-- deleted once the provider has detached the source.
CREATE TABLE saved_method_sources
(
    payment_method_id uuid PRIMARY KEY,
    customer_id       uuid        NOT NULL,
    provider          text        NOT NULL,
    source_id         text        NOT NULL,
    saved_at          timestamptz NOT NULL
);

-- Read side (the `customers` projection): each customer, and each saved method with what may
-- be shown of it. Rebuilt from the stream by `replay`.
CREATE TABLE customers
(
    customer_id               uuid PRIMARY KEY,
    merchant_id               text        NOT NULL,
    reference                 text        NOT NULL,
    default_payment_method_id uuid,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    version                   bigint      NOT NULL
);

CREATE INDEX customers_merchant_reference ON customers (merchant_id, reference);

CREATE TABLE customer_payment_methods
(
    payment_method_id uuid PRIMARY KEY,
    customer_id       uuid        NOT NULL,
    merchant_id       text        NOT NULL,
    provider          text        NOT NULL,
    method_type       text        NOT NULL,
    brand             text,
    last_four         text,
    exp_month         smallint,
    exp_year          smallint,
    phone_masked      text,
    saved_at          timestamptz NOT NULL
);

CREATE INDEX customer_payment_methods_customer
    ON customer_payment_methods (customer_id, saved_at, payment_method_id);

-- A projection's lag counts only events of the aggregate type it folds: customers' events
-- are few among payments', and without this every lag read would walk the payments'.
CREATE INDEX events_type_position ON events (aggregate_type, global_position);
