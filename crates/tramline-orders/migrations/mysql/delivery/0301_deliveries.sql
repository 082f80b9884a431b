-- The delivery service's own state; one delivery per order.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    order_id    VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL UNIQUE,
    status      VARCHAR(32) NOT NULL,
    version     BIGINT      NOT NULL,
    updated_at  BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
