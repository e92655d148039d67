//! MongoDB store: the domain data and the read model the API and dashboard page through.
//!
//! | module | collections |
//! |---|---|
//! | [`schema`] | every collection and their indexes, created at start-up |
//! | [`auth`] | `users`, `api_keys`, `sessions`, `audit_log`: access control |
//! | [`messages`] | `messages`: SMS/WhatsApp history, outbound intents and delivery status |
//! | [`calls`] | `call_logs`: one document per call, with the transcript |
//! | [`campaign_items`] | a campaign's items for people: filtered pages, one item's attempts |
//! | [`campaigns`] | `campaigns`, `campaign_items`, `campaign_executions` |
//! | [`contact_history`] | one contact's opt-out state, messages, calls and campaigns |
//! | [`contacts`] | `contact_lists`, `contacts` |
//! | [`conversations`] | `conversations`: the agent's actions, usage and summary per conversation |
//! | [`suppressions`] | `suppressions`: opted-out numbers |
//! | [`whatsapp`] | `whatsapp_sessions`: the 24-hour session window per person |
//! | [`inbox`] | `inbox`: webhook work waiting for its workflow; `leases`: who drains it |
//! | [`profiles`] | `agent_profiles`, `agent_profile_versions`: agent profiles, a version per change |
//! | [`senders`] | `sender_slots`: the send slots reserved on each sender, across campaigns and single sends |
//! | [`stats`] | `stats_days`: the dashboard's daily counters |
//! | [`uploads`] | `pending_uploads`, `pending_upload_parts`: previewed contact files waiting for their import |
//!
//! Every write here is idempotent (upserts, `$setOnInsert`, unique keys on provider ids, status
//! changes guarded by rank), because Temporal runs activities at least once. Nothing uses
//! multi-document transactions or change streams, so the same code runs on MongoDB, Atlas and
//! the local MongoDB-wire server (see `mongodb-local.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), voice_agent_store::StoreError> {
//! let store = voice_agent_store::MongoStore::connect(
//!     "mongodb://127.0.0.1:27017/?directConnection=true", "voice_agent").await?;
//! store.ensure_schema().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod auth;
pub mod calls;
pub mod campaign_items;
pub mod campaigns;
pub mod contact_history;
pub mod contacts;
pub mod conversations;
pub mod inbox;
pub mod messages;
pub mod profiles;
pub mod schema;
pub mod senders;
pub mod stats;
pub mod suppressions;
pub mod uploads;
pub mod whatsapp;

use mongodb::{Client, Database, options::ClientOptions};

pub use auth::{ApiKeyDoc, AuditDoc, Role, SessionDoc, UserDoc};
pub use calls::{CallLogDoc, CallLogQuery, NewCallAttempt, TranscriptEntry};
pub use campaigns::{
    BatchLease, CampaignDoc, CampaignItemDoc, ExecutionDoc, ItemCallback, OutcomeWriter,
    campaign_status, item_status,
};
pub use conversations::{
    AgentTurnRecord, ConversationCarry, ConversationDoc, TranscriptLine, conversation_status,
};
pub use inbox::{InboxBacklog, InboxEntry, Lease};
pub use messages::{InboundMessage, InboundStored, MessageDoc, MessageQuery, NewOutboundMessage};
pub use profiles::{ProfileVersionDoc, SaveOutcome};
pub use senders::{Reservation, SlotGrant};

/// What went wrong talking to MongoDB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The connection string could not be used; fix `MONGODB_URI`.
    #[error("invalid MongoDB configuration: {0}")]
    Config(String),
    /// MongoDB answered with an error or could not be reached; usually worth retrying.
    #[error("MongoDB operation failed: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A stored document does not have the shape this version expects.
    #[error("unexpected document shape: {0}")]
    Decode(#[from] mongodb::bson::de::Error),
    /// A value could not be turned into a document.
    #[error("cannot encode a document: {0}")]
    Encode(#[from] mongodb::bson::ser::Error),
    /// A search ran longer than [`SEARCH_MAX_TIME`] and MongoDB stopped it (`maxTimeMS`); the
    /// caller should narrow it (a phone prefix, a tag) rather than retry it as it is.
    #[error("the search took longer than {} s and was stopped", SEARCH_MAX_TIME.as_secs())]
    SearchTimedOut,
    /// Too many processes reserved send slots on one sender at the same moment and this one
    /// lost every race; worth retrying a little later.
    #[error("{0}")]
    Contended(String),
    /// Some statements of a grouped write failed (the others were applied); worth retrying,
    /// since every grouped write here is idempotent.
    #[error("{failed} of {total} grouped writes failed, first: {first}")]
    Writes {
        /// Statements that failed.
        failed: usize,
        /// Statements sent.
        total: usize,
        /// The first failure's code and message.
        first: String,
    },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle on the Voice Agent database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoStore {
    db: Database,
}

impl MongoStore {
    /// Connects to `uri` and selects `database`. The driver connects lazily; call
    /// [`MongoStore::ping`] or [`MongoStore::ensure_schema`] to fail fast.
    pub async fn connect(uri: &str, database: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        options
            .app_name
            .get_or_insert_with(|| "voice-agent".to_owned());
        let client =
            Client::with_options(options).map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            db: client.database(database),
        })
    }

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        self.db
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await?;
        Ok(())
    }

    /// The underlying database, for tests and tools.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// True when `err` is a duplicate-key error (code 11000), which idempotent inserts treat as
/// "already there".
/// Longest a search over user-given text (contact names, phone substrings) or a listing may
/// run on the server: such a search can scan a whole list, and nobody waits longer anyway.
pub const SEARCH_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What the web app follows live: the time of the latest change of each (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatestChanges {
    /// The latest `updated_at` of `conversations`.
    pub conversations: i64,
    /// The latest `updated_at` of `call_logs`.
    pub calls: i64,
    /// The latest `created_at` of `messages`.
    pub messages: i64,
    /// The latest counted status move (a message's delivery status, a call's outcome): the
    /// latest `counted_at` of `stats_days`.
    pub statuses: i64,
}

impl MongoStore {
    /// [`LatestChanges`]: four reads of one index key each, whatever the collections' sizes.
    pub async fn latest_changes(&self) -> Result<LatestChanges> {
        use mongodb::bson::{Document, doc};
        let latest = |collection: &'static str, field: &'static str| {
            let coll = self.db.collection::<Document>(collection);
            async move {
                let d = coll
                    .find_one(doc! {})
                    .sort(doc! { field: -1 })
                    .projection(doc! { "_id": 0, field: 1 })
                    .await?;
                Ok::<i64, StoreError>(
                    d.and_then(|d| d.get_datetime(field).ok().map(|t| t.timestamp_millis()))
                        .unwrap_or_default(),
                )
            }
        };
        let (conversations, calls, messages, statuses) = tokio::try_join!(
            latest(schema::CONVERSATIONS, "updated_at"),
            latest(schema::CALL_LOGS, "updated_at"),
            latest(schema::MESSAGES, "created_at"),
            latest(schema::STATS_DAYS, "counted_at"),
        )?;
        Ok(LatestChanges {
            conversations,
            calls,
            messages,
            statuses,
        })
    }
}

/// A search's error, with MongoDB's `MaxTimeMSExpired` (code 50) told apart.
pub(crate) fn search_error(err: mongodb::error::Error) -> StoreError {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(e) if e.code == 50 => StoreError::SearchTimedOut,
        _ => StoreError::Mongo(err),
    }
}

pub(crate) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().all(|w| w.code == 11000)),
        _ => false,
    }
}
