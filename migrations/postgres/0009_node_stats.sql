-- Each node's recent stats slots (10 seconds each, as JSON), so that any node can answer for
-- all of them. A node rewrites its latest slots every few seconds; slots older than a day go.
CREATE TABLE node_stats (
    node TEXT   NOT NULL,
    slot BIGINT NOT NULL,
    data BYTEA  NOT NULL,
    PRIMARY KEY (node, slot)
);
CREATE INDEX node_stats_by_slot ON node_stats (slot);
