//! `/api/auth/*` (sign-in, sign-out, who am I, password change), `/api/users`,
//! `/api/api-keys` and `/api/audit`. The auth layer has already checked the caller's role
//! against [`super::policy`]; handlers read the [`Principal`] it left in the request.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json, Router};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use voice_agent_store::{ApiKeyDoc, AuditDoc, Role, SessionDoc, UserDoc};

use super::secrets::{self, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use super::{Actor, AuthError, ClientIp, Principal};
use crate::AppState;

/// Largest audit page.
const MAX_AUDIT_PAGE: i64 = 200;
/// Audit page when the request asks for none.
const DEFAULT_AUDIT_PAGE: i64 = 50;
/// Longest key lifetime, in days.
const MAX_KEY_DAYS: u32 = 3650;

/// The access-control routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/auth/password", post(change_password))
        .route("/api/users", get(list_users).post(create_user))
        .route("/api/users/{id}", patch(update_user))
        .route("/api/api-keys", get(list_keys).post(create_key))
        .route("/api/api-keys/{id}", delete(revoke_key))
        .route("/api/audit", get(list_audit))
}

type Result<T, E = AuthError> = std::result::Result<T, E>;

/// A JSON body in our error shape (axum's own rejection is plain text).
fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| AuthError::Invalid(format!("body: {e}")))
}

fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(AuthError::Invalid(format!(
            "password: between {MIN_PASSWORD_CHARS} and {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

fn normalise_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid {
        return Err(AuthError::Invalid("email: not an email address".to_owned()));
    }
    Ok(email)
}

async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| AuthError::Unavailable(e.into()))?
        .map_err(|e| AuthError::Unavailable(anyhow::anyhow!("hashing failed: {e}")))
}

async fn verify(password: String, phc: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || secrets::verify_password(&password, &phc))
        .await
        .map_err(|e| AuthError::Unavailable(e.into()))
}

/// A new user document.
pub(crate) fn new_user(email: &str, password_hash: String, role: Role) -> UserDoc {
    let now = DateTime::now();
    UserDoc {
        id: format!("usr_{}", uuid::Uuid::new_v4().simple()),
        email: email.to_owned(),
        password_hash,
        role,
        disabled: false,
        created_at: now,
        updated_at: now,
    }
}

fn rfc3339(d: DateTime) -> String {
    d.try_to_rfc3339_string().unwrap_or_default()
}

#[derive(Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

/// `GET /api/auth/me` and the answer to sign-in.
#[derive(Serialize)]
struct Me {
    /// `user` or `api_key`.
    kind: &'static str,
    /// User id or key prefix.
    id: String,
    /// User email, or key name.
    name: String,
    role: Role,
    /// Send back in `X-CSRF-Token` on state-changing requests (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    /// When the session ends (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Self {
        match &p.actor {
            Actor::User {
                id,
                email,
                csrf_token,
                expires_at,
                ..
            } => Self {
                kind: "user",
                id: id.clone(),
                name: email.clone(),
                role: p.role,
                csrf_token: Some(csrf_token.clone()),
                expires_at: Some(rfc3339(*expires_at)),
            },
            Actor::Key { prefix, name } => Self {
                kind: "api_key",
                id: prefix.clone(),
                name: name.clone(),
                role: p.role,
                csrf_token: None,
                expires_at: None,
            },
        }
    }
}

