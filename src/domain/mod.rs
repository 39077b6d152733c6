//! Pure types and rules, no I/O: JSON pointers and conditions on the values they point at,
//! canonical JSON and fingerprints, idempotency keys, the retry policy, a destination's gate (its pace and circuit breaker), and the words a
//! delivery's life is told in (states, statuses, dead reasons, outcomes) with the rules over
//! them.

pub mod circuit;
pub mod condition;
pub mod dead_reason;
pub mod delivery_outcome;
pub mod delivery_state;
pub mod event_status;
pub mod fingerprint;
pub mod form;
pub mod gate;
pub mod key;
pub mod pace;
pub mod pointer;
pub mod replay_progress;
pub mod retry;
pub mod words;
