-- Delivery workers: leases, attempts, and the indexes claims need.

ALTER TABLE deliveries ADD COLUMN lease_token BIGINT;
ALTER TABLE deliveries ADD COLUMN delivered_at BIGINT;
ALTER TABLE deliveries ADD COLUMN replay_id UUID;

-- Claims of attempts whose lease ran out (a worker died mid-attempt).
CREATE INDEX deliveries_leased ON deliveries (destination, lease_expires_at)
    WHERE state = 'in_flight';
-- "Is an earlier delivery with my ordering key still open?"
CREATE INDEX deliveries_open_by_ordering_key ON deliveries (destination, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'retrying', 'in_flight');

CREATE TABLE delivery_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT  NOT NULL REFERENCES deliveries (id),
    number      INTEGER NOT NULL,
    started_at  BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    status_code INTEGER,
    error       TEXT,
    outcome     TEXT    NOT NULL,
    replay_id   UUID
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
