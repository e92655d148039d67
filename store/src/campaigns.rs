//! The `campaigns`, `campaign_items` and `campaign_executions` collections.
//!
//! A campaign's items are a snapshot of its contact list taken when it starts: one item per
//! contact, `_id = "<campaign id>:<contact id>"`, so materialising twice creates nothing new and
//! items page in a stable order by `_id`. An item moves `pending → sending → sent →
//! delivered | undelivered | failed`, or ends `skipped` / `cancelled`; `sending` is the recorded
//! intent that makes a retried send reconcile before it sends again.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{FindOptions, InsertManyOptions};
use serde::{Deserialize, Serialize};

use crate::schema::{CAMPAIGN_EXECUTIONS, CAMPAIGN_ITEMS, CAMPAIGNS, CONTACTS};
use crate::{MongoStore, Result, StoreError, is_duplicate_key};

/// Lifecycle of a campaign.
pub mod campaign_status {
    /// Created, not started.
    pub const DRAFT: &str = "draft";
    /// Started; waiting for its start time or materialising its items.
    pub const STARTING: &str = "starting";
    /// Sending.
    pub const RUNNING: &str = "running";
    /// Paused by a manager.
    pub const PAUSED: &str = "paused";
    /// Every item reached a final state.
    pub const COMPLETED: &str = "completed";
    /// Cancelled by a manager; unsent items are `cancelled`.
    pub const CANCELLED: &str = "cancelled";
}

/// Statuses of a campaign item.
pub mod item_status {
    /// Not yet attempted.
    pub const PENDING: &str = "pending";
    /// Intent recorded; a send to the provider may be in flight.
    pub const SENDING: &str = "sending";
    /// Accepted by the provider (final if no delivery receipt ever comes).
    pub const SENT: &str = "sent";
    /// Delivered to the handset.
    pub const DELIVERED: &str = "delivered";
    /// WhatsApp read receipt.
    pub const READ: &str = "read";
    /// The carrier could not deliver it.
    pub const UNDELIVERED: &str = "undelivered";
    /// The provider rejected it, or transient failures exhausted the retry policy.
    pub const FAILED: &str = "failed";
    /// Not sent on purpose (opted out, invalid number, outside the window).
    pub const SKIPPED: &str = "skipped";
    /// The campaign was cancelled before it was sent.
    pub const CANCELLED: &str = "cancelled";
    /// Voice: a person answered.
    pub const ANSWERED: &str = "answered";
    /// Voice: an answering machine took the campaign's voicemail.
    pub const VOICEMAIL_LEFT: &str = "voicemail_left";
    /// Voice: an answering machine, no voicemail left.
    pub const MACHINE: &str = "machine";
    /// Voice: busy on every attempt.
    pub const BUSY: &str = "busy";
    /// Voice: not answered on any attempt.
    pub const NO_ANSWER: &str = "no_answer";

    /// Rank used to refuse backwards moves from late or repeated callbacks.
    pub fn rank(status: &str) -> i32 {
        match status {
            PENDING => 0,
            SENDING => 1,
            SENT => 2,
            DELIVERED | UNDELIVERED | FAILED | SKIPPED | CANCELLED | ANSWERED | VOICEMAIL_LEFT
            | MACHINE | BUSY | NO_ANSWER => 3,
            READ => 4,
            _ => 0,
        }
    }
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignDoc {
    /// `cmp_<uuid>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// Sender number (E.164), unless a Messaging Service is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Messaging Service SID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// Message template with `{{variable}}` placeholders.
    pub template: String,
    /// WhatsApp content template (`HX…`) for recipients outside the session window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
    /// The template's variables: placeholder number → text with `{{variable}}`s, rendered per
    /// contact, e.g. `{"1": "{{first_name}}"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub content_variables: BTreeMap<String, String>,
    /// The contact list.
    pub list_id: String,
    /// Earliest start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime>,
    /// Sending window start in the recipient's local time, minutes after midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_minute: Option<i32>,
    /// Sending window end (exclusive), minutes after midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_minute: Option<i32>,
    /// Items still outside their window at this time are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime>,
    /// Messages per second; 0 = as fast as the provider allows.
    pub rate_per_second: f64,
    /// Attempts per item on transient failures before it is `failed`.
    pub max_attempts: i32,
    /// Voice: the agent profile on the calls (our number's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_profile: Option<String>,
    /// Voice: seconds between dial attempts after busy, no-answer or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<i64>,
    /// Voice: most calls in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<i32>,
    /// See [`campaign_status`].
    pub status: String,
    /// Items when materialised.
    #[serde(default)]
    pub total_items: i64,
    /// Created.
    pub created_at: DateTime,
    /// Last change.
    pub updated_at: DateTime,
}

/// Field of a campaign's batch lease holder (see [`MongoStore::claim_batch_lease`]).
const LEASE_HOLDER: &str = "batch_lease_holder";
/// Field counting the lease's claims and renewals.
const LEASE_SEQ: &str = "batch_lease_seq";

/// A campaign's batch lease as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchLease {
    /// Who holds it (`None`: free).
    pub holder: Option<String>,
    /// Claims and renewals so far: unchanged over a whole lease period means the holder stopped.
    pub seq: i64,
}

