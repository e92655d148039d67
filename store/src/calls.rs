//! `call_logs`: one document per Twilio call (each dial attempt of an outbound call is its own
//! call), with the transcript turn by turn.
//!
//! An outbound attempt is recorded as an intent (`status: dialing`) before Twilio is asked to
//! dial, so a retried activity can find out whether an earlier attempt got through; the call
//! workflow writes the whole log when the call ends.

use futures::TryStreamExt;
use mongodb::bson::{DateTime, doc};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument, UpdateOptions};
use serde::{Deserialize, Serialize};

use crate::schema::CALL_LOGS;
use crate::{MongoStore, Result};

/// One turn of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// `caller` (the person) or `agent`.
    pub speaker: String,
    /// What was said (speech recognised by Twilio, or `(pressed 1)` for keypad input).
    pub text: String,
    /// When, RFC 3339.
    pub at: String,
    /// Twilio's speech recognition confidence, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The caller cut the agent off: `text` is what was spoken until then (ConversationRelay
    /// calls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// A stored call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallLogDoc {
    /// `<call workflow id>/<attempt>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The call workflow id (`call-…`).
    pub call_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Twilio's `CA…`, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller (E.164).
    pub from: String,
    /// Callee (E.164).
    pub to: String,
    /// `dialing`, then Twilio's final call status (`not_dialled` for an opted-out person).
    pub status: String,
    /// human, machine, voicemail_left, busy, no_answer, failed, canceled, opted_out (not
    /// dialled), or completed (inbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Twilio's `AnsweredBy` when answering-machine detection ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// When the call started (dialled, or rang in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Twilio's `CallDuration`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
    /// The conversation, in order.
    #[serde(default)]
    pub transcript: Vec<TranscriptEntry>,
    /// The agent's disposition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// The agent's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The recording, when recording is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    /// Campaign of the call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// The agent profile the call used, once the agent answered a turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// That profile's stored version (`agent_profile_versions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_version: Option<i64>,
    /// Campaign item of the call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// When the first request to dial this attempt started: a retry first looks for a call
    /// placed since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_started_at: Option<DateTime>,
    /// Creation time.
    pub created_at: DateTime,
    /// Last change.
    pub updated_at: DateTime,
}

/// A page of call logs: see [`MongoStore::list_call_logs`].
#[derive(Debug, Clone, Default)]
pub struct CallLogQuery {
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only this campaign's calls.
    pub campaign_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// The `(started_at, _id)` of the last log of the previous page.
    pub before: Option<(String, String)>,
    /// Page size, 1-500.
    pub limit: i64,
}

/// The identity of an attempt, recorded before dialling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCallAttempt {
    /// `<call id>/<attempt>`.
    pub id: String,
    /// Call workflow id.
    pub call_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// `inbound` / `outbound`.
    pub direction: String,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Campaign, if any.
    pub campaign_id: Option<String>,
    /// Campaign item, if any.
    pub item_id: Option<String>,
}

impl MongoStore {
    fn call_logs(&self) -> mongodb::Collection<CallLogDoc> {
        self.db.collection(CALL_LOGS)
    }

    /// Records an attempt (once) and marks the start of a dial request; returns the document
    /// as it was *before* this call, so the caller knows whether an earlier request started.
    pub async fn begin_dial(&self, new: &NewCallAttempt) -> Result<Option<CallLogDoc>> {
        let now = DateTime::now();
        let mut on_insert = doc! {
            "call_id": &new.call_id, "attempt": new.attempt, "direction": &new.direction,
            "from": &new.from, "to": &new.to, "status": "dialing", "transcript": [],
            "created_at": now, "updated_at": now,
        };
        if let Some(c) = &new.campaign_id {
            on_insert.insert("campaign_id", c);
        }
        if let Some(i) = &new.item_id {
            on_insert.insert("item_id", i);
        }
        self.call_logs()
            .update_one(doc! { "_id": &new.id }, doc! { "$setOnInsert": on_insert })
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await?;
        let before = self
            .call_logs()
            .find_one_and_update(
                doc! { "_id": &new.id },
                doc! { "$min": { "dial_started_at": now }, "$set": { "updated_at": now } },
            )
            .with_options(
                FindOneAndUpdateOptions::builder()
                    .return_document(ReturnDocument::Before)
                    .build(),
            )
            .await?;
        Ok(before)
    }

