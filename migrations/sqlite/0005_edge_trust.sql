-- The key destinations dedupe by (`Idempotency-Key`, `webhook-id`): a function of the source and
-- the request's idempotency key, so the same provider event keeps it after its dedupe TTL.
-- Events stored before this migration have none and are delivered under their event id.
ALTER TABLE events ADD COLUMN delivery_key BLOB;

-- `recent_fingerprints` now also holds the replay guard's keys (hashes of exact body bytes,
-- in a hash domain of their own), purged with the near-duplicate fingerprints.