/// A stored campaign item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignItemDoc {
    /// `<campaign id>:<contact id>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Contact it was taken from.
    pub contact_id: String,
    /// Recipient as stored on the contact (E.164 when valid).
    pub phone: String,
    /// Variables for the template: the contact's fields and columns.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// IANA time zone of the contact, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// See [`item_status`].
    pub status: String,
    /// Rank of `status`.
    pub status_rank: i32,
    /// Provider message id once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_sid: Option<String>,
    /// Provider error code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sends started.
    #[serde(default)]
    pub attempts: i32,
    /// First send start, for reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_started_at: Option<DateTime>,
    /// Last change.
    pub updated_at: DateTime,
}

/// One attempt at an item, for `campaign_executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDoc {
    /// Campaign.
    pub campaign_id: String,
    /// Item.
    pub item_id: String,
    /// 1-based attempt number.
    pub attempt: i32,
    /// When it ended.
    pub at: DateTime,
    /// `accepted`, `reconciled`, `transient_error`, `rejected`, `skipped`.
    pub outcome: String,
    /// Provider error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

impl MongoStore {
    fn campaigns(&self) -> mongodb::Collection<CampaignDoc> {
        self.db.collection(CAMPAIGNS)
    }

    fn items(&self) -> mongodb::Collection<CampaignItemDoc> {
        self.db.collection(CAMPAIGN_ITEMS)
    }

    /// Whether a contact list exists (campaigns refer to one).
    pub async fn contact_list_exists(&self, list_id: &str) -> Result<bool> {
        Ok(self
            .db
            .collection::<Document>(crate::schema::CONTACT_LISTS)
            .find_one(doc! { "_id": list_id })
            .await?
            .is_some())
    }

    /// Stores a new campaign.
    pub async fn insert_campaign(&self, campaign: &CampaignDoc) -> Result<()> {
        self.campaigns().insert_one(campaign).await?;
        Ok(())
    }

    /// One campaign.
    pub async fn get_campaign(&self, id: &str) -> Result<Option<CampaignDoc>> {
        Ok(self.campaigns().find_one(doc! { "_id": id }).await?)
    }

