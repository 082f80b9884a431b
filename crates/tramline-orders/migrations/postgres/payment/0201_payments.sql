-- The payment service's own state; one payment per order.
CREATE TABLE IF NOT EXISTS payments (
    payment_id   TEXT COLLATE "C" PRIMARY KEY,
    order_id     TEXT COLLATE "C" NOT NULL UNIQUE,
    amount_cents BIGINT NOT NULL,
    status       TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
