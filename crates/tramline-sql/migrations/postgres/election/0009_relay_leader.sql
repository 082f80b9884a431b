-- Who leads each election of relays (one per outbox). On PostgreSQL the lead itself is an
-- advisory lock held by the leader's own session; this row records its holder and term, which
-- grows with each takeover (for logs, metrics and operators). expires_at_ms is unused here.
CREATE TABLE IF NOT EXISTS tramline_relay_leader (
    election      VARCHAR(255) NOT NULL PRIMARY KEY,
    holder        VARCHAR(255) NOT NULL,
    term          BIGINT       NOT NULL,
    since_ms      BIGINT       NOT NULL,   -- ms since the Unix epoch: when the term began
    expires_at_ms BIGINT       NULL
);
