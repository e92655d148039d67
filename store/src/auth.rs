//! Access control: `users`, `api_keys`, `sessions` and the `audit_log`.
//!
//! Nothing secret is stored in the clear: passwords are Argon2id PHC strings, API keys and
//! session tokens are SHA-256 digests (both are 256-bit random values, so a fast hash is
//! enough; see `api::auth`). Hashing happens in the api; this module only stores and compares.
//! Expiry is checked in every lookup rather than left to a TTL index, so an expired session or
//! key is refused the moment it expires, on any MongoDB-compatible server. The sign-in counters
//! of `login_attempts` check their window's end the same way; their TTL index only clears
//! ended windows away.

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{FindOneAndUpdateOptions, FindOptions, IndexOptions, ReturnDocument};
use serde::{Deserialize, Serialize};

use crate::{MongoStore, Result, is_duplicate_key};

/// `users`: people who sign in with email and password.
pub const USERS: &str = "users";
/// `api_keys`: keys for programs, by prefix.
pub const API_KEYS: &str = "api_keys";
/// `sessions`: browser sessions, by token digest.
pub const SESSIONS: &str = "sessions";
/// `audit_log`: every state-changing request.
pub const AUDIT_LOG: &str = "audit_log";
/// `login_attempts`: sign-in attempts per client address and per account, one small counter
/// document per key, shared by every api replica.
pub const LOGIN_ATTEMPTS: &str = "login_attempts";

/// Steps of [`MongoStore::count_login_attempt`] before it gives up on a contended key.
const MAX_LOGIN_COUNT_TRIES: u32 = 8;

/// What a user or key may do. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also manages lists, campaigns, conversations and calls.
    Manager,
    /// Also manages users, API keys, and reads the audit log.
    Admin,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }

    /// Parses a wire name (`campaign_manager` is accepted for `manager`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Self::Viewer),
            "manager" | "campaign_manager" => Some(Self::Manager),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDoc {
    /// `usr_…`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Lower-cased; unique.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// A disabled user cannot sign in and their sessions are revoked.
    #[serde(default)]
    pub disabled: bool,
    /// When created.
    pub created_at: DateTime,
    /// Last change of role, password or status.
    pub updated_at: DateTime,
}

/// One API key (without the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyDoc {
    /// The key's public prefix, also shown in listings.
    #[serde(rename = "_id")]
    pub prefix: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Lower-case hex SHA-256 of the whole key.
    pub hash: String,
    /// The user or key that created it; `None` for the bootstrap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When created.
    pub created_at: DateTime,
    /// After this the key is refused; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// When revoked; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime>,
    /// Set on the key from `API_BOOTSTRAP_ADMIN_KEY`, so a changed variable revokes the old one.
    #[serde(default)]
    pub bootstrap: bool,
}

/// One browser session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDoc {
    /// Lower-case hex SHA-256 of the cookie's token.
    #[serde(rename = "_id")]
    pub token_hash: String,
    /// Whose.
    pub user_id: String,
    /// The value state-changing requests must send in `X-CSRF-Token`.
    pub csrf_token: String,
    /// When signed in.
    pub created_at: DateTime,
    /// After this the session is refused.
    pub expires_at: DateTime,
    /// When signed out or revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime>,
}

/// One state-changing request, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDoc {
    /// Insertion order; also the paging cursor.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// When the request finished.
    pub at: DateTime,
    /// `user`, `api_key` or `anonymous`.
    pub actor_kind: String,
    /// User id or key prefix; empty when anonymous.
    pub actor_id: String,
    /// User email or key name.
    pub actor_name: String,
    /// `http` or `grpc`.
    pub transport: String,
    /// HTTP method, or `POST` for gRPC.
    pub method: String,
    /// Route template (`/api/campaigns/{id}/start`) or gRPC method path.
    pub route: String,
    /// The id(s) in the path, when the route has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// HTTP status, or the gRPC status code.
    pub status: i32,
    /// The client's address.
    pub ip: String,
}

impl MongoStore {
    fn users(&self) -> mongodb::Collection<UserDoc> {
        self.db.collection(USERS)
    }
    fn api_keys(&self) -> mongodb::Collection<ApiKeyDoc> {
        self.db.collection(API_KEYS)
    }
    fn sessions(&self) -> mongodb::Collection<SessionDoc> {
        self.db.collection(SESSIONS)
    }
    fn audit(&self) -> mongodb::Collection<AuditDoc> {
        self.db.collection(AUDIT_LOG)
    }

