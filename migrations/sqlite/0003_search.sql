-- Keyed hashes of `search_fields` values (never the values): "find the event for this email".
CREATE TABLE event_search (
    hash      BLOB    NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (hash, event_seq)
) WITHOUT ROWID;
