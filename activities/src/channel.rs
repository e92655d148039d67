//! The provider boundary: one trait for sending a message (calls join it in the voice work),
//! and a registry so adding a provider is a new module and one registration line.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use voice_agent_domain::Channel;

/// One outbound message as handed to a provider.
#[derive(Debug, Clone)]
pub struct OutboundSend {
    /// Our id, for logs and callback URLs.
    pub message_id: String,
    /// SMS or WhatsApp.
    pub channel: Channel,
    /// Recipient (E.164).
    pub to: String,
    /// Sender (E.164), unless a Messaging Service picks one.
    pub from: Option<String>,
    /// Messaging Service SID.
    pub messaging_service_sid: Option<String>,
    /// Text.
    pub body: String,
    /// Where the provider should post delivery statuses.
    pub status_callback: Option<String>,
    /// WhatsApp content template (`HX…`), sent instead of free text outside the session window.
    pub content_sid: Option<String>,
    /// The template's variables, as the JSON object string Twilio expects.
    pub content_variables: Option<String>,
}

/// What a provider answered when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccept {
    /// The provider's id (Twilio `SM…`).
    pub provider_id: String,
    /// The provider's status name at acceptance (`queued`, `accepted`, …).
    pub status: String,
    /// The sender the provider used, when it chose one.
    pub from: Option<String>,
}

/// Identifies a message a crashed attempt may have sent, for reconciliation.
#[derive(Debug, Clone)]
pub struct SentProbe {
    /// Recipient (E.164).
    pub to: String,
    /// Sender, if fixed.
    pub from: Option<String>,
    /// Text.
    pub body: String,
    /// Channel.
    pub channel: Channel,
    /// The first attempt started at this time; anything the provider accepted before it is not
    /// ours.
    pub not_before: chrono::DateTime<chrono::Utc>,
}

/// A provider failure, classified for retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ChannelError {
    /// Provider error code (Twilio's numeric code), when given.
    pub code: Option<u32>,
    /// Readable reason, without secrets or whole phone numbers.
    pub message: String,
    /// Whether trying again later can succeed (rate limits, 5xx, timeouts, connection errors).
    pub retryable: bool,
}

/// Sends messages through one provider.
pub trait MessageChannel: Send + Sync + 'static {
    /// Hands one message to the provider.
    fn send<'a>(
        &'a self,
        msg: &'a OutboundSend,
    ) -> BoxFuture<'a, Result<ProviderAccept, ChannelError>>;

    /// Looks for a message the provider already accepted that matches `probe`: how a retried
    /// send learns that a crashed attempt got through.
    fn find_sent<'a>(
        &'a self,
        probe: &'a SentProbe,
    ) -> BoxFuture<'a, Result<Option<ProviderAccept>, ChannelError>>;

    /// The longest a request to the provider may take (its client's timeout): a send started
    /// now is over, answered or abandoned, by then.
    fn request_timeout(&self) -> std::time::Duration;
}

/// The configured providers by name (`"twilio"`), with one default.
#[derive(Clone)]
pub struct ChannelRegistry {
    providers: HashMap<String, Arc<dyn MessageChannel>>,
    default: String,
}

impl ChannelRegistry {
    /// A registry whose default provider is `name`.
    pub fn new(name: &str, provider: Arc<dyn MessageChannel>) -> Self {
        let mut providers = HashMap::new();
        providers.insert(name.to_owned(), provider);
        Self {
            providers,
            default: name.to_owned(),
        }
    }

    /// Adds another provider.
    pub fn register(mut self, name: &str, provider: Arc<dyn MessageChannel>) -> Self {
        self.providers.insert(name.to_owned(), provider);
        self
    }

    /// The provider called `name`, or the default one for `None`.
    pub fn get(&self, name: Option<&str>) -> Option<&Arc<dyn MessageChannel>> {
        self.providers.get(name.unwrap_or(&self.default))
    }
}
