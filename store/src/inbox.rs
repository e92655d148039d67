//! The `inbox` collection: webhook work stored before it is handed to Temporal, and the
//! `leases` collection that lets one api process at a time hand it over.
//!
//! A webhook that only has to tell a workflow something (an inbound message, a call's
//! progress) answers Twilio once its entry is stored here; a drainer delivers the entries to
//! their workflows at whatever pace Temporal accepts, oldest first, and deletes each once
//! delivered. An entry's `_id` is its dedupe key (a `MessageSid`, say), so a repeated webhook
//! stores it once. Entries of one target (a workflow id) are delivered in `seq` order.

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::UpdateOptions;
use serde::{Deserialize, Serialize};

use crate::schema::{INBOX, INBOX_DEAD, LEASES};
use crate::{MongoStore, Result, is_duplicate_key};

/// One piece of webhook work waiting for its workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Dedupe key: a repeated webhook maps to the same entry.
    #[serde(rename = "_id")]
    pub id: String,
    /// What to do with `payload` (the api's drainer knows each kind).
    pub kind: String,
    /// The workflow the entry is for; one target's entries are delivered in `seq` order.
    pub target: String,
    /// Arrival order (microseconds since the epoch, strictly increasing within one process).
    pub seq: i64,
    /// When the webhook stored it.
    pub received_at: DateTime,
    /// The kind's data as JSON, as the api encoded it (what Temporal will carry anyway).
    pub payload: String,
    /// Failed delivery attempts so far.
    #[serde(default)]
    pub attempts: i32,
    /// The last delivery error, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How far behind the drainer is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InboxBacklog {
    /// Entries stored and not yet delivered.
    pub pending: u64,
    /// When the oldest of them arrived.
    pub oldest: Option<DateTime>,
}

/// A named lease as read: its holder and how many times it was claimed or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it, if anyone.
    pub holder: Option<String>,
    /// Claims and renewals so far: unchanged over a whole lease period means the holder stopped.
    pub seq: i64,
}

impl MongoStore {
    fn inbox(&self) -> mongodb::Collection<InboxEntry> {
        self.db.collection(INBOX)
    }

    fn leases(&self) -> mongodb::Collection<Document> {
        self.db.collection(LEASES)
    }

    /// Stores `entry` once. Returns false when an entry with its id is already waiting.
    pub async fn enqueue_inbox(&self, entry: &InboxEntry) -> Result<bool> {
        match self.inbox().insert_one(entry).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The oldest `limit` entries, in delivery order, leaving out the targets in `resting`.
    pub async fn pending_inbox(&self, limit: i64, resting: &[String]) -> Result<Vec<InboxEntry>> {
        let filter = if resting.is_empty() {
            doc! {}
        } else {
            doc! { "target": { "$nin": resting } }
        };
        Ok(self
            .inbox()
            .find(filter)
            .sort(doc! { "seq": 1, "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Removes delivered entries.
    pub async fn complete_inbox(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.inbox()
            .delete_many(doc! { "_id": { "$in": ids } })
            .await?;
        Ok(())
    }

    /// Sets an entry Temporal refused aside in `inbox_dead`, with the reason, for an operator.
    pub async fn dead_letter_inbox(&self, entry: &InboxEntry, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(500).collect();
        let mut dead = mongodb::bson::to_document(entry)?;
        dead.insert("refused", reason);
        dead.insert("refused_at", DateTime::now());
        match self
            .db
            .collection::<Document>(INBOX_DEAD)
            .insert_one(dead)
            .await
        {
            Ok(_) => {}
            // Set aside before, and the delete below did not happen then.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.inbox().delete_one(doc! { "_id": &entry.id }).await?;
        Ok(())
    }

    /// Records a failed delivery of `id` (it stays pending).
    pub async fn fail_inbox(&self, id: &str, error: &str) -> Result<()> {
        // Bounded, whatever the error: it is shown to operators, not parsed.
        let error: String = error.chars().take(500).collect();
        self.inbox()
            .update_one(
                doc! { "_id": id },
                doc! { "$inc": { "attempts": 1 }, "$set": { "last_error": error } },
            )
            .await?;
        Ok(())
    }

    /// Entries waiting and the arrival of the oldest. The count is the collection's estimate
    /// (its metadata, not a scan), since every entry in it is pending.
    pub async fn inbox_backlog(&self) -> Result<InboxBacklog> {
        let pending = self.inbox().estimated_document_count().await?;
        let oldest = self
            .db
            .collection::<Document>(INBOX)
            .find_one(doc! {})
            .sort(doc! { "seq": 1 })
            .projection(doc! { "received_at": 1 })
            .await?
            .and_then(|d| d.get_datetime("received_at").ok().copied());
        Ok(InboxBacklog { pending, oldest })
    }

    /// Takes lease `name` for `holder` if nobody holds it (or `holder` already does). Returns
    /// whether `holder` now holds it.
    pub async fn claim_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let r = self
            .leases()
            .update_one(
                doc! { "_id": name, "$or": [{ "holder": Bson::Null }, { "holder": holder }] },
                doc! { "$set": { "holder": holder }, "$inc": { "seq": 1_i64 } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await;
        match r {
            Ok(_) => Ok(true),
            // Held by someone else: the upsert's insert collides with the existing lease.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Lease `name` as it is (`None` when it was never claimed).
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let doc = self.leases().find_one(doc! { "_id": name }).await?;
        Ok(doc.map(|d| Lease {
            holder: d.get_str("holder").ok().map(str::to_owned),
            seq: match d.get("seq") {
                Some(Bson::Int64(n)) => *n,
                Some(Bson::Int32(n)) => i64::from(*n),
                _ => 0,
            },
        }))
    }

    /// Takes lease `name` from a holder that has not renewed it since `seen` was read.
    pub async fn take_over_lease(&self, name: &str, holder: &str, seen: &Lease) -> Result<bool> {
        let r = self
            .leases()
            .update_one(
                doc! {
                    "_id": name,
                    "holder": seen.holder.as_deref().map_or(Bson::Null, Into::into),
                    "seq": seen.seq,
                },
                doc! { "$set": { "holder": holder }, "$inc": { "seq": 1_i64 } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// Renews `holder`'s lease. Returns false when `holder` no longer holds it.
    pub async fn renew_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let r = self
            .leases()
            .update_one(
                doc! { "_id": name, "holder": holder },
                doc! { "$inc": { "seq": 1_i64 } },
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    /// Gives the lease up, so another process may take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.leases()
            .update_one(
                doc! { "_id": name, "holder": holder },
                doc! { "$set": { "holder": Bson::Null } },
            )
            .await?;
        Ok(())
    }
}
