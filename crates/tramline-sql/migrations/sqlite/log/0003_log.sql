-- The embedded transport: a durable, partitioned, append-only log with consumer-group offsets.
CREATE TABLE IF NOT EXISTS tramline_log_partitions (
    topic       TEXT    NOT NULL,
    part        INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tramline_log (
    topic       TEXT    NOT NULL,
    part        INTEGER NOT NULL,
    log_offset  INTEGER NOT NULL,
    id          TEXT    NOT NULL,
    msg_key     TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    appended_at INTEGER NOT NULL,
    PRIMARY KEY (topic, part, log_offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tramline_consumer_offsets (
    group_id     TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    part         INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, part)
) WITHOUT ROWID;
