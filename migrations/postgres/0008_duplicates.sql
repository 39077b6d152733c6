-- Values kept from destinations' answers (`response_capture`), by delivery and name; each value
-- is sealed like an error text (encrypted when the store has a key). Their search hashes go to
-- event_search with the event's `search_fields` hashes.
CREATE TABLE delivery_captures (
    delivery_id BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    captured_at BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, name)
);

-- Whether the delivery's last attempt may have reached the destination without an answer to
-- show for it (a timeout, a connection lost after sending): the next send is a redelivery,
-- counted in oncehook_redeliveries_total. A claim of an expired lease is one too.
ALTER TABLE deliveries ADD COLUMN maybe_received BOOLEAN NOT NULL DEFAULT false;

-- Repeats answered 200 at intake, counted on the original's key row while the key is live: how
-- often, when last, and how many had other content (conflicts). The event's detail finds its
-- key row by the event id.
ALTER TABLE dedupe_keys ADD COLUMN duplicates BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dedupe_keys ADD COLUMN last_duplicate_at BIGINT;
ALTER TABLE dedupe_keys ADD COLUMN conflicts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX dedupe_keys_by_event ON dedupe_keys (event_id);

-- The intake step counts each repeat on the original's key row: a key repeat where the upsert
-- already holds the row, a replay-guard or near-duplicate repeat on the original event's key
-- row. A replaced (expired) key starts again from zero. Same body as in 0005_edge_trust.sql
-- otherwise.
CREATE OR REPLACE FUNCTION oncehook_accept(
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
    p_search            bytea[],
    p_replay_key        bytea,
    p_replay_expires_at bigint,
    p_delivery_key      uuid,
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
            expires_at = EXCLUDED.expires_at, duplicates = 0, last_duplicate_at = NULL,
            conflicts = 0
        WHERE k.expires_at <= p_received_at;
    IF NOT FOUND THEN
        -- The row is ours (locked by the upsert): the repeat is counted where it is read.
        UPDATE dedupe_keys k
        SET duplicates = k.duplicates + 1, last_duplicate_at = p_received_at,
            conflicts = k.conflicts
                + CASE WHEN k.fingerprint IS DISTINCT FROM p_fingerprint THEN 1 ELSE 0 END
        WHERE k.key = p_dedupe_key
        RETURNING k.event_id, k.fingerprint INTO original, v_fingerprint;
        outcome := 'key';
        conflict := v_fingerprint IS DISTINCT FROM p_fingerprint;
        RETURN;
    END IF;

    -- The content layers, in the contract's order: the exact body under the replay guard, then
    -- the fingerprint within the near-duplicate window. Taken like the key; a repeat stores
    -- nothing and gives back what this call took (a row it replaced had expired, so removing
    -- it changes no outcome).
    IF p_replay_key IS NOT NULL THEN
        INSERT INTO recent_fingerprints AS f (key, event_id, expires_at)
        VALUES (p_replay_key, p_id, p_replay_expires_at)
        ON CONFLICT (key) DO UPDATE
            SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
            WHERE f.expires_at <= p_received_at;
        IF NOT FOUND THEN
            DELETE FROM dedupe_keys WHERE key = p_dedupe_key;
            SELECT f.event_id INTO original FROM recent_fingerprints f WHERE f.key = p_replay_key;
            UPDATE dedupe_keys
            SET duplicates = duplicates + 1, last_duplicate_at = p_received_at
            WHERE event_id = original AND expires_at > p_received_at;
            outcome := 'replay';
            conflict := false;
            RETURN;
        END IF;
    END IF;

    IF p_near_key IS NOT NULL THEN
        INSERT INTO recent_fingerprints AS f (key, event_id, expires_at)
        VALUES (p_near_key, p_id, p_near_expires_at)
        ON CONFLICT (key) DO UPDATE
            SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
            WHERE f.expires_at <= p_received_at;
        IF NOT FOUND THEN
            DELETE FROM dedupe_keys WHERE key = p_dedupe_key;
            IF p_replay_key IS NOT NULL THEN
                DELETE FROM recent_fingerprints WHERE key = p_replay_key;
            END IF;
            SELECT f.event_id INTO original FROM recent_fingerprints f WHERE f.key = p_near_key;
            UPDATE dedupe_keys
            SET duplicates = duplicates + 1, last_duplicate_at = p_received_at
            WHERE event_id = original AND expires_at > p_received_at;
            outcome := 'fingerprint';
            conflict := false;
            RETURN;
        END IF;
    END IF;

    INSERT INTO events (id, source, idempotency_key, fingerprint, received_at, status,
                        content_type, headers, body, delivery_key)
    VALUES (p_id, p_source, p_idempotency_key, p_fingerprint, p_received_at,
            CASE WHEN cardinality(p_destinations) = 0 THEN 'completed' ELSE 'received' END,
            p_content_type, p_headers, p_body, p_delivery_key)
    RETURNING seq INTO v_seq;
    INSERT INTO event_search (hash, event_seq)
    SELECT DISTINCT h, v_seq FROM unnest(p_search) AS h;
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
