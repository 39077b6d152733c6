//! How the domain's words are stored: as TEXT, written with `as_str` and parsed when read, so
//! a row holding a word the program does not know is a conversion error, not a panic.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::circuit::CircuitPhase;
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;

macro_rules! stored_as_text {
    ($($word:ty),+ $(,)?) => {
        $(
            impl FromSql for $word {
                fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                    value
                        .as_str()?
                        .parse()
                        .map_err(|e| FromSqlError::Other(Box::new(e)))
                }
            }

            impl ToSql for $word {
                fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                    Ok(ToSqlOutput::from(self.as_str()))
                }
            }
        )+
    };
}

stored_as_text!(
    DeliveryState,
    EventStatus,
    DeadReason,
    DeliveryOutcome,
    CircuitPhase
);