    /// Campaigns, newest first.
    pub async fn list_campaigns(&self, limit: i64) -> Result<Vec<CampaignDoc>> {
        let options = FindOptions::builder()
            .sort(doc! { "created_at": -1 })
            .limit(limit.clamp(1, 500))
            .build();
        Ok(self
            .campaigns()
            .find(doc! {})
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// Sets a campaign's status (and, optionally, its rate). `only_from` restricts the change to
    /// campaigns currently in one of those statuses; returns whether it changed.
    pub async fn set_campaign_status(
        &self,
        id: &str,
        status: &str,
        only_from: &[&str],
    ) -> Result<bool> {
        let mut filter = doc! { "_id": id };
        if !only_from.is_empty() {
            filter.insert("status", doc! { "$in": only_from.to_vec() });
        }
        let r = self
            .campaigns()
            .update_one(
                filter,
                doc! { "$set": { "status": status, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// Records a new rate.
    pub async fn set_campaign_rate(&self, id: &str, rate_per_second: f64) -> Result<()> {
        self.campaigns()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "rate_per_second": rate_per_second, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// Takes the campaign's batch lease for `holder` if nobody holds it (or `holder` already
    /// does). Returns whether `holder` now holds it.
    ///
    /// Only the holder of the lease sends a campaign's messages. A batch attempt that Temporal
    /// timed out may still be running when its retry starts; the lease keeps the two from
    /// sending the same page at once (see `voice_agent_activities::campaign`).
    pub async fn claim_batch_lease(&self, campaign_id: &str, holder: &str) -> Result<bool> {
        let r = self
            .lease_doc()
            .update_one(
                doc! { "_id": campaign_id, "$or": [
                    { LEASE_HOLDER: mongodb::bson::Bson::Null },
                    { LEASE_HOLDER: holder },
                ] },
                doc! { "$set": { LEASE_HOLDER: holder }, "$inc": { LEASE_SEQ: 1_i64 } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// The campaign's batch lease as it is: its holder (if any) and its renewal count; `None`
    /// when the campaign does not exist.
    pub async fn batch_lease(&self, campaign_id: &str) -> Result<Option<BatchLease>> {
        let doc = self
            .lease_doc()
            .find_one(doc! { "_id": campaign_id })
            .projection(doc! { LEASE_HOLDER: 1, LEASE_SEQ: 1 })
            .await?;
        Ok(doc.map(|d| BatchLease {
            holder: d.get_str(LEASE_HOLDER).ok().map(str::to_owned),
            seq: match d.get(LEASE_SEQ) {
                Some(mongodb::bson::Bson::Int64(n)) => *n,
                Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
                _ => 0,
            },
        }))
    }

    /// Takes the lease from a holder that has not renewed it since `seen` was read. Returns
    /// whether `holder` now holds it (false: the old holder renewed it, or someone else took it).
    pub async fn take_over_batch_lease(
        &self,
        campaign_id: &str,
        holder: &str,
        seen: &BatchLease,
    ) -> Result<bool> {
        let r = self
            .lease_doc()
            .update_one(
                doc! {
                    "_id": campaign_id,
                    LEASE_HOLDER: seen.holder.as_deref().map_or(mongodb::bson::Bson::Null, Into::into),
                    LEASE_SEQ: seen.seq,
                },
                doc! { "$set": { LEASE_HOLDER: holder }, "$inc": { LEASE_SEQ: 1_i64 } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// Renews `holder`'s lease. Returns false when `holder` no longer holds it.
    pub async fn renew_batch_lease(&self, campaign_id: &str, holder: &str) -> Result<bool> {
        let r = self
            .lease_doc()
            .update_one(
                doc! { "_id": campaign_id, LEASE_HOLDER: holder },
                doc! { "$inc": { LEASE_SEQ: 1_i64 } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// Gives the lease up, so the next batch takes it at once.
    pub async fn release_batch_lease(&self, campaign_id: &str, holder: &str) -> Result<()> {
        self.lease_doc()
            .update_one(
                doc! { "_id": campaign_id, LEASE_HOLDER: holder },
                doc! { "$set": { LEASE_HOLDER: mongodb::bson::Bson::Null } },
            )
            .await?;
        Ok(())
    }

    fn lease_doc(&self) -> mongodb::Collection<Document> {
        self.db.collection(CAMPAIGNS)
    }

    /// Copies up to `limit` contacts of `list_id` after contact id `after` into items of the
    /// campaign. Returns (contacts read, last contact id). Idempotent: an item that exists is
    /// left as it is.
    pub async fn materialize_items(
        &self,
        campaign_id: &str,
        list_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(usize, Option<String>)> {
        let mut filter = doc! { "list_id": list_id };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .build();
        let contacts: Vec<Document> = self
            .db
            .collection::<Document>(CONTACTS)
            .find(filter)
            .with_options(options)
            .await?
            .try_collect()
            .await?;
        let Some(last) = contacts.last() else {
            return Ok((0, None));
        };
        let last_id = contact_id(last);
        let now = DateTime::now();
        let items: Vec<CampaignItemDoc> = contacts
            .iter()
            .map(|c| {
                let cid = contact_id(c);
                CampaignItemDoc {
                    id: format!("{campaign_id}:{cid}"),
                    campaign_id: campaign_id.to_owned(),
                    contact_id: cid,
                    phone: c.get_str("phone").unwrap_or_default().to_owned(),
                    variables: contact_variables(c),
                    time_zone: c
                        .get_str("time_zone")
                        .ok()
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                    status: item_status::PENDING.to_owned(),
                    status_rank: item_status::rank(item_status::PENDING),
                    message_sid: None,
                    error_code: None,
                    reason: None,
                    attempts: 0,
                    send_started_at: None,
                    updated_at: now,
                }
            })
            .collect();
        let read = items.len();
        match self
            .items()
            .insert_many(&items)
            .with_options(InsertManyOptions::builder().ordered(false).build())
            .await
        {
            Ok(_) => {}
            // A retried page: the items already there stay as they are.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok((read, Some(last_id)))
    }

    /// Records the number of items once materialised.
    pub async fn set_campaign_total(&self, id: &str) -> Result<i64> {
        let total = self
            .items()
            .count_documents(doc! { "campaign_id": id })
            .await?;
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.campaigns()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "total_items": total, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(total)
    }

    /// The next `limit` items after `after` (by `_id`) that are not final yet.
    pub async fn next_open_items(
        &self,
        campaign_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CampaignItemDoc>> {
        let mut id_filter =
            doc! { "$gte": format!("{campaign_id}:"), "$lt": format!("{campaign_id};") };
        if let Some(after) = after {
            id_filter.insert("$gt", after);
        }
        let filter = doc! {
            "_id": id_filter,
            "status": { "$in": [item_status::PENDING, item_status::SENDING] },
        };
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .build();
        Ok(self
            .items()
            .find(filter)
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// Items of the campaign after `after`, up to and including `up_to` (or to the end), that
    /// are past `sending` but whose latest attempt has no `campaign_executions` record: a worker
    /// that died after the provider accepted a send and before its record was written, while a
    /// status callback moved the item on, so no retry will look at it again. At most `limit`
    /// finished items are examined.
    pub async fn items_missing_executions(
        &self,
        campaign_id: &str,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CampaignItemDoc>> {
        let mut id_filter =
            doc! { "$gte": format!("{campaign_id}:"), "$lt": format!("{campaign_id};") };
        if let Some(after) = after {
            id_filter.insert("$gt", after);
        }
        if let Some(up_to) = up_to {
            id_filter.insert("$lte", up_to);
        }
        let finished: Vec<CampaignItemDoc> = self
            .items()
            .find(doc! {
                "_id": id_filter,
                "status": { "$nin": [item_status::PENDING, item_status::SENDING, item_status::CANCELLED] },
                "attempts": { "$gte": 1 },
            })
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        if finished.is_empty() {
            return Ok(finished);
        }
        let ids: Vec<&str> = finished.iter().map(|i| i.id.as_str()).collect();
        let mut recorded = std::collections::HashSet::new();
        let mut cursor = self
            .db
            .collection::<Document>(CAMPAIGN_EXECUTIONS)
            .find(doc! { "campaign_id": campaign_id, "item_id": { "$in": ids } })
            .projection(doc! { "_id": 0, "item_id": 1, "attempt": 1 })
            .await?;
        while let Some(d) = cursor.try_next().await? {
            if let (Ok(item), Ok(attempt)) = (d.get_str("item_id"), d.get_i32("attempt")) {
                recorded.insert((item.to_owned(), attempt));
            }
        }
        Ok(finished
            .into_iter()
            .filter(|i| !recorded.contains(&(i.id.clone(), i.attempts)))
            .collect())
    }

    /// Marks items `sending` (the intent) and counts the attempt. Returns nothing: the caller
    /// already holds each item's state from before.
    pub async fn begin_item_sends(&self, item_ids: &[String]) -> Result<()> {
        if item_ids.is_empty() {
            return Ok(());
        }
        let now = DateTime::now();
        self.items()
            .update_many(
                doc! { "_id": { "$in": item_ids.to_vec() }, "status": { "$in": [item_status::PENDING, item_status::SENDING] } },
                doc! {
                    "$set": { "status": item_status::SENDING, "status_rank": item_status::rank(item_status::SENDING), "updated_at": now },
                    "$min": { "send_started_at": now },
                    "$inc": { "attempts": 1 },
                },
            )
            .await?;
        Ok(())
    }

    /// The provider accepted the item's message.
    pub async fn record_item_accepted(&self, item_id: &str, sid: &str) -> Result<()> {
        // One write: if a status callback got here first, it already stored the SID with a
        // higher status, and this update matches nothing.
        self.items()
            .update_one(
                doc! { "_id": item_id, "status_rank": { "$lt": item_status::rank(item_status::SENT) } },
                doc! { "$set": {
                    "message_sid": sid,
                    "status": item_status::SENT,
                    "status_rank": item_status::rank(item_status::SENT),
                    "updated_at": DateTime::now(),
                } },
            )
            .await?;
        Ok(())
    }

    /// [`MongoStore::record_item_accepted`] for many items in one round trip: one `update`
    /// command with a statement per item (the server's cost per item is about half that of
    /// single updates). Returns how many items changed.
    pub async fn record_items_accepted(&self, accepted: &[(String, String)]) -> Result<u64> {
        let now = DateTime::now();
        let rank = item_status::rank(item_status::SENT);
        let statements = accepted
            .iter()
            .map(|(item_id, sid)| {
                doc! {
                    "q": { "_id": item_id, "status_rank": { "$lt": rank } },
                    "u": { "$set": {
                        "message_sid": sid,
                        "status": item_status::SENT,
                        "status_rank": rank,
                        "updated_at": now,
                    } },
                }
            })
            .collect();
        self.update_items_each(statements).await
    }

    /// Status callbacks of campaign items' messages, in one round trip (the api groups them).
    /// Each moves its item forward only; two callbacks for the same item may share a group, and
    /// the later status wins whatever order the server applies them in. Returns how many items
    /// changed.
    pub async fn apply_item_callbacks(&self, callbacks: &[ItemCallback]) -> Result<u64> {
        let statements = callbacks
            .iter()
            .map(|c| {
                let (filter, set) = item_callback_write(c);
                doc! { "q": filter, "u": { "$set": set } }
            })
            .collect();
        self.update_items_each(statements).await
    }

    /// Runs one unordered `update` command over `campaign_items` (portable to every MongoDB
    /// version, unlike the newer `bulkWrite` command).
    async fn update_items_each(&self, statements: Vec<Document>) -> Result<u64> {
        let total = statements.len();
        if total == 0 {
            return Ok(0);
        }
        let reply = self
            .db
            .run_command(doc! { "update": CAMPAIGN_ITEMS, "updates": statements, "ordered": false })
            .await?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && !errors.is_empty()
        {
            let first = errors
                .first()
                .and_then(|e| e.as_document())
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get_i32("code").unwrap_or_default(),
                        e.get_str("errmsg").unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            return Err(StoreError::Writes {
                failed: errors.len(),
                total,
                first,
            });
        }
        if let Ok(e) = reply.get_document("writeConcernError") {
            return Err(StoreError::Writes {
                failed: total,
                total,
                first: format!("write concern: {e}"),
            });
        }
        Ok(match reply.get("nModified") {
            Some(mongodb::bson::Bson::Int32(n)) => u64::try_from(*n).unwrap_or_default(),
            Some(mongodb::bson::Bson::Int64(n)) => u64::try_from(*n).unwrap_or_default(),
            _ => 0,
        })
    }

    /// Moves an item to a final status (failed, skipped, cancelled) unless it is already past it.
    pub async fn finish_item(
        &self,
        item_id: &str,
        status: &str,
        error_code: Option<i64>,
        reason: &str,
    ) -> Result<bool> {
        self.advance_item(doc! { "_id": item_id }, status, error_code, Some(reason))
            .await
    }

    /// Like [`Self::finish_item`], but only while the item's send count is still `attempts`:
    /// the outcome of one attempt, which must not land on an item a later attempt (one that took
    /// the campaign's lease over) has begun sending since.
    pub async fn finish_item_of_attempt(
        &self,
        item_id: &str,
        attempts: i32,
        status: &str,
        error_code: Option<i64>,
        reason: &str,
    ) -> Result<bool> {
        self.advance_item(
            doc! { "_id": item_id, "attempts": attempts },
            status,
            error_code,
            Some(reason),
        )
        .await
    }

    /// Puts an item back to `pending` after a refused send (429) so a later pass retries it,
    /// unless a later attempt has begun sending it since (its send count is past `attempts`).
    pub async fn release_item(&self, item_id: &str, attempts: i32) -> Result<()> {
        self.items()
            .update_one(
                doc! { "_id": item_id, "attempts": attempts, "status": item_status::SENDING, "message_sid": { "$exists": false } },
                doc! { "$set": { "status": item_status::PENDING, "status_rank": 0, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    async fn advance_item(
        &self,
        mut filter: Document,
        status: &str,
        error_code: Option<i64>,
        reason: Option<&str>,
    ) -> Result<bool> {
        let rank = item_status::rank(status);
        filter.insert("status_rank", doc! { "$lt": rank });
        let mut set = doc! { "status": status, "status_rank": rank, "updated_at": DateTime::now() };
        if let Some(code) = error_code {
            set.insert("error_code", code);
        }
        if let Some(reason) = reason {
            set.insert("reason", reason);
        }
        let r = self
            .items()
            .update_one(filter, doc! { "$set": set })
            .await?;
        Ok(r.modified_count > 0)
    }

    /// Cancels every item not yet sent. Returns how many.
    pub async fn cancel_open_items(&self, campaign_id: &str) -> Result<u64> {
        let r = self
            .items()
            .update_many(
                doc! { "campaign_id": campaign_id, "status": item_status::PENDING },
                doc! { "$set": {
                    "status": item_status::CANCELLED,
                    "status_rank": item_status::rank(item_status::CANCELLED),
                    "reason": "campaign cancelled",
                    "updated_at": DateTime::now(),
                } },
            )
            .await?;
        Ok(r.modified_count)
    }

    /// Item counts by status.
    pub async fn item_counts(&self, campaign_id: &str) -> Result<BTreeMap<String, i64>> {
        let mut cursor = self
            .items()
            .aggregate(vec![
                doc! { "$match": { "campaign_id": campaign_id } },
                doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } },
            ])
            .await?;
        let mut counts = BTreeMap::new();
        while let Some(d) = cursor.try_next().await? {
            let status = d.get_str("_id").unwrap_or("unknown").to_owned();
            let n = match d.get("n") {
                Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
                Some(mongodb::bson::Bson::Int64(n)) => *n,
                _ => 0,
            };
            counts.insert(status, n);
        }
        Ok(counts)
    }

    /// One item.
    pub async fn get_item(&self, item_id: &str) -> Result<Option<CampaignItemDoc>> {
        Ok(self.items().find_one(doc! { "_id": item_id }).await?)
    }

    /// Appends attempt records; a repeated record (same item and attempt) is ignored.
    pub async fn record_executions(&self, executions: &[ExecutionDoc]) -> Result<()> {
        if executions.is_empty() {
            return Ok(());
        }
        match self
            .db
            .collection::<ExecutionDoc>(CAMPAIGN_EXECUTIONS)
            .insert_many(executions)
            .with_options(InsertManyOptions::builder().ordered(false).build())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Most outcomes one grouped write of [`OutcomeWriter`] takes.
const WRITE_GROUP: usize = 500;
/// Outcomes that may wait for the writer; a full queue holds the sends back.
const WRITE_QUEUE: usize = 256;

/// Records the outcomes of a campaign batch's sends in groups, off the sends' path: each group
/// is one `insert_many` of `campaign_executions` and one multi-statement update of the accepted
/// items (about half the server's cost of writing them one by one, and the sends do not wait).
///
/// Groups form by themselves: while one is written the next queues up, so a slow database gets
/// bigger groups and a quiet batch writes each outcome at once. The executions go first, so an
/// item marked `sent` by it always has its attempt record. A crash loses at most the queue and
/// the group being written: those items stay `sending` and the retried batch reconciles them
/// with the provider before sending anything again, as for sends that were in flight; items a
/// status callback finished meanwhile are found by
/// [`MongoStore::items_missing_executions`].
pub struct OutcomeWriter {
    queue: tokio::sync::mpsc::Sender<(ExecutionDoc, Option<(String, String)>)>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl OutcomeWriter {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn start(store: &MongoStore) -> Self {
        let store = store.clone();
        let (queue, mut rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(async move {
            let mut group = Vec::with_capacity(WRITE_GROUP);
            while rx.recv_many(&mut group, WRITE_GROUP).await > 0 {
                let (executions, accepted): (Vec<ExecutionDoc>, Vec<Option<(String, String)>>) =
                    group.drain(..).unzip();
                store.record_executions(&executions).await?;
                let accepted: Vec<(String, String)> = accepted.into_iter().flatten().collect();
                if !accepted.is_empty() {
                    store.record_items_accepted(&accepted).await?;
                }
            }
            Ok(())
        });
        Self { queue, task }
    }

    /// Queues one outcome: its attempt record and, when the provider accepted it, the item and
    /// its message SID.
    pub async fn push(
        &self,
        execution: ExecutionDoc,
        accepted: Option<(String, String)>,
    ) -> Result<(), StoreError> {
        self.queue
            .send((execution, accepted))
            .await
            .map_err(|_| StoreError::Writes {
                failed: 1,
                total: 1,
                first: "the outcome writer stopped".to_owned(),
            })
    }

    /// Waits until everything queued is written; the first failed write's error, if any.
    pub async fn finish(self) -> Result<(), StoreError> {
        drop(self.queue);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Writes {
                failed: 1,
                total: 1,
                first: format!("the outcome writer failed: {e}"),
            }),
        }
    }
}

/// A delivery status reported for a campaign item's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCallback {
    /// The item (`<campaign id>:<contact id>`).
    pub item_id: String,
    /// The provider's message id.
    pub sid: String,
    /// The reported status (`sent`, `delivered`, …).
    pub status: String,
    /// The provider's error code, if any.
    pub error_code: Option<i64>,
}

/// The filter and `$set` of one callback: one write, forward only. The callback may beat the
/// activity that stores the SID, so it may set it; a callback for another SID than the item's
/// changes nothing.
fn item_callback_write(c: &ItemCallback) -> (Document, Document) {
    let rank = item_status::rank(&c.status);
    let mut set = doc! {
        "message_sid": &c.sid,
        "status": &c.status,
        "status_rank": rank,
        "updated_at": DateTime::now(),
    };
    if let Some(code) = c.error_code {
        set.insert("error_code", code);
        if let Some(reason) = explain_error(code) {
            set.insert("reason", reason);
        }
    }
    let filter = doc! {
        "_id": &c.item_id,
        "status_rank": { "$lt": rank },
        // `null` also matches a missing field; unlike `$or`, `$in` keeps the `_id` lookup (an
        // `$or` made the server scan every item per callback).
        "message_sid": { "$in": [&c.sid, mongodb::bson::Bson::Null] },
    };
    (filter, set)
}

/// A readable reason for the delivery errors a campaign manager will meet most.
fn explain_error(code: i64) -> Option<&'static str> {
    Some(match code {
        63016 => {
            "outside the WhatsApp 24-hour session window: only a template (ContentSid) may be sent (63016)"
        }
        21610 => "the recipient unsubscribed (21610)",
        30003 => "unreachable handset (30003)",
        30005 => "unknown or inactive number (30005)",
        30006 => "landline or unreachable carrier (30006)",
        30007 => "filtered by the carrier (30007)",
        _ => return None,
    })
}

fn contact_id(c: &Document) -> String {
    match c.get("_id") {
        Some(mongodb::bson::Bson::String(s)) => s.clone(),
        Some(mongodb::bson::Bson::ObjectId(o)) => o.to_hex(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The variables a template can use: the contact's own fields, then its extra columns.
fn contact_variables(c: &Document) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for field in [
        "name",
        "first_name",
        "last_name",
        "email",
        "phone",
        "language",
    ] {
        if let Ok(v) = c.get_str(field) {
            vars.insert(field.to_owned(), v.to_owned());
        }
    }
    if let Ok(extra) = c.get_document("variables") {
        for (k, v) in extra {
            let text = match v {
                mongodb::bson::Bson::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.entry(k.clone()).or_insert(text);
        }
    }
    vars
}
