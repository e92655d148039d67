//! `agent_profiles` and `agent_profile_versions`: the agent profiles, versioned.
//!
//! Every change is a new version; versions are never changed or deleted. The current version
//! of each profile is its *head* in `agent_profiles` (`_id` = the profile's name), a copy of
//! the latest version with the numbers it answers. Saving is a compare-and-set on the head
//! (the version the editor started from), so two people editing at once cannot both win;
//! the version document is written after, and written again by the next save if a crash lost
//! it, so the history is complete once the next save or import runs, and the head is always
//! readable as the newest version meanwhile.
//!
//! The profile's settings are kept as a plain document: their shape belongs to the agent
//! crate, which this crate does not know.

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::FindOptions;
use serde::{Deserialize, Serialize};

use crate::schema::{AGENT_PROFILE_VERSIONS, AGENT_PROFILES};
use crate::{MongoStore, Result, is_duplicate_key};

/// Most profiles listed at once (and so, kept): a deployment has a handful.
pub const MAX_PROFILES: i64 = 200;

/// One version of a profile (also the shape of a head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileVersionDoc {
    /// `<name>` on a head, `<name>@<version>` on a version.
    #[serde(rename = "_id")]
    pub id: String,
    /// The profile's name.
    pub name: String,
    /// From 1, one more per change.
    pub version: i64,
    /// The settings (the agent crate's `AgentProfile`, without name and version).
    pub profile: Document,
    /// Our numbers (E.164) this profile answers.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// `file` (imported from the agents file) or `api` (edited).
    pub source: String,
    /// For imports: a hash of what the file said, so the same file is imported once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_hash: Option<String>,
    /// Who made this version (a user's email, `agents file`).
    #[serde(default)]
    pub created_by: String,
    /// When.
    pub created_at: DateTime,
}

impl ProfileVersionDoc {
    fn version_id(name: &str, version: i64) -> String {
        format!("{name}@{version}")
    }

    fn as_version(&self) -> Self {
        Self {
            id: Self::version_id(&self.name, self.version),
            ..self.clone()
        }
    }

    fn as_head(&self) -> Self {
        Self {
            id: self.name.clone(),
            ..self.clone()
        }
    }
}

/// What a save did.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    /// The new head.
    Saved(Box<ProfileVersionDoc>),
    /// The profile is not at the version the change was made from (someone saved in
    /// between, or it already exists / does not exist): reload and try again.
    Conflict {
        /// The version it is at now, if it exists.
        current: Option<i64>,
    },
}

impl MongoStore {
    fn profile_heads(&self) -> mongodb::Collection<ProfileVersionDoc> {
        self.db.collection(AGENT_PROFILES)
    }

    fn profile_versions_coll(&self) -> mongodb::Collection<ProfileVersionDoc> {
        self.db.collection(AGENT_PROFILE_VERSIONS)
    }

