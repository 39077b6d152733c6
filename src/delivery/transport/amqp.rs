//! `amqp://` destinations: a RabbitMQ publish to the destination's `exchange` with its
//! `routing_key`, persistent, `message_id` = the delivery key, published `mandatory` on a channel
//! in confirm mode. Delivered on the broker's confirm; a message the broker returns (no queue is
//! bound for it) is `unroutable`; a broker that cannot be reached is retried like a connection
//! error. The connection is made on first use and kept; after any error on it, it is dropped and
//! the next attempt connects again, so a restarted broker is picked up by the next retry.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::{Message, Sent, Template, bus_headers, redact};
use crate::delivery::Destination;
use crate::domain::retry::AttemptResult;

/// AMQP's delivery mode for a message the broker writes to disk.
const PERSISTENT: u8 = 2;

pub(crate) struct AmqpTransport {
    url: String,
    exchange: String,
    pub(super) routing_key: Template,
    connection: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl AmqpTransport {
    pub fn new(url: &str, exchange: String, routing_key: Template) -> AmqpTransport {
        AmqpTransport {
            url: url.to_owned(),
            exchange,
            routing_key,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The kept channel while its connection is up, or a new connection and confirm channel.
    async fn channel(&self, timeout: Duration) -> Result<Channel, String> {
        let mut connection = self.connection.lock().await;
        if let Some((open, channel)) = connection.as_ref()
            && open.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *connection = None;
        let open = async {
            let open = Connection::connect(&self.url, ConnectionProperties::default()).await?;
            let channel = open.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>((open, channel))
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(Ok((open, channel))) => {
                *connection = Some((open, channel.clone()));
                Ok(channel)
            }
            Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", redact(&self.url))),
            Err(_) => Err(format!(
                "cannot connect to {}: timed out",
                redact(&self.url)
            )),
        }
    }

    /// Forgets the connection after an error on it; the next attempt opens a new one.
    async fn forget(&self) {
        if let Some((open, _)) = self.connection.lock().await.take() {
            let _ = open.close(200, "reconnecting".into()).await;
        }
    }

    pub async fn send(&self, destination: &Destination, message: Message<'_>) -> Sent {
        let Some(routing_key) =
            self.routing_key
                .render(message.source, message.event_type, str::to_owned)
        else {
            return Sent::failed(
                AttemptResult::Unroutable,
                format!(
                    "the routing key {} needs {{type}} and the body has no string at /type",
                    self.routing_key
                ),
            );
        };
        let channel = match self.channel(destination.timeout).await {
            Ok(channel) => channel,
            Err(e) => return Sent::failed(AttemptResult::Connect, e),
        };
        let mut headers = FieldTable::default();
        for (name, value) in bus_headers(destination, &message) {
            if name.eq_ignore_ascii_case("content-type") {
                continue;
            }
            headers.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(message.delivery_key.to_string().into())
            .with_headers(headers);
        if let Some(content_type) = message.content_type {
            properties = properties.with_content_type(content_type.into());
        }
        let publish = async {
            channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    properties,
                )
                .await?
                .await
        };
        match tokio::time::timeout(destination.timeout, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => Sent::published(),
            Ok(Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)))) => {
                Sent::failed(
                    AttemptResult::Unroutable,
                    format!(
                        "the broker returned the message: {} {} (exchange {:?}, routing key {:?})",
                        returned.reply_code, returned.reply_text, self.exchange, routing_key
                    ),
                )
            }
            Ok(Ok(Confirmation::Nack(None))) => Sent::failed(
                AttemptResult::Network,
                "the broker refused the message (nack)",
            ),
            Ok(Ok(Confirmation::NotRequested)) => {
                self.forget().await;
                Sent::failed(AttemptResult::Network, "the channel is not in confirm mode")
            }
            Ok(Err(e)) if is_not_found(&e) => {
                self.forget().await;
                Sent::failed(
                    AttemptResult::Unroutable,
                    format!("the exchange {:?} does not exist: {e}", self.exchange),
                )
            }
            Ok(Err(e)) => {
                self.forget().await;
                Sent::failed(AttemptResult::Connect, format!("publish failed: {e}"))
            }
            Err(_) => {
                self.forget().await;
                Sent::failed(AttemptResult::Timeout, "no confirm from the broker in time")
            }
        }
    }
}

/// The broker closed the channel because the exchange published to does not exist (404).
fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}
