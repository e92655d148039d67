//! What was sent: the outbound ledger, its counts, duplicates and missing numbers.
//!
//! Every per-number answer goes through the store's destination index, so a chaos test can
//! ask after a 100,000-message campaign without stalling the REST traffic behind the lock.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use super::{AdminError, parse_json, restore_plus};
use crate::state::{AppState, MessageStatus};
use crate::store::{Message, Store};

#[derive(Deserialize)]
pub(super) struct ToQuery {
    to: Option<String>,
}

/// One outbound message as the ledger reports it.
#[derive(Serialize)]
struct LedgerEntry<'a> {
    sid: String,
    from: Option<&'a str>,
    to: &'a str,
    /// For a registered Content template, the rendered text.
    body: &'a str,
    content_sid: Option<&'a str>,
    /// `ContentVariables` as the client sent them.
    content_variables: Option<&'a str>,
    status: MessageStatus,
    error_code: Option<u32>,
    messaging_service_sid: Option<&'a str>,
    num_segments: u16,
    date_created: String,
    date_updated: String,
}

impl<'a> LedgerEntry<'a> {
    fn new(message: &'a Message, store: &'a Store) -> Self {
        Self {
            sid: message.sid.to_string(),
            from: store.opt_str(message.from),
            to: store.str(message.to),
            body: store.str(message.body),
            content_sid: message.content.map(|c| store.str(c.sid)),
            content_variables: message.content.and_then(|c| store.opt_str(c.variables)),
            status: message.status,
            error_code: message.error_code,
            messaging_service_sid: store.opt_str(message.messaging_service_sid),
            num_segments: message.num_segments,
            date_created: message
                .date_created
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            date_updated: message
                .date_updated
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// `GET /admin/ledger[?to=NUMBER]`: outbound messages, oldest first.
pub(super) async fn ledger(
    State(state): State<AppState>,
    Query(query): Query<ToQuery>,
) -> Json<serde_json::Value> {
    let to = query.to.as_deref().map(restore_plus);
    let store = state.store();
    let messages: Vec<LedgerEntry<'_>> = store
        .outbound(to.as_deref())
        .map(|message| LedgerEntry::new(message, &store))
        .collect();
    Json(serde_json::json!({ "total": messages.len(), "messages": messages }))
}

/// `GET /admin/ledger/counts[?to=NUMBER]`.
pub(super) async fn counts(
    State(state): State<AppState>,
    Query(query): Query<ToQuery>,
) -> Json<serde_json::Value> {
    let to = query.to.as_deref().map(restore_plus);
    let store = state.store();
    let counts = store.counts(to.as_deref());
    Json(serde_json::json!({
        "total": counts.total,
        "by_to": counts.by_to,
        "by_status": counts.by_status,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DuplicatesQuery {
    body: Option<String>,
    content_sid: Option<String>,
}

/// A destination that received the same content more than once.
#[derive(Serialize)]
struct DuplicateEntry<'a> {
    to: &'a str,
    count: usize,
    body: &'a str,
    content_sid: Option<&'a str>,
    content_variables: Option<&'a str>,
    sids: Vec<String>,
}

/// `GET /admin/ledger/duplicates[?body=TEXT][&content_sid=HX…]`: destinations that received
/// the same body (or the same template with the same variables) more than once.
pub(super) async fn duplicates(
    State(state): State<AppState>,
    Query(query): Query<DuplicatesQuery>,
) -> Json<serde_json::Value> {
    let store = state.store();
    let found: Vec<DuplicateEntry<'_>> = store
        .duplicates(query.body.as_deref(), query.content_sid.as_deref())
        .into_iter()
        .map(|duplicate| DuplicateEntry {
            to: duplicate.to,
            count: duplicate.sids.len(),
            body: duplicate.body,
            content_sid: duplicate.content_sid,
            content_variables: duplicate.content_variables,
            sids: duplicate.sids.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let numbers = {
        let mut numbers: Vec<&str> = found.iter().map(|d| d.to).collect();
        numbers.dedup();
        numbers.len()
    };
    Json(serde_json::json!({
        "total": found.len(),
        "numbers": numbers,
        "duplicates": found,
    }))
}

/// Request body of `POST /admin/ledger/missing`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MissingRequest {
    numbers: Vec<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    content_sid: Option<String>,
}

/// `POST /admin/ledger/missing`: which of the given numbers received no outbound message
/// (with this body or template, if given): the "zero times" half of a campaign check, whose
/// contact list only the caller knows.
pub(super) async fn missing(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let request: MissingRequest = parse_json(&body)?;
    let store = state.store();
    let missing = store.missing(
        &request.numbers,
        request.body.as_deref(),
        request.content_sid.as_deref(),
    );
    Ok(Json(serde_json::json!({
        "checked": request.numbers.len(),
        "total": missing.len(),
        "missing": missing,
    })))
}
