//! The admin API (`/admin/…`): JSON, unauthenticated, loopback clients only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state::{AppState, Direction, Faults, Message, MessageStatus, NumberConfig};
use crate::util::{self, mask, redact_url};
use crate::webhook::{self, WebhookResponse};

pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/health", get(health))
        .route("/admin/numbers", get(list_numbers))
        .route(
            "/admin/numbers/{number}",
            get(get_number).put(put_number).delete(delete_number),
        )
        .route("/admin/inbound", post(inject_inbound))
        .route("/admin/inbound/{sid}/redeliver", post(redeliver_inbound))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/ledger", get(ledger))
        .route("/admin/ledger/counts", get(ledger_counts))
        .route("/admin/reset", post(reset))
        .route_layer(middleware::from_fn_with_state(state, loopback_only))
}

/// Admin failures, answered as `{"error": "…"}`.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the admin API only serves loopback clients")]
    Forbidden,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Forbidden => StatusCode::FORBIDDEN,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// Admin bodies are parsed by hand so that malformed JSON gets the admin error shape; an
/// empty body means "all defaults".
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Query strings decode `+` as a space, so an unencoded `+1555…` arrives as ` 1555…`.
fn restore_plus(number: &str) -> String {
    match number.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => number.to_owned(),
    }
}

async fn loopback_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if loopback || state.admin_allow_remote {
        next.run(request).await
    } else {
        AdminError::Forbidden.into_response()
    }
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "account_sid": state.account_sid }))
}

async fn list_numbers(State(state): State<AppState>) -> Json<serde_json::Value> {
    let numbers = state.store().numbers().clone();
    Json(serde_json::json!({ "numbers": numbers }))
}

async fn get_number(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<NumberConfig>, AdminError> {
    state
        .store()
        .number(&number)
        .cloned()
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("number {number} is not configured")))
}

/// Request body of `PUT /admin/numbers/{number}`; replaces the number's settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutNumber {
    #[serde(default)]
    sms_url: Option<url::Url>,
    #[serde(default)]
    outcome: crate::state::Outcome,
}

async fn put_number(
    State(state): State<AppState>,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<Json<NumberConfig>, AdminError> {
    let request: PutNumber = parse_json(&body)?;
    if number.trim().is_empty() {
        return Err(AdminError::BadRequest("number must not be empty".into()));
    }
    if let Some(url) = &request.sms_url
        && !matches!(url.scheme(), "http" | "https")
    {
        return Err(AdminError::BadRequest(
            "sms_url must be http or https".into(),
        ));
    }
    if request.outcome.error_code.is_some() && request.outcome.error_code().is_none() {
        return Err(AdminError::BadRequest(
            "error_code only applies to the undelivered and failed outcomes".into(),
        ));
    }
    let config = NumberConfig {
        sms_url: request.sms_url,
        outcome: request.outcome,
    };
    tracing::info!(number = %mask(&number), outcome = ?config.outcome.status, "number configured");
    state.store().set_number(number, config.clone());
    Ok(Json(config))
}

async fn delete_number(State(state): State<AppState>, Path(number): Path<String>) -> StatusCode {
    if state.store().remove_number(&number) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Request body of `POST /admin/inbound`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectInbound {
    from: String,
    to: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    media_urls: Vec<String>,
    #[serde(default)]
    profile_name: Option<String>,
    #[serde(default)]
    bad_signature: bool,
}

/// Answer of the inbound endpoints: what the webhook said, or why it could not be reached.
#[derive(Serialize)]
struct InboundResult {
    message_sid: String,
    url: String,
    status: Option<u16>,
    content_type: Option<String>,
    body: Option<String>,
    error: Option<String>,
}

async fn inject_inbound(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<InboundResult>, AdminError> {
    let request: InjectInbound = parse_json(&body)?;
    if request.from.is_empty() || request.to.is_empty() {
        return Err(AdminError::BadRequest("from and to are required".into()));
    }
    let url = {
        let store = state.store();
        store
            .number(&request.to)
            .and_then(|config| config.sms_url.clone())
            .or_else(|| state.default_sms_url.clone())
    }
    .ok_or_else(|| {
        AdminError::Unprocessable(format!(
            "no sms_url configured for {} and no --default-sms-url",
            request.to
        ))
    })?
    .to_string();

    let sid = util::new_sid(if request.media_urls.is_empty() {
        "SM"
    } else {
        "MM"
    });
    let params = webhook::inbound_params(
        &state.account_sid,
        &sid,
        &request.from,
        &request.to,
        &request.body,
        &request.media_urls,
        request.profile_name.as_deref(),
    );
    let now = Utc::now();
    state.store().insert(Message {
        sid: sid.clone(),
        direction: Direction::Inbound,
        from: Some(request.from.clone()),
        to: request.to.clone(),
        num_segments: crate::segments::count(&request.body),
        body: request.body,
        messaging_service_sid: None,
        status: MessageStatus::Received,
        error_code: None,
        media_urls: request.media_urls,
        date_created: now,
        date_updated: now,
        date_sent: Some(now),
        status_callback: None,
        inbound: Some((url.clone(), params.clone())),
        deleted: false,
    });
    tracing::info!(sid = %sid, from = %mask(&request.from), to = %mask(&request.to), "inbound SMS injected");
    Ok(Json(
        deliver_inbound(&state, sid, url, &params, request.bad_signature).await,
    ))
}

/// Request body of `POST /admin/inbound/{sid}/redeliver`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeliver {
    #[serde(default)]
    bad_signature: bool,
}

async fn redeliver_inbound(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    body: Bytes,
) -> Result<Json<InboundResult>, AdminError> {
    let request: Redeliver = parse_json(&body)?;
    let (url, params) = state
        .store()
        .get(&sid)
        .and_then(|message| message.inbound.clone())
        .ok_or_else(|| AdminError::NotFound(format!("no inbound message {sid}")))?;
    tracing::info!(sid = %sid, "inbound SMS re-delivered");
    Ok(Json(
        deliver_inbound(&state, sid, url, &params, request.bad_signature).await,
    ))
}

async fn deliver_inbound(
    state: &AppState,
    sid: String,
    url: String,
    params: &[(String, String)],
    bad_signature: bool,
) -> InboundResult {
    let token = uuid::Uuid::new_v4().to_string();
    match webhook::post_signed(state, &url, params, &token, bad_signature).await {
        Ok(WebhookResponse {
            status,
            content_type,
            body,
        }) => InboundResult {
            message_sid: sid,
            url,
            status: Some(status),
            content_type,
            body: Some(body),
            error: None,
        },
        Err(error) => {
            tracing::warn!(sid = %sid, url = %redact_url(&url), error = %error, "inbound webhook unreachable");
            InboundResult {
                message_sid: sid,
                url,
                status: None,
                content_type: None,
                body: None,
                error: Some(error.to_string()),
            }
        }
    }
}

async fn get_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.store().faults)
}

