-- The Order Status View: one row per order, each source owning its own columns and version.
-- A NULL version means that source has not been seen yet for this order.
CREATE TABLE IF NOT EXISTS order_status_view (
    order_id         TEXT COLLATE "C" PRIMARY KEY,
    order_status     TEXT,
    customer_id      TEXT,
    product_id       TEXT,
    quantity         BIGINT,
    amount_cents     BIGINT,
    shipping_address TEXT,
    order_version    BIGINT,
    payment_id       TEXT,
    payment_status   TEXT,
    payment_version  BIGINT,
    delivery_id      TEXT,
    delivery_status  TEXT,
    delivery_version BIGINT,
    updated_at       BIGINT NOT NULL
);
