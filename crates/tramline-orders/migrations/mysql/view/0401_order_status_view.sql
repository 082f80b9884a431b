-- The Order Status View: one row per order, each source owning its own columns and version.
-- A NULL version means that source has not been seen yet for this order.
CREATE TABLE IF NOT EXISTS order_status_view (
    order_id         VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    order_status     VARCHAR(32),
    customer_id      VARCHAR(255),
    product_id       VARCHAR(255),
    quantity         BIGINT,
    amount_cents     BIGINT,
    shipping_address TEXT,
    order_version    BIGINT,
    payment_id       VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin,
    payment_status   VARCHAR(32),
    payment_version  BIGINT,
    delivery_id      VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin,
    delivery_status  VARCHAR(32),
    delivery_version BIGINT,
    updated_at       BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
