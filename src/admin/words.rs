//! The OpenAPI schemas of the domain's words (delivery states, event statuses, dead reasons,
//! attempt outcomes, destination states): each a string enum listing the enum's own words, so the document cannot
//! drift from what the API writes. They live here, not in `domain/`, which knows nothing of
//! HTTP documents.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::dead_reason::DeadReason;
use crate::domain::delivery_outcome::DeliveryOutcome;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::domain::gate::DestinationState;

fn word_schema<'a>(description: &str, words: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(words))
        .into()
}

macro_rules! word_schemas {
    ($($word:ty => $description:literal),+ $(,)?) => {
        $(
            impl PartialSchema for $word {
                fn schema() -> RefOr<Schema> {
                    word_schema($description, <$word>::ALL.iter().map(|w| w.as_str()))
                }
            }

            impl ToSchema for $word {}
        )+
    };
}

word_schemas!(
    DeliveryState => "A delivery's state.",
    EventStatus => "An event's status over its deliveries.",
    DeadReason => "Why a delivery went dead.",
    DeliveryOutcome => "How a delivery attempt ended.",
    DestinationState => "A destination's state.",
);

/// What a replay filter's `status` may name: a delivery state or an event status (the words
/// do not overlap). Only a schema; the handler parses the text into one or the other.
pub enum ReplayStatus {}

impl PartialSchema for ReplayStatus {
    fn schema() -> RefOr<Schema> {
        word_schema(
            "The states and statuses a replay filter may name.",
            DeliveryState::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(EventStatus::ALL.iter().map(|s| s.as_str())),
        )
    }
}

impl ToSchema for ReplayStatus {}
