-- Events, their dedupe keys and their outbox rows.
-- Ids are UUIDv7 (time-ordered) and keys are 16-byte hashes, so every index stays compact and
-- new rows land at the right-hand edge of the event indexes.

CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              UUID   NOT NULL UNIQUE,
    source          TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    fingerprint     BYTEA  NOT NULL,
    received_at     BIGINT NOT NULL,
    status          TEXT   NOT NULL,
    content_type    TEXT,
    headers         TEXT   NOT NULL,
    body            BYTEA  NOT NULL
);

-- One row per live key; `key` already includes the source.
CREATE TABLE dedupe_keys (
    key         BYTEA  PRIMARY KEY CHECK (octet_length(key) = 16),
    event_id    UUID   NOT NULL,
    fingerprint BYTEA  NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dedupe_keys_by_expiry ON dedupe_keys (expires_at);

-- The near-duplicate window: source-scoped fingerprints of recently accepted events.
CREATE TABLE recent_fingerprints (
    key        BYTEA  PRIMARY KEY CHECK (octet_length(key) = 16),
    event_id   UUID   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX recent_fingerprints_by_expiry ON recent_fingerprints (expires_at);

CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq        BIGINT  NOT NULL REFERENCES events (seq),
    destination      TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    lease_expires_at BIGINT,
    ordering_key     TEXT,
    last_error       TEXT,
    dead_reason      TEXT,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at, id)
    WHERE state IN ('pending', 'retrying');

-- The atomic intake step for one event (see `Store::accept`). It is a function so that a batch
-- of events is one pipelined round trip: each call is one statement, yet inside it every step
-- sees what the steps before it did, including rows committed by other nodes while it waited
-- for a lock (READ COMMITTED takes a fresh snapshot per statement).
--
-- Returns outcome 'accepted', or 'key' / 'fingerprint' for a duplicate with the original's id.
CREATE FUNCTION oncehook_accept(
    p_id                uuid,
    p_source            text,
    p_received_at       bigint,
    p_idempotency_key   text,
    p_dedupe_key        bytea,
    p_fingerprint       bytea,
    p_dedupe_expires_at bigint,
    p_near_key          bytea,
    p_near_expires_at   bigint,
    p_content_type      text,
    p_headers           text,
    p_body              bytea,
    p_destinations      text[],
    p_ordering_keys     text[],
    OUT outcome         text,
    OUT original        uuid,
    OUT conflict        boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_seq         bigint;
    v_fingerprint bytea;
BEGIN
    -- Take the key unless it is live. A live key (ours from earlier in this batch, or another
    -- transaction's) makes the upsert do nothing; a concurrent holder makes it wait until that
    -- transaction ends, then decide on the committed row. Either way the row is now locked by
    -- us, so the read below sees exactly what the upsert decided on.
    INSERT INTO dedupe_keys AS k (key, event_id, fingerprint, expires_at)
    VALUES (p_dedupe_key, p_id, p_fingerprint, p_dedupe_expires_at)
    ON CONFLICT (key) DO UPDATE
        SET event_id = EXCLUDED.event_id, fingerprint = EXCLUDED.fingerprint,
            expires_at = EXCLUDED.expires_at
        WHERE k.expires_at <= p_received_at;
    IF NOT FOUND THEN
        SELECT k.event_id, k.fingerprint INTO original, v_fingerprint
        FROM dedupe_keys k WHERE k.key = p_dedupe_key;
        outcome := 'key';
        conflict := v_fingerprint IS DISTINCT FROM p_fingerprint;
        RETURN;
    END IF;

    IF p_near_key IS NOT NULL THEN
        INSERT INTO recent_fingerprints AS f (key, event_id, expires_at)
        VALUES (p_near_key, p_id, p_near_expires_at)
        ON CONFLICT (key) DO UPDATE
            SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
            WHERE f.expires_at <= p_received_at;
        IF NOT FOUND THEN
            -- A near duplicate stores nothing: give back the key taken above (a row it replaced
            -- had expired, so removing it changes no outcome).
            DELETE FROM dedupe_keys WHERE key = p_dedupe_key;
            SELECT f.event_id INTO original FROM recent_fingerprints f WHERE f.key = p_near_key;
            outcome := 'fingerprint';
            conflict := false;
            RETURN;
        END IF;
    END IF;

    INSERT INTO events (id, source, idempotency_key, fingerprint, received_at, status,
                        content_type, headers, body)
    VALUES (p_id, p_source, p_idempotency_key, p_fingerprint, p_received_at,
            CASE WHEN cardinality(p_destinations) = 0 THEN 'completed' ELSE 'received' END,
            p_content_type, p_headers, p_body)
    RETURNING seq INTO v_seq;
    INSERT INTO deliveries (event_seq, destination, state, next_attempt_at, ordering_key,
                            updated_at)
    SELECT v_seq, d.destination, 'pending', p_received_at, d.ordering_key, p_received_at
    FROM unnest(p_destinations, p_ordering_keys) WITH ORDINALITY AS d (destination, ordering_key, n)
    ORDER BY d.n;
    outcome := 'accepted';
    original := p_id;
    conflict := false;
END
$$;
