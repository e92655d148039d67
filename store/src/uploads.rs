//! `pending_uploads` and `pending_upload_parts`: a contact file that was previewed and waits
//! for its import, so the file goes up once. The preview stores it (only when it could be
//! read: a refused file stores nothing) and hands back a token; the import confirms the token
//! with the chosen sheet and phone column, or another preview re-reads it with another choice.
//!
//! Kept in MongoDB, not in the api process, so any api replica can take the confirmation.
//! The file is split into parts below MongoDB's 16 MB document limit; the header document is
//! written after its parts, so a header always has them. Pending uploads expire (a deadline
//! checked on read, and expired ones deleted whenever a new one is stored: no TTL index, which
//! not every MongoDB-wire server has), and at most a given number wait at once.

use futures::TryStreamExt;
use mongodb::bson::{Binary, DateTime, Document, doc, spec::BinarySubtype};

use crate::schema::{PENDING_UPLOAD_PARTS, PENDING_UPLOADS};
use crate::{MongoStore, Result};

/// Bytes of one part document.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// A stored upload waiting for its import.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingUpload {
    /// The token the import confirms.
    pub token: String,
    /// The list it was previewed for.
    pub list_id: String,
    /// The file's name as uploaded.
    pub file_name: String,
    /// Its size in bytes.
    pub size: i64,
    /// When it stops being importable.
    pub expires_at: DateTime,
}

fn part_id(token: &str, i: usize) -> String {
    format!("{token}:{i:04}")
}

/// `_id`s of a token's parts: an anchored prefix, read on the `_id` index.
fn parts_of(token: &str) -> Document {
    let escaped: String = token
        .chars()
        .flat_map(|c| {
            let special = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
            special.then_some('\\').into_iter().chain([c])
        })
        .collect();
    doc! { "_id": { "$regex": format!("^{escaped}:") } }
}

impl MongoStore {
    fn pending_uploads(&self) -> mongodb::Collection<Document> {
        self.db.collection(PENDING_UPLOADS)
    }

    fn pending_parts(&self) -> mongodb::Collection<Document> {
        self.db.collection(PENDING_UPLOAD_PARTS)
    }

    /// Stores a previewed file under a new token, valid for `ttl`, unless `max_pending`
    /// uploads already wait (then returns `None` and stores nothing). Deletes the expired
    /// ones first.
    pub async fn save_pending_upload(
        &self,
        list_id: &str,
        file_name: &str,
        bytes: &[u8],
        ttl: std::time::Duration,
        max_pending: u64,
    ) -> Result<Option<PendingUpload>> {
        self.delete_expired_uploads().await?;
        let waiting = self.pending_uploads().count_documents(doc! {}).await?;
        if waiting >= max_pending {
            return Ok(None);
        }
        let token = crate::contacts::new_id("pup");
        let now = DateTime::now();
        let expires_at = DateTime::from_millis(
            now.timestamp_millis() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2),
        );
        let parts: Vec<Document> = bytes
            .chunks(PART_BYTES)
            .enumerate()
            .map(|(i, chunk)| {
                doc! {
                    "_id": part_id(&token, i),
                    "data": Binary { subtype: BinarySubtype::Generic, bytes: chunk.to_vec() },
                    // Parts left by a process that died before writing the header expire too.
                    "expires_at": expires_at,
                }
            })
            .collect();
        let count = parts.len();
        // One part per insert: a batch of several would pass the 48 MB message limit.
        for part in parts {
            self.pending_parts().insert_one(part).await?;
        }
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        self.pending_uploads()
            .insert_one(doc! {
                "_id": &token, "list_id": list_id, "file_name": file_name, "size": size,
                "parts": i64::try_from(count).unwrap_or_default(),
                "created_at": now, "expires_at": expires_at,
            })
            .await?;
        Ok(Some(PendingUpload {
            token,
            list_id: list_id.to_owned(),
            file_name: file_name.to_owned(),
            size,
            expires_at,
        }))
    }

    /// The pending upload `token` of `list_id` with its file, or `None` when there is none
    /// (never stored, imported already, for another list, or expired).
    pub async fn pending_upload(
        &self,
        list_id: &str,
        token: &str,
    ) -> Result<Option<(PendingUpload, Vec<u8>)>> {
        let Some(head) = self
            .pending_uploads()
            .find_one(
                doc! { "_id": token, "list_id": list_id, "expires_at": { "$gt": DateTime::now() } },
            )
            .await?
        else {
            return Ok(None);
        };
        let count = usize::try_from(head.get_i64("parts").unwrap_or_default()).unwrap_or(0);
        let ids: Vec<String> = (0..count).map(|i| part_id(token, i)).collect();
        let mut parts: Vec<Document> = self
            .pending_parts()
            .find(doc! { "_id": { "$in": ids.clone() } })
            .await?
            .try_collect()
            .await?;
        if parts.len() != count {
            // Deleted under our feet (it expired meanwhile): as if it were gone.
            return Ok(None);
        }
        parts.sort_by(|a, b| a.get_str("_id").ok().cmp(&b.get_str("_id").ok()));
        let size = head.get_i64("size").unwrap_or_default();
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for part in &parts {
            if let Ok(data) = part.get_binary_generic("data") {
                bytes.extend_from_slice(data);
            }
        }
        Ok(Some((
            PendingUpload {
                token: token.to_owned(),
                list_id: list_id.to_owned(),
                file_name: head.get_str("file_name").unwrap_or_default().to_owned(),
                size,
                expires_at: head
                    .get_datetime("expires_at")
                    .copied()
                    .unwrap_or_else(|_| DateTime::now()),
            },
            bytes,
        )))
    }

    /// Deletes a pending upload (imported, or given up). Its header first: from then on it
    /// is gone for readers, whatever happens to the parts.
    pub async fn delete_pending_upload(&self, token: &str) -> Result<()> {
        self.pending_uploads()
            .delete_one(doc! { "_id": token })
            .await?;
        self.pending_parts().delete_many(parts_of(token)).await?;
        Ok(())
    }

    /// Deletes the expired pending uploads; returns how many.
    pub async fn delete_expired_uploads(&self) -> Result<u64> {
        let expired: Vec<Document> = self
            .pending_uploads()
            .find(doc! { "expires_at": { "$lte": DateTime::now() } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        for e in &expired {
            if let Ok(token) = e.get_str("_id") {
                self.delete_pending_upload(token).await?;
            }
        }
        // Parts whose header was never written. The collection holds a few documents at most.
        self.pending_parts()
            .delete_many(doc! { "expires_at": { "$lte": DateTime::now() } })
            .await?;
        Ok(expired.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ids_sort_in_order_and_the_prefix_is_escaped() {
        assert!(part_id("pup_a", 9) < part_id("pup_a", 10));
        assert_eq!(
            parts_of("pup_a.b"),
            doc! { "_id": { "$regex": "^pup_a\\.b:" } }
        );
    }
}
