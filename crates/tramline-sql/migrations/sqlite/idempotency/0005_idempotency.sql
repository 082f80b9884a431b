-- Idempotency records of a command API: the response a request with an Idempotency-Key got,
-- written in the same transaction as the command's state change and outbox messages, so a
-- crash cannot leave the one without the other.
CREATE TABLE IF NOT EXISTS tramline_idempotency (
    idempotency_key TEXT    NOT NULL PRIMARY KEY,
    request         TEXT    NOT NULL,                   -- method, path and body of the request
    status          INTEGER NOT NULL,                   -- the response's status code
    location        TEXT,                               -- its Location header, if any
    body            TEXT    NOT NULL,                   -- its body (JSON)
    created_at      INTEGER NOT NULL                    -- ms since the Unix epoch
);  -- a rowid table: rows may be large (WITHOUT ROWID suits small ones)
CREATE INDEX IF NOT EXISTS tramline_idempotency_created ON tramline_idempotency (created_at);
