//! The `whatsapp_sessions` collection: when each person last wrote to each of our WhatsApp
//! senders. WhatsApp allows free-form messages only within 24 hours of that; outside it a
//! template (ContentSid) is required. One document per (our number, their number).

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::UpdateOptions;

use crate::schema::WHATSAPP_SESSIONS;
use crate::{MongoStore, Result};

/// How long a session stays open after the person's last message.
pub const SESSION_WINDOW_MS: i64 = 24 * 3600 * 1000;

fn key(ours: &str, theirs: &str) -> String {
    format!("{ours}|{theirs}")
}

impl MongoStore {
    /// Records an inbound WhatsApp message: the window opens (again) now.
    pub async fn touch_whatsapp_session(&self, ours: &str, theirs: &str) -> Result<()> {
        self.db
            .collection::<Document>(WHATSAPP_SESSIONS)
            .update_one(
                doc! { "_id": key(ours, theirs) },
                doc! { "$set": { "ours": ours, "theirs": theirs, "last_inbound_at": DateTime::now() } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await?;
        Ok(())
    }

    /// Those of `theirs` whose session with `ours` is open now.
    pub async fn open_whatsapp_sessions(
        &self,
        ours: &str,
        theirs: &[String],
    ) -> Result<HashSet<String>> {
        if theirs.is_empty() {
            return Ok(HashSet::new());
        }
        let since = DateTime::from_millis(DateTime::now().timestamp_millis() - SESSION_WINDOW_MS);
        let keys: Vec<String> = theirs.iter().map(|t| key(ours, t)).collect();
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(WHATSAPP_SESSIONS)
            .find(doc! { "_id": { "$in": keys }, "last_inbound_at": { "$gte": since } })
            .projection(doc! { "theirs": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str("theirs").ok().map(str::to_owned))
            .collect())
    }
}
