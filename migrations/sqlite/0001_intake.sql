-- Events, their dedupe keys and their outbox rows.
-- Ids are UUIDv7 (time-ordered) and keys are 16-byte hashes, so every index stays compact and
-- new rows land at the right-hand edge of the event indexes.

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE,
    source          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    fingerprint     BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    content_type    TEXT,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL
);

-- One row per live key; `key` already includes the source.
CREATE TABLE dedupe_keys (
    key         BLOB    PRIMARY KEY,
    event_id    BLOB    NOT NULL,
    fingerprint BLOB    NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dedupe_keys_by_expiry ON dedupe_keys (expires_at);

-- The near-duplicate window: source-scoped fingerprints of recently accepted events.
CREATE TABLE recent_fingerprints (
    key        BLOB    PRIMARY KEY,
    event_id   BLOB    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX recent_fingerprints_by_expiry ON recent_fingerprints (expires_at);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    event_seq        INTEGER NOT NULL REFERENCES events (seq),
    destination      TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_expires_at INTEGER,
    ordering_key     TEXT,
    last_error       TEXT,
    dead_reason      TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at)
    WHERE state IN ('pending', 'retrying');
