//! The admin API (`/admin/…`): JSON, unauthenticated, loopback clients only.
//!
//! This module holds the router and the number, inbound, fault and opt-out endpoints;
//! `ledger` answers what was sent, `whatsapp` manages templates, sessions and the clock.

mod calls;
mod ledger;
mod whatsapp;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::optout::{self, Keyword};
use crate::state::{AppState, Direction, Faults, MessageStatus, NumberConfig};
use crate::store::{InboundDelivery, NewRecord};
use crate::util::{is_valid_address, mask, redact_url};
use crate::webhook::{self, WebhookResponse};
use crate::whatsapp::is_whatsapp;

/// Bodies of endpoints that take number lists (a 100,000-contact campaign is ~2 MB of JSON,
/// axum's default limit).
const LARGE_BODY_LIMIT: usize = 64 * 1024 * 1024;

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
        .route("/admin/opt-outs", get(list_opt_outs))
        .route("/admin/ledger", get(ledger::ledger))
        .route("/admin/ledger/counts", get(ledger::counts))
        .route("/admin/ledger/duplicates", get(ledger::duplicates))
        .route(
            "/admin/ledger/missing",
            post(ledger::missing).layer(DefaultBodyLimit::max(LARGE_BODY_LIMIT)),
        )
        .route("/admin/content", get(whatsapp::list_templates))
        .route(
            "/admin/content/{sid}",
            get(whatsapp::get_template)
                .put(whatsapp::put_template)
                .delete(whatsapp::delete_template),
        )
        .route(
            "/admin/whatsapp/sessions",
            get(whatsapp::list_sessions).put(whatsapp::put_session),
        )
        .route(
            "/admin/clock",
            get(whatsapp::get_clock).put(whatsapp::put_clock),
        )
        .route("/admin/callees", get(calls::list_callees))
        .route(
            "/admin/callees/{number}",
            get(calls::get_callee)
                .put(calls::put_callee)
                .delete(calls::delete_callee),
        )
        .route("/admin/calls", get(calls::list_calls))
        .route("/admin/calls/inbound", post(calls::inbound_call))
        .route("/admin/calls/{sid}", get(calls::get_call))
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

