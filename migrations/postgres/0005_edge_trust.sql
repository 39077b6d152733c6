-- The key destinations dedupe by (`Idempotency-Key`, `webhook-id`): a function of the source and
-- the request's idempotency key, so the same provider event keeps it after its dedupe TTL.
-- Events stored before this migration have none and are delivered under their event id.
ALTER TABLE events ADD COLUMN delivery_key UUID;

-- `recent_fingerprints` now also holds the replay guard's keys (hashes of exact body bytes, in a
-- hash domain of their own), purged with the near-duplicate fingerprints.
--
-- The intake step takes the replay guard's key and the delivery key. The previous signature is
-- kept beside it, so a node still running the previous release keeps accepting during a
-- rolling upgrade (without the guard). Same body as in 0003_search.sql otherwise.
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
            expires_at = EXCLUDED.expires_at
        WHERE k.expires_at <= p_received_at;
    IF NOT FOUND THEN
        SELECT k.event_id, k.fingerprint INTO original, v_fingerprint
        FROM dedupe_keys k WHERE k.key = p_dedupe_key;
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