    /// Stores Twilio's SID of an attempt.
    pub async fn record_call_sid(&self, id: &str, call_sid: &str) -> Result<()> {
        self.call_logs()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "call_sid": call_sid, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// Writes a whole call log (the call ended). Idempotent: the last write wins.
    pub async fn save_call_log(&self, log: &CallLogDoc) -> Result<()> {
        let mut set = mongodb::bson::to_document(log)?;
        set.remove("_id");
        set.remove("created_at");
        set.remove("dial_started_at");
        set.insert("updated_at", DateTime::now());
        // The log as it was, so the dashboard's counters move the call from the day and
        // outcome it really had: a repeated write moves nothing.
        let before = self
            .db
            .collection::<mongodb::bson::Document>(CALL_LOGS)
            .find_one_and_update(
                doc! { "_id": &log.id },
                doc! { "$set": set, "$setOnInsert": { "created_at": log.created_at } },
            )
            .upsert(true)
            .projection(doc! { "started_at": 1, "outcome": 1 })
            .return_document(ReturnDocument::Before)
            .await?;
        let was = |field: &str| {
            before
                .as_ref()
                .and_then(|b| b.get_str(field).ok())
                .map(str::to_owned)
        };
        let (started_before, outcome_before) = (was("started_at"), was("outcome"));
        // Fields the log leaves out keep their stored values.
        let started_after = log.started_at.clone().or_else(|| started_before.clone());
        let outcome_after = log.outcome.clone().or_else(|| outcome_before.clone());
        self.count_call_move(
            crate::stats::call_slot(started_before.as_deref(), outcome_before.as_deref()),
            crate::stats::call_slot(started_after.as_deref(), outcome_after.as_deref()),
        )
        .await
    }

    /// The logs of one call workflow (one per attempt), in attempt order.
    pub async fn call_logs_of(&self, call_id: &str) -> Result<Vec<CallLogDoc>> {
        Ok(self
            .call_logs()
            .find(doc! { "call_id": call_id })
            .sort(doc! { "attempt": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Call logs newest first (by `started_at`, then id), at most `query.limit`, after the
    /// cursor `query.before` (the `(started_at, _id)` of the last log of the previous page).
    /// Served by the `started` index; filters are checked on the way, under the search time
    /// limit.
    pub async fn list_call_logs(&self, query: &CallLogQuery) -> Result<Vec<CallLogDoc>> {
        let mut filter = doc! { "started_at": { "$exists": true } };
        if let Some((at, id)) = &query.before {
            filter.insert(
                "$or",
                vec![
                    doc! { "started_at": { "$lt": at } },
                    doc! { "started_at": at, "_id": { "$lt": id } },
                ],
            );
        }
        if let Some(o) = &query.outcome {
            filter.insert("outcome", o);
        }
        if let Some(c) = &query.campaign_id {
            filter.insert("campaign_id", c);
        }
        if let Some(d) = &query.direction {
            filter.insert("direction", d);
        }
        self.call_logs()
            .find(filter)
            .sort(doc! { "started_at": -1, "_id": -1 })
            .limit(query.limit.clamp(1, 500))
            .max_time(crate::SEARCH_MAX_TIME)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)
    }

    /// The log with this Twilio SID.
    pub async fn call_log_by_sid(&self, call_sid: &str) -> Result<Option<CallLogDoc>> {
        Ok(self
            .call_logs()
            .find_one(doc! { "call_sid": call_sid })
            .await?)
    }
}
