-- Operators: listing events, dead letters, and replays with their history (as on SQLite).

-- Events newest first (and since/until windows), per source or not.
CREATE INDEX events_by_time ON events (received_at, id);
CREATE INDEX events_by_source_time ON events (source, received_at, id);
-- "Find the event with this idempotency key."
CREATE INDEX events_by_key ON events (idempotency_key);

-- The dead-letter queue, newest death first.
CREATE INDEX deliveries_dead ON deliveries (updated_at, id) WHERE state = 'dead';

-- One row per replay that re-queued deliveries (dry runs are not recorded).
CREATE TABLE replays (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                UUID   NOT NULL UNIQUE,
    created_at        BIGINT NOT NULL,
    requested_by      TEXT   NOT NULL,
    reason            TEXT   NOT NULL,
    -- The filter as the operator gave it, normalised, as JSON.
    filter            TEXT   NOT NULL,
    matched           BIGINT NOT NULL,
    skipped_in_flight BIGINT NOT NULL
);
CREATE INDEX replays_by_time ON replays (created_at, id);

-- Which deliveries each replay re-queued: an event's replay history, a replay's progress.
CREATE TABLE replay_deliveries (
    replay_id   UUID   NOT NULL,
    delivery_id BIGINT NOT NULL,
    PRIMARY KEY (replay_id, delivery_id)
);
CREATE INDEX replay_deliveries_by_delivery ON replay_deliveries (delivery_id);
