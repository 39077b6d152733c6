//! `nats://` destinations: a JetStream publish to the destination's `subject`, with
//! `Nats-Msg-Id` = the delivery key, so the stream's duplicate window drops a repeat of a
//! message it already holds (its acknowledgement then says `duplicate`, and that is delivered
//! too). Delivered when the stream acknowledges; no stream for the subject is `unroutable`; a
//! server that cannot be reached is retried like a connection error. The client is made on first
//! use and kept; it reconnects by itself.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishErrorKind};

use super::{Message, Sent, Template, bus_headers, redact};
use crate::delivery::Destination;
use crate::domain::retry::AttemptResult;

pub(crate) struct NatsTransport {
    url: String,
    pub(super) subject: Template,
    connection: tokio::sync::Mutex<Option<(async_nats::Client, jetstream::Context)>>,
}

impl NatsTransport {
    pub fn new(url: &str, subject: Template) -> NatsTransport {
        NatsTransport {
            url: url.to_owned(),
            subject,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The kept client, or a new one (within `timeout`).
    async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<(async_nats::Client, jetstream::Context), String> {
        let mut connection = self.connection.lock().await;
        if let Some(existing) = connection.as_ref() {
            return Ok(existing.clone());
        }
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .name(concat!("oncehook/", env!("CARGO_PKG_VERSION")))
            .connect(self.url.as_str());
        let client = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(format!("cannot connect to {}: {e}", redact(&self.url))),
            Err(_) => {
                return Err(format!(
                    "cannot connect to {}: timed out",
                    redact(&self.url)
                ));
            }
        };
        let context = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        *connection = Some((client.clone(), context.clone()));
        Ok((client, context))
    }

    pub async fn send(&self, destination: &Destination, message: Message<'_>) -> Sent {
        let Some(subject) = self
            .subject
            .render(message.source, message.event_type, subject_token)
        else {
            return Sent::failed(
                AttemptResult::Unroutable,
                format!(
                    "the subject {} needs {{type}} and the body has no string at /type",
                    self.subject
                ),
            );
        };
        let (client, context) = match self.connect(destination.timeout).await {
            Ok(connection) => connection,
            Err(e) => return Sent::failed(AttemptResult::Connect, e),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.delivery_key.to_string().as_str());
        for (name, value) in bus_headers(destination, &message) {
            headers.insert(name.as_str(), value.as_str());
        }
        let publish = async {
            context
                .publish_with_headers(subject.clone(), headers, message.body)
                .await?
                .await
        };
        let outcome = tokio::time::timeout(destination.timeout, publish).await;
        let down = client.connection_state() != State::Connected;
        match outcome {
            Ok(Ok(_ack)) => Sent::published(),
            Ok(Err(e)) => match e.kind() {
                PublishErrorKind::StreamNotFound => Sent::failed(
                    AttemptResult::Unroutable,
                    format!("no stream takes the subject {subject:?}"),
                ),
                _ if down => Sent::failed(
                    AttemptResult::Connect,
                    format!("NATS server {} unreachable: {e}", redact(&self.url)),
                ),
                PublishErrorKind::TimedOut => Sent::failed(AttemptResult::Timeout, e.to_string()),
                PublishErrorKind::BrokenPipe => Sent::failed(AttemptResult::Network, e.to_string()),
                _ => Sent::failed(AttemptResult::Network, format!("the stream refused: {e}")),
            },
            Err(_) if down => Sent::failed(
                AttemptResult::Connect,
                format!("NATS server {} unreachable", redact(&self.url)),
            ),
            Err(_) => Sent::failed(
                AttemptResult::Timeout,
                "no acknowledgement from the stream in time",
            ),
        }
    }
}

/// A substituted value as subject tokens: what a subject cannot hold (spaces, wildcards) becomes
/// `_`; dots stay, so `lead.created` adds two tokens.
fn subject_token(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '*' || c == '>' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substituted_values_make_valid_subject_tokens() {
        assert_eq!(subject_token("lead.created"), "lead.created");
        assert_eq!(subject_token("a b*>"), "a_b__");
        assert_eq!(subject_token(""), "_");
    }
}
