-- The view is a declared read model now (tramline_orders::view::projection::declaration):
-- its table holds exactly the declared columns and one version per source.
ALTER TABLE order_status_view DROP COLUMN updated_at;
