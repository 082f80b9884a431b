-- The payment service's own state; one payment per order.
CREATE TABLE IF NOT EXISTS payments (
    payment_id   TEXT    PRIMARY KEY,
    order_id     TEXT    NOT NULL UNIQUE,
    amount_cents INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
