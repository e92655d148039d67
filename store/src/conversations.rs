//! `conversations`: what the agent did in each SMS / WhatsApp conversation.
//!
//! The messages themselves live in `messages` (tagged with the conversation id); this
//! collection holds the agent's side: profile, status, actions, token usage, summary and
//! disposition. Turns are recorded under their id, so a retried activity records once.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{FindOptions, UpdateOptions};
use serde::{Deserialize, Serialize};

use crate::schema::{CONTACTS, CONVERSATIONS};
use crate::{MongoStore, Result, is_duplicate_key};

/// One line of a live session's transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// The live turn it belongs to.
    pub turn_id: String,
    /// `person` or `agent`.
    pub speaker: String,
    /// What was said; for an interrupted agent, only what the person heard.
    pub text: String,
    /// The person cut the agent off here.
    #[serde(default)]
    pub interrupted: bool,
    /// When the turn was settled, RFC 3339 (from the workflow's clock).
    pub at: String,
}

/// Conversation statuses.
pub mod conversation_status {
    /// The agent is answering.
    pub const OPEN: &str = "open";
    /// Flagged for a person; the agent stays quiet.
    pub const HANDOFF: &str = "handoff";
    /// The agent ended it (or the person opted out).
    pub const ENDED: &str = "ended";
}

/// Something the agent did, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationActionDoc {
    /// The turn (inbound message id) it belongs to.
    pub turn_id: String,
    /// `opt_out`, `transfer`, `end_conversation`, `schedule_callback`, `fallback`,
    /// `reply_failed`.
    pub kind: String,
    /// Reason, note or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it was recorded.
    pub at: DateTime,
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationDoc {
    /// The conversation workflow id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Our number (E.164).
    pub ours: String,
    /// Their number (E.164).
    pub theirs: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// The agent profile answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The profile's version at the latest agent turn (`agent_profile_versions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_version: Option<i64>,
    /// Which agent (`scripted`, `model:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// See [`conversation_status`].
    pub status: String,
    /// Flagged for a person.
    #[serde(default)]
    pub needs_human: bool,
    /// Agent turns recorded (ids of the inbound messages answered).
    #[serde(default)]
    pub turn_ids: Vec<String>,
    /// Actions in order.
    #[serde(default)]
    pub actions: Vec<ConversationActionDoc>,
    /// Model tokens used, summed.
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Model tokens used, summed.
    #[serde(default)]
    pub completion_tokens: i64,
    /// The latest summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The latest disposition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// When the summary was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarized_at: Option<DateTime>,
    /// A live session's turns (browser chat), oldest first; SMS and WhatsApp conversations
    /// keep their messages in `messages` instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<TranscriptLine>,
    /// Creation time.
    pub created_at: DateTime,
    /// Last change.
    pub updated_at: DateTime,
}

/// What a conversation keeps from one run to the next when a run completes after a long
/// silence: the next message starts a new run, which loads this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCarry {
    /// Conversation id (the document's `_id`, not stored again inside it).
    #[serde(default)]
    pub conversation_id: String,
    /// What the agent remembered.
    #[serde(default)]
    pub memory: BTreeMap<String, String>,
    /// See [`conversation_status`]: `handoff` keeps the agent quiet in the next run too.
    pub status: String,
    /// Provider ids already seen, oldest first (a late redelivery is still dropped).
    #[serde(default)]
    pub seen_ids: Vec<String>,
}

/// One agent turn to record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTurnRecord {
    /// Conversation id.
    pub conversation_id: String,
    /// Our number.
    pub ours: String,
    /// Their number.
    pub theirs: String,
    /// `sms` / `whatsapp`.
    pub channel: String,
    /// Profile name.
    pub profile: String,
    /// The profile's stored version, when it came from the store.
    #[serde(default)]
    pub profile_version: Option<u32>,
    /// Agent name.
    pub agent: String,
    /// The inbound message answered.
    pub turn_id: String,
    /// (kind, detail) of each action taken.
    pub actions: Vec<(String, Option<String>)>,
    /// Tokens.
    pub prompt_tokens: u64,
    /// Tokens.
    pub completion_tokens: u64,
    /// Status after the turn.
    pub status: String,
    /// Disposition the turn established, if any.
    pub disposition: Option<String>,
    /// A live session's lines of this turn (empty for SMS and WhatsApp, whose messages are in
    /// `messages`).
    #[serde(default)]
    pub transcript: Vec<TranscriptLine>,
}

impl MongoStore {
    fn conversations(&self) -> mongodb::Collection<ConversationDoc> {
        self.db.collection(CONVERSATIONS)
    }

