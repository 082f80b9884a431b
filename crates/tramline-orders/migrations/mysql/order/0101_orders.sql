-- The order service's own state. Ids compare byte-wise (ascii_bin), as on SQLite and
-- PostgreSQL (COLLATE "C"), so keyset pages line up across databases.
CREATE TABLE IF NOT EXISTS orders (
    order_id         VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    customer_id      VARCHAR(255) NOT NULL,
    product_id       VARCHAR(255) NOT NULL,
    quantity         BIGINT       NOT NULL,
    amount_cents     BIGINT       NOT NULL,
    shipping_address TEXT         NOT NULL,
    status           VARCHAR(32)  NOT NULL,
    version          BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
