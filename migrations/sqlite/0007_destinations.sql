-- Each destination's gate, shared by every node: an operator's pause, the circuit breaker's
-- phase and the outbound pace's token bucket. A destination without a row is active, closed
-- and has a full bucket.
CREATE TABLE destination_states (
    name          TEXT    PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    paused_by     TEXT,
    paused_at     INTEGER,
    circuit       TEXT    NOT NULL DEFAULT 'closed',
    circuit_until INTEGER NOT NULL DEFAULT 0,
    tokens        REAL,
    tokens_at     INTEGER
) WITHOUT ROWID;

-- Who paused or resumed which destination, when and why.
CREATE TABLE destination_changes (
    id           INTEGER PRIMARY KEY,
    destination  TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    reason       TEXT,
    requested_by TEXT    NOT NULL,
    at           INTEGER NOT NULL
);

-- Attempt outcomes of the last minutes, per destination.
CREATE INDEX delivery_attempts_by_start ON delivery_attempts (started_at);
