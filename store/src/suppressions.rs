//! The `suppressions` collection: numbers that opted out (STOP and its synonyms), on every
//! channel. One document per E.164 number, `_id` = the number, so opting out twice is a no-op
//! and a lookup for a page of recipients is one `$in` query.

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::UpdateOptions;

use crate::schema::SUPPRESSIONS;
use crate::{MongoStore, Result};

impl MongoStore {
    /// Suppresses `phone` on every channel, recording the keyword and channel that did it.
    pub async fn suppress(&self, phone: &str, keyword: &str, channel: &str) -> Result<()> {
        let now = DateTime::now();
        self.db
            .collection::<Document>(SUPPRESSIONS)
            .update_one(
                doc! { "_id": phone },
                doc! {
                    "$set": { "keyword": keyword, "channel": channel, "updated_at": now },
                    "$setOnInsert": { "since": now },
                },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await?;
        Ok(())
    }

    /// Lifts a suppression (START, UNSTOP). Returns whether there was one.
    pub async fn unsuppress(&self, phone: &str) -> Result<bool> {
        let r = self
            .db
            .collection::<Document>(SUPPRESSIONS)
            .delete_one(doc! { "_id": phone })
            .await?;
        Ok(r.deleted_count > 0)
    }

    /// Whether `phone` opted out.
    pub async fn is_suppressed(&self, phone: &str) -> Result<bool> {
        Ok(self
            .db
            .collection::<Document>(SUPPRESSIONS)
            .find_one(doc! { "_id": phone })
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
            .find(doc! { "_id": { "$in": phones.to_vec() } })
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