async fn login(
    State(state): State<AppState>,
    ip: Option<Extension<ClientIp>>,
    body: axum::body::Bytes,
) -> Result<Response> {
    // Both limits are counted before the password is hashed: a refused attempt costs one
    // MongoDB write, not an Argon2 verification.
    let limits = state.auth.settings.login_limits;
    if let Some(Extension(ClientIp(ip))) = ip
        && let Err(retry_after_secs) = limits
            .check_address(&state.store, ip, DateTime::now())
            .await?
    {
        return Err(AuthError::RateLimited { retry_after_secs });
    }
    let req: LoginRequest = json_body(&body)?;
    let refused = AuthError::Unauthenticated("wrong email or password");
    let email = req.email.trim().to_ascii_lowercase();
    if req.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(refused);
    }
    if let Err(retry_after_secs) = limits
        .check_account(&state.store, &email, DateTime::now())
        .await?
    {
        return Err(AuthError::RateLimited { retry_after_secs });
    }
    let user = state.store.user_by_email(&email).await?;
    let phc = user.as_ref().map_or_else(
        || secrets::dummy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let matches = verify(req.password, phc).await?;
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        _ => return Err(refused),
    };
    let settings = &state.auth.settings;
    let token = secrets::random_token();
    let ttl = settings.session_ttl;
    let now = DateTime::now();
    let expires_at = DateTime::from_millis(
        now.timestamp_millis()
            .saturating_add(ttl.as_millis() as i64),
    );
    let session = SessionDoc {
        token_hash: secrets::digest(&token),
        user_id: user.id.clone(),
        csrf_token: secrets::random_token(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    state.store.insert_session(&session).await?;
    let principal = Principal {
        role: user.role,
        actor: Actor::User {
            id: user.id,
            email: user.email,
            session: session.token_hash,
            csrf_token: session.csrf_token,
            expires_at,
        },
    };
    let cookie = secrets::session_cookie(&token, ttl.as_secs(), settings.secure_cookies);
    let mut response = Json(Me::from(&principal)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| AuthError::Unavailable(e.into()))?,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The auth layer records the sign-in under this user.
    response.extensions_mut().insert(principal);
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response> {
    if let Actor::User { session, .. } = &principal.actor {
        state.store.revoke_session(session).await?;
    }
    let cookie = secrets::cleared_cookie(state.auth.settings.secure_cookies);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

async fn me(Extension(principal): Extension<Principal>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(Me::from(&principal)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<StatusCode> {
    let Actor::User { id, session, .. } = &principal.actor else {
        return Err(AuthError::Invalid(
            "API keys have no password; sign in as the user".to_owned(),
        ));
    };
    let req: PasswordChange = json_body(&body)?;
    check_password(&req.new_password)?;
    let user = state
        .store
        .user(id)
        .await?
        .ok_or(AuthError::Unauthenticated(
            "the session has ended; sign in again",
        ))?;
    if req.current_password.chars().count() > MAX_PASSWORD_CHARS
        || !verify(req.current_password, user.password_hash).await?
    {
        return Err(AuthError::Forbidden("the current password is wrong"));
    }
    state
        .store
        .set_password_hash(id, &hash(req.new_password).await?)
        .await?;
    // Whoever else holds a session (a stolen cookie, another browser) is signed out.
    state.store.revoke_user_sessions(id, Some(session)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user as the API shows it (never the hash).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    id: String,
    email: String,
    /// `admin`, `manager` or `viewer`.
    #[schema(value_type = String)]
    role: Role,
    disabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<UserDoc> for UserView {
    fn from(u: UserDoc) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

fn parse_role(raw: &str) -> Result<Role> {
    Role::parse(raw).ok_or_else(|| AuthError::Invalid("role: admin, manager or viewer".to_owned()))
}

/// `GET /api/users`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UsersPage {
    users: Vec<UserView>,
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "access",
    responses((status = 200, description = "Every user", body = UsersPage))
)]
pub(crate) async fn list_users(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let users: Vec<UserView> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(UserView::from)
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// `POST /api/users`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct NewUser {
    email: String,
    /// 12-1024 characters.
    password: String,
    /// `admin`, `manager` or `viewer`.
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "access",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 409, description = "The email is taken", body = crate::openapi::ErrorBody)
    )
)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<UserView>)> {
    let req: NewUser = json_body(&body)?;
    let email = normalise_email(&req.email)?;
    let role = parse_role(&req.role)?;
    check_password(&req.password)?;
    let user = new_user(&email, hash(req.password).await?, role);
    if !state.store.create_user(&user).await? {
        return Err(AuthError::Conflict(format!(
            "a user with email {email} exists"
        )));
    }
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// `PATCH /api/users/{id}`: what to change.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct UserChange {
    role: Option<String>,
    disabled: Option<bool>,
    /// An admin's reset of a forgotten password.
    password: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "access",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user as changed (their sessions end)", body = UserView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such user", body = crate::openapi::ErrorBody),
        (status = 409, description = "The last admin", body = crate::openapi::ErrorBody)
    )
)]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<UserView>> {
    let req: UserChange = json_body(&body)?;
    let role = req.role.as_deref().map(parse_role).transpose()?;
    if let Some(p) = &req.password {
        check_password(p)?;
    }
    let user = state
        .store
        .user(&id)
        .await?
        .ok_or_else(|| AuthError::NotFound(format!("user {id}")))?;
    let loses_admin = user.role == Role::Admin
        && !user.disabled
        && (role.is_some_and(|r| r != Role::Admin) || req.disabled == Some(true));
    if loses_admin && state.store.count_active_admins().await? <= 1 {
        return Err(AuthError::Conflict(
            "this is the last admin; make another admin first".to_owned(),
        ));
    }
    state.store.update_user(&id, role, req.disabled).await?;
    let password_reset = req.password.is_some();
    if let Some(p) = req.password {
        state.store.set_password_hash(&id, &hash(p).await?).await?;
    }
    // Whoever holds a session under the old role, status or password signs in again.
    if req.disabled == Some(true) || role.is_some() || password_reset {
        state.store.revoke_user_sessions(&id, None).await?;
    }
    let user = state
        .store
        .user(&id)
        .await?
        .ok_or_else(|| AuthError::NotFound(format!("user {id}")))?;
    Ok(Json(user.into()))
}

/// A key as listings show it (never the key or its hash).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct KeyView {
    prefix: String,
    name: String,
    /// `admin`, `manager` or `viewer`.
    #[schema(value_type = String)]
    role: Role,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

impl From<ApiKeyDoc> for KeyView {
    fn from(k: ApiKeyDoc) -> Self {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= DateTime::now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            prefix: k.prefix,
            name: k.name,
            role: k.role,
            state,
            created_at: rfc3339(k.created_at),
            created_by: k.created_by,
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// `GET /api/api-keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct KeysPage {
    api_keys: Vec<KeyView>,
}

/// `POST /api/api-keys`: the new key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NewKeyView {
    #[serde(flatten)]
    view: KeyView,
    /// The key itself: shown only in this answer.
    key: String,
}

