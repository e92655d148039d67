//! Dashboard figures: messages and calls by status or outcome and by day, and campaign items.
//!
//! Messages and calls are counted as they are written, in `stats_days`: one small document per
//! UTC day (`_id` `YYYY-MM-DD`), so a 30-day window reads 30 documents by `_id` whatever the
//! size of `messages` and `call_logs`. (Aggregating the window instead cannot work on the
//! local MongoDB-wire server, where a range on a secondary index costs in proportion to the
//! collection: the 7-day window at 1,000,000 messages did not come back in 10 s.)
//!
//! ```text
//! { _id: "2026-12-03",
//!   outbound: { sms: { pending: 0, sent: 1, delivered: 9 }, whatsapp: { read: 2 } },
//!   inbound: { sms: 4 },
//!   calls: { human: 3, busy: 1, in_progress: 0 },
//!   writes: 41, counted_at: <last counted write>, checked_writes: 40, checked_at: <last recount> }
//! ```
//!
//! **Exact after retries.** Counts follow the same rule as a campaign's `status_counts`: a
//! write counts a move only when it really moved the document, from the status it really
//! left. Status moves are `findAndModify` filtered on a lower rank and returning the document
//! as it was; an intent or an inbound message counts only when this call inserted it; a call
//! log write returns its previous outcome and start. A repeated callback, a replayed activity
//! or a webhook Twilio delivers twice moves nothing and counts nothing.
//!
//! **Exact after crashes.** A process that dies between a document write and its counter
//! write leaves the day short by one move. A day recount ([`MongoStore::recount_stats_day`])
//! aggregates the day's messages and calls and replaces the counters, only if no counted write
//! happened meanwhile (the day's `writes` counter is unchanged; else the next recount tries
//! again). The api recounts each day once it has been quiet for a while after counted writes
//! ([`MongoStore::recount_quiet_stats_days`]), and at start-up the days of the window that
//! were never recounted ([`MongoStore::rebuild_stats`]): data written before the counters
//! existed, or by a version that did not keep them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::UpdateOptions;

use crate::schema::{CALL_LOGS, CAMPAIGNS, MESSAGES, STATS_DAYS};
use crate::{MongoStore, Result, is_duplicate_key};

/// Longest a dashboard read may run on the server.
const STATS_MAX_TIME: Duration = Duration::from_secs(10);
/// Longest one day's recount may run on the server: it aggregates a day of messages, which
/// on the local server costs in proportion to the whole collection; it runs in the background.
const RECOUNT_MAX_TIME: Duration = Duration::from_secs(120);
/// The most days one read or rebuild covers.
pub const MAX_DAYS: u32 = 62;
/// Outcome of a call log that has none yet.
pub const IN_PROGRESS: &str = "in_progress";

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
        if n == 0 {
            return;
        }
        *self.total.entry(key.to_owned()).or_default() += n;
        *self
            .by_day
            .entry(day.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default() += n;
    }

    /// Drops keys counted to zero (a status every document has left).
    fn prune(&mut self) {
        self.total.retain(|_, n| *n != 0);
        for counts in self.by_day.values_mut() {
            counts.retain(|_, n| *n != 0);
        }
        self.by_day.retain(|_, counts| !counts.is_empty());
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

/// What [`MongoStore::rebuild_stats`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Days recounted and stored.
    pub recounted: u32,
    /// Days whose recount was dropped because counted writes happened meanwhile; the quiet
    /// recount takes them up later.
    pub busy: u32,
}

/// One day's counts, as `stats_days` keeps them (field names already made safe by [`key`]).
#[derive(Debug, Default)]
struct DayCounts {
    /// Channel, then status.
    outbound: BTreeMap<String, BTreeMap<String, i64>>,
    /// By channel.
    inbound: BTreeMap<String, i64>,
    /// By outcome.
    calls: BTreeMap<String, i64>,
}

impl DayCounts {
    fn to_document(&self) -> Document {
        let flat = |m: &BTreeMap<String, i64>| -> Document {
            m.iter()
                .map(|(k, n)| (k.clone(), Bson::Int64(*n)))
                .collect()
        };
        doc! {
            "outbound": self
                .outbound
                .iter()
                .map(|(ch, statuses)| (ch.clone(), Bson::Document(flat(statuses))))
                .collect::<Document>(),
            "inbound": flat(&self.inbound),
            "calls": flat(&self.calls),
        }
    }
}

