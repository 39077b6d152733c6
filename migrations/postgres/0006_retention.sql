-- Retention deletes an event's search hashes by the event: without this index each deletion
-- would scan the whole table (its key starts with the hash).
CREATE INDEX event_search_by_event ON event_search (event_seq);
