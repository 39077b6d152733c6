//! How the domain's words are stored: as `text`, written with `as_str` and parsed when read, so
//! a row holding a word the program does not know is an error, not a panic.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::domain::circuit::CircuitPhase;
use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;

macro_rules! stored_as_text {
    ($($word:ty),+ $(,)?) => {
        $(
            impl<'a> FromSql<'a> for $word {
                fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                    Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
                }

                fn accepts(ty: &Type) -> bool {
                    <&str as FromSql>::accepts(ty)
                }
            }

            impl ToSql for $word {
                fn to_sql(
                    &self,
                    ty: &Type,
                    out: &mut BytesMut,
                ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
                    self.as_str().to_sql(ty, out)
                }

                fn accepts(ty: &Type) -> bool {
                    <&str as ToSql>::accepts(ty)
                }

                to_sql_checked!();
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