/// Query strings decode `+` as a space, so an unencoded `+1555…` arrives as ` 1555…`
/// (or `whatsapp: 1555…`).
fn restore_plus(number: &str) -> String {
    match number.split_once(' ') {
        Some((prefix, rest)) if prefix.is_empty() || prefix.ends_with(':') => {
            format!("{prefix}+{rest}")
        }
        _ => number.to_owned(),
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
    #[serde(default)]
    voice_url: Option<url::Url>,
    #[serde(default)]
    voice_status_callback: Option<url::Url>,
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
    for (name, url) in [
        ("sms_url", &request.sms_url),
        ("voice_url", &request.voice_url),
        ("voice_status_callback", &request.voice_status_callback),
    ] {
        if let Some(url) = url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(AdminError::BadRequest(format!(
                "{name} must be http or https"
            )));
        }
    }
    if request.outcome.error_code.is_some() && request.outcome.error_code().is_none() {
        return Err(AdminError::BadRequest(
            "error_code only applies to the undelivered and failed outcomes".into(),
        ));
    }
    let config = NumberConfig {
        sms_url: request.sms_url,
        outcome: request.outcome,
        voice_url: request.voice_url,
        voice_status_callback: request.voice_status_callback,
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

/// `POST /admin/inbound`: stores an inbound message as Twilio would receive it, applies its
/// side effects (a WhatsApp message opens the session window; an SMS opt-out or opt-in
/// keyword changes whether the sender may text the user), then delivers the signed webhook.
async fn inject_inbound(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<InboundResult>, AdminError> {
    let request: InjectInbound = parse_json(&body)?;
    if request.from.is_empty() || request.to.is_empty() {
        return Err(AdminError::BadRequest("from and to are required".into()));
    }
    let whatsapp = is_whatsapp(&request.from);
    if whatsapp != is_whatsapp(&request.to) {
        return Err(AdminError::BadRequest(
            "from and to must both be whatsapp: addresses or both be plain numbers".into(),
        ));
    }
    if whatsapp && !(is_valid_address(&request.from) && is_valid_address(&request.to)) {
        return Err(AdminError::BadRequest(
            "WhatsApp addresses must be whatsapp:+E.164".into(),
        ));
    }
    let (sid, url, params) = {
        let mut store = state.store();
        let url = store
            .number_for(&request.to)
            .and_then(|config| config.sms_url.clone())
            .or_else(|| state.default_sms_url.clone())
            .ok_or_else(|| {
                AdminError::Unprocessable(format!(
                    "no sms_url configured for {} and no --default-sms-url",
                    request.to
                ))
            })?
            .to_string();
        let sid = store.new_sid(!request.media_urls.is_empty());
        let params = webhook::inbound_params(
            &state.account_sid,
            &sid.to_string(),
            &request.from,
            &request.to,
            &request.body,
            &request.media_urls,
            request.profile_name.as_deref(),
        );
        let now = Utc::now();
        store.insert(
            sid,
            NewRecord {
                direction: Direction::Inbound,
                status: MessageStatus::Received,
                to: &request.to,
                from: Some(&request.from),
                body: &request.body,
                messaging_service_sid: None,
                content: None,
                num_segments: if whatsapp {
                    1
                } else {
                    crate::segments::count(&request.body)
                },
                status_callback: None,
                media_urls: request.media_urls.clone(),
                inbound: Some(InboundDelivery {
                    url: url.clone(),
                    params: params.clone(),
                }),
                now,
                date_sent: Some(now),
            },
        );
        if whatsapp {
            let at = store.now();
            store.set_session(&request.to, &request.from, Some(at));
        } else if let Some(keyword) = optout::classify(&request.body) {
            // Recorded even while enforcement is off, so switching it on behaves as Twilio.
            store.set_opted_out(&request.to, &request.from, keyword == Keyword::OptOut);
            tracing::info!(from = %mask(&request.from), to = %mask(&request.to), ?keyword, "opt-out keyword received");
        }
        (sid.to_string(), url, params)
    };
    tracing::info!(sid = %sid, from = %mask(&request.from), to = %mask(&request.to), "inbound message injected");
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
    let InboundDelivery { url, params } = state
        .store()
        .get(&sid)
        .and_then(|message| message.extra.as_ref()?.inbound.clone())
        .ok_or_else(|| AdminError::NotFound(format!("no inbound message {sid}")))?;
    tracing::info!(sid = %sid, "inbound message re-delivered");
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
    Json(state.faults())
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
    twilio_opt_out: Option<bool>,
    calls_per_second: Option<u32>,
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
    let faults = state.update_faults(|faults| {
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
        faults.twilio_opt_out = request.twilio_opt_out.unwrap_or(faults.twilio_opt_out);
        faults.calls_per_second = request.calls_per_second.unwrap_or(faults.calls_per_second);
    });
    tracing::info!(faults = ?faults, "faults changed");
    Ok(Json(faults))
}

/// One opt-out, in the direction of the user's STOP message.
#[derive(Serialize)]
struct OptOut<'a> {
    /// The user.
    from: &'a str,
    /// Our sender.
    to: &'a str,
}

/// `GET /admin/opt-outs`: who texted STOP to whom, whether creates are refused for them, and
/// how many were.
async fn list_opt_outs(State(state): State<AppState>) -> Json<serde_json::Value> {
    let enabled = state.faults().twilio_opt_out;
    let store = state.store();
    let opt_outs: Vec<OptOut<'_>> = store
        .opt_outs()
        .into_iter()
        .map(|(from, to)| OptOut { from, to })
        .collect();
    Json(serde_json::json!({
        "enabled": enabled,
        "refused": store.opt_out_refusals(),
        "opt_outs": opt_outs,
    }))
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
        assert_eq!(
            restore_plus("whatsapp: 15558675310"),
            "whatsapp:+15558675310"
        );
        assert_eq!(restore_plus("hello world"), "hello world");
    }

    #[test]
    fn empty_admin_bodies_mean_defaults() {
        let redeliver: Redeliver = parse_json(b"").unwrap();
        assert!(!redeliver.bad_signature);
        assert!(parse_json::<Redeliver>(b"{\"bogus\":1}").is_err());
    }
}
