-- Values kept from destinations' answers (`response_capture`), by delivery and name; each value
-- is sealed like an error text (encrypted when the store has a key). Their search hashes go to
-- event_search with the event's `search_fields` hashes.
CREATE TABLE delivery_captures (
    delivery_id INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    captured_at INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, name)
) WITHOUT ROWID;

-- Whether the delivery's last attempt may have reached the destination without an answer to
-- show for it (a timeout, a connection lost after sending): the next send is a redelivery,
-- counted in oncehook_redeliveries_total. A claim of an expired lease is one too.
ALTER TABLE deliveries ADD COLUMN maybe_received INTEGER NOT NULL DEFAULT 0;

-- Repeats answered 200 at intake, counted on the original's key row while the key is live: how
-- often, when last, and how many had other content (conflicts). The event's detail finds its
-- key row by the event id.
ALTER TABLE dedupe_keys ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dedupe_keys ADD COLUMN last_duplicate_at INTEGER;
ALTER TABLE dedupe_keys ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dedupe_keys_by_event ON dedupe_keys (event_id);
