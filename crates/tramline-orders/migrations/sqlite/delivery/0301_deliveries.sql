-- The delivery service's own state; one delivery per order.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT    PRIMARY KEY,
    order_id    TEXT    NOT NULL UNIQUE,
    status      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
