-- The payment service's own state; one payment per order.
CREATE TABLE IF NOT EXISTS payments (
    payment_id   VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    order_id     VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL UNIQUE,
    amount_cents BIGINT      NOT NULL,
    status       VARCHAR(32) NOT NULL,
    version      BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
