//! Conversations over HTTP: the messages in order with what the agent did (actions, token
//! usage, summary, disposition), and the list of conversations waiting for a person.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use temporalio_client::WorkflowStartOptions;
use tracing::info;
use voice_agent_domain::Channel;
use voice_agent_store::{ConversationDoc, MessageDoc, MessageQuery};
use voice_agent_workflows::{ConversationState, ConversationWorkflow, PersonAction};

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
        .route("/api/conversations/{id}/replies", post(reply))
        .route("/api/conversations/{id}/hand-back", post(hand_back))
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
    /// The profile's version at the latest agent turn.
    profile_version: Option<i64>,
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
            profile_version: c.profile_version,
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
    /// A browser chat's turns, oldest first (empty for SMS and WhatsApp, whose text is in
    /// `messages`).
    transcript: Vec<TranscriptLineView>,
}

/// One line of a browser chat.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranscriptLineView {
    /// `person` or `agent`.
    speaker: String,
    /// What was said; for an interrupted agent, what the person heard.
    text: String,
    /// The person cut the agent off here.
    interrupted: bool,
    at: String,
}

/// Longest reply a person may write (ten SMS segments).
const MAX_REPLY_CHARS: usize = 1_600;

/// `POST /api/conversations/{id}/replies`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonReply {
    /// The text to send, 1-1600 characters.
    pub body: String,
    /// The client's id of this request (1-64 letters, digits, `-` or `_`): sending the same
    /// request again sends nothing more.
    pub request_id: String,
}

/// `POST /api/conversations/{id}/hand-back`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandBack {
    /// The client's id of this request (1-64 letters, digits, `-` or `_`).
    pub request_id: String,
}

/// What was accepted; the conversation's workflow carries it out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    request_id: String,
}

fn check_id(raw: &str) -> Result<(), ApiError> {
    let id = raw.trim();
    if !id.starts_with("conversation-") || id.len() > 64 {
        return Err(ApiError::InvalidArgument {
            field: "id",
            reason: "expected conversation-<our digits>-<their digits>".to_owned(),
        });
    }
    Ok(())
}

fn check_request_id(raw: &str) -> Result<(), ApiError> {
    if raw.is_empty()
        || raw.len() > 64
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::InvalidArgument {
            field: "request_id",
            reason: "1-64 letters, digits, - or _".to_owned(),
        });
    }
    Ok(())
}

/// Hands a person's action to the conversation's workflow, starting a new run if it closed
/// while idle (it takes back its memory and hand-over state first).
async fn to_workflow(state: &AppState, id: &str, action: PersonAction) -> Result<(), ApiError> {
    let unavailable = |e: anyhow::Error| ApiError::Unavailable(e);
    let doc = state
        .store
        .get_conversation(id)
        .await
        .map_err(|e| unavailable(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("conversation {id}")))?;
    let channel = if doc.channel == "whatsapp" {
        Channel::Whatsapp
    } else {
        Channel::Sms
    };
    let start = ConversationState {
        ours: doc.ours.clone(),
        theirs: doc.theirs.clone(),
        channel: Some(channel),
        ..Default::default()
    };
    state
        .temporal
        .signal_with_start_workflow(
            ConversationWorkflow::run,
            start,
            ConversationWorkflow::person,
            action,
            WorkflowStartOptions::new(state.settings.common.task_queue.clone(), id.to_owned())
                .build(),
        )
        .await
        .map_err(|e| unavailable(e.into()))?;
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/conversations/{id}/replies",
    tag = "conversations",
    request_body = PersonReply,
    params(("id" = String, Path, description = "conversation-<our digits>-<their digits>")),
    responses(
        (status = 202, description = "Handed to the conversation, which sends it once through the exactly-once send path", body = Accepted),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such conversation", body = crate::openapi::ErrorBody)
    )
)]
async fn reply(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), HttpError> {
    check_id(&id)?;
    let req: PersonReply =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidArgument {
            field: "body",
            reason: format!("expected {{\"body\", \"request_id\"}}: {e}"),
        })?;
    check_request_id(&req.request_id)?;
    let text = req.body.trim();
    if text.is_empty() || text.chars().count() > MAX_REPLY_CHARS {
        return Err(ApiError::InvalidArgument {
            field: "body",
            reason: "1-1600 characters".to_owned(),
        }
        .into());
    }
    let action = PersonAction {
        request_id: req.request_id.clone(),
        by: "api".to_owned(),
        reply: Some(text.to_owned()),
        after: None,
    };
    to_workflow(&state, &id, action).await?;
    info!(conversation = %voice_agent_domain::mask_workflow_id(&id), "a person replied");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            request_id: req.request_id,
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/conversations/{id}/hand-back",
    tag = "conversations",
    request_body = HandBack,
    params(("id" = String, Path, description = "conversation-<our digits>-<their digits>")),
    responses(
        (status = 202, description = "The agent answers again from the next message", body = Accepted),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such conversation", body = crate::openapi::ErrorBody)
    )
)]
async fn hand_back(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), HttpError> {
    check_id(&id)?;
    let req: HandBack = serde_json::from_slice(&body).map_err(|e| ApiError::InvalidArgument {
        field: "body",
        reason: format!("expected {{\"request_id\"}}: {e}"),
    })?;
    check_request_id(&req.request_id)?;
    let action = PersonAction {
        request_id: req.request_id.clone(),
        by: "api".to_owned(),
        reply: None,
        after: None,
    };
    to_workflow(&state, &id, action).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            request_id: req.request_id,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "conversation-<our digits>-<their digits>, or conversation-web-<chat id>")),
    responses(
        (status = 200, description = "The messages (or a browser chat's transcript), oldest first, and the agent's record", body = ConversationDetail),
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
        transcript: doc
            .as_ref()
            .map(|d| {
                d.transcript
                    .iter()
                    .map(|l| TranscriptLineView {
                        speaker: l.speaker.clone(),
                        text: l.text.clone(),
                        interrupted: l.interrupted,
                        at: l.at.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only conversations waiting for a person (`true`) or not (`false`).
    needs_human: Option<bool>,
    /// At most this many, newest first (default 100, 1-500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Cursor: the `updated_at` of the last conversation of the previous page (with `before_id`).
    before_updated_at: Option<String>,
    /// Cursor: the `id` of the last conversation of the previous page.
    before_id: Option<String>,
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
    let before = match (q.before_updated_at.as_deref(), q.before_id) {
        (None, None) => None,
        (Some(at), Some(id)) => Some((
            mongodb::bson::DateTime::parse_rfc3339_str(at).map_err(|_| {
                ApiError::InvalidArgument {
                    field: "before_updated_at",
                    reason: "an RFC 3339 time (a conversation's updated_at)".to_owned(),
                }
            })?,
            id,
        )),
        _ => {
            return Err(ApiError::InvalidArgument {
                field: "before_id",
                reason: "give before_updated_at and before_id together".to_owned(),
            }
            .into());
        }
    };
    let docs = state
        .store
        .page_conversations(q.needs_human, before, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(Json(docs.iter().map(ConversationView::from).collect()))
}
