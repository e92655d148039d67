//! [`MessageChannel`] over Twilio's REST API (or the simulator, which speaks the same).

use futures::FutureExt;
use futures::future::BoxFuture;
use voice_agent_twilio::client::{CreateMessage, ListMessages, Message, TwilioClient, TwilioError};

use crate::channel::{ChannelError, MessageChannel, OutboundSend, ProviderAccept, SentProbe};

/// How many of the recipient's recent messages a reconciliation reads at most.
const RECONCILE_SCAN_LIMIT: usize = 1_000;

/// Twilio as a message provider.
#[derive(Clone)]
pub struct TwilioChannel {
    client: TwilioClient,
}

impl TwilioChannel {
    /// Wraps a configured client.
    pub fn new(client: TwilioClient) -> Self {
        Self { client }
    }
}

impl MessageChannel for TwilioChannel {
    fn request_timeout(&self) -> std::time::Duration {
        self.client.timeout()
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundSend,
    ) -> BoxFuture<'a, Result<ProviderAccept, ChannelError>> {
        async move {
            let params = CreateMessage {
                to: msg.channel.address(&msg.to),
                from: msg.from.as_deref().map(|f| msg.channel.address(f)),
                messaging_service_sid: msg.messaging_service_sid.clone(),
                // A content template replaces the free text.
                body: msg.content_sid.is_none().then(|| msg.body.clone()),
                content_sid: msg.content_sid.clone(),
                content_variables: msg.content_variables.clone(),
                status_callback: msg.status_callback.clone(),
                ..Default::default()
            };
            let created = self
                .client
                .create_message(&params)
                .await
                .map_err(classify)?;
            Ok(accept(&created))
        }
        .boxed()
    }

    fn find_sent<'a>(
        &'a self,
        probe: &'a SentProbe,
    ) -> BoxFuture<'a, Result<Option<ProviderAccept>, ChannelError>> {
        async move {
            // No date filter: Twilio filters on `date_sent`, which a still-queued message does
            // not have yet. Lists come newest first, so stop at the first older message.
            let filter = ListMessages {
                to: Some(probe.channel.address(&probe.to)),
                from: probe.from.as_deref().map(|f| probe.channel.address(f)),
                page_size: Some(100),
                ..Default::default()
            };
            let mut page = self.client.list_messages(&filter).await.map_err(classify)?;
            let mut scanned = 0;
            loop {
                for m in &page.messages {
                    scanned += 1;
                    let created = m
                        .date_created
                        .as_deref()
                        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
                    match created {
                        Some(t) if t < probe.not_before => return Ok(None),
                        _ => {}
                    }
                    let outbound = m
                        .direction
                        .as_deref()
                        .is_none_or(|d| d.starts_with("outbound"));
                    if outbound && m.body.as_deref() == Some(probe.body.as_str()) {
                        return Ok(Some(accept(m)));
                    }
                }
                if scanned >= RECONCILE_SCAN_LIMIT {
                    return Ok(None);
                }
                match self
                    .client
                    .next_messages_page(&page)
                    .await
                    .map_err(classify)?
                {
                    Some(next) if !next.messages.is_empty() => page = next,
                    _ => return Ok(None),
                }
            }
        }
        .boxed()
    }
}

fn accept(m: &Message) -> ProviderAccept {
    let status = serde_json::to_value(m.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "queued".to_owned());
    ProviderAccept {
        provider_id: m.sid.clone(),
        status,
        from: m
            .from
            .as_deref()
            .map(|f| f.strip_prefix("whatsapp:").unwrap_or(f).to_owned()),
    }
}

fn classify(e: TwilioError) -> ChannelError {
    // An unreadable 2xx answer most likely means Twilio accepted the message: retrying is safe
    // because the retry reconciles before sending, while failing would lose a sent message.
    let retryable = e.is_retryable() || matches!(e, TwilioError::Decode { .. });
    ChannelError {
        code: e.code(),
        message: e.to_string(),
        retryable,
    }
}
