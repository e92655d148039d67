//! Access control for the HTTP and gRPC APIs: who is calling (an API key in
//! `Authorization: Bearer`, or a browser session cookie), whether their role allows the route
//! ([`policy`]), CSRF and content-type checks for browsers, a Host allowlist against DNS
//! rebinding, sign-in rate limits per address and per account (shared by every replica), and an
//! audit log of every state-changing request.
//!
//! | module | what |
//! |---|---|
//! | [`policy`] | the route and gRPC method tables (default deny) |
//! | [`secrets`] | key, token and password hashing, the session cookie |
//! | [`handlers`] | `/api/auth/*`, `/api/users`, `/api/api-keys`, `/api/audit` |
//! | [`grpc`] | the tower layer in front of the gRPC services |
//! | [`limits`] | request rate limits per key, per user and per anonymous address; sign-in limits |

pub mod docs;
pub mod grpc;
pub mod handlers;
pub mod limits;
pub mod policy;
pub mod secrets;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};
use voice_agent_config::{ConfigError, Env};
use voice_agent_store::{ApiKeyDoc, AuditDoc, MongoStore, Role};

use crate::AppState;
use policy::{Access, BodyKind};

/// The header browsers send with the token from sign-in on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Access-control settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `API_SESSION_TTL_SECS`: how long a browser session lasts.
    pub session_ttl: Duration,
    /// `API_ALLOWED_HOSTS`: Host header values (without port) the API answers; by default the
    /// host of `PUBLIC_BASE_URL`, `localhost`, `127.0.0.1` and `::1`.
    pub allowed_hosts: Vec<String>,
    /// `API_PUBLIC_METRICS`: whether `/metrics` is served without a credential.
    pub public_metrics: bool,
    /// `API_LOGIN_ATTEMPTS_PER_MINUTE` and `API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE`:
    /// sign-in attempts per client address and per account, across every replica.
    pub login_limits: limits::LoginLimits,
    /// `API_TRUST_FORWARDED_FOR`: take the client IP from `X-Forwarded-For` (only behind a
    /// proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Whether the session cookie is `Secure` (`PUBLIC_BASE_URL` is https).
    pub secure_cookies: bool,
    /// `API_BOOTSTRAP_ADMIN_EMAIL`: an admin user created at start if no user has this email.
    pub bootstrap_admin_email: Option<String>,
    /// `API_BOOTSTRAP_ADMIN_PASSWORD`: that admin's first password.
    pub bootstrap_admin_password: Option<SecretString>,
    /// `API_BOOTSTRAP_ADMIN_KEY`: an admin API key (`vak_<12 hex>_<secret>`) installed at start.
    pub bootstrap_admin_key: Option<SecretString>,
    /// `API_RATE_LIMIT_*`: request budgets per caller.
    pub rate_limits: limits::RateLimitSettings,
}

