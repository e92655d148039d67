//! OpenAPI descriptions of the access-control routes ([`super::handlers`]). The handlers take
//! raw bytes (so a bad body gets our error shape) and answer with their own view types; these
//! schemas mirror those shapes for the document and the web app's generated client. The stub
//! functions carry the annotations only and are never routed.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::openapi::ErrorBody;

/// A role: `viewer` reads, `manager` also runs lists, campaigns, conversations and calls,
/// `admin` also manages users, API keys and reads the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleSchema {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also manages lists, campaigns, conversations and calls.
    Manager,
    /// Also manages users, API keys, and reads the audit log.
    Admin,
}

/// Sign-in with email and password.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginBody {
    /// The user's email (case does not matter).
    pub email: String,
    /// 12 to 256 characters.
    pub password: String,
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `user` or `api_key`.
    pub kind: String,
    /// User id or key prefix.
    pub id: String,
    /// User email, or key name.
    pub name: String,
    /// What the caller may do.
    pub role: RoleSchema,
    /// Send back in `X-CSRF-Token` on state-changing requests (sessions only).
    pub csrf_token: Option<String>,
    /// When the session ends, RFC 3339 (sessions only).
    pub expires_at: Option<String>,
}

/// A password change by the signed-in user; their other sessions end.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChangeBody {
    /// The password in use.
    pub current_password: String,
    /// 12 to 256 characters.
    pub new_password: String,
}

/// A user as listings show it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserViewSchema {
    /// `usr_…`.
    pub id: String,
    /// Lower-case email.
    pub email: String,
    /// What the user may do.
    pub role: RoleSchema,
    /// A disabled user cannot sign in; their sessions ended when disabled.
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Lists the users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Every user.
    pub users: Vec<UserViewSchema>,
}

/// A new user.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewUserBody {
    /// Their email; unique.
    pub email: String,
    /// 12 to 256 characters.
    pub password: String,
    /// `admin`, `manager` or `viewer`.
    pub role: RoleSchema,
}

/// A change to a user; absent fields stay. A change of role, disabling or a password reset
/// ends the user's sessions. The last active admin cannot lose the role or be disabled (409).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserChangeBody {
    /// New role.
    pub role: Option<RoleSchema>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// An admin's reset of a forgotten password, 12 to 256 characters.
    pub password: Option<String>,
}

/// An API key as listings show it (never the key or its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyViewSchema {
    /// The key's public prefix (`vak_<prefix>_…`), its id.
    pub prefix: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: RoleSchema,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// The user id or key prefix that created it.
    pub created_by: Option<String>,
    /// RFC 3339; none never expires.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub revoked_at: Option<String>,
}

/// A key just created: the listing's fields and the key itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// As in listings.
    #[serde(flatten)]
    pub view: KeyViewSchema,
    /// `vak_<prefix>_<secret>`: send as `Authorization: Bearer <key>`. Not retrievable later.
    pub key: String,
}

/// Lists the API keys by prefix.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, revoked and expired ones included.
    pub api_keys: Vec<KeyViewSchema>,
}

/// A new API key. Give `expires_in_days` or `expires_at`, or neither (never expires).
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyBody {
    /// 1 to 100 characters.
    pub name: String,
    /// `admin`, `manager` or `viewer`.
    pub role: RoleSchema,
    /// Days until it expires.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// An exact expiry, RFC 3339.
    pub expires_at: Option<String>,
}

/// One state-changing request.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The entry's id (also the paging cursor).
    pub id: String,
    /// When, RFC 3339.
    pub at: String,
    /// `user`, `api_key` or `anonymous`.
    pub actor_kind: String,
    /// User id or key prefix.
    pub actor_id: String,
    /// User email or key name.
    pub actor_name: String,
    /// `http` or `grpc`.
    pub transport: String,
    /// HTTP method (`POST` for gRPC).
    pub method: String,
    /// Route template or gRPC method path.
    pub route: String,
    /// The route's ids, joined with `/`.
    pub target: Option<String>,
    /// HTTP status, or gRPC status code.
    pub status: i32,
    /// The client's address.
    pub ip: String,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; none on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "access",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in: sets the HttpOnly session cookie", body = MeView),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address; see Retry-After", body = ErrorBody)
    )
)]
/// Signs in with email and password (a browser session).
pub fn login() {}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "access",
    responses((status = 204, description = "Signed out: the session ends and the cookie is cleared"))
)]
/// Signs out: ends this session.
pub fn logout() {}

#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "access",
    responses(
        (status = 200, description = "The caller", body = MeView),
        (status = 401, description = "No valid credential", body = ErrorBody)
    )
)]
/// Who is calling: the signed-in user or the API key.
pub fn me() {}

#[utoipa::path(
    post,
    path = "/api/auth/password",
    tag = "access",
    request_body = PasswordChangeBody,
    responses(
        (status = 204, description = "Changed; the user's other sessions end"),
        (status = 400, description = "Invalid input, or an API key (keys have no password)", body = ErrorBody),
        (status = 403, description = "Wrong current password", body = ErrorBody)
    )
)]
/// Changes the signed-in user's password.
pub fn change_password() {}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "access",
    responses((status = 200, description = "Every user (admins only)", body = UserList))
)]
/// Lists the users.
pub fn list_users() {}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "access",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created", body = UserViewSchema),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 409, description = "A user with this email exists", body = ErrorBody)
    )
)]
/// Creates a user.
pub fn create_user() {}

#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "access",
    params(("id" = String, Path, description = "The user id (`usr_…`)")),
    request_body = UserChangeBody,
    responses(
        (status = 200, description = "Changed", body = UserViewSchema),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The last active admin", body = ErrorBody)
    )
)]
/// Changes a user's role, disables or enables them, or resets their password.
pub fn update_user() {}

#[utoipa::path(
    get,
    path = "/api/api-keys",
    tag = "access",
    responses((status = 200, description = "Every API key (admins only)", body = KeyList))
)]
/// Lists the API keys by prefix.
pub fn list_keys() {}

#[utoipa::path(
    post,
    path = "/api/api-keys",
    tag = "access",
    request_body = NewKeyBody,
    responses(
        (status = 201, description = "Created; the key is in the answer this once", body = CreatedKey),
        (status = 400, description = "Invalid input", body = ErrorBody)
    )
)]
/// Creates an API key; the answer holds the key, shown this once.
pub fn create_key() {}

#[utoipa::path(
    delete,
    path = "/api/api-keys/{id}",
    tag = "access",
    params(("id" = String, Path, description = "The key's prefix")),
    responses(
        (status = 204, description = "Revoked: refused from now on"),
        (status = 404, description = "No such key", body = ErrorBody)
    )
)]
/// Revokes an API key.
pub fn revoke_key() {}

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "access",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Entries per page, 1 to 200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")
    ),
    responses(
        (status = 200, description = "A page of the audit log, newest first (admins only)", body = AuditPage),
        (status = 400, description = "Invalid input", body = ErrorBody)
    )
)]
/// Pages through the audit log of state-changing requests, newest first.
pub fn list_audit() {}
