-- The outbox in Eventuate Tram's `message` layout (as in Eventuate's own PostgreSQL schema), so
-- that tramline's relay can publish an Eventuate service's outbox and Eventuate's CDC can
-- publish a tramline service's. headers is a JSON object holding ID, PARTITION_ID,
-- DESTINATION, DATE and the event headers; published is 0 until a relay published the row.
CREATE TABLE IF NOT EXISTS message (
    id            VARCHAR(1000) PRIMARY KEY,
    destination   TEXT NOT NULL,
    headers       TEXT NOT NULL,
    payload       TEXT NOT NULL,
    published     SMALLINT DEFAULT 0,
    creation_time BIGINT
);
CREATE INDEX IF NOT EXISTS message_published_idx ON message (published, id);