impl AuthSettings {
    /// Reads and validates the settings.
    pub fn from_env(env: &Env, public_base_url: &url::Url) -> Result<Self, ConfigError> {
        let flag = |var: &'static str, default: bool| match env.get(var) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    var,
                    reason: "expected true or false".to_owned(),
                }),
            },
        };
        let allowed_hosts = match env.get("API_ALLOWED_HOSTS") {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => {
                let mut hosts = vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "[::1]".to_owned(),
                ];
                if let Some(h) = public_base_url.host_str() {
                    hosts.push(h.to_ascii_lowercase());
                }
                hosts
            }
        };
        let bootstrap_admin_email = env.get("API_BOOTSTRAP_ADMIN_EMAIL");
        let bootstrap_admin_password = env
            .get("API_BOOTSTRAP_ADMIN_PASSWORD")
            .map(SecretString::from);
        if bootstrap_admin_email.is_some() != bootstrap_admin_password.is_some() {
            return Err(ConfigError::Invalid {
                var: "API_BOOTSTRAP_ADMIN_PASSWORD",
                reason: "set both API_BOOTSTRAP_ADMIN_EMAIL and API_BOOTSTRAP_ADMIN_PASSWORD, or neither".to_owned(),
            });
        }
        if let Some(p) = &bootstrap_admin_password
            && p.expose_secret().chars().count() < secrets::MIN_PASSWORD_CHARS
        {
            return Err(ConfigError::Invalid {
                var: "API_BOOTSTRAP_ADMIN_PASSWORD",
                reason: format!("at least {} characters", secrets::MIN_PASSWORD_CHARS),
            });
        }
        let bootstrap_admin_key = env.get("API_BOOTSTRAP_ADMIN_KEY").map(SecretString::from);
        if let Some(k) = &bootstrap_admin_key
            && secrets::parse_key(k.expose_secret()).is_none()
        {
            return Err(ConfigError::Invalid {
                var: "API_BOOTSTRAP_ADMIN_KEY",
                reason: "expected vak_<12 lower-case hex>_<at least 32 of A-Z a-z 0-9 - _>"
                    .to_owned(),
            });
        }
        Ok(Self {
            session_ttl: Duration::from_secs(env.number("API_SESSION_TTL_SECS", 12 * 3600)?),
            allowed_hosts,
            public_metrics: flag("API_PUBLIC_METRICS", true)?,
            login_limits: limits::LoginLimits::from_env(env)?,
            trust_forwarded_for: flag("API_TRUST_FORWARDED_FOR", false)?,
            secure_cookies: public_base_url.scheme() == "https",
            bootstrap_admin_email,
            bootstrap_admin_password,
            bootstrap_admin_key,
            rate_limits: limits::RateLimitSettings::from_env(env)?,
        })
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What they may do.
    pub role: Role,
    /// How they proved it.
    pub actor: Actor,
}

/// A user with a session, or a program with a key.
#[derive(Debug, Clone)]
pub enum Actor {
    /// Signed in through the browser.
    User {
        /// `usr_…`.
        id: String,
        /// Their email.
        email: String,
        /// The session's token digest.
        session: String,
        /// The session's CSRF token.
        csrf_token: String,
        /// When the session ends.
        expires_at: DateTime,
    },
    /// An API key.
    Key {
        /// Its prefix.
        prefix: String,
        /// Its name.
        name: String,
    },
}

impl Principal {
    fn audit_fields(&self) -> (&'static str, String, String) {
        match &self.actor {
            Actor::User { id, email, .. } => ("user", id.clone(), email.clone()),
            Actor::Key { prefix, name } => ("api_key", prefix.clone(), name.clone()),
        }
    }
}

/// Why a request was refused. The JSON body is `{"error": …, "code": …}` like the other api
/// errors; the code is stable for clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential, or one that is wrong, expired or revoked: sign in or send a valid key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The credential is valid but its role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A browser request without the CSRF token from sign-in.
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    /// The body is not of a type this route takes.
    #[error("expected Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    /// The Host header is not one the API serves (DNS rebinding).
    #[error("this host is not served here")]
    HostNotAllowed,
    /// Too many sign-in attempts from this address.
    #[error("too many sign-in attempts; retry later")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// The caller's request budget ([`limits`]) is spent for now.
    #[error("too many requests; retry after the Retry-After seconds")]
    Throttled {
        /// Seconds until the next request is allowed.
        retry_after_secs: u64,
    },
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The id names nothing.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A dependency failed; retrying later may succeed.
    #[error("a dependency is unavailable; try again")]
    Unavailable(#[source] anyhow::Error),
}

