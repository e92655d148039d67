//! The `messages` collection: one document per SMS or WhatsApp message, either direction.
//!
//! Outbound documents are created as an *intent* (`status: pending`, our own `_id`) before the
//! provider is called; the provider's SID and later statuses are added to the same document.
//! Inbound documents use Twilio's `MessageSid` as `_id`, so a webhook delivered twice is
//! stored once.

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{FindOneAndUpdateOptions, FindOptions, ReturnDocument};
use serde::{Deserialize, Serialize};
use voice_agent_domain::{Channel, Direction, MessageStatus};

use crate::schema::MESSAGES;
use crate::{MongoStore, Result, is_duplicate_key};

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    /// Our id (`msg_…`) for outbound messages, Twilio's `MessageSid` for inbound ones.
    #[serde(rename = "_id")]
    pub id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// Sender in E.164 (without the `whatsapp:` prefix); absent when a Messaging Service picks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Recipient in E.164.
    pub to: String,
    /// Text of the message.
    pub body: String,
    /// Twilio status name (see [`MessageStatus`]).
    pub status: String,
    /// [`MessageStatus::rank`] of `status`, so updates can refuse to move backwards.
    pub status_rank: i32,
    /// Twilio's `SM…`/`MM…` id, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_sid: Option<String>,
    /// Messaging Service used to send, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// Conversation workflow id this message belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Twilio error code of a failed or undelivered message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Human-readable reason for `error_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// How many times a send to the provider was started.
    #[serde(default)]
    pub send_attempts: i32,
    /// When the first send to the provider started: a retry first looks for anything the
    /// provider accepted since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_started_at: Option<DateTime>,
    /// When we created the document.
    pub created_at: DateTime,
    /// Last change.
    pub updated_at: DateTime,
}

impl MessageDoc {
    /// The parsed status; unknown strings (written by a newer version) read as `pending`.
    pub fn status(&self) -> MessageStatus {
        self.status.parse().unwrap_or(MessageStatus::Pending)
    }
}

/// What the API knows about an outbound message before anything is sent.
#[derive(Debug, Clone)]
pub struct NewOutboundMessage {
    /// Our id.
    pub id: String,
    /// Channel to send on.
    pub channel: Channel,
    /// Sender number, unless a Messaging Service is used.
    pub from: Option<String>,
    /// Messaging Service SID, if any.
    pub messaging_service_sid: Option<String>,
    /// Recipient number (E.164).
    pub to: String,
    /// Text.
    pub body: String,
    /// Conversation it belongs to, if any.
    pub conversation_id: Option<String>,
}

/// An inbound message as received from a webhook.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// Twilio's `MessageSid`.
    pub message_sid: String,
    /// Channel it came on.
    pub channel: Channel,
    /// The person's number (E.164).
    pub from: String,
    /// Our number (E.164).
    pub to: String,
    /// Text.
    pub body: String,
    /// The conversation workflow id.
    pub conversation_id: String,
}

/// What [`MongoStore::insert_inbound`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InboundStored {
    /// This call stored it (false: Twilio repeated the webhook).
    pub new: bool,
    /// When it first arrived: the time its keywords (STOP, START) take effect.
    pub received_at: DateTime,
    /// It already reached its conversation.
    pub handed_over: bool,
}

/// Field set once an inbound message reached its conversation workflow.
const HANDED_OVER_AT: &str = "handed_over_at";

/// Filter for [`MongoStore::list_messages`].
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only messages from or to this E.164 number.
    pub phone: Option<String>,
    /// Only messages of this conversation.
    pub conversation_id: Option<String>,
    /// Only messages created strictly before this time (the page cursor).
    pub before: Option<DateTime>,
    /// Page size (capped at 500).
    pub limit: i64,
}

impl MongoStore {
    fn messages(&self) -> mongodb::Collection<MessageDoc> {
        self.db.collection(MESSAGES)
    }