    /// Creates the access-control indexes. Kept apart from [`MongoStore::ensure_schema`]
    /// because only the api reads these collections.
    pub async fn ensure_auth_schema(&self) -> Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.db
            .collection::<Document>(USERS)
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "email": 1 })
                    .options(unique)
                    .build(),
            )
            .await?;
        self.db
            .collection::<Document>(SESSIONS)
            .create_index(IndexModel::builder().keys(doc! { "user_id": 1 }).build())
            .await?;
        self.db
            .collection::<Document>(LOGIN_ATTEMPTS)
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expires_at": 1 })
                    .options(
                        IndexOptions::builder()
                            .expire_after(std::time::Duration::ZERO)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Counts one sign-in attempt against `key` (a client address or an account digest) and
    /// returns the attempts of its current window, this one included, and when that window
    /// ends. A window starts with the first attempt after the previous one ended and lasts
    /// `window`. Each step is one atomic write on the key's document, so attempts on every api
    /// replica add up; the TTL index deletes a document once its window has ended.
    pub async fn count_login_attempt(
        &self,
        key: &str,
        now: DateTime,
        window: std::time::Duration,
    ) -> Result<(u64, DateTime)> {
        let collection = self.db.collection::<Document>(LOGIN_ATTEMPTS);
        let counting = FindOneAndUpdateOptions::builder()
            .return_document(ReturnDocument::After)
            .build();
        let end = DateTime::from_millis(
            now.timestamp_millis()
                .saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)),
        );
        let fresh = doc! { "_id": key, "count": 1_i64, "expires_at": end };
        // Another replica may start the window between two steps; each step that loses the
        // race leaves the document for the next one to count in.
        for _ in 0..MAX_LOGIN_COUNT_TRIES {
            let counted = collection
                .find_one_and_update(
                    doc! { "_id": key, "expires_at": { "$gt": now } },
                    doc! { "$inc": { "count": 1_i64 } },
                )
                .with_options(counting.clone())
                .await?;
            if let Some(d) = counted {
                let count = d.get_i64("count").map_or(u64::MAX, |c| c.max(0) as u64);
                return Ok((count, d.get_datetime("expires_at").copied().unwrap_or(end)));
            }
            let restarted = collection
                .replace_one(doc! { "_id": key, "expires_at": { "$lte": now } }, &fresh)
                .await?;
            if restarted.matched_count == 1 {
                return Ok((1, end));
            }
            match collection.insert_one(&fresh).await {
                Ok(_) => return Ok((1, end)),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Contention this heavy on one key is an attack: refuse the attempt.
        Ok((u64::MAX, end))
    }

    /// Inserts a user; `false` when the email is taken.
    pub async fn create_user(&self, user: &UserDoc) -> Result<bool> {
        match self.users().insert_one(user).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The user with this (lower-cased) email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserDoc>> {
        Ok(self.users().find_one(doc! { "email": email }).await?)
    }

    /// The user with this id.
    pub async fn user(&self, id: &str) -> Result<Option<UserDoc>> {
        Ok(self.users().find_one(doc! { "_id": id }).await?)
    }

    /// Every user, by email. Deployments have tens of users, not millions.
    pub async fn list_users(&self) -> Result<Vec<UserDoc>> {
        let options = FindOptions::builder()
            .sort(doc! { "email": 1 })
            .limit(1000)
            .build();
        Ok(self
            .users()
            .find(doc! {})
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// Changes a user's role and/or disabled flag; `false` when there is no such user.
    pub async fn update_user(
        &self,
        id: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<bool> {
        let mut set = doc! { "updated_at": DateTime::now() };
        if let Some(r) = role {
            set.insert("role", r.as_str());
        }
        if let Some(d) = disabled {
            set.insert("disabled", d);
        }
        let r = self
            .users()
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool> {
        let r = self
            .users()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "password_hash": hash, "updated_at": DateTime::now() } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Number of enabled admins, so the last one cannot be demoted or disabled.
    pub async fn count_active_admins(&self) -> Result<u64> {
        Ok(self
            .users()
            .count_documents(doc! { "role": Role::Admin.as_str(), "disabled": { "$ne": true } })
            .await?)
    }

    /// Inserts a key; `false` when the prefix is taken (generate another).
    pub async fn insert_api_key(&self, key: &ApiKeyDoc) -> Result<bool> {
        match self.api_keys().insert_one(key).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Installs the bootstrap key (replacing one with the same prefix) and revokes any earlier
    /// bootstrap key with another prefix.
    pub async fn install_bootstrap_key(&self, key: &ApiKeyDoc) -> Result<()> {
        self.api_keys()
            .replace_one(doc! { "_id": &key.prefix }, key)
            .upsert(true)
            .await?;
        self.api_keys()
            .update_many(
                doc! { "bootstrap": true, "_id": { "$ne": &key.prefix }, "revoked_at": null },
                doc! { "$set": { "revoked_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// The key with this prefix, whatever its state (the caller checks hash, expiry and
    /// revocation, so it can tell them apart in its log).
    pub async fn api_key(&self, prefix: &str) -> Result<Option<ApiKeyDoc>> {
        Ok(self.api_keys().find_one(doc! { "_id": prefix }).await?)
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyDoc>> {
        let options = FindOptions::builder()
            .sort(doc! { "created_at": -1 })
            .limit(1000)
            .build();
        Ok(self
            .api_keys()
            .find(doc! {})
            .with_options(options)
            .await?
            .try_collect()
            .await?)
    }

    /// Revokes a key; `false` when there is no such key. Revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, prefix: &str) -> Result<bool> {
        let r = self
            .api_keys()
            .update_one(
                doc! { "_id": prefix, "revoked_at": null },
                doc! { "$set": { "revoked_at": DateTime::now() } },
            )
            .await?;
        if r.matched_count == 1 {
            return Ok(true);
        }
        Ok(self.api_key(prefix).await?.is_some())
    }

    /// Stores a new session.
    pub async fn insert_session(&self, session: &SessionDoc) -> Result<()> {
        self.sessions().insert_one(session).await?;
        Ok(())
    }

    /// The live session with this token digest: not revoked, not expired.
    pub async fn live_session(&self, token_hash: &str) -> Result<Option<SessionDoc>> {
        Ok(self
            .sessions()
            .find_one(doc! {
                "_id": token_hash,
                "revoked_at": null,
                "expires_at": { "$gt": DateTime::now() },
            })
            .await?)
    }

    /// Revokes one session (sign-out).
    pub async fn revoke_session(&self, token_hash: &str) -> Result<()> {
        self.sessions()
            .update_one(
                doc! { "_id": token_hash, "revoked_at": null },
                doc! { "$set": { "revoked_at": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    /// Revokes every session of a user except `keep` (the one changing the password).
    pub async fn revoke_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let mut filter = doc! { "user_id": user_id, "revoked_at": null };
        if let Some(k) = keep {
            filter.insert("_id", doc! { "$ne": k });
        }
        let r = self
            .sessions()
            .update_many(filter, doc! { "$set": { "revoked_at": DateTime::now() } })
            .await?;
        Ok(r.modified_count)
    }

    /// Appends to the audit log.
    pub async fn record_audit(&self, entry: &AuditDoc) -> Result<()> {
        self.audit().insert_one(entry).await?;
        Ok(())
    }

    /// Audit entries older than `before` (an entry id), newest first, at most `limit`.
    pub async fn list_audit(&self, before: Option<ObjectId>, limit: i64) -> Result<Vec<AuditDoc>> {
        let filter = match before {
            Some(id) => doc! { "_id": { "$lt": id } },
            None => doc! {},
        };
        let options = FindOptions::builder()
            .sort(doc! { "_id": -1 })
            .limit(limit)
            .max_time(crate::SEARCH_MAX_TIME)
            .build();
        self.audit()
            .find(filter)
            .with_options(options)
            .await
            .map_err(crate::search_error)?
            .try_collect()
            .await
            .map_err(crate::search_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_include() {
        assert!(Role::Viewer < Role::Manager && Role::Manager < Role::Admin);
    }

    #[test]
    fn role_names_round_trip_and_accept_the_long_manager_name() {
        for r in [Role::Viewer, Role::Manager, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Campaign_Manager"), Some(Role::Manager));
        assert_eq!(Role::parse("root"), None);
    }
}