impl AuthError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::HostNotAllowed => (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed"),
            Self::RateLimited { .. } | Self::Throttled { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl From<voice_agent_store::StoreError> for AuthError {
    fn from(e: voice_agent_store::StoreError) -> Self {
        Self::Unavailable(e.into())
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let Self::Unavailable(e) = &self {
            warn!(error = %format!("{e:#}"), "auth request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string(), "code": code }));
        let mut response = (status, body).into_response();
        if let Self::RateLimited { retry_after_secs } | Self::Throttled { retry_after_secs } = self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match &e {
            AuthError::Unauthenticated(_) => Self::unauthenticated(e.to_string()),
            AuthError::Forbidden(_) => Self::permission_denied(e.to_string()),
            AuthError::RateLimited { retry_after_secs }
            | AuthError::Throttled { retry_after_secs } => {
                let mut status = Self::resource_exhausted(e.to_string());
                status
                    .metadata_mut()
                    .insert("retry-after", (*retry_after_secs).max(1).into());
                status
            }
            AuthError::Unavailable(cause) => {
                warn!(error = %format!("{cause:#}"), "auth check failed");
                Self::unavailable("a dependency is unavailable; try again")
            }
            other => Self::invalid_argument(other.to_string()),
        }
    }
}

/// Access-control state shared by the HTTP and gRPC layers. Cheap to clone.
#[derive(Clone)]
pub struct AuthState {
    /// The settings.
    pub settings: Arc<AuthSettings>,
    /// Request budgets per caller.
    pub limits: limits::RateLimits,
}

impl AuthState {
    /// State for `settings`.
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            limits: limits::RateLimits::new(settings.rate_limits),
            settings: Arc::new(settings),
        }
    }
}

/// Creates the bootstrap admin user and key from the settings, if set.
pub async fn bootstrap(store: &MongoStore, settings: &AuthSettings) -> anyhow::Result<()> {
    store
        .ensure_auth_schema()
        .await
        .context("Failed to create the access-control indexes")?;
    if let (Some(email), Some(password)) = (
        &settings.bootstrap_admin_email,
        &settings.bootstrap_admin_password,
    ) {
        let email = email.trim().to_ascii_lowercase();
        if store.user_by_email(&email).await?.is_none() {
            let password = password.expose_secret().to_owned();
            let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
                .await?
                .map_err(|e| anyhow::anyhow!("Failed to hash the bootstrap password: {e}"))?;
            let created = store
                .create_user(&handlers::new_user(&email, hash, Role::Admin))
                .await?;
            if created {
                info!("created the bootstrap admin user from API_BOOTSTRAP_ADMIN_EMAIL");
            }
        }
    }
    if let Some(key) = &settings.bootstrap_admin_key {
        let parsed = secrets::parse_key(key.expose_secret())
            .context("API_BOOTSTRAP_ADMIN_KEY is validated at start")?;
        store
            .install_bootstrap_key(&ApiKeyDoc {
                prefix: parsed.prefix.to_owned(),
                name: "bootstrap (API_BOOTSTRAP_ADMIN_KEY)".to_owned(),
                role: Role::Admin,
                hash: secrets::digest(parsed.whole),
                created_by: None,
                created_at: DateTime::now(),
                expires_at: None,
                revoked_at: None,
                bootstrap: true,
            })
            .await?;
        info!(
            prefix = parsed.prefix,
            "installed the bootstrap admin API key"
        );
    }
    Ok(())
}

/// The principal of a bearer key; errors say which check failed (no key material in them).
pub async fn principal_from_key(store: &MongoStore, raw: &str) -> Result<Principal, AuthError> {
    let parsed = secrets::parse_key(raw).ok_or(AuthError::Unauthenticated("malformed API key"))?;
    let key = store
        .api_key(parsed.prefix)
        .await?
        .ok_or(AuthError::Unauthenticated("unknown API key"))?;
    if !secrets::same(&secrets::digest(parsed.whole), &key.hash) {
        return Err(AuthError::Unauthenticated("unknown API key"));
    }
    if key.revoked_at.is_some() {
        return Err(AuthError::Unauthenticated("this API key was revoked"));
    }
    if key.expires_at.is_some_and(|e| e <= DateTime::now()) {
        return Err(AuthError::Unauthenticated("this API key has expired"));
    }
    Ok(Principal {
        role: key.role,
        actor: Actor::Key {
            prefix: key.prefix,
            name: key.name,
        },
    })
}

/// The bearer token of an `authorization` value; `Err` for another scheme.
pub(crate) fn bearer(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::Unauthenticated(
            "expected Authorization: Bearer <API key>",
        ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Unauthenticated(
            "expected Authorization: Bearer <API key>",
        ));
    }
    Ok(token.trim())
}

/// Who sent `headers`: a bearer key wins over a cookie; `None` when there is neither.
pub async fn authenticate(
    store: &MongoStore,
    headers: &HeaderMap,
) -> Result<Option<Principal>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Unauthenticated("malformed Authorization header"))?;
        return principal_from_key(store, bearer(value)?).await.map(Some);
    }
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(token) = secrets::session_from_cookies(cookies) else {
        return Ok(None);
    };
    let token_hash = secrets::digest(token);
    let session = store
        .live_session(&token_hash)
        .await?
        .ok_or(AuthError::Unauthenticated(
            "the session has ended; sign in again",
        ))?;
    let user = store
        .user(&session.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(AuthError::Unauthenticated(
            "the session has ended; sign in again",
        ))?;
    Ok(Some(Principal {
        role: user.role,
        actor: Actor::User {
            id: user.id,
            email: user.email,
            session: token_hash,
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
        },
    }))
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop when trusted.
pub(crate) fn client_ip(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether the Host header names a host the API serves. A request without one (HTTP/1.0,
/// in-process tests) has nothing to rebind.
fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    // Strip the port: `[::1]:8080`, `example.com:443`.
    let name = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host.as_str(), |(h, _)| &host[..=h.len()])
    } else {
        host.split(':').next().unwrap_or_default()
    };
    allowed.iter().any(|a| a == name)
}

