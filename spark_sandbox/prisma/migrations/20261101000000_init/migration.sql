-- The reference Spark schema: instruments, orders, fills, positions, idempotency keys and the
-- transactional outbox. Money is numeric, never float; amounts at 0.01 TRY, average prices at
-- 0.0001 TRY.

CREATE TABLE instruments (
    symbol       text PRIMARY KEY,
    base_price   numeric(18,2) NOT NULL CHECK (base_price > 0),
    price_margin numeric(5,4)  NOT NULL DEFAULT 0.20 CHECK (price_margin > 0)
);

-- Previous closes, one instrument per BIST tick band; kept equal to spark_sandbox/app/instruments.py.
INSERT INTO instruments (symbol, base_price) VALUES
    ('SASA', 4.58),
    ('KOZAL', 24.50),
    ('AKBNK', 62.15),
    ('THYAO', 285.25),
    ('GARAN', 128.40),
    ('BIMAS', 540.00),
    ('ASELS', 1120.00),
    ('FROTO', 2750.00);

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    account_id      text          NOT NULL CHECK (length(account_id) BETWEEN 1 AND 64),
    symbol          text          NOT NULL REFERENCES instruments (symbol),
    side            text          NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        bigint        NOT NULL CHECK (quantity > 0),
    price           numeric(18,2) NOT NULL CHECK (price > 0),
    commission      numeric(18,2) NOT NULL CHECK (commission >= 0),
    status          text          NOT NULL CHECK (status IN ('accepted', 'filled', 'cancelled')),
    idempotency_key text,
    created_at      timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX orders_account_index ON orders (account_id, symbol);

CREATE TABLE fills (
    id         bigserial PRIMARY KEY,
    order_id   bigint        NOT NULL REFERENCES orders (id),
    account_id text          NOT NULL,
    symbol     text          NOT NULL REFERENCES instruments (symbol),
    side       text          NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity   bigint        NOT NULL CHECK (quantity > 0),
    price      numeric(18,2) NOT NULL CHECK (price > 0),
    commission numeric(18,2) NOT NULL CHECK (commission >= 0),
    filled_at  timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX fills_order_index ON fills (order_id);
CREATE INDEX fills_account_index ON fills (account_id, symbol);

-- quantity is signed: positive long, negative short.
CREATE TABLE positions (
    id            bigserial PRIMARY KEY,
    account_id    text          NOT NULL,
    symbol        text          NOT NULL REFERENCES instruments (symbol),
    quantity      bigint        NOT NULL DEFAULT 0,
    average_price numeric(18,4) NOT NULL DEFAULT 0,
    realised_pnl  numeric(18,2) NOT NULL DEFAULT 0,
    status        text          NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at     timestamptz   NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz   NOT NULL DEFAULT clock_timestamp(),
    closed_at     timestamptz
);
-- One open position per account and symbol; closed ones are history.
CREATE UNIQUE INDEX open_position_index ON positions (account_id, symbol) WHERE status = 'open';

CREATE TABLE idempotency_keys (
    key             text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('in_progress', 'completed')),
    response_status int,
    response_body   text,
    -- The holder of an in-progress key; a retry may take over a lease that has lapsed.
    lease_token     uuid,
    leased_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL DEFAULT clock_timestamp() + interval '24 hours',
    CHECK (status = 'in_progress' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_index ON idempotency_keys (expires_at);

CREATE TABLE outbox_events (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    aggregate_id bigint      NOT NULL,
    event_type   text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    attempts     int         NOT NULL DEFAULT 0
);
CREATE INDEX outbox_events_pending_index ON outbox_events (id) WHERE published_at IS NULL;