/// Request body of `PUT /admin/faults`; absent fields keep their value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFaults {
    error_rate: Option<f64>,
    too_many_requests_rate: Option<f64>,
    latency_ms: Option<u64>,
    rate_limit_mps: Option<u32>,
    accept_delay_ms: Option<u64>,
    callback_loss_rate: Option<f64>,
}

async fn put_faults(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Faults>, AdminError> {
    let request: PutFaults = parse_json(&body)?;
    for (name, rate) in [
        ("error_rate", request.error_rate),
        ("too_many_requests_rate", request.too_many_requests_rate),
        ("callback_loss_rate", request.callback_loss_rate),
    ] {
        if rate.is_some_and(|rate| !(0.0..=1.0).contains(&rate)) {
            return Err(AdminError::BadRequest(format!(
                "{name} must be between 0 and 1"
            )));
        }
    }
    let mut store = state.store();
    let faults = &mut store.faults;
    faults.error_rate = request.error_rate.unwrap_or(faults.error_rate);
    faults.too_many_requests_rate = request
        .too_many_requests_rate
        .unwrap_or(faults.too_many_requests_rate);
    faults.latency_ms = request.latency_ms.unwrap_or(faults.latency_ms);
    faults.rate_limit_mps = request.rate_limit_mps.unwrap_or(faults.rate_limit_mps);
    faults.accept_delay_ms = request.accept_delay_ms.unwrap_or(faults.accept_delay_ms);
    faults.callback_loss_rate = request
        .callback_loss_rate
        .unwrap_or(faults.callback_loss_rate);
    tracing::info!(faults = ?*faults, "faults changed");
    Ok(Json(*faults))
}

#[derive(Deserialize)]
struct LedgerQuery {
    to: Option<String>,
}

/// One outbound message as the ledger reports it.
#[derive(Serialize)]
struct LedgerEntry {
    sid: String,
    from: Option<String>,
    to: String,
    body: String,
    status: MessageStatus,
    error_code: Option<u32>,
    messaging_service_sid: Option<String>,
    num_segments: usize,
    date_created: String,
    date_updated: String,
}

async fn ledger(
    State(state): State<AppState>,
    Query(query): Query<LedgerQuery>,
) -> Json<serde_json::Value> {
    let to = query.to.as_deref().map(restore_plus);
    let store = state.store();
    let messages: Vec<LedgerEntry> = store
        .outbound()
        .filter(|m| to.as_deref().is_none_or(|to| m.to == to))
        .map(|m| LedgerEntry {
            sid: m.sid.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            status: m.status,
            error_code: m.error_code,
            messaging_service_sid: m.messaging_service_sid.clone(),
            num_segments: m.num_segments,
            date_created: m.date_created.to_rfc3339_opts(SecondsFormat::Millis, true),
            date_updated: m.date_updated.to_rfc3339_opts(SecondsFormat::Millis, true),
        })
        .collect();
    Json(serde_json::json!({ "total": messages.len(), "messages": messages }))
}

async fn ledger_counts(State(state): State<AppState>) -> Json<serde_json::Value> {
    let store = state.store();
    let mut by_to: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0;
    for message in store.outbound() {
        *by_to.entry(&message.to).or_default() += 1;
        *by_status.entry(message.status.as_str()).or_default() += 1;
        total += 1;
    }
    Json(serde_json::json!({ "total": total, "by_to": by_to, "by_status": by_status }))
}

async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    tracing::info!("state reset");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencoded_plus_is_restored() {
        assert_eq!(restore_plus(" 15558675310"), "+15558675310");
        assert_eq!(restore_plus("+15558675310"), "+15558675310");
    }

    #[test]
    fn empty_admin_bodies_mean_defaults() {
        let redeliver: Redeliver = parse_json(b"").unwrap();
        assert!(!redeliver.bad_signature);
        assert!(parse_json::<Redeliver>(b"{\"bogus\":1}").is_err());
    }
}
