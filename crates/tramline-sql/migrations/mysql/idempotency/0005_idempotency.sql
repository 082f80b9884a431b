-- Idempotency records of a command API: the response a request with an Idempotency-Key got,
-- written in the same transaction as the command's state change and outbox messages, so a
-- crash cannot leave the one without the other. A second transaction inserting the same key
-- waits on the first's row and then fails on the primary key.
-- The key is at most 255 visible ASCII characters: ascii (1 byte per character) keeps the
-- primary key far under InnoDB's index limit, ascii_bin compares keys byte-wise.
-- request and body are MEDIUMTEXT: a request body may be 64 KiB (hex-encoded if it is not
-- UTF-8), past TEXT's 65,535 bytes.
CREATE TABLE IF NOT EXISTS tramline_idempotency (
    idempotency_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    request         MEDIUMTEXT   NOT NULL,              -- method, path and body of the request
    status          INT          NOT NULL,              -- the response's status code
    location        TEXT         NULL,                  -- its Location header, if any
    body            MEDIUMTEXT   NOT NULL,              -- its body (JSON)
    created_at      BIGINT       NOT NULL,              -- ms since the Unix epoch
    KEY tramline_idempotency_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
