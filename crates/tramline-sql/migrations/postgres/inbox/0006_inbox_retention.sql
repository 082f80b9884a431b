-- Retention deletes dedupe records oldest first, a batch at a time, through this index.
CREATE INDEX IF NOT EXISTS tramline_inbox_received ON tramline_inbox (received_at);