/// `YYYY-MM-DD` of a time, UTC.
pub fn day_of(t: DateTime) -> String {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The day of a call log's `started_at` (RFC 3339 text, whose first ten characters are its day).
fn day_of_text(started_at: &str) -> Option<String> {
    let day = started_at.get(..10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(day.to_owned())
}

/// A status, channel or outcome as a field name: stored names never hold `.` or a leading `$`.
fn key(s: &str) -> String {
    let k: String = s
        .chars()
        .map(|c| if c == '.' || c == '$' { '_' } else { c })
        .collect();
    if k.is_empty() {
        "unknown".to_owned()
    } else {
        k
    }
}

fn number(v: &Bson) -> i64 {
    match v {
        Bson::Int64(n) => *n,
        Bson::Int32(n) => i64::from(*n),
        Bson::Double(n) => *n as i64,
        _ => 0,
    }
}

fn count(row: &Document) -> i64 {
    row.get("n").map(number).unwrap_or(0)
}

fn start_of(day: NaiveDate) -> DateTime {
    DateTime::from_millis(
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis(),
    )
}

fn days_from(first: NaiveDate, last: NaiveDate) -> Vec<String> {
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(MAX_DAYS as usize)
        .map(|d| d.to_string())
        .collect()
}

/// A call log's place in the counters: its day and outcome, or nothing before it started.
pub(crate) fn call_slot(
    started_at: Option<&str>,
    outcome: Option<&str>,
) -> Option<(String, String)> {
    Some((
        day_of_text(started_at?)?,
        key(outcome.unwrap_or(IN_PROGRESS)),
    ))
}

impl MongoStore {
    fn stats_days(&self) -> mongodb::Collection<Document> {
        self.db.collection(STATS_DAYS)
    }

    /// Adds counted moves (`(day, field path, n)`) to the days' counters: one upsert per day.
    pub(crate) async fn count_day_moves(&self, moves: &[(String, String, i64)]) -> Result<()> {
        let mut by_day: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
        for (day, field, n) in moves {
            *by_day
                .entry(day.as_str())
                .or_default()
                .entry(field.as_str())
                .or_default() += n;
        }
        for (day, fields) in by_day {
            let mut inc: Document = fields
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|(f, n)| (f.to_owned(), Bson::Int64(n)))
                .collect();
            if inc.is_empty() {
                continue;
            }
            inc.insert("writes", 1_i64);
            let update = doc! { "$inc": inc, "$set": { "counted_at": DateTime::now() } };
            let options = UpdateOptions::builder().upsert(true).build();
            let first = self
                .stats_days()
                .update_one(doc! { "_id": day }, update.clone())
                .with_options(options.clone())
                .await;
            match first {
                Ok(_) => {}
                // Two first writes of a day raced to insert it: the other one did, so this
                // one is now an update.
                Err(e) if is_duplicate_key(&e) => {
                    self.stats_days()
                        .update_one(doc! { "_id": day }, update)
                        .with_options(options)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Counts one outbound message moving from `from` (`None`: created) to `to`.
    pub(crate) async fn count_outbound_move(
        &self,
        created_at: DateTime,
        channel: &str,
        from: Option<&str>,
        to: &str,
    ) -> Result<()> {
        let day = day_of(created_at);
        let ch = key(channel);
        let mut moves = vec![(day.clone(), format!("outbound.{ch}.{}", key(to)), 1)];
        if let Some(from) = from {
            moves.push((day, format!("outbound.{ch}.{}", key(from)), -1));
        }
        self.count_day_moves(&moves).await
    }

    /// Counts one inbound message stored.
    pub(crate) async fn count_inbound(&self, created_at: DateTime, channel: &str) -> Result<()> {
        self.count_day_moves(&[(day_of(created_at), format!("inbound.{}", key(channel)), 1)])
            .await
    }

    /// Counts a call log moving between (day, outcome) slots; nothing when it stays put.
    pub(crate) async fn count_call_move(
        &self,
        before: Option<(String, String)>,
        after: Option<(String, String)>,
    ) -> Result<()> {
        if before == after {
            return Ok(());
        }
        let mut moves = Vec::new();
        if let Some((day, outcome)) = before {
            moves.push((day, format!("calls.{outcome}"), -1));
        }
        if let Some((day, outcome)) = after {
            moves.push((day, format!("calls.{outcome}"), 1));
        }
        self.count_day_moves(&moves).await
    }

    /// [`Stats`] from the start of `since`'s day (UTC) to today: the days' counters (at most
    /// [`MAX_DAYS`] documents, read by `_id`) and the counters of the campaigns created since.
    pub async fn stats(&self, since: DateTime) -> Result<Stats> {
        let first = chrono::DateTime::from_timestamp_millis(since.timestamp_millis())
            .unwrap_or_default()
            .date_naive();
        let today = chrono::Utc::now().date_naive();
        let days = days_from(first, today.max(first));
        let mut stats = Stats::default();
        let mut cursor = self
            .stats_days()
            .find(doc! { "_id": { "$in": days.clone() } })
            .max_time(STATS_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(d) = cursor.try_next().await.map_err(crate::search_error)? {
            let day = d.get_str("_id").unwrap_or_default().to_owned();
            if let Ok(outbound) = d.get_document("outbound") {
                for (_, statuses) in outbound {
                    if let Some(statuses) = statuses.as_document() {
                        for (status, n) in statuses {
                            stats.outbound.add(&day, status, number(n));
                        }
                    }
                }
            }
            if let Ok(inbound) = d.get_document("inbound") {
                for (channel, n) in inbound {
                    stats.inbound.add(&day, channel, number(n));
                }
            }
            if let Ok(calls) = d.get_document("calls") {
                for (outcome, n) in calls {
                    stats.calls.add(&day, outcome, number(n));
                }
            }
        }
        stats.outbound.prune();
        stats.inbound.prune();
        stats.calls.prune();
        stats.campaign_items = self.campaign_items_since(start_of(first)).await?;
        Ok(stats)
    }

    /// Items of the campaigns created since `since`, by status: one document per campaign.
    async fn campaign_items_since(&self, since: DateTime) -> Result<BTreeMap<String, i64>> {
        let mut items = BTreeMap::new();
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
                    let n = number(n);
                    if n > 0 {
                        *items.entry(status.clone()).or_default() += n;
                    }
                }
            }
        }
        Ok(items)
    }

    /// The messages and calls of `[since, until)` (midnights, UTC) counted by aggregating the documents
    /// themselves (the cost grows with the collections: the dashboard reads the counters).
    /// What a recount stores; for tests and tools.
    pub async fn stats_by_aggregation(&self, since: DateTime, until: DateTime) -> Result<Stats> {
        let mut stats = Stats::default();
        for (day, counts) in self.aggregate_days(since, until).await? {
            for statuses in counts.outbound.values() {
                for (status, n) in statuses {
                    stats.outbound.add(&day, status, *n);
                }
            }
            for (channel, n) in &counts.inbound {
                stats.inbound.add(&day, channel, *n);
            }
            for (outcome, n) in &counts.calls {
                stats.calls.add(&day, outcome, *n);
            }
        }
        Ok(stats)
    }

    /// The counts of each day of `[since, until)`, from the documents.
    async fn aggregate_days(
        &self,
        since: DateTime,
        until: DateTime,
    ) -> Result<BTreeMap<String, DayCounts>> {
        let mut days: BTreeMap<String, DayCounts> = BTreeMap::new();
        let pipeline = vec![
            doc! { "$match": { "created_at": { "$gte": since, "$lt": until } } },
            doc! { "$group": {
                "_id": {
                    "day": { "$dateToString": { "format": "%Y-%m-%d", "date": "$created_at" } },
                    "direction": "$direction", "status": "$status", "channel": "$channel",
                },
                "n": { "$sum": 1 },
            } },
        ];
        let mut cursor = self
            .db
            .collection::<Document>(MESSAGES)
            .aggregate(pipeline)
            .max_time(RECOUNT_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(row) = cursor.try_next().await.map_err(crate::search_error)? {
            let Ok(id) = row.get_document("_id") else {
                continue;
            };
            let day = days
                .entry(id.get_str("day").unwrap_or_default().to_owned())
                .or_default();
            let channel = key(id.get_str("channel").unwrap_or("sms"));
            if id.get_str("direction") == Ok("inbound") {
                *day.inbound.entry(channel).or_default() += count(&row);
            } else {
                let status = key(id.get_str("status").unwrap_or("unknown"));
                *day.outbound
                    .entry(channel)
                    .or_default()
                    .entry(status)
                    .or_default() += count(&row);
            }
        }

        // Call logs keep their times as RFC 3339 text. Bounds are days (`YYYY-MM-DD`), which
        // order before every time of their day: a full time as a bound would put a start of
        // `…T00:00:00.5Z` before `…T00:00:00Z` ('.' < 'Z') and so in the day before.
        let pipeline = vec![
            doc! { "$match": { "started_at": { "$gte": day_of(since), "$lt": day_of(until) } } },
            doc! { "$group": {
                "_id": {
                    "day": { "$substrCP": ["$started_at", 0, 10] },
                    "outcome": { "$ifNull": ["$outcome", IN_PROGRESS] },
                },
                "n": { "$sum": 1 },
            } },
        ];
        let mut cursor = self
            .db
            .collection::<Document>(CALL_LOGS)
            .aggregate(pipeline)
            .max_time(RECOUNT_MAX_TIME)
            .await
            .map_err(crate::search_error)?;
        while let Some(row) = cursor.try_next().await.map_err(crate::search_error)? {
            let Ok(id) = row.get_document("_id") else {
                continue;
            };
            let day = days
                .entry(id.get_str("day").unwrap_or_default().to_owned())
                .or_default();
            *day.calls
                .entry(key(id.get_str("outcome").unwrap_or(IN_PROGRESS)))
                .or_default() += count(&row);
        }
        Ok(days)
    }

    /// Recounts one day from its messages and calls and stores the result, unless a counted
    /// write reached the day meanwhile (then returns false: the counters are left as they
    /// were, and a later recount tries again).
    pub async fn recount_stats_day(&self, day: NaiveDate) -> Result<bool> {
        let id = day.to_string();
        let writes = self
            .stats_days()
            .find_one(doc! { "_id": &id })
            .projection(doc! { "writes": 1 })
            .await?
            .and_then(|d| d.get("writes").map(number));
        let next = day.succ_opt().unwrap_or(day);
        let mut counted = self
            .aggregate_days(start_of(day), start_of(next))
            .await?
            .remove(&id)
            .unwrap_or_default()
            .to_document();
        counted.insert("checked_at", DateTime::now());
        counted.insert("checked_writes", writes.unwrap_or(0));
        // Unchanged since it was read: no counted write in between (the aggregation may or
        // may not have seen that write's document, so its result cannot be trusted).
        let filter = match writes {
            Some(n) => doc! { "_id": &id, "writes": n },
            None => doc! { "_id": &id, "writes": { "$exists": false } },
        };
        let stored = self
            .stats_days()
            .update_one(filter, doc! { "$set": counted })
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await;
        match stored {
            Ok(_) => Ok(true),
            // The day changed (or was created) since it was read: the upsert collided with it.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Recounts the days of the `days` ending `today` that were never recounted (counters
    /// missing, or kept only from some point on): data from before the counters, or from a
    /// version that did not keep them. At most [`MAX_DAYS`] days; run by the api at start.
    pub async fn rebuild_stats(&self, today: NaiveDate, days: u32) -> Result<Rebuilt> {
        let first = today - chrono::Days::new(u64::from(days.clamp(1, MAX_DAYS) - 1));
        let ids = days_from(first, today);
        let checked: Vec<String> = self
            .stats_days()
            .find(doc! { "_id": { "$in": ids.clone() }, "checked_at": { "$exists": true } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        let mut done = Rebuilt::default();
        for day in first.iter_days().take_while(|d| *d <= today) {
            if checked.contains(&day.to_string()) {
                continue;
            }
            if self.recount_stats_day(day).await? {
                done.recounted += 1;
            } else {
                done.busy += 1;
            }
        }
        Ok(done)
    }

    /// Recounts the days of the `days` ending `today` that had counted writes since their last
    /// recount and none for `quiet`: a crash between a document write and its count leaves a
    /// day short until then. Returns the days recounted.
    pub async fn recount_quiet_stats_days(
        &self,
        today: NaiveDate,
        days: u32,
        quiet: Duration,
    ) -> Result<u32> {
        let first = today - chrono::Days::new(u64::from(days.clamp(1, MAX_DAYS) - 1));
        let ids = days_from(first, today);
        let quiet_since = DateTime::from_millis(
            DateTime::now().timestamp_millis() - i64::try_from(quiet.as_millis()).unwrap_or(0),
        );
        let docs: Vec<Document> = self
            .stats_days()
            .find(doc! { "_id": { "$in": ids.clone() }, "counted_at": { "$lte": quiet_since } })
            .projection(doc! { "writes": 1, "checked_writes": 1 })
            .await?
            .try_collect()
            .await?;
        let mut recounted = 0;
        for d in docs {
            let writes = d.get("writes").map(number).unwrap_or(0);
            let checked = d.get("checked_writes").map(number);
            if checked == Some(writes) {
                continue;
            }
            let Some(day) = d
                .get_str("_id")
                .ok()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            else {
                continue;
            };
            if self.recount_stats_day(day).await? {
                recounted += 1;
            }
        }
        Ok(recounted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_keys_are_safe_and_bounded() {
        assert_eq!(day_of(DateTime::from_millis(0)), "1970-01-01");
        assert_eq!(
            day_of_text("2026-12-03T10:00:00+00:00").as_deref(),
            Some("2026-12-03")
        );
        assert_eq!(day_of_text("garbage"), None);
        assert_eq!(key("a.b$c"), "a_b_c");
        assert_eq!(key(""), "unknown");
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            days_from(d("2026-11-30"), d("2026-12-02")),
            ["2026-11-30", "2026-12-01", "2026-12-02"]
        );
        assert_eq!(
            days_from(d("2020-01-01"), d("2026-01-01")).len(),
            MAX_DAYS as usize
        );
        assert_eq!(call_slot(None, Some("human")), None);
        assert_eq!(
            call_slot(Some("2026-12-03T10:00:00Z"), None),
            Some(("2026-12-03".to_owned(), IN_PROGRESS.to_owned()))
        );
    }
}
