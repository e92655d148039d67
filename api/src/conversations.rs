//! Conversations over HTTP: the messages in order with what the agent did (actions, token
//! usage, summary, disposition), and the list of conversations waiting for a person.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use voice_agent_store::{ConversationDoc, MessageDoc, MessageQuery};

use crate::AppState;
use crate::campaigns::{HttpError, rfc3339};
use crate::grpc::ApiError;

/// Messages returned with one conversation (the latest ones).
const MESSAGES_PER_CONVERSATION: i64 = 500;

/// HTTP routes of conversations.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations", get(list))
        .route("/api/conversations/{id}", get(get_one))
}

/// One message of a conversation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    id: String,
    direction: String,
    body: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i64>,
    created_at: String,
}

impl From<&MessageDoc> for MessageView {
    fn from(m: &MessageDoc) -> Self {
        Self {
            id: m.id.clone(),
            direction: m.direction.clone(),
            body: m.body.clone(),
            status: m.status.clone(),
            error_code: m.error_code,
            created_at: rfc3339(m.created_at),
        }
    }
}

/// An agent action.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    turn_id: String,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    at: String,
}

/// A conversation's agent record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    id: String,
    ours: String,
    theirs: String,
    channel: String,
    profile: Option<String>,
    agent: Option<String>,
    status: String,
    needs_human: bool,
    turns: usize,
    actions: Vec<ActionView>,
    prompt_tokens: i64,
    completion_tokens: i64,
    summary: Option<String>,
    disposition: Option<String>,
    summarized_at: Option<String>,
    updated_at: String,
}

impl From<&ConversationDoc> for ConversationView {
    fn from(c: &ConversationDoc) -> Self {
        Self {
            id: c.id.clone(),
            ours: c.ours.clone(),
            theirs: c.theirs.clone(),
            channel: c.channel.clone(),
            profile: c.profile.clone(),
            agent: c.agent.clone(),
            status: c.status.clone(),
            needs_human: c.needs_human,
            turns: c.turn_ids.len(),
            actions: c
                .actions
                .iter()
                .map(|a| ActionView {
                    turn_id: a.turn_id.clone(),
                    kind: a.kind.clone(),
                    detail: a.detail.clone(),
                    at: rfc3339(a.at),
                })
                .collect(),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            summary: c.summary.clone(),
            disposition: c.disposition.clone(),
            summarized_at: c.summarized_at.map(rfc3339),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// `GET /api/conversations/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationDetail {
    id: String,
    /// The agent's record; `null` when no agent answered this conversation.
    agent: Option<ConversationView>,
    /// Oldest first.
    messages: Vec<MessageView>,
}

#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "conversation-<our digits>-<their digits>")),
    responses(
        (status = 200, description = "The messages, oldest first, and the agent's record", body = ConversationDetail),
        (status = 400, description = "Not a conversation id", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such conversation", body = crate::openapi::ErrorBody)
    )
)]
async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>, HttpError> {
    if !id.starts_with("conversation-") || id.len() > 64 {
        return Err(ApiError::InvalidArgument {
            field: "id",
            reason: "expected conversation-<our digits>-<their digits>".to_owned(),
        }
        .into());
    }
    let unavailable = |e: voice_agent_store::StoreError| ApiError::Unavailable(e.into());
    let doc = state
        .store
        .get_conversation(&id)
        .await
        .map_err(unavailable)?;
    let mut messages = state
        .store
        .list_messages(&MessageQuery {
            conversation_id: Some(id.clone()),
            limit: MESSAGES_PER_CONVERSATION,
            ..MessageQuery::default()
        })
        .await
        .map_err(unavailable)?;
    if doc.is_none() && messages.is_empty() {
        return Err(ApiError::NotFound(format!("conversation {id}")).into());
    }
    // The store pages newest first; a conversation reads oldest first.
    messages.sort_by_key(|m| m.created_at);
    Ok(Json(ConversationDetail {
        id,
        agent: doc.as_ref().map(ConversationView::from),
        messages: messages.iter().map(MessageView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only conversations waiting for a person (`true`) or not (`false`).
    needs_human: Option<bool>,
    /// At most this many, newest first (default 100, 1-500).
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    params(ListQuery),
    responses(
        (status = 200, description = "Conversations the agent took part in, newest first", body = Vec<ConversationView>),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ConversationView>>, HttpError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidArgument {
            field: "limit",
            reason: "between 1 and 500".to_owned(),
        }
        .into());
    }
    let docs = state
        .store
        .list_conversations(q.needs_human, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(docs.iter().map(ConversationView::from).collect()))
}
