//! WhatsApp test hooks: Content templates, session windows and the simulated clock, so tests
//! can cross the 24-hour window without waiting for it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::{AdminError, parse_json};
use crate::state::AppState;
use crate::util::{is_sid, is_valid_address, mask};
use crate::whatsapp::{self, ContentTemplate, SESSION_WINDOW};

/// Largest clock offset accepted: far enough for any window test, small enough that date
/// arithmetic cannot overflow.
const MAX_CLOCK_OFFSET_SECONDS: i64 = 10 * 365 * 24 * 3600;

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
pub(super) struct TemplateView {
    sid: String,
    #[serde(flatten)]
    template: ContentTemplate,
}

/// `GET /admin/content`.
pub(super) async fn list_templates(State(state): State<AppState>) -> Json<serde_json::Value> {
    let templates = state.store().templates().clone();
    Json(serde_json::json!({ "templates": templates }))
}

/// `GET /admin/content/{sid}`.
pub(super) async fn get_template(
    State(state): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Json<TemplateView>, AdminError> {
    let template = state
        .store()
        .template(&sid)
        .cloned()
        .ok_or_else(|| AdminError::NotFound(format!("no content template {sid}")))?;
    Ok(Json(TemplateView { sid, template }))
}

/// `PUT /admin/content/{sid}`: registers (or replaces) a template, so messages created with
/// this `ContentSid` get a rendered body.
pub(super) async fn put_template(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    body: Bytes,
) -> Result<Json<TemplateView>, AdminError> {
    let template: ContentTemplate = parse_json(&body)?;
    if !is_sid(&sid, "HX") {
        return Err(AdminError::BadRequest(
            "a content SID is HX followed by 32 hex digits".into(),
        ));
    }
    if template.body.is_empty() {
        return Err(AdminError::BadRequest("body must not be empty".into()));
    }
    tracing::info!(sid = %sid, "content template registered");
    state.store().set_template(sid.clone(), template.clone());
    Ok(Json(TemplateView { sid, template }))
}

/// `DELETE /admin/content/{sid}`.
pub(super) async fn delete_template(
    State(state): State<AppState>,
    Path(sid): Path<String>,
) -> StatusCode {
    if state.store().remove_template(&sid) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// A session window as the admin API shows it, in the direction of the inbound message.
#[derive(Serialize)]
pub(super) struct SessionView {
    /// The user.
    from: String,
    /// Our sender.
    to: String,
    last_inbound_at: Option<String>,
    open: bool,
    expires_at: Option<String>,
}

impl SessionView {
    fn new(from: &str, to: &str, last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            last_inbound_at: last_inbound.map(rfc3339),
            open: whatsapp::window_open(last_inbound, now),
            expires_at: last_inbound.map(|at| rfc3339(at + SESSION_WINDOW)),
        }
    }
}

/// `GET /admin/whatsapp/sessions`: every known window, with the simulated time.
pub(super) async fn list_sessions(State(state): State<AppState>) -> Json<serde_json::Value> {
    let store = state.store();
    let now = store.now();
    let sessions: Vec<SessionView> = store
        .sessions()
        .into_iter()
        .map(|s| SessionView::new(s.from, s.to, Some(s.last_inbound_at), now))
        .collect();
    Json(serde_json::json!({ "now": rfc3339(now), "sessions": sessions }))
}

/// Request body of `PUT /admin/whatsapp/sessions`, in the direction of the inbound message
/// that opens a window: `from` is the user, `to` our sender.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutSession {
    from: String,
    to: String,
    /// Absent: now (opens the window); null: closes it; else that instant (simulated clock).
    #[serde(default, deserialize_with = "present")]
    last_inbound_at: Option<Option<DateTime<Utc>>>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    Option::<DateTime<Utc>>::deserialize(deserializer).map(Some)
}

/// `PUT /admin/whatsapp/sessions`: opens, moves or closes a session window.
pub(super) async fn put_session(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<SessionView>, AdminError> {
    let request: PutSession = parse_json(&body)?;
    let user = whatsapp::with_prefix(&request.from);
    let sender = whatsapp::with_prefix(&request.to);
    if !is_valid_address(&user) || !is_valid_address(&sender) {
        return Err(AdminError::BadRequest(
            "from and to must be E.164 numbers, with or without the whatsapp: prefix".into(),
        ));
    }
    let mut store = state.store();
    let now = store.now();
    let at = request.last_inbound_at.unwrap_or(Some(now));
    store.set_session(&sender, &user, at);
    tracing::info!(from = %mask(&user), to = %mask(&sender), open = whatsapp::window_open(at, now), "session window set");
    Ok(Json(SessionView::new(&user, &sender, at, now)))
}

#[derive(Serialize)]
pub(super) struct ClockView {
    offset_seconds: i64,
    now: String,
}

/// `GET /admin/clock`: the simulated time and its offset from the wall clock.
pub(super) async fn get_clock(State(state): State<AppState>) -> Json<ClockView> {
    let store = state.store();
    Json(ClockView {
        offset_seconds: store.clock_offset().num_seconds(),
        now: rfc3339(store.now()),
    })
}

/// Request body of `PUT /admin/clock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutClock {
    offset_seconds: i64,
}

/// `PUT /admin/clock`: moves the simulated clock (WhatsApp windows) relative to the wall
/// clock; message timestamps stay on the wall clock so REST date filters and client-side
/// reconciliation keep working.
pub(super) async fn put_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ClockView>, AdminError> {
    let request: PutClock = parse_json(&body)?;
    if request.offset_seconds.abs() > MAX_CLOCK_OFFSET_SECONDS {
        return Err(AdminError::BadRequest(format!(
            "offset_seconds must be within ±{MAX_CLOCK_OFFSET_SECONDS}"
        )));
    }
    let mut store = state.store();
    store.set_clock_offset(TimeDelta::seconds(request.offset_seconds));
    tracing::info!(
        offset_seconds = request.offset_seconds,
        "simulated clock moved"
    );
    Ok(Json(ClockView {
        offset_seconds: request.offset_seconds,
        now: rfc3339(store.now()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_null_times_differ() {
        let absent: PutSession = parse_json(br#"{"from":"+1555","to":"+1500"}"#).unwrap();
        let null: PutSession =
            parse_json(br#"{"from":"+1555","to":"+1500","last_inbound_at":null}"#).unwrap();
        let set: PutSession = parse_json(
            br#"{"from":"+1555","to":"+1500","last_inbound_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();

        assert_eq!(absent.last_inbound_at, None);
        assert_eq!(null.last_inbound_at, Some(None));
        assert!(set.last_inbound_at.is_some_and(|at| at.is_some()));
    }
}
