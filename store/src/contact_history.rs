//! One contact's history for people: their opt-out state, the latest messages and calls with
//! their number, and the campaigns of their list that included them. Every read is an index
//! range or point lookups, and bounded.

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::FindOptions;

use crate::calls::CallLogDoc;
use crate::campaigns::{CampaignDoc, CampaignItemDoc};
use crate::messages::MessageDoc;
use crate::schema::{CALL_LOGS, CAMPAIGN_ITEMS, CAMPAIGNS, MESSAGES, SUPPRESSIONS};
use crate::{MongoStore, Result};

/// Most messages, calls and campaigns returned.
pub const HISTORY_LIMIT: i64 = 50;

/// A number's opt-out state (it applies to every channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutState {
    /// Whether messages and campaign calls to the number are refused.
    pub opted_out: bool,
    /// The keyword that set it (`STOP`, `START`, `AGENT` when the agent opted them out).
    pub keyword: Option<String>,
    /// The channel it was asked on.
    pub channel: Option<String>,
    /// When.
    pub at: Option<DateTime>,
}

impl MongoStore {
    /// The opt-out state of a number; `None` when it never sent a keyword.
    pub async fn opt_out_state(&self, phone: &str) -> Result<Option<OptOutState>> {
        let found = self
            .db
            .collection::<Document>(SUPPRESSIONS)
            .find_one(doc! { "_id": phone })
            .await?;
        Ok(found.map(|d| OptOutState {
            // Documents of earlier versions have no flag: they were written by a STOP.
            opted_out: d.get_bool("opted_out").unwrap_or(true),
            keyword: d.get_str("keyword").ok().map(str::to_owned),
            channel: d.get_str("channel").ok().map(str::to_owned),
            at: d
                .get_datetime("keyword_at")
                .or_else(|_| d.get_datetime("since"))
                .ok()
                .copied(),
        }))
    }

    /// The latest messages to or from a number (both directions, SMS and WhatsApp), newest
    /// first, at most [`HISTORY_LIMIT`]: two index ranges (`to_created`, `from_created`).
    pub async fn messages_with(&self, phone: &str) -> Result<Vec<MessageDoc>> {
        let coll = self.db.collection::<MessageDoc>(MESSAGES);
        let options = || {
            FindOptions::builder()
                .sort(doc! { "created_at": -1 })
                .limit(HISTORY_LIMIT)
                .build()
        };
        let (to, from) = tokio::try_join!(
            async {
                coll.find(doc! { "to": phone })
                    .with_options(options())
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            async {
                coll.find(doc! { "from": phone })
                    .with_options(options())
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
        )?;
        let mut all: Vec<MessageDoc> = to.into_iter().chain(from).collect();
        all.sort_by_key(|m| std::cmp::Reverse(m.created_at));
        all.truncate(usize::try_from(HISTORY_LIMIT).unwrap_or(50));
        Ok(all)
    }

    /// The latest calls with a number, newest first, at most [`HISTORY_LIMIT`] (indexes
    /// `to_started`, `from_started`).
    pub async fn calls_with(&self, phone: &str) -> Result<Vec<CallLogDoc>> {
        let coll = self.db.collection::<CallLogDoc>(CALL_LOGS);
        let options = || {
            FindOptions::builder()
                .sort(doc! { "started_at": -1 })
                .limit(HISTORY_LIMIT)
                .projection(doc! { "transcript": 0 })
                .build()
        };
        let (to, from) = tokio::try_join!(
            async {
                coll.find(doc! { "to": phone })
                    .with_options(options())
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
            async {
                coll.find(doc! { "from": phone })
                    .with_options(options())
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            },
        )?;
        let mut all: Vec<CallLogDoc> = to.into_iter().chain(from).collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        all.truncate(usize::try_from(HISTORY_LIMIT).unwrap_or(50));
        Ok(all)
    }

    /// The latest campaigns of a list (at most [`HISTORY_LIMIT`]) that have an item for this
    /// contact, with that item: item ids are `<campaign id>:<contact id>`, so this is one
    /// `$in` of point lookups.
    pub async fn campaigns_of_contact(
        &self,
        list_id: &str,
        contact_id: &str,
    ) -> Result<Vec<(CampaignDoc, CampaignItemDoc)>> {
        let campaigns: Vec<CampaignDoc> = self
            .db
            .collection::<CampaignDoc>(CAMPAIGNS)
            .find(doc! { "list_id": list_id })
            .sort(doc! { "created_at": -1 })
            .limit(HISTORY_LIMIT)
            .max_time(crate::SEARCH_MAX_TIME)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)?;
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = campaigns
            .iter()
            .map(|c| format!("{}:{contact_id}", c.id))
            .collect();
        let items: Vec<CampaignItemDoc> = self
            .db
            .collection::<CampaignItemDoc>(CAMPAIGN_ITEMS)
            .find(doc! { "_id": { "$in": &ids } })
            .await?
            .try_collect()
            .await?;
        Ok(campaigns
            .into_iter()
            .filter_map(|c| {
                let id = format!("{}:{contact_id}", c.id);
                items
                    .iter()
                    .find(|i| i.id == id)
                    .cloned()
                    .map(|item| (c, item))
            })
            .collect())
    }
}
