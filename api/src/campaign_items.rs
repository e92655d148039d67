//! A campaign's items over HTTP: pages filtered by status and a search, and one item with
//! its attempts (`/api/campaigns/{id}/items`).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use voice_agent_store::{CampaignItemDoc, ExecutionDoc};

use crate::AppState;
use crate::campaigns::{HttpError, rfc3339};
use crate::grpc::ApiError;

/// Items per page when the request names none.
const DEFAULT_PAGE: usize = 50;

/// HTTP routes of campaign items.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/campaigns/{id}/items", get(list_items))
        .route("/api/campaigns/{id}/items/{item_id}", get(get_item))
}

/// One contact of a campaign and where its message or call is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemView {
    /// `<campaign id>:<contact id>`.
    id: String,
    contact_id: String,
    phone: String,
    /// The contact's name, when the list had one.
    name: Option<String>,
    /// pending, sending, sent, delivered, undelivered, failed, skipped, canceled, ...
    status: String,
    /// Twilio's error code of a failure.
    error_code: Option<i64>,
    /// Why it failed or was skipped.
    reason: Option<String>,
    /// Sends started.
    attempts: i32,
    /// Twilio's message id once accepted.
    message_sid: Option<String>,
    updated_at: String,
}

impl From<&CampaignItemDoc> for ItemView {
    fn from(i: &CampaignItemDoc) -> Self {
        let name = i.variables.get("name").cloned().or_else(|| {
            let first = i
                .variables
                .get("first_name")
                .map(String::as_str)
                .unwrap_or("");
            let last = i
                .variables
                .get("last_name")
                .map(String::as_str)
                .unwrap_or("");
            let full = format!("{first} {last}").trim().to_owned();
            (!full.is_empty()).then_some(full)
        });
        Self {
            id: i.id.clone(),
            contact_id: i.contact_id.clone(),
            phone: i.phone.clone(),
            name,
            status: i.status.clone(),
            error_code: i.error_code,
            reason: i.reason.clone(),
            attempts: i.attempts,
            message_sid: i.message_sid.clone(),
            updated_at: rfc3339(i.updated_at),
        }
    }
}

/// `GET /api/campaigns/{id}/items`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemsPage {
    items: Vec<ItemView>,
    /// Pass as `cursor` for the next page; absent at the end. A page may hold fewer items
    /// than asked (even none) and still have a next one: each request reads a bounded part
    /// of the campaign.
    next_cursor: Option<String>,
}

/// `GET /api/campaigns/{id}/items` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Only items with this status.
    status: Option<String>,
    /// Part of the number, or of the name (at most 100 characters).
    search: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1-200 (default 50).
    limit: Option<usize>,
}

/// One attempt at an item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// From 1.
    attempt: i32,
    at: String,
    /// `accepted`, `reconciled`, `transient_error`, `rejected`, `skipped`.
    outcome: String,
    /// Twilio's error code.
    error_code: Option<i64>,
}

impl From<&ExecutionDoc> for AttemptView {
    fn from(e: &ExecutionDoc) -> Self {
        Self {
            attempt: e.attempt,
            at: rfc3339(e.at),
            outcome: e.outcome.clone(),
            error_code: e.error_code,
        }
    }
}

/// `GET /api/campaigns/{id}/items/{item_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemDetail {
    item: ItemView,
    /// In order (at most 100).
    attempts: Vec<AttemptView>,
}

fn check_campaign_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || id.contains([':', ';']) {
        return Err(ApiError::InvalidArgument {
            field: "id",
            reason: "not a campaign id".to_owned(),
        });
    }
    Ok(())
}

fn unavailable(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Unavailable(e.into())
}

#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/items",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id"), ItemsQuery),
    responses(
        (status = 200, description = "Items in contact order", body = ItemsPage),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody)
    )
)]
async fn list_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Result<Json<ItemsPage>, HttpError> {
    check_campaign_id(&id)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidArgument {
            field: "limit",
            reason: "between 1 and 200".to_owned(),
        }
        .into());
    }
    let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::InvalidArgument {
            field: "search",
            reason: "at most 100 characters".to_owned(),
        }
        .into());
    }
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    if status.is_some_and(|s| s.len() > 32) {
        return Err(ApiError::InvalidArgument {
            field: "status",
            reason: "not a status".to_owned(),
        }
        .into());
    }
    if state
        .store
        .get_campaign(&id)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("campaign {id}")).into());
    }
    let page = state
        .store
        .page_campaign_items(
            &id,
            status,
            search,
            q.cursor.as_deref().filter(|c| !c.is_empty()),
            limit,
        )
        .await
        .map_err(unavailable)?;
    Ok(Json(ItemsPage {
        items: page.items.iter().map(ItemView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/items/{item_id}",
    tag = "campaigns",
    params(
        ("id" = String, Path, description = "The campaign id"),
        ("item_id" = String, Path, description = "The item id (`<campaign id>:<contact id>`)")
    ),
    responses(
        (status = 200, description = "The item and its attempts", body = ItemDetail),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such item", body = crate::openapi::ErrorBody)
    )
)]
async fn get_item(
    State(state): State<AppState>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Json<ItemDetail>, HttpError> {
    check_campaign_id(&id)?;
    if !item_id.starts_with(&format!("{id}:")) || item_id.len() > 160 {
        return Err(ApiError::InvalidArgument {
            field: "item_id",
            reason: "not an item of this campaign".to_owned(),
        }
        .into());
    }
    let item = state
        .store
        .get_item(&item_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("item {item_id}")))?;
    let attempts = state
        .store
        .item_executions(&id, &item_id)
        .await
        .map_err(unavailable)?;
    Ok(Json(ItemDetail {
        item: ItemView::from(&item),
        attempts: attempts.iter().map(AttemptView::from).collect(),
    }))
}