#[utoipa::path(
    get,
    path = "/api/api-keys",
    tag = "access",
    responses((status = 200, description = "Every key, by prefix (never the key)", body = KeysPage))
)]
pub(crate) async fn list_keys(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let keys: Vec<KeyView> = state
        .store
        .list_api_keys()
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(Json(serde_json::json!({ "api_keys": keys })))
}

/// `POST /api/api-keys`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct NewKey {
    name: String,
    role: String,
    /// Days until it expires; none never expires.
    expires_in_days: Option<u32>,
    /// Or an exact expiry (RFC 3339), e.g. for tests.
    expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/api-keys",
    tag = "access",
    request_body = NewKey,
    responses(
        (status = 201, description = "Created; the key is in this answer only", body = NewKeyView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let req: NewKey = json_body(&body)?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AuthError::Invalid("name: 1 to 100 characters".to_owned()));
    }
    let role = parse_role(&req.role)?;
    let expires_at = match (req.expires_in_days, req.expires_at.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(AuthError::Invalid(
                "give expires_in_days or expires_at, not both".to_owned(),
            ));
        }
        (Some(days), None) => {
            if !(1..=MAX_KEY_DAYS).contains(&days) {
                return Err(AuthError::Invalid(format!(
                    "expires_in_days: between 1 and {MAX_KEY_DAYS}"
                )));
            }
            let ms = Duration::from_secs(u64::from(days) * 86_400).as_millis() as i64;
            Some(DateTime::from_millis(
                DateTime::now().timestamp_millis().saturating_add(ms),
            ))
        }
        (None, Some(at)) => Some(
            DateTime::parse_rfc3339_str(at)
                .map_err(|_| AuthError::Invalid("expires_at: an RFC 3339 time".to_owned()))?,
        ),
        (None, None) => None,
    };
    let created_by = match &principal.actor {
        Actor::User { id, .. } => id.clone(),
        Actor::Key { prefix, .. } => prefix.clone(),
    };
    // A 48-bit prefix collides about never; retry anyway rather than fail.
    for _ in 0..3 {
        let key = secrets::generate_key();
        let parsed = secrets::parse_key(&key).ok_or_else(|| {
            AuthError::Unavailable(anyhow::anyhow!("a generated key does not parse"))
        })?;
        let doc = ApiKeyDoc {
            prefix: parsed.prefix.to_owned(),
            name: name.clone(),
            role,
            hash: secrets::digest(&key),
            created_by: Some(created_by.clone()),
            created_at: DateTime::now(),
            expires_at,
            revoked_at: None,
            bootstrap: false,
        };
        if state.store.insert_api_key(&doc).await? {
            // The only time the key is shown.
            let view = serde_json::to_value(NewKeyView {
                view: KeyView::from(doc),
                key,
            })
            .map_err(|e| AuthError::Unavailable(e.into()))?;
            return Ok((StatusCode::CREATED, Json(view)));
        }
    }
    Err(AuthError::Unavailable(anyhow::anyhow!(
        "three generated key prefixes were taken"
    )))
}

#[utoipa::path(
    delete,
    path = "/api/api-keys/{id}",
    tag = "access",
    params(("id" = String, Path, description = "The key's prefix")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = crate::openapi::ErrorBody)
    )
)]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if state.store.revoke_api_key(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AuthError::NotFound(format!("API key {id}")))
    }
}

/// `GET /api/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Page size, 1-200 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One state-changing request.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditView {
    id: String,
    at: String,
    actor_kind: String,
    actor_id: String,
    actor_name: String,
    transport: String,
    method: String,
    route: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    status: i32,
    ip: String,
}

impl From<AuditDoc> for AuditView {
    fn from(a: AuditDoc) -> Self {
        Self {
            id: a.id.to_hex(),
            at: rfc3339(a.at),
            actor_kind: a.actor_kind,
            actor_id: a.actor_id,
            actor_name: a.actor_name,
            transport: a.transport,
            method: a.method,
            route: a.route,
            target: a.target,
            status: a.status,
            ip: a.ip,
        }
    }
}

/// `GET /api/audit`: newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<AuditView>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "access",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit entries, newest first", body = AuditPage),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(AuthError::Invalid(format!(
            "limit: between 1 and {MAX_AUDIT_PAGE}"
        )));
    }
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            ObjectId::parse_str(c)
                .map_err(|_| AuthError::Invalid("cursor: not a cursor from this API".to_owned()))?,
        ),
    };
    let mut docs = state.store.list_audit(before, limit + 1).await?;
    let more = docs.len() as i64 > limit;
    docs.truncate(limit as usize);
    let next_cursor = if more {
        docs.last().map(|d| d.id.to_hex())
    } else {
        None
    };
    let entries: Vec<AuditView> = docs.into_iter().map(AuditView::from).collect();
    Ok(Json(
        serde_json::json!({ "entries": entries, "next_cursor": next_cursor }),
    ))
}
