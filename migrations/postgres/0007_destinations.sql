-- Each destination's gate, shared by every node: an operator's pause, the circuit breaker's
-- phase and the outbound pace's token bucket. A destination without a row is active, closed
-- and has a full bucket. Claims lock the row (FOR UPDATE), so nodes take tokens and the
-- probe one at a time.
CREATE TABLE destination_states (
    name          TEXT             PRIMARY KEY,
    paused        BOOLEAN          NOT NULL DEFAULT FALSE,
    paused_reason TEXT,
    paused_by     TEXT,
    paused_at     BIGINT,
    circuit       TEXT             NOT NULL DEFAULT 'closed',
    circuit_until BIGINT           NOT NULL DEFAULT 0,
    tokens        DOUBLE PRECISION,
    tokens_at     BIGINT
);

-- Who paused or resumed which destination, when and why.
CREATE TABLE destination_changes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination  TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    reason       TEXT,
    requested_by TEXT   NOT NULL,
    at           BIGINT NOT NULL
);

-- Attempt outcomes of the last minutes, per destination.
CREATE INDEX delivery_attempts_by_start ON delivery_attempts (started_at);
