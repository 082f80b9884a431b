-- Compaction keeps the newest record of each key per partition: this index finds it.
CREATE INDEX IF NOT EXISTS tramline_log_key ON tramline_log (topic, part, msg_key, log_offset);
