//! The collections the product keeps (the earlier system's names) and their indexes.

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;

use crate::{MongoStore, Result};

/// `messages`: SMS and WhatsApp history, one document per message.
pub const MESSAGES: &str = "messages";
/// `campaigns`: one document per campaign.
pub const CAMPAIGNS: &str = "campaigns";
/// `campaign_items`: one document per contact of a campaign, with its status.
pub const CAMPAIGN_ITEMS: &str = "campaign_items";
/// `campaign_executions`: one document per attempt at a campaign item.
pub const CAMPAIGN_EXECUTIONS: &str = "campaign_executions";
/// `campaign_pages`: a campaign's item ids in send order, one document per 1,000 `seq`
/// numbers, so a send pass finds its items by `_id` alone.
pub const CAMPAIGN_PAGES: &str = "campaign_pages";
/// `contact_lists`: named lists of contacts.
pub const CONTACT_LISTS: &str = "contact_lists";
/// `contacts`: the people on a list.
pub const CONTACTS: &str = "contacts";
/// `call_logs`: call records and transcripts.
pub const CALL_LOGS: &str = "call_logs";
/// `conversations`: the agent's side of each SMS / WhatsApp conversation.
pub const CONVERSATIONS: &str = "conversations";
/// `suppressions`: numbers that opted out, on every channel.
pub const SUPPRESSIONS: &str = "suppressions";
/// `whatsapp_sessions`: last inbound WhatsApp message per (our number, their number).
pub const WHATSAPP_SESSIONS: &str = "whatsapp_sessions";
/// `inbox`: webhook work stored and not yet handed to its workflow.
pub const INBOX: &str = "inbox";
/// `inbox_dead`: inbox entries Temporal refused outright, kept for an operator.
pub const INBOX_DEAD: &str = "inbox_dead";
/// `leases`: named leases, e.g. the one api process that drains the inbox.
pub const LEASES: &str = "leases";
/// `agent_profiles`: each agent profile's current version (`_id` = its name).
pub const AGENT_PROFILES: &str = "agent_profiles";
/// `agent_profile_versions`: every version of every profile, never changed.
pub const AGENT_PROFILE_VERSIONS: &str = "agent_profile_versions";
/// `sender_slots`: per sender, the first send slot nobody has reserved.
pub const SENDER_SLOTS: &str = "sender_slots";
/// `pending_uploads`: contact files previewed and waiting for their import (see
/// [`crate::uploads`]).
pub const PENDING_UPLOADS: &str = "pending_uploads";
/// `pending_upload_parts`: the files of `pending_uploads`, in parts.
pub const PENDING_UPLOAD_PARTS: &str = "pending_upload_parts";
/// `stats_days`: the dashboard's counters, one document per UTC day (see [`crate::stats`]).
pub const STATS_DAYS: &str = "stats_days";

/// One index: its name, keys, and whether it is unique and sparse.
struct IndexSpec {
    name: &'static str,
    keys: Document,
    unique: bool,
    sparse: bool,
}

fn index(name: &'static str, keys: Document) -> IndexSpec {
    IndexSpec {
        name,
        keys,
        unique: false,
        sparse: false,
    }
}

fn unique(name: &'static str, keys: Document) -> IndexSpec {
    IndexSpec {
        name,
        keys,
        unique: true,
        sparse: false,
    }
}

fn unique_sparse(name: &'static str, keys: Document) -> IndexSpec {
    IndexSpec {
        name,
        keys,
        unique: true,
        sparse: true,
    }
}