/// Whether a WebSocket handshake's `Origin` names one of the allowed hosts (any port,
/// either scheme). Browsers always send it on a WebSocket, and a browser's cookie goes with a
/// handshake from any site (cross-site WebSocket hijacking), so a signed-in browser must come
/// from the app itself; a program with an API key may leave it out.
pub fn websocket_origin_allowed(
    headers: &HeaderMap,
    principal: Option<&Principal>,
    allowed: &[String],
) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return matches!(
            principal,
            Some(Principal {
                actor: Actor::Key { .. },
                ..
            })
        );
    };
    let Some(url) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    allowed.contains(&host)
}

/// Whether the request's body is of a kind the route takes. No body needs no type.
fn content_type_ok(headers: &HeaderMap, body: BodyKind) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        let empty = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == "0");
        return empty && !headers.contains_key(header::TRANSFER_ENCODING);
    };
    let essence = ct
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match body {
        BodyKind::Json => essence == "application/json",
        BodyKind::Multipart => essence == "multipart/form-data",
    }
}

/// What the auth layer does with a path. Twilio's routes (`/twilio/…`: the webhooks and the
/// ConversationRelay WebSocket `/twilio/voice/relay`) carry no user credentials: each checks
/// Twilio's `X-Twilio-Signature` itself and refuses (403) without a valid one.
fn is_exempt(path: &str, public_metrics: bool) -> bool {
    path == "/healthz" || path.starts_with("/twilio/") || (path == "/metrics" && public_metrics)
}

