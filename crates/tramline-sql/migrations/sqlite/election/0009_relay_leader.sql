-- Who leads each election of relays (one per outbox). On SQLite this row is the lead itself:
-- a lease, held while expires_at_ms (ms since the Unix epoch) is in the future and renewed
-- by its holder; a standby takes it over once it ran out. term grows with each takeover.
CREATE TABLE IF NOT EXISTS tramline_relay_leader (
    election      TEXT    NOT NULL PRIMARY KEY,
    holder        TEXT    NOT NULL,
    term          INTEGER NOT NULL,
    since_ms      INTEGER NOT NULL,
    expires_at_ms INTEGER NULL
);
