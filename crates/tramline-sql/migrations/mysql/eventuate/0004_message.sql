-- The outbox in Eventuate Tram's `message` layout (as in Eventuate's own MySQL schema), so that
-- tramline's relay can publish an Eventuate service's outbox and Eventuate's CDC can publish a
-- tramline service's. headers is a JSON object holding ID, PARTITION_ID, DESTINATION, DATE and
-- the event headers; published is 0 until a relay published the row.
CREATE TABLE IF NOT EXISTS message (
    id            VARCHAR(767) PRIMARY KEY,
    destination   LONGTEXT NOT NULL,
    headers       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    payload       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    published     SMALLINT DEFAULT 0,
    creation_time BIGINT,
    KEY message_published_idx (published, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