/// The HTTP auth layer (`axum::middleware::from_fn_with_state`). Default deny under `/api`:
/// a route must be in [`policy::ROUTES`]; outside `/api` (the web app's files) everything is
/// public but still behind the Host allowlist.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = &state.auth.settings;
    let path = req.uri().path().to_owned();
    if is_exempt(&path, auth.public_metrics) {
        return next.run(req).await;
    }
    if !host_allowed(req.headers(), &auth.allowed_hosts) {
        return AuthError::HostNotAllowed.into_response();
    }
    let is_api = path == "/api" || path.starts_with("/api/");
    if !is_api && path != "/metrics" {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let changing = is_api && policy::is_state_changing(&method);
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let ip = client_ip(&req, auth.trust_forwarded_for);
    // The body is not Sync, so the checks get the headers alone.
    let (parts, body) = req.into_parts();
    let (result, principal) = check(&state, &parts.headers, &method, matched.as_deref()).await;
    // Spent only by requests that pass the checks: a refusal costs the caller nothing.
    let result = result.and_then(|principal| {
        let limits = &state.auth.limits;
        match &principal {
            Some(p) => limits.check_principal(p),
            None => limits.check_anonymous(ip),
        }
        .map_err(|retry_after_secs| AuthError::Throttled { retry_after_secs })?;
        Ok(principal)
    });
    let req = Request::from_parts(parts, body);
    let mut response = match result {
        Ok(principal) => {
            let mut req = req;
            if let Some(p) = principal {
                req.extensions_mut().insert(p);
            }
            if let Some(ip) = ip {
                req.extensions_mut().insert(ClientIp(ip));
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    if changing {
        // A handler that establishes who the caller is (sign-in) says so in the response.
        let who = response
            .extensions_mut()
            .remove::<Principal>()
            .or(principal);
        let entry = AuditDoc {
            id: ObjectId::new(),
            at: DateTime::now(),
            actor_kind: String::new(),
            actor_id: String::new(),
            actor_name: String::new(),
            transport: "http".to_owned(),
            method,
            route: matched.clone().unwrap_or_else(|| path.clone()),
            target: matched.as_deref().and_then(|m| target(m, &path)),
            status: i32::from(response.status().as_u16()),
            ip: ip.map(|i| i.to_string()).unwrap_or_default(),
        };
        record(&state.store, who.as_ref(), entry).await;
    }
    response
}

/// The client's address, for handlers (the sign-in rate limit).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Runs the checks; also returns the principal when one was established, for the audit entry
/// of a refused request.
async fn check(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    matched: Option<&str>,
) -> (Result<Option<Principal>, AuthError>, Option<Principal>) {
    let rule = matched.and_then(|m| policy::route(method, m));
    if let Some(r) = rule
        && r.access == Access::Public
    {
        if policy::is_state_changing(method) && !content_type_ok(headers, r.body) {
            return (
                Err(AuthError::UnsupportedMediaType("application/json")),
                None,
            );
        }
        return (Ok(None), None);
    }
    let principal = match authenticate(&state.store, headers).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return (
                Err(AuthError::Unauthenticated(
                    "sign in, or send Authorization: Bearer <API key>",
                )),
                None,
            );
        }
        Err(e) => return (Err(e), None),
    };
    let needed = match (matched, rule) {
        (_, Some(r)) => match r.access {
            Access::Role(role) => role,
            Access::Public => Role::Viewer,
        },
        // No route matched: any caller; the router answers 404 once the caller is known.
        // `/metrics` (when not public) is read by any caller too.
        (None, None) | (Some("/metrics"), None) => Role::Viewer,
        (Some(_), None) => {
            warn!(
                route = matched,
                method, "route without an access policy refused"
            );
            return (
                Err(AuthError::Forbidden(
                    "this route has no access policy (api/src/auth/policy.rs)",
                )),
                Some(principal),
            );
        }
    };
    if principal.role < needed {
        return (
            Err(AuthError::Forbidden("your role does not allow this")),
            Some(principal),
        );
    }
    let changing = policy::is_state_changing(method);
    if changing && let Actor::User { csrf_token, .. } = &principal.actor {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !secrets::same(sent, csrf_token) {
            return (Err(AuthError::Csrf), Some(principal));
        }
    }
    if changing {
        let body = rule.map_or(BodyKind::Json, |r| r.body);
        if !content_type_ok(headers, body) {
            let wanted = match body {
                BodyKind::Json => "application/json",
                BodyKind::Multipart => "multipart/form-data",
            };
            return (
                Err(AuthError::UnsupportedMediaType(wanted)),
                Some(principal),
            );
        }
    }
    (Ok(Some(principal.clone())), Some(principal))
}

/// The values of a route's `{param}` segments, joined with `/`.
fn target(template: &str, path: &str) -> Option<String> {
    let ids: Vec<&str> = template
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, v)| v)
        .collect();
    (!ids.is_empty()).then(|| ids.join("/"))
}

