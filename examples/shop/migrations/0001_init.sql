-- The shop's own schema, applied by the shop's own sqlx migrator (history in
-- _sqlx_migrations); tramline's schemas keep their history in tramline_migrations, so this
-- 0001 does not clash with tramline's own 0001.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    amount_cents INTEGER NOT NULL
);

CREATE TABLE customer_totals (
    customer TEXT PRIMARY KEY,
    orders INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL
);
