-- When each source last changed the row: its latest applied event's creation time, in
-- milliseconds since the Unix epoch (set with the source's columns, under its version guard).
ALTER TABLE order_status_view ADD COLUMN order_changed_at INTEGER;
ALTER TABLE order_status_view ADD COLUMN payment_changed_at INTEGER;
ALTER TABLE order_status_view ADD COLUMN delivery_changed_at INTEGER;
