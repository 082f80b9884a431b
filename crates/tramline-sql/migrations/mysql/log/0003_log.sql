-- The DB-backed transport: a durable, partitioned, append-only log with consumer-group
-- offsets. An append locks its partitions' rows here (FOR UPDATE), so offsets are dense and
-- a partition's appends commit in offset order.
CREATE TABLE IF NOT EXISTS tramline_log_partitions (
    topic       VARCHAR(255) NOT NULL,
    part        INT          NOT NULL,
    next_offset BIGINT       NOT NULL,
    PRIMARY KEY (topic, part)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS tramline_log (
    topic       VARCHAR(255) NOT NULL,
    part        INT          NOT NULL,
    log_offset  BIGINT       NOT NULL,
    id          VARCHAR(36)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    msg_key     VARCHAR(255) NOT NULL,
    headers     TEXT         NOT NULL,
    payload     MEDIUMTEXT   NOT NULL,
    created_at  BIGINT       NOT NULL,
    appended_at BIGINT       NOT NULL,
    PRIMARY KEY (topic, part, log_offset)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS tramline_consumer_offsets (
    group_id     VARCHAR(255) NOT NULL,
    topic        VARCHAR(255) NOT NULL,
    part         INT          NOT NULL,
    next_offset  BIGINT       NOT NULL,
    committed_at BIGINT       NOT NULL,
    PRIMARY KEY (group_id, topic, part)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
