-- Per-key parking: a parked message holds its key, and later messages of that key are parked
-- behind it (held = 1) until an operator retries or skips it. A parked message is no longer
-- claimed in the inbox (a retry applies it then), so one message is parked once at most.
ALTER TABLE tramline_parked ADD COLUMN held SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE tramline_parked ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS tramline_parked_message ON tramline_parked (consumer, message_id);
CREATE INDEX IF NOT EXISTS tramline_parked_key ON tramline_parked (consumer, msg_key, id);
