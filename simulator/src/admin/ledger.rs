//! What was sent: the outbound ledger, its counts, duplicates and missing numbers.
//!
//! Every per-number answer goes through the store's destination index, so a chaos test can
//! ask after a 100,000-message campaign without stalling the REST traffic behind the lock.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize, Serializer};

use super::{AdminError, parse_json, restore_plus};
use crate::state::{AppState, MessageStatus};
use crate::store::{LedgerRecord, Text};

#[derive(Deserialize)]
pub(super) struct ToQuery {
    to: Option<String>,
}

/// One outbound message as the ledger reports it.
#[derive(Serialize)]
pub(super) struct LedgerEntry {
    sid: String,
    from: Option<Text>,
    to: Text,
    /// For a registered Content template, the rendered text.
    body: Text,
    content_sid: Option<Text>,
    /// `ContentVariables` as the client sent them.
    content_variables: Option<Text>,
    status: MessageStatus,
    error_code: Option<u32>,
    messaging_service_sid: Option<Text>,
    num_segments: u16,
    date_created: String,
    date_updated: String,
}

impl From<LedgerRecord> for LedgerEntry {
    fn from(record: LedgerRecord) -> Self {
        Self {
            sid: record.sid.to_string(),
            from: record.from,
            to: record.to,
            body: record.body,
            content_sid: record.content_sid,
            content_variables: record.content_variables,
            status: record.status,
            error_code: record.error_code,
            messaging_service_sid: record.messaging_service_sid,
            num_segments: record.num_segments,
            date_created: record
                .date_created
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            date_updated: record
                .date_updated
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// Answer of `GET /admin/ledger`. Typed rather than `json!`, which would build a value tree
/// as large as the ledger before writing a byte.
#[derive(Serialize)]
pub(super) struct LedgerBody {
    total: usize,
    messages: Vec<LedgerEntry>,
}

/// `GET /admin/ledger[?to=NUMBER]`: outbound messages, oldest first.
pub(super) async fn ledger(
    State(state): State<AppState>,
    Query(query): Query<ToQuery>,
) -> Json<LedgerBody> {
    let to = query.to.as_deref().map(restore_plus);
    // Copied out under the lock; formatted and serialised after it is released.
    let records = state.store().ledger(to.as_deref());
    let messages: Vec<LedgerEntry> = records.into_iter().map(LedgerEntry::from).collect();
    Json(LedgerBody {
        total: messages.len(),
        messages,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CountsQuery {
    to: Option<String>,
    /// `false` leaves out the per-number map: a poller that wants the totals of a
    /// million-number ledger every second must not pay for a million map entries each time.
    by_to: Option<bool>,
}

/// `GET /admin/ledger/counts[?to=NUMBER][&by_to=false]`.
pub(super) async fn counts(
    State(state): State<AppState>,
    Query(query): Query<CountsQuery>,
) -> Response {
    let to = query.to.as_deref().map(restore_plus);
    let mut counts = state
        .store()
        .counts(to.as_deref(), query.by_to.unwrap_or(true));
    counts.by_to.sort_unstable();
    #[derive(Serialize)]
    struct Body<'a> {
        total: usize,
        #[serde(serialize_with = "as_map")]
        by_to: &'a [(Text, usize)],
        by_status: &'a BTreeMap<&'static str, usize>,
    }
    Json(Body {
        total: counts.total,
        by_to: &counts.by_to,
        by_status: &counts.by_status,
    })
    .into_response()
}

/// Writes sorted pairs as a JSON object without building a map first (a million numbers).
fn as_map<S: Serializer>(pairs: &&[(Text, usize)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(to, count)| (to, count)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DuplicatesQuery {
    body: Option<String>,
    content_sid: Option<String>,
}

/// A destination that received the same content more than once.
#[derive(Serialize)]
pub(super) struct DuplicateEntry {
    to: Text,
    count: usize,
    body: Text,
    content_sid: Option<Text>,
    content_variables: Option<Text>,
    sids: Vec<String>,
}

#[derive(Serialize)]
pub(super) struct DuplicatesBody {
    /// Entries, one per (number, content).
    total: usize,
    /// Distinct numbers among them.
    numbers: usize,
    duplicates: Vec<DuplicateEntry>,
}

/// `GET /admin/ledger/duplicates[?body=TEXT][&content_sid=HX…]`: destinations that received
/// the same body (or the same template with the same variables) more than once.
pub(super) async fn duplicates(
    State(state): State<AppState>,
    Query(query): Query<DuplicatesQuery>,
) -> Json<DuplicatesBody> {
    let found = state
        .store()
        .duplicates(query.body.as_deref(), query.content_sid.as_deref());
    let found: Vec<DuplicateEntry> = found
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
        let mut numbers: Vec<&str> = found.iter().map(|d| &*d.to).collect();
        numbers.dedup();
        numbers.len()
    };
    Json(DuplicatesBody {
        total: found.len(),
        numbers,
        duplicates: found,
    })
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
) -> Result<Response, AdminError> {
    let request: MissingRequest = parse_json(&body)?;
    let missing = state.store().missing(
        &request.numbers,
        request.body.as_deref(),
        request.content_sid.as_deref(),
    );
    #[derive(Serialize)]
    struct Body<'a> {
        checked: usize,
        total: usize,
        missing: Vec<&'a str>,
    }
    Ok(Json(Body {
        checked: request.numbers.len(),
        total: missing.len(),
        missing,
    })
    .into_response())
}
