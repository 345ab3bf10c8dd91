-- The outbox consumer's side: which events arrived, and the one effect each order has.
-- Delivery is at-least-once, so consumed_events is the dedupe record (one row per event_id
-- however often it arrives) and order_ledger is the effect, written only in the transaction
-- that records an event's first delivery. applied_count stays 1 while dedupe works; a value
-- above 1 is a double effect, kept visible in the data for the outbox checks to report.

CREATE TABLE consumed_events (
    event_id         uuid PRIMARY KEY,
    event_type       text        NOT NULL,
    aggregate_id     bigint,
    deliveries       int         NOT NULL DEFAULT 1 CHECK (deliveries >= 1),
    event_created_at timestamptz,
    received_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE order_ledger (
    order_id      bigint PRIMARY KEY,
    event_id      uuid          NOT NULL UNIQUE REFERENCES consumed_events (event_id),
    account_id    text,
    symbol        text,
    side          text,
    quantity      bigint,
    price         numeric(18,2),
    applied_count int           NOT NULL DEFAULT 1,
    recorded_at   timestamptz   NOT NULL DEFAULT clock_timestamp()
);
