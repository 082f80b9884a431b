-- The order service's own state.
CREATE TABLE IF NOT EXISTS orders (
    order_id         TEXT    PRIMARY KEY,
    customer_id      TEXT    NOT NULL,
    product_id       TEXT    NOT NULL,
    quantity         INTEGER NOT NULL,
    amount_cents     INTEGER NOT NULL,
    shipping_address TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;
