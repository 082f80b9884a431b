-- Dedupe records: one row per (consumer, message id) applied, written in the same transaction
-- as the consumer's effect.
CREATE TABLE IF NOT EXISTS tramline_inbox (
    consumer    TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- Messages that can never be applied, kept with the reason for an operator.
CREATE TABLE IF NOT EXISTS tramline_parked (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer    TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    topic       TEXT   NOT NULL,
    part        BIGINT NOT NULL,
    log_offset  BIGINT NOT NULL,
    msg_key     TEXT   NOT NULL,
    headers     TEXT   NOT NULL,
    payload     TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    parked_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS tramline_parked_consumer ON tramline_parked (consumer);
