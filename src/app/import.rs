//! Imported events made into this gateway's events by its own sources: the admin API's
//! `EventImporter`, over intake's `prepare` (the admin API does not import intake).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::admin::{EventImporter, ImportedEvent};
use crate::intake::{Sealing, SourceRuntime, prepare};
use crate::privacy::{MASK, PayloadCipher, SearchKey};
use crate::store::NewEvent;

pub struct SourceImporter {
    pub sources: Vec<SourceRuntime>,
    pub cipher: Option<Arc<PayloadCipher>>,
    pub search_key: SearchKey,
}

impl EventImporter for SourceImporter {
    fn prepare(&self, event: ImportedEvent) -> Result<NewEvent, String> {
        let Some(source) = self.sources.iter().find(|s| *s.name == *event.source) else {
            return Err(format!("no source {:?} on this gateway", event.source));
        };
        // The stored headers as the request had them; masked ones were credentials, never keys.
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            if value == MASK {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers.remove(header::CONTENT_TYPE);
        if let Some(content_type) = &event.content_type {
            let value = HeaderValue::from_str(content_type)
                .map_err(|_| "content_type: not a valid header value".to_owned())?;
            headers.insert(header::CONTENT_TYPE, value);
        }
        let sealing = Sealing {
            cipher: self.cipher.as_deref(),
            search_key: &self.search_key,
        };
        let prepared = prepare(
            source,
            &sealing,
            &headers,
            event.body,
            event.event_id,
            event.received_at,
        )
        .map_err(|rejection| rejection.error.message().to_owned())?;
        // The key is the one the event was stored under, or the import would not dedupe.
        if prepared.stored_key != event.idempotency_key {
            return Err(format!(
                "source {:?} derives the key {:?} from this event, not {:?}",
                event.source, prepared.stored_key, event.idempotency_key
            ));
        }
        Ok(prepared.event)
    }
}