/// Writes an audit entry. A failed write is logged, not returned: the request already ran.
pub(crate) async fn record(store: &MongoStore, who: Option<&Principal>, mut entry: AuditDoc) {
    let (kind, id, name) = who.map_or(("anonymous", String::new(), String::new()), |p| {
        p.audit_fields()
    });
    entry.actor_kind = kind.to_owned();
    entry.actor_id = id;
    entry.actor_name = name;
    if let Err(e) = store.record_audit(&entry).await {
        warn!(error = %e, route = %entry.route, "failed to write the audit entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("a valid header value"));
        }
        h
    }

    #[test]
    fn hosts_are_matched_without_their_port() {
        let allowed = vec!["api.example.com".to_owned(), "[::1]".to_owned()];
        assert!(host_allowed(
            &headers(&[("host", "API.example.com:443")]),
            &allowed
        ));
        assert!(host_allowed(&headers(&[("host", "[::1]:8080")]), &allowed));
        assert!(!host_allowed(
            &headers(&[("host", "evil.example")]),
            &allowed
        ));
        assert!(!host_allowed(
            &headers(&[("host", "api.example.com.evil")]),
            &allowed
        ));
        assert!(host_allowed(&HeaderMap::new(), &allowed));
    }

    #[test]
    fn only_json_or_an_empty_body_passes_the_content_type_check() {
        assert!(content_type_ok(
            &headers(&[("content-type", "application/json; charset=utf-8")]),
            BodyKind::Json
        ));
        assert!(content_type_ok(&HeaderMap::new(), BodyKind::Json));
        assert!(content_type_ok(
            &headers(&[("content-length", "0")]),
            BodyKind::Json
        ));
        for simple in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!content_type_ok(
                &headers(&[("content-type", simple)]),
                BodyKind::Json
            ));
        }
        assert!(!content_type_ok(
            &headers(&[("content-length", "12")]),
            BodyKind::Json
        ));
        assert!(content_type_ok(
            &headers(&[("content-type", "multipart/form-data; boundary=x")]),
            BodyKind::Multipart
        ));
    }

    #[test]
    fn only_bearer_authorization_is_accepted() {
        assert_eq!(bearer("Bearer vak_x").ok(), Some("vak_x"));
        assert_eq!(bearer("bearer  vak_x ").ok(), Some("vak_x"));
        assert!(bearer("Basic dXNlcjpwYXNz").is_err());
        assert!(bearer("vak_x").is_err());
    }

    #[test]
    fn the_audit_target_is_the_path_ids() {
        assert_eq!(
            target("/api/campaigns/{id}/start", "/api/campaigns/cmp_1/start").as_deref(),
            Some("cmp_1")
        );
        assert_eq!(
            target(
                "/api/contact-lists/{id}/contacts/{contact_id}",
                "/api/contact-lists/l1/contacts/c2"
            )
            .as_deref(),
            Some("l1/c2")
        );
        assert_eq!(target("/api/campaigns", "/api/campaigns"), None);
    }

    #[test]
    fn webhooks_and_health_are_exempt_and_metrics_only_when_configured() {
        assert!(is_exempt("/twilio/sms", false));
        assert!(is_exempt("/twilio/voice/relay", false));
        assert!(is_exempt("/healthz", false));
        assert!(is_exempt("/metrics", true));
        assert!(!is_exempt("/metrics", false));
        assert!(!is_exempt("/api/campaigns", true));
        assert!(!is_exempt("/twilio", true));
    }
}
