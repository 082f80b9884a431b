-- Dedupe records: one row per (consumer, message id) applied, written in the same transaction
-- as the consumer's effect.
CREATE TABLE IF NOT EXISTS tramline_inbox (
    consumer    TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
) WITHOUT ROWID;

-- Messages that can never be applied (malformed, unknown type, refused by the domain), kept
-- with the reason for an operator instead of being dropped.
CREATE TABLE IF NOT EXISTS tramline_parked (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer    TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    part        INTEGER NOT NULL,
    log_offset  INTEGER NOT NULL,
    msg_key     TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    parked_at   INTEGER NOT NULL
);
