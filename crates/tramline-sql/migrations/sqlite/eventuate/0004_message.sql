-- The outbox in Eventuate Tram's `message` layout (Eventuate ships no SQLite schema; this is
-- its MySQL one in SQLite types). headers is a JSON object holding ID, PARTITION_ID,
-- DESTINATION, DATE and the event headers; published is 0 until a relay published the row.
CREATE TABLE IF NOT EXISTS message (
    id            TEXT PRIMARY KEY,
    destination   TEXT NOT NULL,
    headers       TEXT NOT NULL,
    payload       TEXT NOT NULL,
    published     INTEGER DEFAULT 0,
    creation_time INTEGER
);
CREATE INDEX IF NOT EXISTS message_published_idx ON message (published, id);
