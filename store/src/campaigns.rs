//! The `campaigns`, `campaign_items`, `campaign_pages` and `campaign_executions` collections.
//!
//! A campaign's items are a snapshot of its contact list taken when it starts: one item per
//! contact, `_id = "<campaign id>:<contact id>"`, so materialising twice creates nothing new.
//! Each item gets a number (`seq`) and is listed under it in `campaign_pages`, 1,000 numbers a
//! document, so send passes find their items by `_id` alone. An item moves `pending → sending → sent →
//! delivered | undelivered | failed`, or ends `skipped` / `cancelled`; `sending` is the recorded
//! intent that makes a retried send reconcile before it sends again.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{FindOptions, InsertManyOptions};
use serde::{Deserialize, Serialize};

use crate::schema::{CAMPAIGN_EXECUTIONS, CAMPAIGN_ITEMS, CAMPAIGN_PAGES, CAMPAIGNS, CONTACTS};
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

    /// Every status, most advanced first (`delivered` first among the final ones: the one
    /// receipts move on from).
    const ALL: [&str; 14] = [
        READ,
        DELIVERED,
        UNDELIVERED,
        FAILED,
        SKIPPED,
        CANCELLED,
        ANSWERED,
        VOICEMAIL_LEFT,
        MACHINE,
        BUSY,
        NO_ANSWER,
        SENT,
        SENDING,
        PENDING,
    ];

    /// The statuses an item may move to `status` from (lower rank), most likely first.
    pub fn below(status: &str) -> impl Iterator<Item = &'static str> {
        let rank = rank(status);
        ALL.into_iter().filter(move |s| self::rank(s) < rank)
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
    /// Whether the items carry a `seq` and the campaign keeps `status_counts` (campaigns
    /// materialised by this version; older ones page by `_id` and count by aggregation).
    #[serde(default)]
    pub indexed_items: bool,
    /// Whether the items are also listed in `campaign_pages` (campaigns materialised by this
    /// version): send passes then find a window's items by `_id` alone, not by `seq_key`.
    #[serde(default)]
    pub paged_items: bool,
    /// Next `seq` to hand out: every item's `seq` is below it.
    #[serde(default)]
    pub items_seq: i64,
    /// Items by status, kept by every write that moves an item (when `indexed_items`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_counts: BTreeMap<String, i64>,
    /// Last change of `status_counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts_at: Option<DateTime>,
    /// Last recount of `status_counts` from the items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts_checked_at: Option<DateTime>,
    /// Last pause, resume, cancel or rate change an api sent its workflow: progress reads
    /// serve no workflow state queried before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signalled_at: Option<DateTime>,
    /// Created.
    pub created_at: DateTime,
    /// Last change.
    pub updated_at: DateTime,
}

