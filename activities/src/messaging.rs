//! The durable, exactly-once send of one message.

// `#[activities]` generates an undocumented public constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::{info, warn};
use voice_agent_domain::{Channel, MessageStatus, mask_phone};
use voice_agent_store::{MongoStore, NewOutboundMessage};

use crate::channel::{ChannelError, ChannelRegistry, OutboundSend, SentProbe};
use crate::deadline::{AttemptDeadline, too_late};
use crate::sender::{SenderLimits, take_slot};

/// Failure type name of a permanent provider rejection; workflows match on it.
pub const PERMANENT_SEND_FAILURE: &str = "PermanentSendFailure";

/// Twilio's code for "attempt to send to unsubscribed recipient", used for our own opt-outs too.
pub const OPTED_OUT_CODE: u32 = 21610;

/// How far back before the first attempt a reconciliation looks, for clock skew between us and
/// the provider.
const RECONCILE_SKEW: Duration = Duration::from_secs(120);

/// Input of [`MessagingActivities::send_message`]: everything needed to record and send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessageInput {
    /// Our id; also the idempotency key of the send.
    pub message_id: String,
    /// SMS or WhatsApp.
    pub channel: Channel,
    /// Recipient (E.164).
    pub to: String,
    /// Sender (E.164); `None` with a Messaging Service.
    pub from: Option<String>,
    /// Messaging Service SID.
    pub messaging_service_sid: Option<String>,
    /// Text.
    pub body: String,
    /// Conversation it belongs to, if any.
    pub conversation_id: Option<String>,
}

/// Result of a send: the provider's id and the status it reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageOutput {
    /// Our id.
    pub message_id: String,
    /// Twilio's `SM…`.
    pub provider_id: String,
    /// Status at acceptance (or later, if a callback got there first).
    pub status: String,
    /// True when the message was found already accepted (a retry after a crash) instead of
    /// being sent by this attempt.
    pub reconciled: bool,
}

/// Activities that send messages. Holds its dependencies; register one instance per worker.
pub struct MessagingActivities {
    store: MongoStore,
    channels: ChannelRegistry,
    /// Base URL at which the provider reaches our webhooks (for status callbacks).
    public_base_url: url::Url,
    limits: SenderLimits,
}

impl MessagingActivities {
    /// Builds the activities over a store, the providers, and the public base URL of the API.
    pub fn new(store: MongoStore, channels: ChannelRegistry, public_base_url: url::Url) -> Self {
        Self {
            store,
            channels,
            public_base_url,
            limits: SenderLimits::unlimited(),
        }
    }

    /// Sends within each sender's limit, shared with campaigns and every other send.
    pub fn with_sender_limits(mut self, limits: SenderLimits) -> Self {
        self.limits = limits;
        self
    }

    fn status_callback_url(&self, message_id: &str) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path("/twilio/status");
        url.query_pairs_mut().clear().append_pair("mid", message_id);
        url.to_string()
    }
}

