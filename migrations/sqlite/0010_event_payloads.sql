-- What a provider sent (stored headers and body) in a table of its own, keyed by the event's
-- seq. An event's row is rewritten whenever its status changes (a claim, an outcome); with the
-- payload inline each rewrite dirtied a page of its own (one ~2 KiB event per 4 KiB page), so
-- every delivery wrote two more 4 KiB WAL frames. Small event rows share pages, and the
-- status updates of one commit land on a few of them. Payloads are appended in seq order and
-- never updated.
CREATE TABLE event_payloads (
    event_seq INTEGER PRIMARY KEY,
    headers   TEXT NOT NULL,
    body      BLOB NOT NULL
);
INSERT INTO event_payloads (event_seq, headers, body) SELECT seq, headers, body FROM events;
ALTER TABLE events DROP COLUMN headers;
ALTER TABLE events DROP COLUMN body;