    /// Records one agent turn, once per `turn_id`.
    pub async fn record_agent_turn(&self, turn: &AgentTurnRecord) -> Result<bool> {
        let now = DateTime::now();
        self.conversations()
            .update_one(
                doc! { "_id": &turn.conversation_id },
                doc! { "$setOnInsert": {
                    "ours": &turn.ours, "theirs": &turn.theirs, "channel": &turn.channel,
                    "status": &turn.status, "needs_human": false, "turn_ids": [], "actions": [],
                    "prompt_tokens": 0_i64, "completion_tokens": 0_i64, "created_at": now,
                    "updated_at": now,
                } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .or_else(|e| {
                if is_duplicate_key(&e) {
                    Ok(Default::default())
                } else {
                    Err(e)
                }
            })?;
        let actions: Vec<_> = turn
            .actions
            .iter()
            .map(|(kind, detail)| {
                let mut d = doc! { "turn_id": &turn.turn_id, "kind": kind, "at": now };
                if let Some(detail) = detail {
                    d.insert("detail", detail);
                }
                d
            })
            .collect();
        let mut set = doc! {
            "profile": &turn.profile, "agent": &turn.agent, "status": &turn.status,
            "needs_human": turn.status == conversation_status::HANDOFF, "updated_at": now,
        };
        if let Some(d) = &turn.disposition {
            set.insert("disposition", d);
        }
        if let Some(v) = turn.profile_version {
            set.insert("profile_version", i64::from(v));
        }
        let result = self
            .conversations()
            .update_one(
                doc! { "_id": &turn.conversation_id, "turn_ids": { "$ne": &turn.turn_id } },
                doc! {
                    "$set": set,
                    "$push": {
                        "turn_ids": &turn.turn_id,
                        "actions": { "$each": actions },
                        "transcript": { "$each": mongodb::bson::to_bson(&turn.transcript)? },
                    },
                    "$inc": {
                        "prompt_tokens": i64::try_from(turn.prompt_tokens).unwrap_or(i64::MAX),
                        "completion_tokens": i64::try_from(turn.completion_tokens).unwrap_or(i64::MAX),
                    },
                },
            )
            .await?;
        Ok(result.modified_count == 1)
    }

    /// Stores a summary and disposition (the latest wins).
    pub async fn set_conversation_summary(
        &self,
        conversation_id: &str,
        summary: &str,
        disposition: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Result<()> {
        let now = DateTime::now();
        self.conversations()
            .update_one(
                doc! { "_id": conversation_id },
                doc! {
                    "$set": { "summary": summary, "disposition": disposition, "summarized_at": now, "updated_at": now },
                    "$inc": {
                        "prompt_tokens": i64::try_from(prompt_tokens).unwrap_or(i64::MAX),
                        "completion_tokens": i64::try_from(completion_tokens).unwrap_or(i64::MAX),
                    },
                },
            )
            .await?;
        Ok(())
    }

    /// Stores what the next run of the conversation starts from (the latest wins). Only
    /// conversations with an agent have a document; others have nothing to carry.
    pub async fn set_conversation_carry(&self, carry: &ConversationCarry) -> Result<()> {
        let now = DateTime::now();
        self.conversations()
            .update_one(
                doc! { "_id": &carry.conversation_id },
                doc! { "$set": {
                    "carry": {
                        "memory": mongodb::bson::to_bson(&carry.memory)?,
                        "status": &carry.status,
                        "seen_ids": &carry.seen_ids,
                    },
                    "updated_at": now,
                } },
            )
            .await?;
        Ok(())
    }

    /// What the conversation's previous run left for the next one, if anything.
    pub async fn conversation_carry(
        &self,
        conversation_id: &str,
    ) -> Result<Option<ConversationCarry>> {
        let found = self
            .db
            .collection::<Document>(CONVERSATIONS)
            .find_one(doc! { "_id": conversation_id })
            .projection(doc! { "carry": 1 })
            .await?;
        let Some(carry) = found.and_then(|d| d.get_document("carry").ok().cloned()) else {
            return Ok(None);
        };
        let mut carry: ConversationCarry = mongodb::bson::from_document(carry)?;
        carry.conversation_id = conversation_id.to_owned();
        Ok(Some(carry))
    }

    /// One conversation.
    pub async fn get_conversation(&self, id: &str) -> Result<Option<ConversationDoc>> {
        Ok(self.conversations().find_one(doc! { "_id": id }).await?)
    }

    /// Conversations, latest change first; only those flagged for a person when `needs_human`.
    pub async fn list_conversations(
        &self,
        needs_human: Option<bool>,
        limit: i64,
    ) -> Result<Vec<ConversationDoc>> {
        self.page_conversations(needs_human, None, limit).await
    }

    /// Like [`Self::list_conversations`], after the cursor `before`: the `(updated_at, _id)` of
    /// the last conversation of the previous page. A range of the `updated` (or
    /// `needs_human_updated`) index.
    pub async fn page_conversations(
        &self,
        needs_human: Option<bool>,
        before: Option<(DateTime, String)>,
        limit: i64,
    ) -> Result<Vec<ConversationDoc>> {
        let mut filter = match needs_human {
            Some(flag) => doc! { "needs_human": flag },
            None => doc! {},
        };
        if let Some((at, id)) = before {
            filter.insert(
                "$or",
                vec![
                    doc! { "updated_at": { "$lt": at } },
                    doc! { "updated_at": at, "_id": { "$lt": id } },
                ],
            );
        }
        let options = FindOptions::builder()
            .sort(doc! { "updated_at": -1, "_id": -1 })
            .limit(limit.clamp(1, 500))
            .projection(doc! { "turn_ids": 0, "transcript": 0 })
            .max_time(crate::SEARCH_MAX_TIME)
            .build();
        self.conversations()
            .find(filter)
            .with_options(options)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)
    }

    /// The variables of the most recently changed contact with this number, on any list: what
    /// the agent may use about the person (`first_name`, imported columns, …). Read leniently:
    /// a field of an unexpected type is left out rather than failing the turn.
    pub async fn contact_variables(&self, phone: &str) -> Result<BTreeMap<String, String>> {
        let contact = self
            .db
            .collection::<Document>(CONTACTS)
            .find_one(doc! { "phone": phone })
            .sort(doc! { "updated_at": -1 })
            .await?;
        let Some(c) = contact else {
            return Ok(BTreeMap::new());
        };
        let mut vars: BTreeMap<String, String> = c
            .get_document("variables")
            .map(|v| {
                v.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        for key in [
            "name",
            "first_name",
            "last_name",
            "email",
            "language",
            "time_zone",
        ] {
            if let Ok(v) = c.get_str(key) {
                vars.insert(key.to_owned(), v.to_owned());
            }
        }
        Ok(vars)
    }
}
