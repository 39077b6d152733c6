//! How a delivery reaches its destination: one module per kind of destination (`http`, `nats`,
//! `amqp`), each turning one `Message` into a `Sent` (how the attempt ended on the wire). What
//! happens next — retries, dead letters, ordering, replay — is the attempt's, the same for all.

mod amqp;
mod http;
mod nats;
mod template;

use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

pub use template::{Template, TemplateError};

use super::Destination;
use crate::domain::retry::AttemptResult;

/// Where an event-bus destination publishes, compiled from its config.
#[derive(Debug, Clone)]
pub enum Bus {
    /// NATS JetStream: publish to `subject`; the stream's duplicate window drops repeats.
    Nats { subject: Template },
    /// RabbitMQ: publish to `exchange` with `routing_key`, persistent, under publisher confirms.
    Amqp {
        exchange: String,
        routing_key: Template,
    },
}

/// One delivery as it goes out: the body to send (after `transform`) and what identifies it.
pub(crate) struct Message<'a> {
    pub body: Bytes,
    /// `Idempotency-Key`, `webhook-id`, `Nats-Msg-Id`, the AMQP `message_id`: one value.
    pub delivery_key: Uuid,
    pub event_id: Uuid,
    pub source: &'a str,
    pub attempt: u32,
    pub replay_id: Option<Uuid>,
    pub content_type: Option<&'a str>,
    /// The stored body's `/type`, when it has a string there (for `{type}`).
    pub event_type: Option<&'a str>,
}

/// How one attempt ended on the wire.
pub(crate) struct Sent {
    pub result: AttemptResult,
    /// The destination's `Retry-After`, if it gave one.
    pub retry_after: Option<Duration>,
    /// What went wrong, for the attempt log (scrubbed and cut by the attempt).
    pub error: Option<String>,
    /// A 2xx answer's body (at most 64 KiB), for `response_capture`; empty otherwise.
    pub answer: Bytes,
}

impl Sent {
    fn failed(result: AttemptResult, error: impl Into<String>) -> Sent {
        Sent {
            result,
            retry_after: None,
            error: Some(error.into()),
            answer: Bytes::new(),
        }
    }

    /// Taken by the stream or the broker.
    fn published() -> Sent {
        Sent {
            result: AttemptResult::Published,
            retry_after: None,
            error: None,
            answer: Bytes::new(),
        }
    }
}

/// A lane's way to its destination; connections to brokers are made on first use and kept.
pub(crate) enum Transport {
    Http(reqwest::Client),
    Nats(nats::NatsTransport),
    Amqp(amqp::AmqpTransport),
}

impl Transport {
    pub fn new(destination: &Destination, client: &reqwest::Client) -> Transport {
        match &destination.bus {
            None => Transport::Http(client.clone()),
            Some(Bus::Nats { subject }) => Transport::Nats(nats::NatsTransport::new(
                destination.url.as_str(),
                subject.clone(),
            )),
            Some(Bus::Amqp {
                exchange,
                routing_key,
            }) => Transport::Amqp(amqp::AmqpTransport::new(
                destination.url.as_str(),
                exchange.clone(),
                routing_key.clone(),
            )),
        }
    }

    /// Whether the destination's subject or routing key uses `{type}`.
    pub fn needs_type(&self) -> bool {
        match self {
            Transport::Http(_) => false,
            Transport::Nats(nats) => nats.subject.needs_type(),
            Transport::Amqp(amqp) => amqp.routing_key.needs_type(),
        }
    }

    pub async fn send(&self, destination: &Destination, message: Message<'_>) -> Sent {
        match self {
            Transport::Http(client) => http::send(client, destination, message).await,
            Transport::Nats(nats) => nats.send(destination, message).await,
            Transport::Amqp(amqp) => amqp.send(destination, message).await,
        }
    }
}

/// The identifying headers every bus message carries, besides the destination's own `headers`.
fn bus_headers(destination: &Destination, message: &Message<'_>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = destination
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    headers.push(("Oncehook-Source".into(), message.source.to_owned()));
    headers.push(("Oncehook-Event-Id".into(), message.event_id.to_string()));
    headers.push(("Oncehook-Attempt".into(), message.attempt.to_string()));
    if let Some(replay) = message.replay_id {
        headers.push(("Oncehook-Replay".into(), replay.to_string()));
    }
    if let Some(content_type) = message.content_type {
        headers.push(("Content-Type".into(), content_type.to_owned()));
    }
    headers
}

/// A broker URL without its credentials, for error texts.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        Err(_) => "the broker".into(),
    }
}
