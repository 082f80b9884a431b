-- The order service's own state. Ids compare byte-wise (COLLATE "C"), as on
-- SQLite and MariaDB (ascii_bin), so keyset pages line up across databases.
CREATE TABLE IF NOT EXISTS orders (
    order_id         TEXT COLLATE "C" PRIMARY KEY,
    customer_id      TEXT COLLATE "C" NOT NULL,
    product_id       TEXT COLLATE "C" NOT NULL,
    quantity         BIGINT NOT NULL,
    amount_cents     BIGINT NOT NULL,
    shipping_address TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    version          BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
