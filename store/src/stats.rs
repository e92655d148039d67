//! Dashboard figures: messages, campaign items and calls over a time window, by status or
//! outcome and by day. Each is one aggregation served by a time index (`messages.created`,
//! `call_logs.started`) or a read of one document per campaign (its counters), so the cost
//! grows with what happened in the window, never with the whole history; the api caches the
//! answer for a short while.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};

use crate::schema::{CALL_LOGS, CAMPAIGNS, MESSAGES};
use crate::{MongoStore, Result};

/// Longest a dashboard aggregation may run on the server.
const STATS_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts by key, and by day (`YYYY-MM-DD`, UTC) then key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Over the whole window.
    pub total: BTreeMap<String, i64>,
    /// Per day.
    pub by_day: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Tally {
    fn add(&mut self, day: &str, key: &str, n: i64) {
        *self.total.entry(key.to_owned()).or_default() += n;
        *self
            .by_day
            .entry(day.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default() += n;
    }
}

/// The dashboard's figures since a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Outbound messages (single sends, agent and person replies) by status.
    pub outbound: Tally,
    /// Inbound messages by channel.
    pub inbound: Tally,
    /// Campaign items by status, over campaigns created in the window.
    pub campaign_items: BTreeMap<String, i64>,
    /// Call attempts by outcome (`in_progress` while none yet).
    pub calls: Tally,
}

impl MongoStore {
    /// [`Stats`] since `since`.
    pub async fn stats(&self, since: DateTime) -> Result<Stats> {
        let day = |field: &str| doc! { "$dateToString": { "format": "%Y-%m-%d", "date": format!("${field}") } };
        let messages = self.db.collection::<Document>(MESSAGES);
        let pipeline = vec![
            doc! { "$match": { "created_at": { "$gte": since } } },
            doc! { "$group": {
                "_id": { "day": day("created_at"), "direction": "$direction", "status": "$status", "channel": "$channel" },
                "n": { "$sum": 1 },
            } },
        ];
        let mut stats = Stats::default();
        let mut cursor = messages
            .aggregate(pipeline)
            .max_time(STATS_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(row) = cursor.try_next().await.map_err(crate::search_error)? {
            let Ok(id) = row.get_document("_id") else {
                continue;
            };
            let n = count(&row);
            let d = id.get_str("day").unwrap_or_default();
            if id.get_str("direction") == Ok("inbound") {
                stats
                    .inbound
                    .add(d, id.get_str("channel").unwrap_or("sms"), n);
            } else {
                stats
                    .outbound
                    .add(d, id.get_str("status").unwrap_or("unknown"), n);
            }
        }

        // Call logs keep their times as RFC 3339 text, which orders like the time it names.
        let since_text = since.try_to_rfc3339_string().unwrap_or_default();
        let pipeline = vec![
            doc! { "$match": { "started_at": { "$gte": since_text } } },
            doc! { "$group": {
                "_id": { "day": { "$substrCP": ["$started_at", 0, 10] }, "outcome": { "$ifNull": ["$outcome", "in_progress"] } },
                "n": { "$sum": 1 },
            } },
        ];
        let mut cursor = self
            .db
            .collection::<Document>(CALL_LOGS)
            .aggregate(pipeline)
            .max_time(STATS_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(row) = cursor.try_next().await.map_err(crate::search_error)? {
            let Ok(id) = row.get_document("_id") else {
                continue;
            };
            stats.calls.add(
                id.get_str("day").unwrap_or_default(),
                id.get_str("outcome").unwrap_or("in_progress"),
                count(&row),
            );
        }

        let mut cursor = self
            .db
            .collection::<Document>(CAMPAIGNS)
            .find(doc! { "created_at": { "$gte": since } })
            .projection(doc! { "status_counts": 1 })
            .max_time(STATS_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(c) = cursor.try_next().await.map_err(crate::search_error)? {
            if let Ok(counts) = c.get_document("status_counts") {
                for (status, n) in counts {
                    let n = n
                        .as_i64()
                        .or_else(|| n.as_i32().map(i64::from))
                        .unwrap_or(0);
                    if n > 0 {
                        *stats.campaign_items.entry(status.clone()).or_default() += n;
                    }
                }
            }
        }
        Ok(stats)
    }
}

fn count(row: &Document) -> i64 {
    row.get_i64("n")
        .or_else(|_| row.get_i32("n").map(i64::from))
        .unwrap_or(0)
}
