-- Operators: listing events, dead letters, and replays with their history.

-- Events newest first (and since/until windows), per source or not.
CREATE INDEX events_by_time ON events (received_at, id);
CREATE INDEX events_by_source_time ON events (source, received_at, id);
-- "Find the event with this idempotency key."
CREATE INDEX events_by_key ON events (idempotency_key);

-- The dead-letter queue, newest death first.
CREATE INDEX deliveries_dead ON deliveries (updated_at, id) WHERE state = 'dead';

-- One row per replay that re-queued deliveries (dry runs are not recorded).
CREATE TABLE replays (
    seq               INTEGER PRIMARY KEY,
    id                BLOB    NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    requested_by      TEXT    NOT NULL,
    reason            TEXT    NOT NULL,
    -- The filter as the operator gave it, normalised, as JSON.
    filter            TEXT    NOT NULL,
    matched           INTEGER NOT NULL,
    skipped_in_flight INTEGER NOT NULL
);
CREATE INDEX replays_by_time ON replays (created_at, id);

-- Which deliveries each replay re-queued: an event's replay history, a replay's progress.
CREATE TABLE replay_deliveries (
    replay_id   BLOB    NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (replay_id, delivery_id)
) WITHOUT ROWID;
CREATE INDEX replay_deliveries_by_delivery ON replay_deliveries (delivery_id);
