//! One contact's history over HTTP: opt-out state, the latest messages and calls with their
//! number, and the campaigns of their list that included them
//! (`/api/contact-lists/{id}/contacts/{contact_id}/history`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::campaigns::{HttpError, rfc3339};
use crate::conversations::MessageView;
use crate::grpc::ApiError;
use crate::voice::CallLogView;

/// HTTP routes of a contact's history.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/contact-lists/{id}/contacts/{contact_id}/history",
        get(contact_history),
    )
}

/// A number's opt-out state; it applies to SMS, WhatsApp and campaign calls alike.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OptOutView {
    /// Whether messages and campaign calls to the number are refused.
    opted_out: bool,
    /// The keyword that set it (`STOP`, `START`, `AGENT` when the agent opted them out).
    keyword: Option<String>,
    /// The channel it was asked on (`sms`, `whatsapp`, `voice`).
    channel: Option<String>,
    at: Option<String>,
}

/// A campaign that included the contact, and where their item is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactCampaignView {
    campaign_id: String,
    name: String,
    channel: String,
    /// The item's status.
    status: String,
    error_code: Option<i64>,
    updated_at: String,
}

/// `GET /api/contact-lists/{id}/contacts/{contact_id}/history`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactHistory {
    /// `null` when the number never sent STOP or START: not opted out.
    opt_out: Option<OptOutView>,
    /// Newest first, at most 50.
    messages: Vec<MessageView>,
    /// Newest first, at most 50 (without transcripts; open a call for it).
    calls: Vec<CallLogView>,
    /// The list's latest 50 campaigns that included this contact, newest first.
    campaigns: Vec<ContactCampaignView>,
}

fn unavailable(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Unavailable(e.into())
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}/contacts/{contact_id}/history",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ("contact_id" = String, Path, description = "The contact id")),
    responses(
        (status = 200, description = "The contact's history", body = ContactHistory),
        (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody)
    )
)]
async fn contact_history(
    State(state): State<AppState>,
    Path((id, contact_id)): Path<(String, String)>,
) -> Result<Json<ContactHistory>, HttpError> {
    if id.len() > 64 || contact_id.len() > 64 {
        return Err(ApiError::NotFound(format!("contact {contact_id}")).into());
    }
    let contact = state
        .store
        .get_contact(&id, &contact_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("contact {contact_id}")))?;
    let phone = contact.phone.as_str();
    let (opt_out, messages, calls, campaigns) = tokio::try_join!(
        state.store.opt_out_state(phone),
        state.store.messages_with(phone),
        state.store.calls_with(phone),
        state.store.campaigns_of_contact(&id, &contact_id),
    )
    .map_err(unavailable)?;
    Ok(Json(ContactHistory {
        opt_out: opt_out.map(|o| OptOutView {
            opted_out: o.opted_out,
            keyword: o.keyword,
            channel: o.channel,
            at: o.at.map(rfc3339),
        }),
        messages: messages.iter().map(MessageView::from).collect(),
        calls: calls.iter().map(CallLogView::from).collect(),
        campaigns: campaigns
            .iter()
            .map(|(c, item)| ContactCampaignView {
                campaign_id: c.id.clone(),
                name: c.name.clone(),
                channel: c.channel.clone(),
                status: item.status.clone(),
                error_code: item.error_code,
                updated_at: rfc3339(item.updated_at),
            })
            .collect(),
    }))
}