/// Contacts per materialised page (one `insert_many`, one `seq` reservation).
const MATERIALIZE_BATCH: usize = 5_000;
/// Materialise cursors from this version: the last contact's phone.
const PHONE_CURSOR: &str = "p:";
/// Send cursors of campaigns paged by `seq`: the first `seq` not yet looked at.
const SEQ_CURSOR: &str = "s:";
/// The `seq_key` index of `campaign_items`.
pub const ITEM_SEQ_INDEX: &str = "seq_key";
/// `seq` numbers per `campaign_pages` document: a send window (at most 1,000 items) spans at
/// most two pages.
pub const PAGE_WIDTH: i64 = 1_000;
/// Windows without an open item [`MongoStore::next_open_items`] steps over in one call.
pub const MAX_EMPTY_WINDOWS: usize = 50;
/// The campaign's counters by status.
const STATUS_COUNTS: &str = "status_counts";
/// How long a finished campaign's counters must be unchanged before a progress read recounts
/// them from the items: longer than any write takes between an item and its counter.
pub const RECOUNT_QUIET: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Position in the campaign, unique within it (gaps allowed): sending pages by windows of
    /// it, bounded on both sides (see [`MongoStore::next_open_items`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// `<campaign id>:<seq, 12 digits>`, the indexed form of `seq` (see [`seq_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_key: Option<String>,
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
    /// Number of the campaign batch (counted over the campaign's life) that last took the item
    /// to send or skip: see [`MongoStore::items_finished_by_batch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
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
    /// Lists `items`, numbered from `first_seq` on, in their `campaign_pages` documents: one
    /// upsert per page touched (at most [`MATERIALIZE_BATCH`] / [`PAGE_WIDTH`] + 1), sent as
    /// one command. A repeated write lists an item twice, which readers skip.
    async fn list_in_pages(
        &self,
        campaign_id: &str,
        first_seq: i64,
        items: &[CampaignItemDoc],
    ) -> Result<()> {
        let mut by_page: BTreeMap<i64, Vec<Document>> = BTreeMap::new();
        for (item, seq) in items.iter().zip(first_seq..) {
            by_page
                .entry(seq / PAGE_WIDTH)
                .or_default()
                .push(doc! { "s": seq, "i": &item.id });
        }
        if by_page.is_empty() {
            return Ok(());
        }
        let statements: Vec<Document> = by_page
            .into_iter()
            .map(|(page, entries)| {
                doc! {
                    "q": { "_id": page_id(campaign_id, page) },
                    "u": { "$push": { "e": { "$each": entries } } },
                    "upsert": true,
                }
            })
            .collect();
        self.db
            .run_command(doc! { "update": CAMPAIGN_PAGES, "updates": statements, "ordered": true })
            .await?;
        Ok(())
    }

    /// The ids of the items numbered `[from, to)` in order, read from their pages by `_id`
    /// (pages already in `cache` are not read again); each id once.
    async fn paged_ids(
        &self,
        campaign_id: &str,
        cache: &mut PageCache,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>> {
        if to <= from {
            return Ok(Vec::new());
        }
        // Windows only move forward: at most the two pages of one window stay in memory.
        cache.0.retain(|&p, _| p >= from / PAGE_WIDTH);
        let pages: Vec<i64> = (from / PAGE_WIDTH..=(to - 1) / PAGE_WIDTH).collect();
        if pages.iter().any(|p| !cache.0.contains_key(p)) {
            for &p in &pages {
                cache.0.entry(p).or_default();
            }
            // Not hinted: the planner takes `_id` anyway, and the local server scans the whole
            // `_id` index when it is hinted (docs/benchmarks.md).
            let (filter, _, _) = pages_query(campaign_id, from, to);
            let mut found = self
                .db
                .collection::<Document>(CAMPAIGN_PAGES)
                .find(filter)
                .await?;
            while let Some(page) = found.try_next().await? {
                let Some(number) = page
                    .get_str("_id")
                    .ok()
                    .and_then(|id| id.rsplit_once(':'))
                    .and_then(|(_, n)| n.parse::<i64>().ok())
                else {
                    continue;
                };
                let entries = page
                    .get_array("e")
                    .map(|e| {
                        e.iter()
                            .filter_map(|v| {
                                let d = v.as_document()?;
                                Some((d.get_i64("s").ok()?, d.get_str("i").ok()?.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                cache.0.insert(number, entries);
            }
        }
        let mut window: Vec<&(i64, String)> = pages
            .iter()
            .filter_map(|p| cache.0.get(p))
            .flatten()
            .filter(|(s, _)| (from..to).contains(s))
            .collect();
        window.sort_unstable_by_key(|(s, _)| *s);
        let mut seen = std::collections::HashSet::with_capacity(window.len());
        Ok(window
            .into_iter()
            .filter(|(_, id)| seen.insert(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect())
    }

    /// The items of a [`open_items_by_ids`] or [`finished_items_by_ids`] query, in the order of
    /// `ids`.
    async fn items_by_ids(&self, ids: &[String], query: PageQuery) -> Result<Vec<CampaignItemDoc>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Not hinted, as in `paged_ids`.
        let (filter, _, _) = query;
        let mut items: Vec<CampaignItemDoc> =
            self.items().find(filter).await?.try_collect().await?;
        let position: std::collections::HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| (id.as_str(), n))
            .collect();
        items.sort_by_key(|i| position.get(i.id.as_str()).copied().unwrap_or(usize::MAX));
        Ok(items)
    }

    /// The items numbered `[from, to)` of a paged campaign that match `status_filter`, at most
    /// `limit`, page by page.
    async fn paged_items_matching(
        &self,
        campaign_id: &str,
        from: i64,
        to: i64,
        limit: i64,
        status_filter: &Document,
    ) -> Result<Vec<CampaignItemDoc>> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut pages = PageCache::default();
        let mut found = Vec::new();
        let mut at = from;
        while at < to && found.len() < limit {
            let end = (at / PAGE_WIDTH + 1).saturating_mul(PAGE_WIDTH).min(to);
            let ids = self.paged_ids(campaign_id, &mut pages, at, end).await?;
            let query = items_by_ids_matching(&ids, status_filter.clone());
            found.extend(self.items_by_ids(&ids, query).await?);
            at = end;
        }
        found.truncate(limit);
        Ok(found)
    }

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

    /// Records that the campaign's workflow was just signalled.
    pub async fn set_campaign_signalled(&self, id: &str) -> Result<()> {
        self.campaigns()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "signalled_at": DateTime::now() } },
            )
            .await?;
        Ok(())
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

    /// Copies contacts of `list_id` after the cursor `after` into items of the campaign, page by
    /// page, until the list ends or `deadline` passes; returns (contacts read, the cursor after
    /// them, whether the list ended). Idempotent: an item that exists is left as it is.
    ///
    /// One query streams the whole call: a local MongoDB-wire server (secantusd-rs) reads the
    /// whole remaining key range of a range query whatever its limit, so a query per page would
    /// cost the rest of the list on every page (docs/benchmarks.md). The query walks the
    /// `(list_id, phone)` unique index (keyset on `phone`), so on MongoDB a page costs its own
    /// contacts whatever the list or collection size. Cursors are `p:<phone>`; any other cursor
    /// is a contact `_id` from an earlier version, whose campaign carries on paging by `_id`.
    pub async fn materialize_items(
        &self,
        campaign_id: &str,
        list_id: &str,
        after: Option<&str>,
        deadline: std::time::Instant,
    ) -> Result<(usize, Option<String>, bool)> {
        let legacy = after.filter(|a| !a.starts_with(PHONE_CURSOR));
        let (filter, sort, hint) = match (legacy, after) {
            (Some(id), _) => (
                doc! { "list_id": list_id, "_id": { "$gt": id } },
                doc! { "_id": 1 },
                "_id_",
            ),
            (None, after) => {
                contacts_query(list_id, after.and_then(|a| a.strip_prefix(PHONE_CURSOR)))
            }
        };
        let (mut indexed, mut paged) = self
            .get_campaign(campaign_id)
            .await?
            .map_or((false, false), |c| (c.indexed_items, c.paged_items));
        // A fresh start takes this version's layout (seq and counters) from the first item on;
        // a campaign an earlier version began materialising keeps its own to the end.
        if !indexed
            && after.is_none()
            && self
                .items()
                .find_one(doc! { "campaign_id": campaign_id })
                .await?
                .is_none()
        {
            self.campaigns()
                .update_one(
                    doc! { "_id": campaign_id },
                    doc! { "$set": { "indexed_items": true, "paged_items": true } },
                )
                .await?;
            indexed = true;
            paged = true;
        }
        let mut cursor = self
            .db
            .collection::<Document>(CONTACTS)
            .find(filter)
            .sort(sort)
            .hint(mongodb::options::Hint::Name(hint.to_owned()))
            .batch_size(MATERIALIZE_BATCH as u32)
            .await?;
        let mut read = 0;
        let mut last = after.map(str::to_owned);
        let mut page = Vec::with_capacity(MATERIALIZE_BATCH);
        loop {
            let next = cursor.try_next().await?;
            let end = next.is_none();
            if let Some(c) = next {
                page.push(c);
            }
            if page.len() == MATERIALIZE_BATCH || (end && !page.is_empty()) {
                read += page.len();
                let tail = page.last().expect("a full page");
                last = Some(if legacy.is_some() {
                    contact_id(tail)
                } else {
                    format!(
                        "{PHONE_CURSOR}{}",
                        tail.get_str("phone").unwrap_or_default()
                    )
                });
                self.insert_items(campaign_id, &page, indexed, paged)
                    .await?;
                page.clear();
                if !end && std::time::Instant::now() >= deadline {
                    return Ok((read, last, false));
                }
            }
            if end {
                return Ok((read, last, true));
            }
        }
    }

    /// Inserts one page of items (a retried page inserts nothing twice) and counts the new ones
    /// as `pending`. Paged campaigns list the items in `campaign_pages` first, so no item exists
    /// that no page lists; a retried page lists its items again under new numbers, which the
    /// send pass reads as items already done.
    async fn insert_items(
        &self,
        campaign_id: &str,
        contacts: &[Document],
        indexed: bool,
        paged: bool,
    ) -> Result<()> {
        let first_seq = if indexed {
            let n = i64::try_from(contacts.len()).unwrap_or(i64::MAX);
            // Reserved before the insert: a retried page takes new numbers for the items it
            // creates, so numbers stay unique (gaps are harmless).
            let c = self
                .campaigns()
                .find_one_and_update(
                    doc! { "_id": campaign_id },
                    doc! { "$inc": { "items_seq": n } },
                )
                .return_document(mongodb::options::ReturnDocument::After)
                .await?;
            c.map(|c| c.items_seq - n)
        } else {
            None
        };
        let now = DateTime::now();
        let items: Vec<CampaignItemDoc> = contacts
            .iter()
            .zip(0_i64..)
            .map(|(c, i)| {
                let cid = contact_id(c);
                CampaignItemDoc {
                    id: format!("{campaign_id}:{cid}"),
                    campaign_id: campaign_id.to_owned(),
                    contact_id: cid,
                    seq: first_seq.map(|s| s + i),
                    seq_key: first_seq.map(|s| seq_key(campaign_id, s + i)),
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
                    batch: None,
                    updated_at: now,
                }
            })
            .collect();
        if let (true, Some(first)) = (paged, first_seq) {
            self.list_in_pages(campaign_id, first, &items).await?;
        }
        let inserted = match self
            .items()
            .insert_many(&items)
            .with_options(InsertManyOptions::builder().ordered(false).build())
            .await
        {
            Ok(r) => r.inserted_ids.len(),
            // A retried page: the items already there stay as they are.
            Err(e) if is_duplicate_key(&e) => items.len() - duplicate_count(&e),
            Err(e) => return Err(e.into()),
        };
        if indexed {
            self.count_moves(
                campaign_id,
                &[(None, item_status::PENDING, inserted as i64)],
            )
            .await?;
        }
        Ok(())
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

    /// The next items to send after the cursor `after` that are not final yet (at most
    /// `limit`), and the cursor after them (`None`: the end of the pass).
    ///
    /// Items of campaigns materialised by this version page by windows of `limit` numbers of
    /// `seq` (cursor `s:<seq>`). A window's item ids are read from its (at most two)
    /// `campaign_pages` documents, then the open ones among them, both by `_id` alone: on
    /// MongoDB and on the local server alike a window costs its own items whatever the
    /// campaign's size (the local server reads the whole key range of a one-sided query and
    /// costs in proportion to the collection for any secondary-index range; docs/benchmarks.md).
    /// Campaigns of the previous version, whose items carry a `seq` but are not in pages, read
    /// the same windows through the `seq_key` index, bounded on both sides. Windows whose
    /// items are all final are stepped over, at most [`MAX_EMPTY_WINDOWS`] a call; a call that
    /// found nothing returns no items and a cursor to carry on from. Older campaigns page by
    /// `_id` as they did.
    pub async fn next_open_items(
        &self,
        campaign: &CampaignDoc,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<CampaignItemDoc>, Option<String>)> {
        let Some(mut from) = seq_cursor(campaign, after) else {
            let open = doc! { "$in": [item_status::PENDING, item_status::SENDING] };
            let mut id_filter =
                doc! { "$gte": format!("{}:", campaign.id), "$lt": format!("{};", campaign.id) };
            if let Some(after) = after {
                id_filter.insert("$gt", after);
            }
            let items: Vec<CampaignItemDoc> = self
                .items()
                .find(doc! { "_id": id_filter, "status": open })
                .sort(doc! { "_id": 1 })
                .limit(limit)
                .await?
                .try_collect()
                .await?;
            let next = items.last().map(|i| i.id.clone());
            return Ok((items, next));
        };
        let width = limit.clamp(1, PAGE_WIDTH);
        let mut pages = PageCache::default();
        for _ in 0..MAX_EMPTY_WINDOWS {
            if from >= campaign.items_seq {
                return Ok((Vec::new(), None));
            }
            let to = from.saturating_add(width);
            if campaign.paged_items {
                let ids = self.paged_ids(&campaign.id, &mut pages, from, to).await?;
                let items = self.items_by_ids(&ids, open_items_by_ids(&ids)).await?;
                from = to;
                if !items.is_empty() {
                    return Ok((items, Some(format!("{SEQ_CURSOR}{from}"))));
                }
                continue;
            }
            let (filter, sort, hint) = open_items_window(&campaign.id, from, to);
            let items: Vec<CampaignItemDoc> = self
                .items()
                .find(filter)
                .sort(sort)
                .hint(mongodb::options::Hint::Name(hint.to_owned()))
                .await?
                .try_collect()
                .await?;
            from = to;
            if !items.is_empty() {
                return Ok((items, Some(format!("{SEQ_CURSOR}{from}"))));
            }
        }
        Ok((Vec::new(), Some(format!("{SEQ_CURSOR}{from}"))))
    }

    /// Items of the campaign after `after`, up to `up_to`, that are past `sending` but whose
    /// latest attempt has no `campaign_executions` record: a worker that died after the
    /// provider accepted a send and before its record was written, while a status callback
    /// moved the item on, so no retry will look at it again. At most `limit` finished items are
    /// examined. `after` and `up_to` are cursors of [`Self::next_open_items`]: for campaigns
    /// paged by `seq` the range ends before `up_to` (`None`: the campaign's end); for older
    /// ones it ends at the item `up_to`, inclusive.
    pub async fn items_missing_executions(
        &self,
        campaign: &CampaignDoc,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CampaignItemDoc>> {
        let finished = self
            .items_in_range(campaign, after, up_to, limit, finished_items_filter())
            .await?;
        self.without_executions(&campaign.id, finished).await
    }

    /// Items of the campaign after `after`, up to `up_to` (cursors as in
    /// [`Self::items_missing_executions`]), that batch number `batch` finished: a retried batch
    /// counts what its earlier attempts sent, failed or skipped, since its own page no longer
    /// holds them. At most `limit`.
    pub async fn items_finished_by_batch(
        &self,
        campaign: &CampaignDoc,
        after: Option<&str>,
        up_to: Option<&str>,
        batch: i64,
        limit: i64,
    ) -> Result<Vec<CampaignItemDoc>> {
        self.items_in_range(campaign, after, up_to, limit, batch_items_filter(batch))
            .await
    }

    /// The items matching `status_filter` between two cursors of [`Self::next_open_items`],
    /// in campaign order, at most `limit`.
    async fn items_in_range(
        &self,
        campaign: &CampaignDoc,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: i64,
        status_filter: Document,
    ) -> Result<Vec<CampaignItemDoc>> {
        let campaign_id = campaign.id.as_str();
        let (filter, sort, hint) = if let Some(from) = seq_cursor(campaign, after) {
            let to = seq_cursor(campaign, up_to)
                .filter(|_| up_to.is_some())
                .unwrap_or(campaign.items_seq);
            if campaign.paged_items {
                return self
                    .paged_items_matching(campaign_id, from, to, limit, &status_filter)
                    .await;
            }
            items_window_matching(campaign_id, from, to, status_filter)
        } else {
            let mut id_filter =
                doc! { "$gte": format!("{campaign_id}:"), "$lt": format!("{campaign_id};") };
            if let Some(after) = after {
                id_filter.insert("$gt", after);
            }
            if let Some(up_to) = up_to {
                id_filter.insert("$lte", up_to);
            }
            let mut filter = doc! { "_id": id_filter };
            filter.extend(status_filter);
            (filter, doc! { "_id": 1 }, "_id_")
        };
        Ok(self
            .items()
            .find(filter)
            .sort(sort)
            .hint(mongodb::options::Hint::Name(hint.to_owned()))
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// The items of `finished` whose latest attempt has no `campaign_executions` record.
    async fn without_executions(
        &self,
        campaign_id: &str,
        finished: Vec<CampaignItemDoc>,
    ) -> Result<Vec<CampaignItemDoc>> {
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

    /// Marks items of one campaign `sending` (the intent) and counts the attempt. Returns
    /// nothing: the caller already holds each item's state from before.
    pub async fn begin_item_sends(&self, item_ids: &[String], batch: Option<i64>) -> Result<()> {
        let Some(first) = item_ids.first() else {
            return Ok(());
        };
        let now = DateTime::now();
        let mut set = doc! { "status": item_status::SENDING, "status_rank": item_status::rank(item_status::SENDING), "updated_at": now };
        if let Some(batch) = batch {
            set.insert("batch", batch);
        }
        let update = doc! {
            "$set": set,
            "$min": { "send_started_at": now },
            "$inc": { "attempts": 1 },
        };
        // Items already `sending` first, so those moved from `pending` next are counted once
        // and their attempt counted once; the second write's count is exactly the moves.
        self.items()
            .update_many(
                doc! { "_id": { "$in": item_ids.to_vec() }, "status": item_status::SENDING },
                update.clone(),
            )
            .await?;
        let moved = self
            .items()
            .update_many(
                doc! { "_id": { "$in": item_ids.to_vec() }, "status": item_status::PENDING },
                update,
            )
            .await?
            .modified_count;
        self.count_moves(
            campaign_of(first),
            &[(
                Some(item_status::PENDING),
                item_status::SENDING,
                moved as i64,
            )],
        )
        .await
    }

    /// The provider accepted the item's message.
    pub async fn record_item_accepted(&self, item_id: &str, sid: &str) -> Result<()> {
        // If a status callback got here first, it already stored the SID with a higher status,
        // and this update matches nothing.
        self.record_items_accepted(&[(item_id.to_owned(), sid.to_owned())])
            .await?;
        Ok(())
    }

    /// [`MongoStore::record_item_accepted`] for many items in one round trip: one `update`
    /// command with a statement per item (the server's cost per item is about half that of
    /// single updates). Returns how many items changed.
    pub async fn record_items_accepted(&self, accepted: &[(String, String)]) -> Result<u64> {
        let now = DateTime::now();
        let rank = item_status::rank(item_status::SENT);
        let mut by_campaign: BTreeMap<&str, Vec<(Document, Document)>> = BTreeMap::new();
        for (item_id, sid) in accepted {
            by_campaign.entry(campaign_of(item_id)).or_default().push((
                doc! { "_id": item_id },
                doc! { "$set": {
                    "message_sid": sid,
                    "status": item_status::SENT,
                    "status_rank": rank,
                    "updated_at": now,
                } },
            ));
        }
        let mut changed = 0;
        for (campaign_id, statements) in by_campaign {
            changed += self
                .update_counted(campaign_id, item_status::SENT, statements)
                .await?;
        }
        Ok(changed)
    }

    /// Status callbacks of campaign items' messages, in few round trips (the api groups them).
    /// Each moves its item forward only; two callbacks for the same item may share a group, and
    /// the later status wins whatever order the server applies them in. Returns how many items
    /// changed.
    pub async fn apply_item_callbacks(&self, callbacks: &[ItemCallback]) -> Result<u64> {
        let mut groups: BTreeMap<(&str, &str), Vec<(Document, Document)>> = BTreeMap::new();
        for c in callbacks {
            let (filter, set) = item_callback_write(c);
            groups
                .entry((campaign_of(&c.item_id), c.status.as_str()))
                .or_default()
                .push((filter, doc! { "$set": set }));
        }
        let mut changed = 0;
        for ((campaign_id, status), statements) in groups {
            changed += self.update_counted(campaign_id, status, statements).await?;
        }
        Ok(changed)
    }

    /// Moves items of one campaign to `to` and counts the moves exactly: the statements (each
    /// a filter without a status, and an update setting `to`) run once for each status below
    /// `to` (most likely first), each time only on items in that status, until all have
    /// applied. A write's count of changed items is then exactly the number of moves from that
    /// status, whatever the order callbacks and sends arrive in or how often they repeat.
    async fn update_counted(
        &self,
        campaign_id: &str,
        to: &str,
        statements: Vec<(Document, Document)>,
    ) -> Result<u64> {
        let mut changed = 0;
        let mut moves = Vec::new();
        for from in item_status::below(to) {
            let run = statements
                .iter()
                .map(|(q, u)| {
                    let mut q = q.clone();
                    q.insert("status", from);
                    doc! { "q": q, "u": u.clone() }
                })
                .collect();
            let n = self.update_items_each(run).await?;
            if n > 0 {
                moves.push((Some(from), to, i64::try_from(n).unwrap_or(i64::MAX)));
            }
            changed += n;
            if changed as usize >= statements.len() {
                break;
            }
        }
        self.count_moves(campaign_id, &moves).await?;
        Ok(changed)
    }

    /// Adds moves between statuses (`None`: a new item) to the campaign's `status_counts`, in
    /// one single-document update. Campaigns from before the counters are left alone.
    ///
    /// Counters follow the item writes, so a process that dies between the two leaves them
    /// short by that write: [`Self::progress_counts`] recounts a finished campaign once it has
    /// been quiet for [`RECOUNT_QUIET`].
    async fn count_moves(
        &self,
        campaign_id: &str,
        moves: &[(Option<&str>, &str, i64)],
    ) -> Result<()> {
        let mut inc: BTreeMap<String, i64> = BTreeMap::new();
        for (from, to, n) in moves {
            if *n == 0 {
                continue;
            }
            *inc.entry(format!("{STATUS_COUNTS}.{to}")).or_default() += n;
            if let Some(from) = from {
                *inc.entry(format!("{STATUS_COUNTS}.{from}")).or_default() -= n;
            }
        }
        inc.retain(|_, n| *n != 0);
        if inc.is_empty() {
            return Ok(());
        }
        let inc: Document = inc.into_iter().map(|(k, n)| (k, n.into())).collect();
        self.campaigns()
            .update_one(
                doc! { "_id": campaign_id, "indexed_items": true },
                doc! { "$inc": inc, "$set": { "counts_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// Item counts by status for the progress read: the campaign's counters (one document,
    /// whatever its size), or an aggregation over the items for campaigns from before them.
    /// A finished campaign quiet for [`RECOUNT_QUIET`] since its last counted write, and not
    /// recounted since, is recounted once from its items, so counters a crash left short are
    /// exact at the end (a write during the recount makes its result be dropped; the next
    /// quiet read recounts again).
    pub async fn progress_counts(&self, campaign: &CampaignDoc) -> Result<BTreeMap<String, i64>> {
        if !campaign.indexed_items {
            return self.item_counts(&campaign.id).await;
        }
        let finished = matches!(
            campaign.status.as_str(),
            campaign_status::COMPLETED | campaign_status::CANCELLED
        );
        let now = DateTime::now();
        if let Some(at) = campaign.counts_at
            && finished
            && campaign
                .counts_checked_at
                .is_none_or(|checked| checked < at)
            && now.timestamp_millis() - at.timestamp_millis() >= RECOUNT_QUIET.as_millis() as i64
        {
            let counts = self.item_counts(&campaign.id).await?;
            let stored: Document = counts
                .iter()
                .map(|(k, n)| (k.clone(), (*n).into()))
                .collect();
            self.campaigns()
                .update_one(
                    doc! { "_id": &campaign.id, "counts_at": at },
                    doc! { "$set": { STATUS_COUNTS: stored, "counts_checked_at": now } },
                )
                .await?;
            return Ok(counts);
        }
        Ok(campaign
            .status_counts
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect())
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
        self.advance_item(
            item_id,
            doc! { "_id": item_id },
            status,
            error_code,
            Some(reason),
            None,
        )
        .await
    }

    /// Marks an item `skipped`, by batch number `batch` when a numbered batch skips it (see
    /// [`Self::items_finished_by_batch`]).
    pub async fn skip_item(&self, item_id: &str, reason: &str, batch: Option<i64>) -> Result<bool> {
        self.advance_item(
            item_id,
            doc! { "_id": item_id },
            item_status::SKIPPED,
            None,
            Some(reason),
            batch,
        )
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
            item_id,
            doc! { "_id": item_id, "attempts": attempts },
            status,
            error_code,
            Some(reason),
            None,
        )
        .await
    }

    /// Puts an item back to `pending` after a refused send (429) so a later pass retries it,
    /// unless a later attempt has begun sending it since (its send count is past `attempts`).
    pub async fn release_item(&self, item_id: &str, attempts: i32) -> Result<()> {
        let r = self
            .items()
            .update_one(
                doc! { "_id": item_id, "attempts": attempts, "status": item_status::SENDING, "message_sid": { "$exists": false } },
                doc! { "$set": { "status": item_status::PENDING, "status_rank": 0, "updated_at": DateTime::now() } },
            )
            .await?;
        self.count_moves(
            campaign_of(item_id),
            &[(
                Some(item_status::SENDING),
                item_status::PENDING,
                i64::try_from(r.modified_count).unwrap_or_default(),
            )],
        )
        .await
    }

    async fn advance_item(
        &self,
        item_id: &str,
        mut filter: Document,
        status: &str,
        error_code: Option<i64>,
        reason: Option<&str>,
        batch: Option<i64>,
    ) -> Result<bool> {
        let rank = item_status::rank(status);
        filter.insert("status_rank", doc! { "$lt": rank });
        let mut set = doc! { "status": status, "status_rank": rank, "updated_at": DateTime::now() };
        if let Some(batch) = batch {
            set.insert("batch", batch);
        }
        if let Some(code) = error_code {
            set.insert("error_code", code);
        }
        if let Some(reason) = reason {
            set.insert("reason", reason);
        }
        // The item as it was, so the move is counted from the status it really left.
        let before = self
            .db
            .collection::<Document>(CAMPAIGN_ITEMS)
            .find_one_and_update(filter, doc! { "$set": set })
            .projection(doc! { "status": 1 })
            .return_document(mongodb::options::ReturnDocument::Before)
            .await?;
        let Some(before) = before else {
            return Ok(false);
        };
        let from = before.get_str("status").unwrap_or(item_status::PENDING);
        self.count_moves(campaign_of(item_id), &[(Some(from), status, 1)])
            .await?;
        Ok(true)
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
        self.count_moves(
            campaign_id,
            &[(
                Some(item_status::PENDING),
                item_status::CANCELLED,
                i64::try_from(r.modified_count).unwrap_or_default(),
            )],
        )
        .await?;
        Ok(r.modified_count)
    }

    /// Item counts by status, by an aggregation over every item of the campaign (its cost
    /// grows with the campaign: progress reads use [`Self::progress_counts`]).
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

/// A page query: filter, sort and the index that serves both.
pub type PageQuery = (Document, Document, &'static str);

/// The materialisation query of a list's contacts after `after_phone`: a keyset walk of the
/// `(list_id, phone)` unique index.
pub fn contacts_query(list_id: &str, after_phone: Option<&str>) -> PageQuery {
    let mut filter = doc! { "list_id": list_id };
    if let Some(phone) = after_phone {
        filter.insert("phone", doc! { "$gt": phone });
    }
    (
        filter,
        doc! { "list_id": 1, "phone": 1 },
        "list_phone_unique",
    )
}

/// Items still to send: `pending` or `sending`.
fn open_items_filter() -> Document {
    doc! { "status": { "$in": [item_status::PENDING, item_status::SENDING] } }
}

/// Items attempted and finished (a retried batch's check for lost attempt records).
fn finished_items_filter() -> Document {
    doc! {
        "status": { "$nin": [item_status::PENDING, item_status::SENDING, item_status::CANCELLED] },
        "attempts": { "$gte": 1 },
    }
}

/// Items that batch number `batch` finished (sent, failed or skipped).
fn batch_items_filter(batch: i64) -> Document {
    doc! {
        "status": { "$nin": [item_status::PENDING, item_status::SENDING, item_status::CANCELLED] },
        "batch": batch,
    }
}

/// The open (`pending`, `sending`) items of one window of `seq`, `[from, to)`.
pub fn open_items_window(campaign_id: &str, from: i64, to: i64) -> PageQuery {
    let mut filter = doc! {
        "seq_key": { "$gte": seq_key(campaign_id, from), "$lt": seq_key(campaign_id, to) },
    };
    filter.extend(open_items_filter());
    (filter, doc! { "seq_key": 1 }, ITEM_SEQ_INDEX)
}

/// The attempted, finished items of one window of `seq`, `[from, to)`.
pub fn finished_items_window(campaign_id: &str, from: i64, to: i64) -> PageQuery {
    items_window_matching(campaign_id, from, to, finished_items_filter())
}

/// The items of one window of `seq`, `[from, to)`, that batch number `batch` finished.
pub fn batch_items_window(campaign_id: &str, from: i64, to: i64, batch: i64) -> PageQuery {
    items_window_matching(campaign_id, from, to, batch_items_filter(batch))
}

/// The items of one window of `seq`, `[from, to)`, that match `status_filter`.
fn items_window_matching(
    campaign_id: &str,
    from: i64,
    to: i64,
    status_filter: Document,
) -> PageQuery {
    let mut filter = doc! {
        "seq_key": { "$gte": seq_key(campaign_id, from), "$lt": seq_key(campaign_id, to) },
    };
    filter.extend(status_filter);
    (filter, doc! { "seq_key": 1 }, ITEM_SEQ_INDEX)
}

/// The `campaign_pages` document of the `seq` numbers `[page * PAGE_WIDTH, (page + 1) *
/// PAGE_WIDTH)`.
pub fn page_id(campaign_id: &str, page: i64) -> String {
    format!("{campaign_id}:{page:012}")
}

/// The `campaign_pages` documents that list the items numbered `[from, to)`: read by `_id`.
pub fn pages_query(campaign_id: &str, from: i64, to: i64) -> PageQuery {
    let pages: Vec<String> = (from / PAGE_WIDTH..=(to.max(from + 1) - 1) / PAGE_WIDTH)
        .map(|p| page_id(campaign_id, p))
        .collect();
    (doc! { "_id": { "$in": pages } }, doc! {}, "_id_")
}

/// The open items among `ids` (a window of a paged campaign): read by `_id`.
pub fn open_items_by_ids(ids: &[String]) -> PageQuery {
    let mut filter = doc! { "_id": { "$in": ids } };
    filter.extend(open_items_filter());
    (filter, doc! {}, "_id_")
}

/// The attempted, finished items among `ids`: read by `_id`.
pub fn finished_items_by_ids(ids: &[String]) -> PageQuery {
    items_by_ids_matching(ids, finished_items_filter())
}

/// The items among `ids` that batch number `batch` finished: read by `_id`.
pub fn batch_items_by_ids(ids: &[String], batch: i64) -> PageQuery {
    items_by_ids_matching(ids, batch_items_filter(batch))
}

/// The items among `ids` that match `status_filter`: read by `_id`.
fn items_by_ids_matching(ids: &[String], status_filter: Document) -> PageQuery {
    let mut filter = doc! { "_id": { "$in": ids } };
    filter.extend(status_filter);
    (filter, doc! {}, "_id_")
}

/// Pages of one campaign read so far by one call, by page number: (seq, item id) entries.
#[derive(Default)]
struct PageCache(std::collections::HashMap<i64, Vec<(i64, String)>>);

/// The indexed form of an item's `seq`: one string whose order is (campaign, seq). On MongoDB
/// a compound `(campaign_id, seq)` index serves the same windows; on the local server a range
/// on either costs in proportion to the collection (this one a little less; both 1.4-2.5 s of
/// CPU per window at 1,000,000 items, docs/benchmarks.md), which `campaign_pages` avoids; kept
/// for campaigns materialised before pages.
pub fn seq_key(campaign_id: &str, seq: i64) -> String {
    format!("{campaign_id}:{seq:012}")
}

/// The campaign of an item id (`<campaign id>:<contact id>`).
fn campaign_of(item_id: &str) -> &str {
    item_id.split_once(':').map_or(item_id, |(c, _)| c)
}

/// Where a send cursor of a campaign paged by `seq` starts (`None` for campaigns paged by
/// `_id`, or a cursor of theirs).
fn seq_cursor(campaign: &CampaignDoc, cursor: Option<&str>) -> Option<i64> {
    if !campaign.indexed_items {
        return None;
    }
    match cursor {
        None => Some(0),
        Some(c) => c.strip_prefix(SEQ_CURSOR)?.parse().ok(),
    }
}

/// How many of an `insert_many`'s failures are duplicate keys.
fn duplicate_count(err: &mongodb::error::Error) -> usize {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .map_or(0, |errs| errs.iter().filter(|w| w.code == 11000).count()),
        _ => 0,
    }
}
