//! Voice test hooks: scripted callees, the call ledger and inbound calls.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AdminError, parse_json, restore_plus};
use crate::calls::runner::{self, Plan};
use crate::calls::{
    Behaviour, Call, CallDirection, CallStore, CallbackEvents, Callee, Line, MACHINE_END_VERDICTS,
    Method, Source,
};
use crate::state::AppState;
use crate::util::{is_e164, mask};

/// `GET /admin/callees`.
pub(super) async fn list_callees(State(state): State<AppState>) -> Json<serde_json::Value> {
    let callees = state.calls().callees().clone();
    Json(serde_json::json!({ "callees": callees }))
}

/// `GET /admin/callees/{number}`.
pub(super) async fn get_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Callee>, AdminError> {
    state
        .calls()
        .get_callee(&number)
        .cloned()
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("callee {number} is not scripted")))
}

/// `PUT /admin/callees/{number}`: replaces the number's script.
pub(super) async fn put_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<Json<Callee>, AdminError> {
    let callee: Callee = parse_json(&body)?;
    if number.trim().is_empty() {
        return Err(AdminError::BadRequest("number must not be empty".into()));
    }
    if let Some(verdict) = &callee.answered_by
        && !MACHINE_END_VERDICTS.contains(&verdict.as_str())
    {
        return Err(AdminError::BadRequest(format!(
            "answered_by must be one of {MACHINE_END_VERDICTS:?}"
        )));
    }
    if callee
        .lines
        .iter()
        .any(|line| matches!(line, Line::Silence { silence: false }))
    {
        return Err(AdminError::BadRequest(
            "a silence line is {\"silence\": true}".into(),
        ));
    }
    tracing::info!(number = %mask(&number), behaviour = ?callee.behaviour, "callee scripted");
    state.calls().set_callee(number, callee.clone());
    Ok(Json(callee))
}

/// `DELETE /admin/callees/{number}`.
pub(super) async fn delete_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> StatusCode {
    if state.calls().remove_callee(&number) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CallsQuery {
    to: Option<String>,
    from: Option<String>,
}

/// Answer of `GET /admin/calls`.
#[derive(Serialize)]
pub(super) struct CallsBody<'a> {
    total: usize,
    calls: Vec<&'a Call>,
}

/// `GET /admin/calls[?to=&from=]`: every call with its conversation, oldest first.
pub(super) async fn list_calls(
    State(state): State<AppState>,
    Query(query): Query<CallsQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let to = query.to.as_deref().map(restore_plus);
    let from = query.from.as_deref().map(restore_plus);
    let store = state.calls();
    let calls: Vec<&Call> = store
        .all()
        .iter()
        .filter(|call| to.as_deref().is_none_or(|to| call.to == to))
        .filter(|call| from.as_deref().is_none_or(|from| call.from == from))
        .collect();
    let body = CallsBody {
        total: calls.len(),
        calls,
    };
    serde_json::to_value(&body)
        .map(Json)
        .map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// `GET /admin/calls/{sid}`.
pub(super) async fn get_call(
    State(state): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let store = state.calls();
    let call = store
        .get(&sid)
        .ok_or_else(|| AdminError::NotFound(format!("no call {sid}")))?;
    serde_json::to_value(call)
        .map(Json)
        .map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// Request body of `POST /admin/calls/inbound`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboundCall {
    from: String,
    to: String,
    #[serde(default)]
    lines: Vec<Line>,
    #[serde(default)]
    think_ms: Option<u64>,
    #[serde(default)]
    bad_signature: bool,
}

/// `POST /admin/calls/inbound`: a scripted caller rings one of our numbers; the call runs in
/// the background and the answer names it at once.
pub(super) async fn inbound_call(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let request: InboundCall = parse_json(&body)?;
    if !is_e164(&request.from) && !request.from.starts_with("client:") {
        return Err(AdminError::BadRequest(
            "from must be an E.164 number or client:NAME".into(),
        ));
    }
    if !is_e164(&request.to) {
        return Err(AdminError::BadRequest("to must be an E.164 number".into()));
    }
    let (url, status_callback) = {
        let store = state.store();
        let config = store.number_for(&request.to);
        let url = config
            .and_then(|config| config.voice_url.clone())
            .or_else(|| state.default_voice_url.clone())
            .ok_or_else(|| {
                AdminError::Unprocessable(format!(
                    "no voice_url configured for {} and no --default-voice-url",
                    request.to
                ))
            })?;
        let callback = config
            .and_then(|config| config.voice_status_callback.clone())
            .or_else(|| state.default_voice_status_callback.clone());
        (url.to_string(), callback.map(|url| url.to_string()))
    };
    let sid = CallStore::new_sid();
    tracing::info!(sid = %sid, from = %mask(&request.from), to = %mask(&request.to), "inbound call placed");
    runner::start(
        &state,
        Plan {
            sid: sid.clone(),
            from: request.from.clone(),
            to: request.to.clone(),
            direction: CallDirection::Inbound,
            source: Source::Fetch {
                url: url.clone(),
                method: Method::Post,
                extra: Vec::new(),
            },
            status_callback: status_callback.map(|url| (url, Method::Post)),
            callback_events: CallbackEvents::COMPLETED_ONLY,
            machine_detection: None,
            timeout: 60,
            time_limit: 14_400,
            record: false,
            party: Callee {
                behaviour: Behaviour::Human,
                lines: request.lines,
                think_ms: request.think_ms,
                ..Callee::default()
            },
            dial_at: Instant::now(),
            forge: request.bad_signature,
        },
    );
    Ok(Json(serde_json::json!({
        "call_sid": sid,
        "from": request.from,
        "to": request.to,
        "url": url,
        "status": "ringing",
    })))
}
