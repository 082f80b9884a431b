-- The DB-backed transport: a durable, partitioned, append-only log with consumer-group
-- offsets. An append locks its partitions' rows here (FOR UPDATE), so offsets are dense and
-- a partition's appends commit in offset order.
CREATE TABLE IF NOT EXISTS tramline_log_partitions (
    topic       TEXT COLLATE "C" NOT NULL,
    part        BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, part)
);

CREATE TABLE IF NOT EXISTS tramline_log (
    topic       TEXT COLLATE "C" NOT NULL,
    part        BIGINT NOT NULL,
    log_offset  BIGINT NOT NULL,
    id          TEXT   NOT NULL,
    msg_key     TEXT   NOT NULL,
    headers     TEXT   NOT NULL,
    payload     TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    appended_at BIGINT NOT NULL,
    PRIMARY KEY (topic, part, log_offset)
);

CREATE TABLE IF NOT EXISTS tramline_consumer_offsets (
    group_id     TEXT COLLATE "C" NOT NULL,
    topic        TEXT COLLATE "C" NOT NULL,
    part         BIGINT NOT NULL,
    next_offset  BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, part)
);