    /// Records the intent to send, once: a second call with the same id returns the document
    /// already there, untouched.
    pub async fn record_outbound_intent(&self, new: &NewOutboundMessage) -> Result<MessageDoc> {
        let now = DateTime::now();
        let mut on_insert = doc! {
            "direction": Direction::Outbound.as_str(),
            "channel": new.channel.as_str(),
            "to": &new.to,
            "body": &new.body,
            "status": MessageStatus::Pending.as_str(),
            "status_rank": MessageStatus::Pending.rank(),
            "send_attempts": 0,
            "created_at": now,
            "updated_at": now,
        };
        if let Some(from) = &new.from {
            on_insert.insert("from", from);
        }
        if let Some(ms) = &new.messaging_service_sid {
            on_insert.insert("messaging_service_sid", ms);
        }
        if let Some(c) = &new.conversation_id {
            on_insert.insert("conversation_id", c);
        }
        // The document as it was: none means this call created it, and counts it.
        let options = FindOneAndUpdateOptions::builder()
            .upsert(true)
            .return_document(ReturnDocument::Before)
            .build();
        let before = self
            .messages()
            .find_one_and_update(doc! { "_id": &new.id }, doc! { "$setOnInsert": on_insert })
            .with_options(options)
            .await?;
        if let Some(existing) = before {
            return Ok(existing);
        }
        self.count_outbound_move(
            now,
            new.channel.as_str(),
            None,
            MessageStatus::Pending.as_str(),
        )
        .await?;
        Ok(MessageDoc {
            id: new.id.clone(),
            direction: Direction::Outbound.as_str().to_owned(),
            channel: new.channel.as_str().to_owned(),
            from: new.from.clone(),
            to: new.to.clone(),
            body: new.body.clone(),
            status: MessageStatus::Pending.as_str().to_owned(),
            status_rank: MessageStatus::Pending.rank(),
            twilio_sid: None,
            messaging_service_sid: new.messaging_service_sid.clone(),
            conversation_id: new.conversation_id.clone(),
            error_code: None,
            error_message: None,
            send_attempts: 0,
            send_started_at: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Marks the start of a send attempt and returns the document as it was *before*, so the
    /// caller can tell whether an earlier attempt may already have reached the provider.
    pub async fn begin_send_attempt(&self, id: &str) -> Result<Option<MessageDoc>> {
        let now = DateTime::now();
        Ok(self
            .messages()
            .find_one_and_update(
                doc! { "_id": id },
                doc! {
                    "$min": { "send_started_at": now },
                    "$set": { "updated_at": now },
                    "$inc": { "send_attempts": 1 },
                },
            )
            .with_options(
                FindOneAndUpdateOptions::builder()
                    .return_document(ReturnDocument::Before)
                    .build(),
            )
            .await?)
    }

    /// Stores the provider's SID and its first status. The SID is written whatever the current
    /// status; the status only if it moves the message forward (a status callback may have got
    /// here first).
    pub async fn record_provider_accept(
        &self,
        id: &str,
        twilio_sid: &str,
        status: MessageStatus,
        from: Option<&str>,
    ) -> Result<()> {
        let now = DateTime::now();
        let mut set = doc! { "twilio_sid": twilio_sid, "updated_at": now };
        if let Some(from) = from {
            set.insert("from", from);
        }
        self.messages()
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await?;
        self.advance_status(doc! { "_id": id }, status, None, None)
            .await?;
        Ok(())
    }

    /// Records a permanent send failure with the provider's error code.
    pub async fn record_send_failure(
        &self,
        id: &str,
        error_code: Option<i64>,
        error_message: &str,
    ) -> Result<()> {
        self.advance_status(
            doc! { "_id": id },
            MessageStatus::Failed,
            error_code,
            Some(error_message),
        )
        .await?;
        Ok(())
    }

    /// Applies a delivery status from a status callback. The message is found by our id when
    /// the callback URL carries it, else by Twilio's SID. Returns whether anything changed:
    /// a stale or repeated callback changes nothing.
    pub async fn apply_status_callback(
        &self,
        our_id: Option<&str>,
        twilio_sid: &str,
        status: MessageStatus,
        error_code: Option<i64>,
    ) -> Result<bool> {
        let filter = match our_id {
            Some(id) => {
                // The callback can arrive before the activity stored the SID.
                self.messages()
                    .update_one(
                        doc! { "_id": id, "twilio_sid": { "$exists": false } },
                        doc! { "$set": { "twilio_sid": twilio_sid } },
                    )
                    .await?;
                doc! { "_id": id, "twilio_sid": twilio_sid }
            }
            None => doc! { "twilio_sid": twilio_sid },
        };
        self.advance_status(filter, status, error_code, None).await
    }

    async fn advance_status(
        &self,
        mut filter: Document,
        status: MessageStatus,
        error_code: Option<i64>,
        error_message: Option<&str>,
    ) -> Result<bool> {
        filter.insert("status_rank", doc! { "$lt": status.rank() });
        let mut set = doc! {
            "status": status.as_str(),
            "status_rank": status.rank(),
            "updated_at": DateTime::now(),
        };
        if let Some(code) = error_code {
            set.insert("error_code", code);
        }
        if let Some(msg) = error_message {
            set.insert("error_message", msg);
        }
        // The message as it was, so the dashboard's counters move from the status it really
        // left, once: a stale or repeated status matches nothing and counts nothing.
        let before = self
            .db
            .collection::<Document>(MESSAGES)
            .find_one_and_update(filter, doc! { "$set": set })
            .projection(doc! { "direction": 1, "channel": 1, "status": 1, "created_at": 1 })
            .return_document(ReturnDocument::Before)
            .await?;
        let Some(before) = before else {
            return Ok(false);
        };
        if before.get_str("direction") != Ok(Direction::Inbound.as_str())
            && let Ok(created_at) = before.get_datetime("created_at")
        {
            self.count_outbound_move(
                *created_at,
                before.get_str("channel").unwrap_or("sms"),
                Some(before.get_str("status").unwrap_or("pending")),
                status.as_str(),
            )
            .await?;
        }
        Ok(true)
    }

    /// Stores an inbound message once (a repeated `MessageSid` is not stored again) and says
    /// what is known of it: whether this call stored it, when it first arrived, and whether it
    /// was already handed to its conversation.
    pub async fn insert_inbound(&self, msg: &InboundMessage) -> Result<InboundStored> {
        let now = DateTime::now();
        let doc = MessageDoc {
            id: msg.message_sid.clone(),
            direction: Direction::Inbound.as_str().to_owned(),
            channel: msg.channel.as_str().to_owned(),
            from: Some(msg.from.clone()),
            to: msg.to.clone(),
            body: msg.body.clone(),
            status: MessageStatus::Received.as_str().to_owned(),
            status_rank: MessageStatus::Received.rank(),
            twilio_sid: Some(msg.message_sid.clone()),
            messaging_service_sid: None,
            conversation_id: Some(msg.conversation_id.clone()),
            error_code: None,
            error_message: None,
            send_attempts: 0,
            send_started_at: None,
            created_at: now,
            updated_at: now,
        };
        match self.messages().insert_one(&doc).await {
            Ok(_) => {
                self.count_inbound(now, msg.channel.as_str()).await?;
                Ok(InboundStored {
                    new: true,
                    received_at: now,
                    handed_over: false,
                })
            }
            Err(e) if is_duplicate_key(&e) => {
                let earlier = self
                    .db
                    .collection::<Document>(MESSAGES)
                    .find_one(doc! { "_id": &msg.message_sid })
                    .projection(doc! { "created_at": 1, HANDED_OVER_AT: 1 })
                    .await?;
                Ok(InboundStored {
                    new: false,
                    received_at: earlier
                        .as_ref()
                        .and_then(|d| d.get_datetime("created_at").ok().copied())
                        .unwrap_or(now),
                    handed_over: earlier.is_some_and(|d| d.contains_key(HANDED_OVER_AT)),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks inbound messages as handed to their conversations, so a webhook Twilio repeats
    /// later does not hand them over again.
    pub async fn mark_handed_over(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.messages()
            .update_many(
                doc! { "_id": { "$in": ids } },
                doc! { "$set": { HANDED_OVER_AT: DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// One message by its id (our id or, for inbound, the MessageSid).
    pub async fn get_message(&self, id: &str) -> Result<Option<MessageDoc>> {
        Ok(self.messages().find_one(doc! { "_id": id }).await?)
    }

    /// Messages newest first, paged by `before`.
    pub async fn list_messages(&self, query: &MessageQuery) -> Result<Vec<MessageDoc>> {
        let mut filter = Document::new();
        if let Some(phone) = &query.phone {
            filter.insert("$or", vec![doc! { "to": phone }, doc! { "from": phone }]);
        }
        if let Some(c) = &query.conversation_id {
            filter.insert("conversation_id", c);
        }
        if let Some(before) = query.before {
            filter.insert("created_at", doc! { "$lt": before });
        }
        let options = FindOptions::builder()
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(query.limit.clamp(1, 500))
            .max_time(crate::SEARCH_MAX_TIME)
            .build();
        self.messages()
            .find(filter)
            .with_options(options)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)
    }

    /// Number of messages matching a raw filter; for tests and tools.
    pub async fn count_messages(&self, filter: Document) -> Result<u64> {
        Ok(self.messages().count_documents(filter).await?)
    }
}
