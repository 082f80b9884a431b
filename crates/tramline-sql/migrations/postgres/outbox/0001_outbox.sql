-- The transactional outbox: written in the same transaction as the service's state change.
-- seq comes from an identity sequence, assigned at insert, not at commit: a lower seq may
-- commit after a higher one. The relay therefore reads every unpublished row in seq order
-- each time (never "seq > last published"), so a late commit is published late, not lost.
CREATE TABLE IF NOT EXISTS tramline_outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT COLLATE "C" NOT NULL UNIQUE,   -- message id, UUIDv7
    topic        TEXT   NOT NULL,
    msg_key      TEXT   NOT NULL,                    -- partition key: the order id
    headers      TEXT   NOT NULL,                    -- JSON object
    payload      TEXT   NOT NULL,                    -- JSON document
    created_at   BIGINT NOT NULL,                    -- ms since the Unix epoch
    published_at BIGINT                              -- NULL until the relay published it
);
CREATE INDEX IF NOT EXISTS tramline_outbox_unpublished
    ON tramline_outbox (seq) WHERE published_at IS NULL;
