-- The transactional outbox: written in the same transaction as the service's state change.
-- seq is assigned under SQLite's single writer lock, so seq order is commit order.
CREATE TABLE IF NOT EXISTS tramline_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,   -- message id, UUIDv7
    topic        TEXT    NOT NULL,
    msg_key      TEXT    NOT NULL,          -- partition key: the order id
    headers      TEXT    NOT NULL,          -- JSON object
    payload      TEXT    NOT NULL,          -- JSON document
    created_at   INTEGER NOT NULL,          -- ms since the Unix epoch
    published_at INTEGER                    -- NULL until the relay published it
);
CREATE INDEX IF NOT EXISTS tramline_outbox_unpublished
    ON tramline_outbox (seq) WHERE published_at IS NULL;
