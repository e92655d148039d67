//! The `suppressions` collection: numbers that opted out (STOP and its synonyms), on every
//! channel. One document per E.164 number, `_id` = the number, so opting out twice is a no-op
//! and a lookup for a page of recipients is one `$in` query. A START keeps the document with
//! `opted_out: false` and the keyword's time, so keywords apply in the order they were sent
//! whatever order their webhooks arrive in; documents of earlier versions (no `opted_out`)
//! read as opted out.

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::UpdateOptions;

use crate::schema::SUPPRESSIONS;
use crate::{MongoStore, Result};

impl MongoStore {
    /// Suppresses `phone` on every channel, recording the keyword and channel that did it.
    /// `at` is when the request arrived (an inbound message's first receipt): a keyword older
    /// than the last one recorded for the number changes nothing, so a replayed STOP cannot undo
    /// a later START, nor a replayed START a later STOP.
    pub async fn suppress(
        &self,
        phone: &str,
        keyword: &str,
        channel: &str,
        at: DateTime,
    ) -> Result<bool> {
        self.record_keyword(
            phone,
            at,
            doc! {
                "opted_out": true, "keyword": keyword, "channel": channel,
                "keyword_at": at, "updated_at": DateTime::now(), "since": at,
            },
        )
        .await
    }

    /// Lifts a suppression (START, UNSTOP) unless a later keyword was recorded. Returns whether
    /// this keyword was the newest (and so applied).
    pub async fn unsuppress(&self, phone: &str, at: DateTime) -> Result<bool> {
        self.record_keyword(
            phone,
            at,
            doc! {
                "opted_out": false, "keyword": "START", "keyword_at": at,
                "updated_at": DateTime::now(),
            },
        )
        .await
    }

    /// Applies a keyword sent at `at` unless a newer one is recorded. A STOP also wins a tie:
    /// when in doubt, the person stays opted out.
    async fn record_keyword(&self, phone: &str, at: DateTime, set: Document) -> Result<bool> {
        let opt_out = set.get_bool("opted_out").unwrap_or(true);
        let older = if opt_out {
            doc! { "$lte": at }
        } else {
            doc! { "$lt": at }
        };
        let filter = doc! { "_id": phone, "$or": [
            { "keyword_at": { "$exists": false } },
            { "keyword_at": older },
        ] };
        let collection = self.db.collection::<Document>(SUPPRESSIONS);
        let r = collection
            .update_one(filter.clone(), doc! { "$set": &set })
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await;
        match r {
            Ok(r) => Ok(r.matched_count > 0 || r.upserted_id.is_some()),
            // The upsert's insert collided: either a newer keyword is stored, or another
            // keyword for this number inserted its document at the same moment. Apply this
            // one to that document if it is newer.
            Err(e) if crate::is_duplicate_key(&e) => {
                let r = collection.update_one(filter, doc! { "$set": set }).await?;
                Ok(r.matched_count > 0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `phone` opted out.
    pub async fn is_suppressed(&self, phone: &str) -> Result<bool> {
        Ok(self
            .db
            .collection::<Document>(SUPPRESSIONS)
            .find_one(doc! { "_id": phone, "opted_out": { "$ne": false } })
            .await?
            .is_some())
    }

    /// The subset of `phones` that opted out.
    pub async fn suppressed_among(&self, phones: &[String]) -> Result<HashSet<String>> {
        if phones.is_empty() {
            return Ok(HashSet::new());
        }
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(SUPPRESSIONS)
            .find(doc! { "_id": { "$in": phones.to_vec() }, "opted_out": { "$ne": false } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }
}