    /// Every profile's current version, by name (at most [`MAX_PROFILES`]).
    pub async fn list_profiles(&self) -> Result<Vec<ProfileVersionDoc>> {
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .limit(MAX_PROFILES)
            .build();
        Ok(self
            .profile_heads()
            .find(doc! {})
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// How many profiles exist.
    pub async fn count_profiles(&self) -> Result<u64> {
        Ok(self.profile_heads().count_documents(doc! {}).await?)
    }

    /// A profile's current version.
    pub async fn get_profile(&self, name: &str) -> Result<Option<ProfileVersionDoc>> {
        Ok(self.profile_heads().find_one(doc! { "_id": name }).await?)
    }

    /// The profile answering our number (E.164, without `whatsapp:`). Should two profiles
    /// name the same number (saved at the same moment), the latest change wins.
    pub async fn profile_for_number(&self, number: &str) -> Result<Option<ProfileVersionDoc>> {
        Ok(self
            .profile_heads()
            .find_one(doc! { "numbers": number })
            .sort(doc! { "created_at": -1 })
            .await?)
    }

    /// A profile's versions, newest first, older than `before` when given, at most `limit`
    /// (1-100).
    pub async fn profile_versions(
        &self,
        name: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ProfileVersionDoc>> {
        let mut filter = doc! { "name": name };
        if let Some(before) = before {
            filter.insert("version", doc! { "$lt": before });
        }
        let options = FindOptions::builder()
            .sort(doc! { "name": 1, "version": -1 })
            .limit(limit.clamp(1, 100))
            .build();
        let mut versions: Vec<ProfileVersionDoc> = self
            .profile_versions_coll()
            .find(filter)
            .with_options(options)
            .await?
            .try_collect()
            .await?;
        // A save that crashed after moving the head has not written its version yet: the
        // head is that version.
        if before.is_none()
            && let Some(head) = self.get_profile(name).await?
            && versions.first().is_none_or(|v| v.version < head.version)
        {
            versions.insert(0, head.as_version());
            versions.truncate(usize::try_from(limit.clamp(1, 100)).unwrap_or(100));
        }
        Ok(versions)
    }

    /// One version of a profile.
    pub async fn profile_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<ProfileVersionDoc>> {
        if let Some(v) = self
            .profile_versions_coll()
            .find_one(doc! { "_id": ProfileVersionDoc::version_id(name, version) })
            .await?
        {
            return Ok(Some(v));
        }
        Ok(self
            .get_profile(name)
            .await?
            .filter(|h| h.version == version)
            .map(|h| h.as_version()))
    }

    /// Whether the profile `name` has a version imported from a file with this hash.
    pub async fn profile_has_file_hash(&self, name: &str, hash: &str) -> Result<bool> {
        if self
            .get_profile(name)
            .await?
            .is_some_and(|h| h.file_hash.as_deref() == Some(hash))
        {
            return Ok(true);
        }
        Ok(self
            .profile_versions_coll()
            .find_one(doc! { "name": name, "file_hash": hash })
            .await?
            .is_some())
    }

    /// Saves a new version of `next.name`: version 1 when `expected` is `None` (the profile
    /// must not exist), else `expected + 1` when the profile is at `expected`. `next.version`,
    /// `next.id` and `next.created_at` are set here.
    pub async fn save_profile(
        &self,
        mut next: ProfileVersionDoc,
        expected: Option<i64>,
    ) -> Result<SaveOutcome> {
        next.created_at = DateTime::now();
        let current = self.get_profile(&next.name).await?;
        match (expected, &current) {
            (None, None) => {
                next.version = 1;
                match self.profile_heads().insert_one(next.as_head()).await {
                    Ok(_) => {}
                    Err(e) if is_duplicate_key(&e) => {
                        let now = self.get_profile(&next.name).await?;
                        return Ok(SaveOutcome::Conflict {
                            current: now.map(|h| h.version),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (Some(v), Some(head)) if head.version == v => {
                // The version being replaced may have lost its document to a crash.
                self.insert_version(&head.as_version()).await?;
                next.version = v + 1;
                let moved = self
                    .profile_heads()
                    .replace_one(doc! { "_id": &next.name, "version": v }, next.as_head())
                    .await?;
                if moved.matched_count == 0 {
                    let now = self.get_profile(&next.name).await?;
                    return Ok(SaveOutcome::Conflict {
                        current: now.map(|h| h.version),
                    });
                }
            }
            _ => {
                return Ok(SaveOutcome::Conflict {
                    current: current.map(|h| h.version),
                });
            }
        }
        self.insert_version(&next.as_version()).await?;
        Ok(SaveOutcome::Saved(Box::new(next.as_head())))
    }

    async fn insert_version(&self, version: &ProfileVersionDoc) -> Result<()> {
        match self.profile_versions_coll().insert_one(version).await {
            Ok(_) => Ok(()),
            // Versions never change: the same id is the same version.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Records which profile version a call's agent used, on every attempt in `call_logs`
    /// (conversations record theirs with each turn).
    pub async fn set_call_profile(
        &self,
        call_id: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<()> {
        let set = doc! { "profile": name, "profile_version": version.map(i64::from) };
        // Call log ids are `<call id>/<attempt>`: an anchored prefix is an index range.
        let prefix = format!("^{}/", regex_escape(call_id));
        let logs = self.db.collection::<Document>(crate::schema::CALL_LOGS);
        let r = logs
            .update_many(
                doc! { "_id": { "$regex": prefix } },
                doc! { "$set": set.clone() },
            )
            .await?;
        if r.matched_count == 0 {
            // An inbound call has no log before it ends (outbound attempts are logged before
            // they dial): start its log now, or the version would be lost. The call's own
            // write at the end fills in the rest (`save_call_log` sets, never replaces).
            let now = mongodb::bson::DateTime::now();
            logs.update_one(
                doc! { "_id": format!("{call_id}/1") },
                doc! {
                    "$set": set,
                    "$setOnInsert": {
                        "call_id": call_id, "attempt": 1, "direction": "inbound", "from": "",
                        "to": "", "status": "in-progress", "transcript": [],
                        "created_at": now, "updated_at": now,
                    },
                },
            )
            .upsert(true)
            .await?;
        }
        Ok(())
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