#[activities]
impl MessagingActivities {
    /// Sends one message exactly once, however often it is run:
    ///
    /// 1. record the intent under our id (a no-op when already recorded);
    /// 2. if the provider's id is already stored, the message went out: return it;
    /// 3. if an earlier attempt started a send, ask the provider whether it accepted it, and
    ///    adopt that message instead of sending again;
    /// 4. otherwise send, and store the provider's id.
    ///
    /// Provider rejections that cannot succeed later are non-retryable failures of type
    /// [`PERMANENT_SEND_FAILURE`], recorded on the message as `failed` with the error code.
    #[activity]
    pub async fn send_message(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SendMessageInput,
    ) -> Result<SendMessageOutput, ActivityError> {
        let attempt = ctx.info().attempt;
        let deadline = AttemptDeadline::of(&ctx);
        let doc = self
            .store
            .record_outbound_intent(&NewOutboundMessage {
                id: input.message_id.clone(),
                channel: input.channel,
                from: input.from.clone(),
                messaging_service_sid: input.messaging_service_sid.clone(),
                to: input.to.clone(),
                body: input.body.clone(),
                conversation_id: input.conversation_id.clone(),
            })
            .await?;
        if let Some(sid) = doc.twilio_sid.clone() {
            return Ok(SendMessageOutput {
                message_id: input.message_id,
                provider_id: sid,
                status: doc.status,
                reconciled: true,
            });
        }
        if doc.status() == MessageStatus::Failed {
            return Err(permanent_failure(&ChannelError {
                code: doc.error_code.and_then(|c| u32::try_from(c).ok()),
                message: doc
                    .error_message
                    .unwrap_or_else(|| "the provider rejected the message".to_owned()),
                retryable: false,
            }));
        }
        // Checked at the moment of sending: an opt-out after the request still wins.
        if self.store.is_suppressed(&input.to).await? {
            let e = ChannelError {
                code: Some(OPTED_OUT_CODE),
                message: "the recipient opted out (STOP)".to_owned(),
                retryable: false,
            };
            self.store
                .record_send_failure(&input.message_id, e.code.map(i64::from), &e.message)
                .await?;
            return Err(permanent_failure(&e));
        }
        let provider = self
            .channels
            .get(None)
            .ok_or_else(|| anyhow::anyhow!("no message provider is configured"))?;

        let before = self
            .store
            .begin_send_attempt(&input.message_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("message {} vanished", input.message_id))?;
        if let Some(first_start) = before.send_started_at {
            let not_before = chrono::DateTime::<chrono::Utc>::from(first_start.to_system_time())
                - RECONCILE_SKEW;
            let probe = SentProbe {
                to: input.to.clone(),
                from: input.from.clone(),
                body: input.body.clone(),
                channel: input.channel,
                not_before,
            };
            // A failed lookup must not turn into a second send: fail this attempt and retry.
            let found = provider
                .find_sent(&probe)
                .await
                .map_err(|e| anyhow::anyhow!("reconciliation lookup failed: {e}"))?;
            if let Some(accept) = found {
                info!(
                    message_id = %input.message_id,
                    attempt,
                    "send reconciled: the provider had already accepted this message"
                );
                self.store
                    .record_provider_accept(
                        &input.message_id,
                        &accept.provider_id,
                        status_or_queued(&accept.status),
                        accept.from.as_deref(),
                    )
                    .await?;
                return Ok(SendMessageOutput {
                    message_id: input.message_id,
                    provider_id: accept.provider_id,
                    status: accept.status,
                    reconciled: true,
                });
            }
        }

        let send = OutboundSend {
            message_id: input.message_id.clone(),
            channel: input.channel,
            to: input.to.clone(),
            from: input.from.clone(),
            messaging_service_sid: input.messaging_service_sid.clone(),
            body: input.body.clone(),
            status_callback: Some(self.status_callback_url(&input.message_id)),
            content_sid: None,
            content_variables: None,
        };
        if let Some(sender) = self.limits.message_sender(
            input.channel,
            input.from.as_deref(),
            input.messaging_service_sid.as_deref(),
        ) {
            take_slot(&self.store, &sender, &deadline, provider.request_timeout()).await?;
        }
        if !deadline.allows(provider.request_timeout()) {
            return Err(too_late());
        }
        match provider.send(&send).await {
            Ok(accept) => {
                info!(
                    message_id = %input.message_id,
                    to = %mask_phone(&input.to),
                    attempt,
                    "message accepted by the provider"
                );
                self.store
                    .record_provider_accept(
                        &input.message_id,
                        &accept.provider_id,
                        status_or_queued(&accept.status),
                        accept.from.as_deref(),
                    )
                    .await?;
                Ok(SendMessageOutput {
                    message_id: input.message_id,
                    provider_id: accept.provider_id,
                    status: accept.status,
                    reconciled: false,
                })
            }
            Err(e) if e.retryable => {
                warn!(message_id = %input.message_id, attempt, error = %e, "send failed, will retry");
                Err(anyhow::Error::new(e).context("provider send failed").into())
            }
            Err(e) => {
                warn!(message_id = %input.message_id, code = ?e.code, error = %e, "send rejected");
                self.store
                    .record_send_failure(&input.message_id, e.code.map(i64::from), &e.message)
                    .await?;
                Err(permanent_failure(&e))
            }
        }
    }
}

fn status_or_queued(status: &str) -> MessageStatus {
    status.parse().unwrap_or(MessageStatus::Queued)
}

/// The one place a provider rejection becomes a non-retryable Temporal failure.
pub fn permanent_failure(e: &ChannelError) -> ActivityError {
    let message = match e.code {
        Some(code) => format!("provider error {code}: {}", e.message),
        None => e.message.clone(),
    };
    ActivityError::application(
        ApplicationFailure::builder(anyhow::anyhow!(message))
            .type_name(PERMANENT_SEND_FAILURE.to_owned())
            .non_retryable(true)
            .build(),
    )
}
