-- Dedupe records: one row per (consumer, message id) applied, written in the same transaction
-- as the consumer's effect.
CREATE TABLE IF NOT EXISTS tramline_inbox (
    consumer    VARCHAR(255) NOT NULL,
    message_id  VARCHAR(36)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    received_at BIGINT       NOT NULL,
    PRIMARY KEY (consumer, message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Messages that can never be applied, kept with the reason for an operator.
CREATE TABLE IF NOT EXISTS tramline_parked (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    consumer    VARCHAR(255) NOT NULL,
    message_id  VARCHAR(36)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    topic       VARCHAR(255) NOT NULL,
    part        INT          NOT NULL,
    log_offset  BIGINT       NOT NULL,
    msg_key     VARCHAR(255) NOT NULL,
    headers     TEXT         NOT NULL,
    payload     MEDIUMTEXT   NOT NULL,
    reason      TEXT         NOT NULL,
    parked_at   BIGINT       NOT NULL,
    KEY tramline_parked_consumer (consumer)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
