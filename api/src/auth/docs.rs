//! OpenAPI descriptions of the session routes of [`super::handlers`] (sign-in, sign-out, `me`,
//! password change). Their handlers take raw bytes (so a bad body gets our error shape) and
//! answer with their own view types; these schemas mirror those shapes for the document and the
//! web app's generated client. The stub functions carry the annotations only and are never
//! routed. The other access routes (users, API keys, audit) are annotated on their handlers.
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

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "access",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in: sets the HttpOnly session cookie", body = MeView),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address or for this account; see Retry-After", body = ErrorBody)
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