/// Every collection with its indexes.
///
/// Unique indexes sit on ids Twilio or the domain guarantees unique, so a repeated webhook or a
/// retried activity cannot create a second document. They are `sparse` where the field is set
/// only later (a message has no Twilio SID until the provider accepts it).
fn index_specs() -> Vec<(&'static str, Vec<IndexSpec>)> {
    vec![
        (
            MESSAGES,
            vec![
                unique_sparse("twilio_sid_unique", doc! { "twilio_sid": 1 }),
                index(
                    "conversation_created",
                    doc! { "conversation_id": 1, "created_at": -1 },
                ),
                index("to_created", doc! { "to": 1, "created_at": -1 }),
                index("from_created", doc! { "from": 1, "created_at": -1 }),
                index("created", doc! { "created_at": -1 }),
            ],
        ),
        (
            CAMPAIGNS,
            vec![
                index("status_created", doc! { "status": 1, "created_at": -1 }),
                // Pages of campaigns, newest first (`GET /api/campaigns`).
                index("created", doc! { "created_at": -1, "_id": -1 }),
                // A list's campaigns (a contact's history).
                index("list_created", doc! { "list_id": 1, "created_at": -1 }),
                index("name", doc! { "name": 1 }),
            ],
        ),
        (
            CAMPAIGN_ITEMS,
            vec![
                unique(
                    "campaign_contact_unique",
                    doc! { "campaign_id": 1, "contact_id": 1 },
                ),
                // Send windows of campaigns materialised before `campaign_pages` (bounded on
                // both sides). It never changes, so status writes do not touch this index.
                index(crate::campaigns::ITEM_SEQ_INDEX, doc! { "seq_key": 1 }),
                // No index on status or message_sid: every status change would update it, at
                // campaign rates the server's main cost; queries by campaign use the index above.
            ],
        ),
        (
            CAMPAIGN_EXECUTIONS,
            vec![unique(
                "item_attempt_unique",
                doc! { "campaign_id": 1, "item_id": 1, "attempt": 1 },
            )],
        ),
        (CONTACT_LISTS, vec![index("name", doc! { "name": 1 })]),
        (
            CONTACTS,
            vec![
                // Serves paging a list by phone and the import's duplicate checks.
                unique("list_phone_unique", doc! { "list_id": 1, "phone": 1 }),
                // A contact's details by number across lists (conversations).
                index("phone", doc! { "phone": 1 }),
            ],
        ),
        (
            CALL_LOGS,
            vec![
                unique_sparse("call_sid_unique", doc! { "call_sid": 1 }),
                index("started", doc! { "started_at": -1 }),
                index("campaign", doc! { "campaign_id": 1 }),
                // A campaign's calls, newest first (`GET /api/calls?campaign_id=`).
                index(
                    "campaign_started",
                    doc! { "campaign_id": 1, "started_at": -1, "_id": -1 },
                ),
                // The latest change, for the web app's live updates (one key read a second).
                index("updated", doc! { "updated_at": -1 }),
                // A contact's calls, newest first (the contact page).
                index("to_started", doc! { "to": 1, "started_at": -1 }),
                index("from_started", doc! { "from": 1, "started_at": -1 }),
            ],
        ),
        (
            CONVERSATIONS,
            vec![
                index(
                    "needs_human_updated",
                    doc! { "needs_human": 1, "updated_at": -1 },
                ),
                // The latest change, for the web app's live updates (one key read a second).
                index("updated", doc! { "updated_at": -1 }),
            ],
        ),
        // Keyed by phone number (`_id`); no further index needed.
        (SUPPRESSIONS, vec![]),
        (WHATSAPP_SESSIONS, vec![]),
        // The drainer reads the oldest entries; the collection holds only pending ones.
        (INBOX, vec![index("seq", doc! { "seq": 1, "_id": 1 })]),
        (INBOX_DEAD, vec![]),
        // Read by `_id` only (`<campaign>:<page>`).
        (CAMPAIGN_PAGES, vec![]),
        (LEASES, vec![]),
        (SENDER_SLOTS, vec![]),
        // Read by `_id` (days); the latest count, for the web app's live updates. One
        // document a day, so the index stays tiny.
        (
            STATS_DAYS,
            vec![index("counted", doc! { "counted_at": -1 })],
        ),
        // A few documents at most, read by `_id`.
        (PENDING_UPLOADS, vec![]),
        (PENDING_UPLOAD_PARTS, vec![]),
        (
            AGENT_PROFILES,
            // Which profile answers a number (a conversation's first turn, a call).
            vec![index("numbers", doc! { "numbers": 1, "created_at": -1 })],
        ),
        (
            AGENT_PROFILE_VERSIONS,
            vec![
                // A profile's history, newest first.
                unique("name_version_unique", doc! { "name": 1, "version": -1 }),
                // Whether a file's profile was imported already.
                index("name_file_hash", doc! { "name": 1, "file_hash": 1 }),
            ],
        ),
    ]
}

/// Indexes earlier versions created and nothing reads any more: every insert paid for them.
/// `contacts.list_name` served no query (name search is a case-insensitive "contains" match,
/// which no index helps) and cost about 0.4 s of server time per 100,000 imported contacts.
const RETIRED_INDEXES: [(&str, &str); 1] = [(CONTACTS, "list_name")];

impl MongoStore {
    /// Creates every collection and index if missing, and drops retired indexes. Safe to call
    /// from every process at every start: creating an existing index with the same definition
    /// is a no-op, and so is dropping one that is gone.
    pub async fn ensure_schema(&self) -> Result<()> {
        let existing = self.db.list_collection_names().await?;
        for (collection, indexes) in index_specs() {
            if !existing.iter().any(|c| c == collection) {
                match self.db.create_collection(collection).await {
                    Ok(()) => {}
                    // Another process created it between the listing and now.
                    Err(e) if is_namespace_exists(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let models = indexes
                .into_iter()
                .map(|spec| {
                    let mut options = IndexOptions::builder().name(spec.name.to_owned()).build();
                    if spec.unique {
                        options.unique = Some(true);
                    }
                    if spec.sparse {
                        options.sparse = Some(true);
                    }
                    IndexModel::builder()
                        .keys(spec.keys)
                        .options(options)
                        .build()
                })
                .collect::<Vec<_>>();
            if models.is_empty() {
                continue;
            }
            self.db
                .collection::<Document>(collection)
                .create_indexes(models)
                .await?;
        }
        for (collection, name) in RETIRED_INDEXES {
            match self
                .db
                .collection::<Document>(collection)
                .drop_index(name)
                .await
            {
                Ok(()) => {}
                // Already gone (a new store, or another process dropped it first).
                Err(e) if is_index_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// IndexNotFound (27), or NamespaceNotFound (26) for a collection that does not exist.
fn is_index_not_found(err: &mongodb::error::Error) -> bool {
    matches!(
        err.kind.as_ref(),
        mongodb::error::ErrorKind::Command(c) if matches!(c.code, 26 | 27)
    )
}

fn is_namespace_exists(err: &mongodb::error::Error) -> bool {
    matches!(err.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48)
}

/// Names of all collections, for tools and tests.
pub const ALL_COLLECTIONS: [&str; 20] = [
    MESSAGES,
    CAMPAIGNS,
    CAMPAIGN_ITEMS,
    CAMPAIGN_EXECUTIONS,
    CAMPAIGN_PAGES,
    CONTACT_LISTS,
    CONTACTS,
    CALL_LOGS,
    CONVERSATIONS,
    SUPPRESSIONS,
    WHATSAPP_SESSIONS,
    INBOX,
    INBOX_DEAD,
    LEASES,
    SENDER_SLOTS,
    AGENT_PROFILES,
    AGENT_PROFILE_VERSIONS,
    STATS_DAYS,
    PENDING_UPLOADS,
    PENDING_UPLOAD_PARTS,
];
