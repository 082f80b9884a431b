-- The transactional outbox: written in the same transaction as the service's state change.
-- seq comes from AUTO_INCREMENT, which is assigned at insert, not at commit: a lower seq may
-- commit after a higher one. The relay therefore reads every unpublished row in seq order
-- each time (never "seq > last published"), so a late commit is published late, not lost.
CREATE TABLE IF NOT EXISTS tramline_outbox (
    seq          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id           VARCHAR(36)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,  -- UUIDv7
    topic        VARCHAR(255) NOT NULL,
    msg_key      VARCHAR(255) NOT NULL,                 -- partition key: the order id
    headers      TEXT         NOT NULL,                 -- JSON object
    payload      MEDIUMTEXT   NOT NULL,                 -- JSON document
    created_at   BIGINT       NOT NULL,                 -- ms since the Unix epoch
    published_at BIGINT       NULL,                     -- NULL until the relay published it
    UNIQUE KEY tramline_outbox_id (id),
    KEY tramline_outbox_unpublished (published_at, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
