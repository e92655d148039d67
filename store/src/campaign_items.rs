//! Reading campaigns for people: pages of campaigns, a page of a campaign's items filtered by
//! status and a search, and one item's attempts.
//!
//! `campaign_items` has no index on `status` (every status change would write it, at campaign
//! rates the server's main cost), so a filtered page reads a bounded window of the campaign's
//! items in `_id` order (one index range, `<campaign id>:` to `<campaign id>;`) and filters
//! it here: each request costs at most [`ITEM_SCAN_WINDOW`] items whatever the campaign's
//! size, and returns a cursor to go on from even when the window held no match.

use futures::TryStreamExt;
use mongodb::bson::doc;
use mongodb::options::FindOptions;

use crate::campaigns::{CampaignItemDoc, ExecutionDoc};
use crate::schema::{CAMPAIGN_EXECUTIONS, CAMPAIGN_ITEMS};
use crate::{MongoStore, Result};

/// Most items one page request reads.
pub const ITEM_SCAN_WINDOW: i64 = 1_000;
/// Most attempts returned for one item.
pub const MAX_ATTEMPTS_LISTED: i64 = 100;

/// A page of a campaign's items.
#[derive(Debug, Clone, Default)]
pub struct ItemPage {
    /// Matching items in `_id` order.
    pub items: Vec<CampaignItemDoc>,
    /// Where the next page starts; `None` at the end of the campaign.
    pub next_cursor: Option<String>,
}

/// Whether an item matches a search: a part of its number (digits, `+`), or of its name.
fn matches_search(item: &CampaignItemDoc, search: &str) -> bool {
    let needle = search.trim().to_lowercase();
    if needle.is_empty() {
        return true;
    }
    let digits: String = needle
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    if !digits.is_empty() && digits.len() == needle.replace([' ', '-', '(', ')'], "").len() {
        return item.phone.contains(&digits);
    }
    ["name", "first_name", "last_name", "email"]
        .iter()
        .filter_map(|k| item.variables.get(*k))
        .any(|v| v.to_lowercase().contains(&needle))
}

impl MongoStore {
    /// Campaigns newest first, after the cursor `before` (the `(created_at, _id)` of the last
    /// campaign of the previous page), at most `limit` (1-200): a range of the `created`
    /// index.
    pub async fn page_campaigns(
        &self,
        before: Option<(mongodb::bson::DateTime, String)>,
        limit: i64,
    ) -> Result<Vec<crate::CampaignDoc>> {
        let filter = match before {
            Some((at, id)) => doc! { "$or": [
                { "created_at": { "$lt": at } },
                { "created_at": at, "_id": { "$lt": id } },
            ] },
            None => doc! {},
        };
        let options = FindOptions::builder()
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(limit.clamp(1, 200))
            .build();
        Ok(self
            .db
            .collection::<crate::CampaignDoc>(crate::schema::CAMPAIGNS)
            .find(filter)
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// Up to `limit` (1-200) items of a campaign after the cursor `after` (an item id) with
    /// this status and matching `search` (part of the number or the name), reading at most
    /// [`ITEM_SCAN_WINDOW`] items.
    pub async fn page_campaign_items(
        &self,
        campaign_id: &str,
        status: Option<&str>,
        search: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage> {
        let limit = limit.clamp(1, 200);
        let start = format!("{campaign_id}:");
        let end = format!("{campaign_id};");
        let lower = match after {
            Some(a) if a.starts_with(&start) => doc! { "$gt": a, "$lt": &end },
            _ => doc! { "$gte": &start, "$lt": &end },
        };
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .limit(ITEM_SCAN_WINDOW)
            .max_time(crate::SEARCH_MAX_TIME)
            .build();
        let window: Vec<CampaignItemDoc> = self
            .db
            .collection::<CampaignItemDoc>(CAMPAIGN_ITEMS)
            .find(doc! { "_id": lower })
            .with_options(options)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)?;
        let full_window = i64::try_from(window.len()).unwrap_or(i64::MAX) >= ITEM_SCAN_WINDOW;
        let last_read = window.last().map(|i| i.id.clone());
        let mut items = Vec::new();
        for item in window {
            if status.is_some_and(|s| item.status != s) {
                continue;
            }
            if search.is_some_and(|s| !matches_search(&item, s)) {
                continue;
            }
            items.push(item);
            if items.len() == limit {
                break;
            }
        }
        let next_cursor = if items.len() == limit {
            items.last().map(|i| i.id.clone())
        } else if full_window {
            last_read
        } else {
            None
        };
        Ok(ItemPage { items, next_cursor })
    }

    /// One item's attempts, in order (served by the `item_attempt_unique` index).
    pub async fn item_executions(
        &self,
        campaign_id: &str,
        item_id: &str,
    ) -> Result<Vec<ExecutionDoc>> {
        let options = FindOptions::builder()
            .sort(doc! { "campaign_id": 1, "item_id": 1, "attempt": 1 })
            .limit(MAX_ATTEMPTS_LISTED)
            .build();
        Ok(self
            .db
            .collection::<ExecutionDoc>(CAMPAIGN_EXECUTIONS)
            .find(doc! { "campaign_id": campaign_id, "item_id": item_id })
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mongodb::bson::DateTime;

    use super::*;

    fn item(phone: &str, name: &str) -> CampaignItemDoc {
        CampaignItemDoc {
            id: "c:1".to_owned(),
            campaign_id: "c".to_owned(),
            contact_id: "1".to_owned(),
            seq: None,
            seq_key: None,
            phone: phone.to_owned(),
            variables: BTreeMap::from([("first_name".to_owned(), name.to_owned())]),
            time_zone: None,
            status: "sent".to_owned(),
            status_rank: 0,
            message_sid: None,
            error_code: None,
            reason: None,
            attempts: 0,
            send_started_at: None,
            batch: None,
            updated_at: DateTime::now(),
        }
    }

    #[test]
    fn a_search_matches_part_of_the_number_or_the_name() {
        let ada = item("+14155550101", "Ada");
        assert!(matches_search(&ada, "0101"));
        assert!(matches_search(&ada, "+1 415"));
        assert!(matches_search(&ada, "ada"));
        assert!(!matches_search(&ada, "grace"));
        assert!(!matches_search(&ada, "0102"));
        assert!(matches_search(&ada, "  "));
    }
}
