-- The delivery service's own state; one delivery per order.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT COLLATE "C" PRIMARY KEY,
    order_id    TEXT COLLATE "C" NOT NULL UNIQUE,
    status      TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
